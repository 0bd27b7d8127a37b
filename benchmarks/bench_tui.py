"""The TUI's first paint, and training throughput with the TUI attached vs ``gradtui run --quiet``.

* first paint: a fresh interpreter opens the app headless (as ``gradtui tui PRESET``, with the
  background TensorFlow import started) and prints the time from just before the interpreter
  was spawned to Textual's ``Ready`` event (the first screen composed and drawn), and to the
  builder's forms filled (they are mounted just after the first paint), then leaves.
  Interpreter start-up is included, as a user would feel it.
* throughput: ``gradtui tui P --headless --train`` and ``gradtui run P --quiet`` alternate on the
  same preset (he-relu for 20 epochs, 1,020 steps); each run's ``summary.json`` says
  ``steps_per_second``, timed by the same callback (``fit``'s begin to end, tracing included)
  in both, so the ratio compares like with like. Target: within 5% (ratio >= 0.95).

Run: ``python benchmarks/bench_tui.py`` (``--pairs N``, ``--paints N``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PAINT = """
import os, sys, time
t0 = float(os.environ["GRADTUI_T0"])
from gradtui.tui.app import GradtuiApp, create_app
from gradtui.tui.widgets.builder_view import BuilderView

def on_ready(self):
    sys.stdout.write(f"{time.time() - t0:.4f} ")
    sys.stdout.flush()

fill = BuilderView.on_forms_column_ready

def on_forms(self, event):
    fill(self, event)
    sys.stdout.write(f"{time.time() - t0:.4f}\\n")
    sys.stdout.flush()
    os._exit(0)

GradtuiApp.on_ready = on_ready
BuilderView.on_forms_column_ready = on_forms
create_app(sys.argv[1]).run(headless=True)
"""


def first_paint(preset: str, n: int, env: dict[str, str]) -> list[tuple[float, float]]:
    """Seconds from spawning an interpreter to the app's first drawn screen, and to the
    builder's forms filled (mounted just after the first paint), ``n`` times."""
    out = []
    for _ in range(n):
        env = {**env, "GRADTUI_T0": repr(time.time())}
        res = subprocess.run(
            [sys.executable, "-c", PAINT, preset],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=120,
        )
        paint, forms = res.stdout.split()[-2:]
        out.append((float(paint), float(forms)))
    return out


def throughput(pairs: int, env: dict[str, str]) -> list[tuple[float, float]]:
    """``(tui, run)`` steps per second, alternated pair by pair."""
    cmd = [sys.executable, "-m", "gradtui"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        preset = Path(tmp) / "bench.toml"
        text = (ROOT / "presets" / "he-relu.toml").read_text().replace("epochs = 5", "epochs = 20")
        preset.write_text(text)
        for i in range(pairs):
            got: dict[str, float] = {}
            for kind in ("tui", "run") if i % 2 == 0 else ("run", "tui"):
                work = Path(tmp) / f"{kind}{i}"
                work.mkdir()
                if kind == "run":
                    args = [*cmd, "run", str(preset), "--quiet", "--out", str(work / "runs" / "r")]
                else:
                    args = [*cmd, "tui", str(preset), "--headless", "--train"]
                subprocess.run(args, cwd=work, env=env, check=True, capture_output=True, timeout=600)
                (summary,) = work.glob("runs/*/summary.json")
                got[kind] = json.loads(summary.read_text())["steps_per_second"]
            rows.append((got["tui"], got["run"]))
            print(f"  pair {i + 1}/{pairs}: tui {got['tui']:.1f} steps/s, run {got['run']:.1f} steps/s")
    return rows


def main() -> None:
    """Print both measurements as a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paints", type=int, default=7)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--preset", default="vanishing-sigmoid")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRADTUI_STATE_DIR": tempfile.mkdtemp()}
    both = first_paint(args.preset, args.paints, env)
    paints, forms = [p for p, _ in both], [f for _, f in both]
    rows = throughput(args.pairs, env)
    ratios = [t / r for t, r in rows]
    med = statistics.median(paints)
    ratio = statistics.median(ratios) if ratios else math.nan
    print()
    print("| what | median | spread | target | result |")
    print("|---|---:|---|---:|---|")
    print(
        f"| TUI first paint ({args.preset}) | {med:.3f} s | {min(paints):.3f}-{max(paints):.3f} s "
        f"| < 1.5 s | {'PASS' if med < 1.5 else 'FAIL'} |"
    )
    print(
        f"| ... and the builder's forms filled | {statistics.median(forms):.3f} s "
        f"| {min(forms):.3f}-{max(forms):.3f} s | (none) | - |"
    )
    if not ratios:
        print(f"\n# {args.paints} paints, no pairs; load average {os.getloadavg()[0]:.2f} at the end")
        return
    print(
        f"| steps/s with the TUI / `run --quiet` | {ratio:.3f} | {min(ratios):.3f}-{max(ratios):.3f} "
        f"| >= 0.95 | {'PASS' if ratio >= 0.95 else 'FAIL'} |"
    )
    print(f"\n# {args.paints} paints, {args.pairs} pairs; load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
