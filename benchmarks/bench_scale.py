"""Runs of any length (issue 23): open, report, compare and export on runs of 1,000 to 1,000,000 records.

The run directories are synthesized from a real run: ``gradtui run vanishing-sigmoid`` trains a
13-layer stack (12 x 64 sigmoid + the softmax output, every statistic of every layer recorded)
for ``--base-steps`` steps into the work folder; its ``stats.jsonl`` lines are kept as they are
and continued, steps and epochs counting on, up to N records. The continued lines are whole
records in the writer's own form (same keys, 9 significant digits, about 2.2 kB a record): a pool
of ``--variants`` layer bodies is made first, each drawn around the real run's per-layer values
at a point of training (gradient norms drifting up to 1.5x on the output side and the layer's
own noise, update ratios following them, weight norms growing by 5%, saturation creeping up,
activation means wandering), and step ``s`` takes a body from near its point of training, so
the heatmap shows a trend and batch-to-batch noise, not a repeating pattern. The loss decays
from the real run's last loss with batch noise and a rare spike (x3, one step in 10,000).
``summary.json`` is the real run's, with ``steps``/``records`` set to N; ``preset.toml`` is the
real run's.

The 200-layer run (``--layers 200``): the same, with 200 layers ``dense``, ``dense_1`` ...
``dense_199``: layer ``j`` sits at depth ``j * 12 / 199`` of the real stack; its gradient norm,
largest gradient and update ratio are interpolated geometrically between the two real layers
around it (the vanishing profile stretched over 200 layers), its other values are the nearer
real layer's; the last layer is the output layer (no saturation or activation mean, as in the
real run). Its ``preset.toml`` says ``repeat = 199``. About 33 kB a record: 1,000,000 records
would be 33 GB, so it is not made by default (``--layers 200 --sizes 1000,100000``).

Each command then runs in a fresh interpreter (``python -m gradtui ...``, interpreter start-up
included, as a user feels it) with ``PYTHONPATH`` set to the checkout measured (``--repo``, this
one by default; give it twice, e.g. ``--repo /tmp/before --repo .``, to measure before and after
side by side on the same runs):

* ``open``: the first screen with the run on it. The app runs as ``gradtui open RUN --headless``
  does (``run_open``), with the monitor's ``show`` wrapped: the first time it is given a snapshot
  with layer rows, the time is taken once Textual has refreshed the screen after it, and the
  process leaves. Spawn to that paint, interpreter start-up included; a code that reads the
  whole run before drawing pays for the whole read here, one that draws early does not.
* ``open-read`` (not by default): ``gradtui open RUN --headless`` to its exit, which reads the
  run to the end, draws it and leaves.
* ``report``: ``gradtui report RUN -o SCRATCH/report.html`` (the figure drawn and written).
* ``compare``: ``gradtui compare RUN BASE`` (BASE: the real short run).
* ``export``: ``gradtui export RUN --tensorboard SCRATCH/tb``.

Wall time (spawn to exit) and peak resident memory (``os.wait4``'s ``ru_maxrss`` of that child)
are measured per command. A watcher reads the child's ``VmRSS`` every 20 ms and kills it (the
whole process group) when it passes ``--cap`` (default 3 GB), reported as ``> cap``; a command
running past ``--timeout`` is killed and reported as ``> timeout``. ``RLIMIT_AS`` is set in the
child at ``--as-limit`` (default: 3 x cap + 2 GiB: TensorFlow's and BLAS's address space is far
above what they touch) as a backstop the kernel enforces if the watcher were ever too slow. A
command that fails otherwise is reported as ``exit N`` with its last stderr line.

Run: ``python benchmarks/bench_scale.py`` (defaults: ``--sizes 1000,100000,1000000 --layers 13
--cap 3G --timeout 600``); ``--out DIR`` keeps the synthesized runs there (and reuses them on the
next call); ``--commands open,report`` measures only some. The 'before' of issue 23 (main at
c0eb3ee): ``git -C /work/main archive c0eb3ee | tar -x -C /tmp/before`` and
``--repo /tmp/before``. Never measure old code on 1,000,000 records without a cap: it needs 12 GB.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PRESET = "vanishing-sigmoid"
COMMANDS = ("open", "report", "compare", "export", "open-read")
DEFAULT_COMMANDS = ("open", "report", "compare", "export")

#: ``open``'s first screen: the app on the run, headless, as ``gradtui open RUN --headless``; the
#: monitor's first ``show`` of a snapshot with layer rows (the run on the screen) is timed once
#: the screen has been refreshed after it, then the process leaves
FIRST_SCREEN = """
import os, sys, time
t0 = float(os.environ["BENCH_SCALE_T0"])
from gradtui.tui.widgets.monitor_view import MonitorView
show = MonitorView.show
seen = []

