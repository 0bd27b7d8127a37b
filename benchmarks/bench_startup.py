"""Start-up: ``gradtui --help`` and ``gradtui presets`` under 0.5 s without TensorFlow; the TUI.

Each command runs as a fresh subprocess (the way a user runs it) several times; the table shows
the median wall time and the spread. ``python -X importtime`` checks that TensorFlow, Keras and
Textual are not imported by the two commands.

When the TUI exists (``gradtui/tui/app.py``), two more measurements:

* first paint: ``gradtui tui PRESET --headless`` opens the app, paints its first screen and
  leaves; its wall time bounds the time to the first paint from above. It includes the exit,
  which waits for the background TensorFlow import (~4 s and more on a busy machine): an upper
  bound only, printed as "indicative", not judged against the 1.5 s target.
* throughput with the TUI attached: ``gradtui tui PRESET --headless --train`` vs
  ``gradtui run PRESET --quiet``, alternated; the ratio of optimizer steps per second of
  training, taken from each run directory (``summary.json`` steps over the time between the
  run directory's creation and its last ``stats.jsonl`` write). ``gradtui run`` creates its run
  directory before importing TensorFlow and the TUI may not, so this ratio is biased in the
  TUI's favour: "indicative" only, not judged against the 5% target.

Run: ``python benchmarks/bench_startup.py`` (``--no-tui`` to skip the TUI rows).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras", "textual")


def gradtui_cmd() -> list[str]:
    """The installed console script if there is one beside this Python, else ``-m gradtui``."""
    script = Path(sys.executable).with_name("gradtui")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gradtui"]


def wall(cmd: list[str], repeat: int, env: dict[str, str] | None = None) -> list[float]:
    """Wall seconds of ``repeat`` runs of a command (output discarded; must exit 0)."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(
            cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env
        )
        out.append(time.perf_counter() - t0)
    return out


def heavy_imports(args: list[str]) -> list[str]:
    """The heavy top-level packages a command imports (from ``python -X importtime``)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gradtui", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    found = set()
    for line in proc.stderr.splitlines():
        if "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name.split(".")[0] in HEAVY:
                found.add(name.split(".")[0])
    return sorted(found)


def run_dir_rate(path: Path) -> float:
    """Optimizer steps per second of a finished run directory."""
    summary = json.loads((path / "summary.json").read_text())
    start = min(p.stat().st_mtime for p in (path / "preset.toml", path))
    end = (path / "stats.jsonl").stat().st_mtime
    return summary["steps"] / max(end - start, 1e-9)


def main(argv: list[str] | None = None) -> int:
    """Print the table; exit 1 if a target is missed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=9, help="runs per command (default 9)")
    ap.add_argument("--no-tui", action="store_true", help="skip the TUI measurements")
    ap.add_argument("--preset", default="vanishing-sigmoid", help="preset for the TUI rows")
    ap.add_argument("--pairs", type=int, default=3, help="TUI vs run --quiet pairs (default 3)")
    args = ap.parse_args(argv)

    cmd = gradtui_cmd()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    rows: list[tuple[str, str, float, str, bool]] = []
    for label, extra in (("gradtui --help", ["--help"]), ("gradtui presets", ["presets"])):
        times = wall([*cmd, *extra], args.repeat, env)
        heavy = heavy_imports(extra)
        med = statistics.median(times)
        note = f"{min(times):.3f}-{max(times):.3f} s; heavy imports: {', '.join(heavy) or 'none'}"
        rows.append((label, f"{med:.3f} s", 0.5, note, med < 0.5 and not heavy))

    tui_note = ""
    if args.no_tui:
        tui_note = "TUI rows skipped (--no-tui)."
    elif not (ROOT / "gradtui" / "tui" / "app.py").exists():
        tui_note = "gradtui/tui/app.py does not exist yet: TUI first paint and throughput not measured."
    else:
        try:
            times = wall([*cmd, "tui", args.preset, "--headless"], max(3, args.repeat // 3), env)
            med = statistics.median(times)
            rows.append(
                (
                    f"TUI first paint ({args.preset}, headless, exit included)",
                    f"{med:.3f} s",
                    1.5,
                    f"{min(times):.3f}-{max(times):.3f} s",
                    med < 1.5,
                )
            )
            ratios = []
            with tempfile.TemporaryDirectory() as tmp:
                for i in range(args.pairs):
                    quiet = Path(tmp) / f"run{i}"
                    run_cmd = [*cmd, "run", args.preset, "--quiet", "--out", str(quiet)]
                    tui_cmd = [*cmd, "tui", args.preset, "--headless", "--train"]  # writes runs/<stamp>
                    for c in (run_cmd, tui_cmd) if i % 2 == 0 else (tui_cmd, run_cmd):
                        subprocess.run(
                            c,
                            check=True,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            cwd=tmp,
                            env=env,
                        )
                    tui_runs = sorted(Path(tmp).glob("runs/*"), key=lambda p: p.stat().st_mtime)
                    if not tui_runs:
                        raise RuntimeError("the headless TUI run left no run directory to measure")
                    ratios.append(run_dir_rate(quiet) / run_dir_rate(tui_runs[-1]))
            med = statistics.median(ratios)
            rows.append(
                (
                    "TUI-attached time per step / run --quiet",
                    f"{med:.3f}",
                    1.05,
                    f"{min(ratios):.3f}-{max(ratios):.3f} over {len(ratios)} pairs",
                    med <= 1.05,
                )
            )
        except (subprocess.CalledProcessError, RuntimeError, OSError, KeyError, ValueError) as exc:
            tui_note = f"TUI measurement failed: {type(exc).__name__}: {exc}"

    print(
        f"# gradtui start-up, {os.cpu_count()} CPU cores, median of {args.repeat} runs, load {os.getloadavg()[0]:.2f}"
    )
    print()
    print("| what | median | target | spread / notes | result |")
    print("|---|---:|---:|---|---|")
    for i, (label, value, target, note, ok) in enumerate(rows):
        verdict = ("PASS" if ok else "FAIL") if i < 2 else "indicative"
        print(f"| {label} | {value} | < {target} | {note} | {verdict} |")
    if tui_note:
        print()
        print(tui_note)
    return 0 if all(r[4] for r in rows[:2]) else 1


if __name__ == "__main__":
    sys.exit(main())
