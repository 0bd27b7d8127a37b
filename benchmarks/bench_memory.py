"""Memory on long runs: the in-memory history is bounded; ``stats.jsonl`` grows linearly.

1. :class:`gradtui.history.History` is fed N records of a 13-layer model (the 12 x 64 sigmoid
   stack's shape: every statistic of every layer) for N = 1,000 ... 1,000,000; its memory is
   measured with ``tracemalloc`` (what it holds after feeding). A million steps must cost what
   a thousand do.
2. :class:`gradtui.runlog.RunDir` appends the same records to ``stats.jsonl``: bytes per
   record stay constant (linear growth), and recording ``every`` N steps divides the size by N.
3. The recorder's ring buffer is a fixed ``capacity x width`` float32 variable: its size is printed
   (the width from :mod:`gradtui.recorder`'s row layout; importing it does not import TensorFlow).

No TensorFlow is needed for 1 and 2. Run: ``python benchmarks/bench_memory.py``.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gradtui.history import History  # noqa: E402
from gradtui.runlog import RunDir  # noqa: E402

LAYERS = [f"dense_{i}" if i else "dense" for i in range(13)]


def record(step: int) -> dict[str, Any]:
    """A realistic record: every statistic of 13 layers, values varying with the step."""
    layers = {}
    for i, name in enumerate(LAYERS):
        g = 10.0 ** (-8 + i / 2) * (1 + 0.1 * math.sin(step / 50))
        entry = {
            "grad_norm": g,
            "grad_max": g / 3,
            "weight_norm": 4.0 + step * 1e-6,
            "update_ratio": 1e-4,
            "nonfinite": 0,
        }
        if i < 12:
            entry["saturation"] = 0.25 + 0.01 * math.cos(step / 30)
            entry["act_mean"] = 0.5 + 0.01 * math.sin(step / 70)
        layers[name] = entry
    return {"step": step, "epoch": step // 1000, "loss": 2.3 - step * 1e-7, "layers": layers}


def history_bytes(n: int, size: int) -> tuple[int, float]:
    """Bytes a History holds after n records (tracemalloc), and seconds per record to feed it."""
    pool = [record(step) for step in range(1000)]  # built outside the trace, reused
    tracemalloc.start()
    h = History(size)
    t0 = time.perf_counter()
    for step in range(n):
        r = pool[step % 1000]
        r["step"] = step
        h.add(r)
    elapsed = time.perf_counter() - t0
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert h.series("dense", "grad_norm").count == n
    return held, elapsed / n


def jsonl_bytes(n: int, every: int) -> int:
    """Size of stats.jsonl after n training steps recorded every ``every`` steps."""
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp) / "run")
        batch = []
        for step in range(0, n, every):
            batch.append(record(step))
            if len(batch) == 256:
                run.append(batch)
                batch = []
        run.append(batch)
        run.close()
        return (Path(tmp) / "run" / "stats.jsonl").stat().st_size


def main(argv: list[str] | None = None) -> int:
    """Print the three tables; exit 1 if the history is not bounded."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=1_000_000, help="longest run fed (default 1e6)")
    ap.add_argument("--size", type=int, default=256, help="History points per series (default 256)")
    args = ap.parse_args(argv)

    print("## In-memory history (13 layers, every statistic), tracemalloc")
    print()
    print("| records fed | history held | bytes / record fed |")
    print("|---:|---:|---:|")
    sizes = [n for n in (1_000, 10_000, 100_000, 1_000_000) if n <= args.max_steps]
    # one layer series per statistic: 13 layers x 5-6 statistics + the loss
    held = {}
    for n in sizes:
        b, per = history_bytes(n, args.size)
        held[n] = b
        print(f"| {n:,} | {b / 1024:,.0f} KiB | {b / n:,.2f} |", flush=True)
    bounded = held[sizes[-1]] <= 1.5 * held[sizes[0]]
    print()
    print(
        f"{sizes[-1]:,} records hold {held[sizes[-1]] / held[sizes[0]]:.2f}x what {sizes[0]:,} do: "
        f"{'bounded' if bounded else 'NOT bounded'} (History({args.size}): each series keeps at most "
        f"{args.size} points, pairs averaged as it fills)"
    )
    print()
    print("## stats.jsonl on disk")
    print()
    print("| steps | every | records | stats.jsonl | bytes / record |")
    print("|---:|---:|---:|---:|---:|")
    for n, every in ((10_000, 1), (40_000, 1), (40_000, 10), (40_000, 100)):
        size = jsonl_bytes(n, every)
        records = math.ceil(n / every)
        print(f"| {n:,} | {every} | {records:,} | {size / 1e6:,.2f} MB | {size / records:,.0f} |")
    print()
    from gradtui.recorder import HEAD, VAR_COLUMNS

    # the 12 x 64 sigmoid stack: 26 variables, 12 activation taps (two numbers each), and a
    # NaN/Inf count per variable (Recorder.width)
    width = HEAD + (len(VAR_COLUMNS) + 1) * 26 + 2 * 12
    print(
        f"Ring buffer of the recorder: capacity 512 x {width} float32 = {512 * width * 4 / 1024:.0f} KiB "
        "(12 x 64 sigmoid stack), fixed for the whole run."
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"Peak RSS of this benchmark: {rss:.0f} MiB")
    return 0 if bounded else 1


if __name__ == "__main__":
    sys.exit(main())