def timed(self, snapshot, errors=None):
    show(self, snapshot, errors)
    if snapshot.rows and not seen:
        seen.append(1)

        def painted():
            sys.stdout.write(f"first-screen {time.time() - t0:.4f}\\n")
            sys.stdout.flush()
            os._exit(0)

        self.app.call_after_refresh(painted)

MonitorView.show = timed
from gradtui.tui.app import run_open
code = run_open(sys.argv[1], follow=False, headless=True)
sys.stdout.write("no-screen\\n")
sys.exit(code or 3)
"""
#: spike of the loss: one step in SPIKE_EVERY, times 3
SPIKE_EVERY = 10_000
CHUNK = 20_000  # lines built and written at once


# ----------------------------------------------------------------------------- synthesis


def _g(x: float) -> str:
    """A value as the writer writes it: 9 significant digits."""
    if isinstance(x, (bool, int)):
        return str(int(x))
    return f"{x:.9g}"


def real_run(work: Path, steps: int, env: dict[str, str]) -> Path:
    """Train the 13-layer preset for ``steps`` steps into ``work/base`` (once; kept)."""
    base = work / "base"
    if (base / "summary.json").exists() and (base / "stats.jsonl").exists():
        return base
    if base.exists():
        shutil.rmtree(base)
    print(f"# training the real run: gradtui run {PRESET} --max-steps {steps} ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "gradtui", "run", PRESET, "--max-steps", str(steps), "--seed", "0"]
        + ["--quiet", "--out", str(base)],
        env=env,
        cwd=work,
        check=True,
        capture_output=True,
        timeout=900,
    )
    return base


def _layer_names(n: int) -> list[str]:
    return [f"dense_{i}" if i else "dense" for i in range(n)]


class Synth:
    """Layer bodies drawn around a real run's values, and the lines of a continued run."""

    def __init__(self, base: Path, layers: int, variants: int, seed: int = 0) -> None:
        self.lines = (base / "stats.jsonl").read_text().splitlines()
        self.records = [json.loads(line) for line in self.lines]
        self.summary = json.loads((base / "summary.json").read_text())
        self.preset_text = (base / "preset.toml").read_text()
        real_names = list(self.records[0]["layers"])
        self.real_names = real_names
        # per real layer and key: the geometric mean (positive values) or the mean over the real run
        self.mean: dict[str, dict[str, float]] = {}
        self.keys: dict[str, list[str]] = {}
        for name in real_names:
            rows = [r["layers"][name] for r in self.records if name in r.get("layers", {})]
            self.keys[name] = list(rows[0])
            means = {}
            for key in rows[0]:
                vals = [float(row[key]) for row in rows if isinstance(row.get(key), (int, float))]
                pos = [v for v in vals if v > 0 and math.isfinite(v)]
                if key in ("grad_norm", "grad_max", "update_ratio", "weight_norm") and pos:
                    means[key] = math.exp(statistics.fmean(math.log(v) for v in pos))
                else:
                    means[key] = statistics.fmean(vals) if vals else 0.0
            self.mean[name] = means
        self.layers = layers
        self.names = real_names if layers == len(real_names) else _layer_names(layers)
        self.epoch_steps = next((r["step"] for r in self.records if r.get("epoch", 0) > 0), 0) or 50
        self.last_loss = float(self.records[-1]["loss"])
        self.first_step = int(self.records[-1]["step"]) + 1
        rng = random.Random(seed)
        self.bodies = [self._body(k / max(1, variants - 1), rng) for k in range(variants)]

    def _profile(self, j: int) -> tuple[dict[str, float], list[str]]:
        """Layer ``j``'s mean values and keys (the real layer's, or interpolated along depth)."""
        n_real = len(self.real_names)
        if self.layers == n_real:
            name = self.real_names[j]
            return self.mean[name], self.keys[name]
        if j == self.layers - 1:  # the output layer
            name = self.real_names[-1]
            return self.mean[name], self.keys[name]
        x = j * (n_real - 1) / (self.layers - 1)
        lo, hi = int(math.floor(x)), min(n_real - 2, int(math.ceil(x)))  # hidden layers only
        lo = min(lo, n_real - 2)
        f = x - math.floor(x) if hi != lo else 0.0
        a, b = self.mean[self.real_names[lo]], self.mean[self.real_names[hi]]
        near = a if f < 0.5 else b
        out = dict(near)
        for key in ("grad_norm", "grad_max", "update_ratio"):
            if a.get(key, 0) > 0 and b.get(key, 0) > 0:
                out[key] = math.exp((1 - f) * math.log(a[key]) + f * math.log(b[key]))
        return out, self.keys[self.real_names[lo]]

    def _body(self, p: float, rng: random.Random) -> str:
        """``"layers":{...}`` at point ``p`` (0..1) of training, with each layer's noise."""
        parts = []
        for j, name in enumerate(self.names):
            mean, keys = self._profile(j)
            depth = j / max(1, len(self.names) - 1)
            grow = (1 + 0.5 * p * depth) * math.exp(rng.gauss(0, 0.2))
            wgrow = 1 + 0.05 * p
            vals = []
            for key in keys:
                m = mean.get(key, 0.0)
                if key == "grad_norm":
                    v = m * grow
                elif key == "grad_max":
                    v = m * grow * math.exp(rng.gauss(0, 0.1))
                elif key == "update_ratio":
                    v = m * grow / wgrow
                elif key == "weight_norm":
                    v = m * wgrow
                elif key == "nonfinite":
                    v = 0
                elif key in ("saturation", "dead"):
                    v = min(1.0, max(0.0, m + 0.1 * p * depth + abs(rng.gauss(0, 0.01))))
                elif key == "act_mean":
                    v = m + rng.gauss(0, 0.01)
                else:
                    v = m * math.exp(rng.gauss(0, 0.05)) if m else m
                vals.append(f'"{key}":{_g(v)}')
            parts.append(f'"{name}":{{{",".join(vals)}}}')
        return '"layers":{' + ",".join(parts) + "}}\n"

    def write(self, run: Path, n: int, seed: int = 1) -> None:
        """Write run directory ``run`` with ``n`` records (the real ones first, then continued)."""
        import numpy as np

        tmp = run.with_name(run.name + ".part")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        preset = self.preset_text
        if self.layers != len(self.real_names):
            preset = re.sub(r"repeat = \d+", f"repeat = {self.layers - 1}", preset, count=1)
        (tmp / "preset.toml").write_text(preset)
        nv = len(self.bodies)
        with open(tmp / "stats.jsonl", "w", buffering=1 << 22) as fh:
            if self.layers == len(self.real_names):
                fh.write("\n".join(self.lines[:n]) + "\n")
            start = min(n, len(self.lines)) if self.layers == len(self.real_names) else 0
            total = max(1, n - start)
            for lo in range(start, n, CHUNK):
                hi = min(n, lo + CHUNK)
                k = np.arange(hi - lo)
                p = (lo + k - start) / total
                steps = (self.first_step if start else 0) + (lo - start) + k
                loss = (0.6 + (self.last_loss - 0.6) * np.exp(-4 * p)) * (1 + rng.normal(0, 0.05, len(k)))
                loss = np.where(rng.random(len(k)) < 1 / SPIKE_EVERY, loss * 3, loss)
                idx = np.clip((p * (nv - 1)).astype(int) + rng.integers(-8, 9, len(k)), 0, nv - 1)
                bodies = self.bodies
                spe = self.epoch_steps
                fh.write(
                    "".join(
                        f'{{"step":{s},"epoch":{s // spe},"loss":{lv:.9g},' + bodies[i]
                        for s, lv, i in zip(steps.tolist(), loss.tolist(), idx.tolist(), strict=True)
                    )
                )
        summary = dict(self.summary)
        last_step = ((self.first_step if start else 0) + (n - start) - 1) if n > start else n - 1
        summary.update(steps=last_step + 1, records=n, epochs=last_step // self.epoch_steps + 1)
        if summary.get("final"):
            summary["final"] = {**summary["final"], "loss": 0.6}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if run.exists():
            shutil.rmtree(run)
        os.replace(tmp, run)


def make_runs(
    out: Path, sizes: list[int], layers: list[int], base_steps: int, variants: int, env: dict[str, str]
) -> tuple[Path, dict[tuple[int, int], Path]]:
    """The real run and the synthesized ones under ``out`` (made once; reused when present)."""
    out.mkdir(parents=True, exist_ok=True)
    base = real_run(out, base_steps, env)
    made = {}
    index_file = out / "bench_scale.json"
    index = json.loads(index_file.read_text()) if index_file.exists() else {}
    for n_layers in layers:
        synth = None
        for n in sizes:
            run = out / f"run-{n_layers}x{n}"
            key = run.name
            if run.exists() and index.get(key) == {"records": n, "layers": n_layers, "variants": variants}:
                made[(n_layers, n)] = run
                continue
            per = 2250 if n_layers <= 13 else 170 * n_layers
            need = per * n * 1.1
            free = shutil.disk_usage(out).free
            if need > free - 5e9:
                print(f"# skipped {key}: needs ~{need / 1e9:.1f} GB, {free / 1e9:.1f} GB free", flush=True)
                continue
            if synth is None:
                synth = Synth(base, n_layers, variants if n_layers <= 13 else max(200, variants // 4))
            t0 = time.perf_counter()
            synth.write(run, n)
            size = (run / "stats.jsonl").stat().st_size
            print(
                f"# made {key}: {n:,} records, {size / 1e6:,.0f} MB "
                f"({size / n:,.0f} B/record) in {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
            index[key] = {"records": n, "layers": n_layers, "variants": variants}
            index_file.write_text(json.dumps(index, indent=1))
            made[(n_layers, n)] = run
    return base, made


# ----------------------------------------------------------------------------- measurement


def _rss(pid: int) -> int:
    """Resident bytes of ``pid`` (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def measure(
    cmd: list[str], env: dict[str, str], cwd: Path, timeout: float, cap: int, as_limit: int
) -> dict[str, Any]:
    """Run ``cmd`` in a fresh process: ``{"seconds", "peak", "status", "error"}``.

    ``status`` is ``ok``, ``cap`` (killed above ``cap`` bytes resident), ``timeout`` or ``exit N``.
    """

    def limit() -> None:
        if as_limit:
            resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))

    err_path, out_path = cwd / "stderr.txt", cwd / "stdout.txt"
    with open(err_path, "wb") as err, open(out_path, "wb") as out:
        t0 = time.perf_counter()
        env = {**env, "BENCH_SCALE_T0": repr(time.time())}
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=err, preexec_fn=limit, start_new_session=True
        )
        why: list[str] = []
        watched_peak = [0]
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.02):
                rss = _rss(proc.pid)
                watched_peak[0] = max(watched_peak[0], rss)
                over = "cap" if rss > cap else "timeout" if time.perf_counter() - t0 > timeout else None
                if over:
                    why.append(over)
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        done.set()
        watcher.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    peak = max(usage.ru_maxrss * 1024, watched_peak[0])
    tail = err_path.read_text(errors="replace").strip().splitlines()
    if why:
        state = why[0]
    elif proc.returncode:
        state = f"exit {proc.returncode}"
    else:
        state = "ok"
    return {
        "seconds": seconds,
        "peak": peak,
        "status": state,
        "error": tail[-1] if tail and state != "ok" else "",
    }


def command(name: str, run: Path, base: Path, scratch: Path) -> list[str]:
    gradtui = [sys.executable, "-m", "gradtui"]
    if name == "open":
        return [sys.executable, "-c", FIRST_SCREEN, str(run)]
    if name == "open-read":
        return [*gradtui, "open", str(run), "--headless"]
    if name == "report":
        return [*gradtui, "report", str(run), "-o", str(scratch / "report.html")]
    if name == "compare":
        return [*gradtui, "compare", str(run), str(base)]
    if name == "export":
        return [*gradtui, "export", str(run), "--tensorboard", str(scratch / "tb")]
    raise ValueError(name)


def _bytes(text: str) -> int:
    m = re.fullmatch(r"\s*([\d.]+)\s*([kKmMgG]?)i?[bB]?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 3G, 500M)")
    return int(float(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()])


def _ints(text: str) -> list[int]:
    try:
        return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}") from None


def _cell(m: dict[str, Any] | None, cap: int, timeout: float) -> str:
    if m is None:
        return "-"
    if m["status"] == "cap":
        return f"> cap ({cap / 2**30:.1f} GiB) at {m['seconds']:.0f} s"
    if m["status"] == "timeout":
        return f"> {timeout:.0f} s"
    if m["status"] != "ok":
        return m["status"]
    return f"{m['seconds']:.1f} s"


def _mem(peak: int) -> str:
    return f"{peak / 2**30:.2f} GB" if peak >= 2**30 else f"{peak / 2**20:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=_ints, default=[1_000, 100_000, 1_000_000], help="records per run")
    ap.add_argument("--layers", type=_ints, default=[13], help="layers per run: 13 and/or 200")
    ap.add_argument("--cap", type=_bytes, default=_bytes("3G"), help="resident memory cap per command")
    ap.add_argument("--as-limit", type=_bytes, default=None, help="RLIMIT_AS of each command (0: none)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per command")
    ap.add_argument("--repo", action="append", type=Path, help="checkout whose code runs (repeatable)")
    ap.add_argument("--out", type=Path, help="keep the synthesized runs here (reused when present)")
    ap.add_argument(
        "--commands", default=",".join(DEFAULT_COMMANDS), help="comma list of " + ", ".join(COMMANDS)
    )
    ap.add_argument("--base-steps", type=int, default=60, help="steps of the real run")
    ap.add_argument("--variants", type=int, default=2000, help="layer bodies drawn")
    ap.add_argument("--make-only", action="store_true", help="make the runs, measure nothing")
    args = ap.parse_args(argv)
    commands = [c.strip() for c in args.commands.split(",") if c.strip()]
    if bad := [c for c in commands if c not in COMMANDS]:
        ap.error(f"--commands: {', '.join(bad)} (allowed: {', '.join(COMMANDS)})")
    if bad_layers := [n for n in args.layers if n < 2]:
        ap.error(f"--layers: {bad_layers} (at least 2)")
    repos = [r.resolve() for r in (args.repo or [ROOT])]
    for r in repos:
        if not (r / "gradtui" / "__init__.py").exists():
            ap.error(f"--repo {r}: no gradtui/__init__.py there")
    as_limit = args.as_limit if args.as_limit is not None else 3 * args.cap + (2 << 30)

    work = args.out.resolve() if args.out else Path(tempfile.mkdtemp(prefix="bench_scale-"))
    state = Path(tempfile.mkdtemp(prefix="bench_scale-state-"))
    base_env = {**os.environ, "GRADTUI_STATE_DIR": str(state), "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        base, runs = make_runs(
            work,
            args.sizes,
            args.layers,
            args.base_steps,
            args.variants,
            {**base_env, "PYTHONPATH": str(ROOT)},
        )
        if args.make_only:
            print(f"# runs in {work}")
            return 0
        results: dict[tuple[Path, int, int], dict[str, dict[str, Any]]] = {}
        print(
            f"# cap {_mem(args.cap)} resident, RLIMIT_AS {_mem(as_limit) if as_limit else 'none'}, "
            f"timeout {args.timeout:.0f} s; load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        for (n_layers, n), run in sorted(runs.items()):
            for repo in repos:
                env = {**base_env, "PYTHONPATH": str(repo)}
                got = results.setdefault((repo, n_layers, n), {})
                for name in commands:
                    with tempfile.TemporaryDirectory(prefix="bench_scale-cmd-") as scratch:
                        m = measure(
                            command(name, run, base, Path(scratch)),
                            env,
                            Path(scratch),
                            args.timeout,
                            args.cap,
                            as_limit,
                        )
                    got[name] = m
                    print(
                        f"# {repo.name} {n_layers} layers x {n:,}: {name} {_cell(m, args.cap, args.timeout)}, "
                        f"peak {_mem(m['peak'])}" + (f" ({m['error'][:160]})" if m["error"] else ""),
                        flush=True,
                    )
        print()
        several = len(repos) > 1
        layered = len(args.layers) > 1 or args.layers != [13]
        head = (["code"] if several else []) + (["layers"] if layered else []) + ["records", *commands]
        print("| " + " | ".join([*head, "peak memory"]) + " |")
        print("|" + "---|" * (len(head) + 1))
        for (repo, n_layers, n), got in results.items():
            cells = [repo.name] if several else []
            cells += [str(n_layers)] if layered else []
            cells += [f"{n:,}"] + [_cell(got.get(c), args.cap, args.timeout) for c in commands]
            peaks = [m["peak"] for m in got.values()]
            capped = any(m["status"] == "cap" for m in got.values())
            cells.append(("> " if capped else "") + _mem(max(peaks)) if peaks else "-")
            print("| " + " | ".join(cells) + " |")
        print()
        print("Peak memory per command (resident):")
        print()
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for (repo, n_layers, n), got in results.items():
            cells = [repo.name] if several else []
            cells += [str(n_layers)] if layered else []
            cells += [f"{n:,}"] + [_mem(got[c]["peak"]) if c in got else "-" for c in commands]
            print("| " + " | ".join(cells) + " |")
        print(f"\n# load average {os.getloadavg()[0]:.2f} at the end; runs in {work}")
        return 0
    finally:
        shutil.rmtree(state, ignore_errors=True)
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
