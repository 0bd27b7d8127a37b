"""The compiled training step alone: Keras's ``train_function``, watched vs plain, per step.

``bench_overhead.py`` and ``bench_models.py`` time whole ``fit`` epochs, which is what a user
pays but also what a shared machine disturbs most (a burst of load elsewhere lands in one epoch
and moves a ratio by 10-40%). This script narrows the measurement to the step that gradtui
changes: for each model, a plain copy and copies recorded by a
:class:`gradtui.recorder.Recorder` (``every = 1`` and ``every = 10``) are built identically
(same seed), traced, and then their ``train_function`` is called on the same repeating
``tf.data`` batches in blocks of ``--block`` steps, the copies taking turns block by block
(order rotating every round). A block's time is process CPU time, the ring is drained between
blocks (not timed). The table gives, per copy, the **minimum** block time per step (interference
only adds time: the minimum is the least disturbed estimate) and the median, each against the
plain copy's.

This is a diagnostic of the statistics' cost in the step, not the issue's pass/fail measure
(that is ``bench_models.py`` and ``bench_overhead.py``: whole epochs, Keras's per-step Python
included, which dilutes these ratios). Models: ``sigmoid`` (12 x 64 sigmoid Dense stack on
digits), ``fmnist`` (the fmnist-batchnorm preset on generated Fashion-MNIST-shaped data) and the
five keras-io shapes of ``bench_models.py``.

Run: ``python benchmarks/bench_step.py [--model NAME ...] [--rounds 15] [--block 20]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import bench_models as bm  # noqa: E402
import bench_overhead as bo  # noqa: E402
import numpy as np  # noqa: E402

MODELS = ("sigmoid", "fmnist", *bm.SHAPES)


def model_and_data(keras: Any, name: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """A builder of identical compiled models, and the data they train on."""
    if name == "sigmoid":
        x, y = bo.digits_data()
        return (lambda: bo.make_model("vanishing-sigmoid", (64,))[0]), x, y
    if name == "fmnist":
        x, y = bo.fmnist_like(3200)
        return (lambda: bo.make_model("fmnist-batchnorm", (28, 28))[0]), x, y
    shape = bm.SHAPES[name]
    x, y = shape.data(shape.samples // bm.BATCH * bm.BATCH, np.random.default_rng(bm.SEED))
    return (lambda: bm.build(keras, shape)), x, y


def run(keras: Any, name: str, rounds: int, block: int, late: bool = False) -> list[tuple[str, float, float]]:
    """Per copy: (label, min seconds per step, median seconds per step)."""
    import tensorflow as tf

    from gradtui.recorder import Recorder

    make, x, y = model_and_data(keras, name)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(bm.BATCH, drop_remainder=True).repeat()
    copies: dict[str, tuple[Any, Any, Any]] = {}
    for label, every in (("plain", 0), ("every1", 1), ("every10", 10), *(("late", 1),) * late):
        model = make()
        rec = Recorder(model, every=every) if every else None
        if label == "late":
            rec._ahead = False  # the gradients' statistics after the update, as under tf.distribute
        model.fit(x[: 4 * bm.BATCH], y[: 4 * bm.BATCH], batch_size=bm.BATCH, verbose=0)  # builds, traces
        fn = model.make_train_function()
        it = iter(ds)
        for _ in range(3):  # the step traced for this iterator's spec, and warm
            fn(it)
        copies[label] = (fn, it, rec)
    times: dict[str, list[float]] = {k: [] for k in copies}
    labels = list(copies)
    for r in range(rounds):
        for label in labels[r % len(labels) :] + labels[: r % len(labels)]:
            fn, it, rec = copies[label]
            c0 = time.process_time()
            for _ in range(block):
                out = fn(it)
            _ = out.get_value() if hasattr(out, "get_value") else out  # the last step finished
            times[label].append((time.process_time() - c0) / block)
            if rec is not None:
                rec.drain()
    return [(k, min(v), statistics.median(v)) for k, v in times.items()]


def main(argv: list[str] | None = None) -> int:
    """Time the copies of each model; print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", choices=MODELS, help="only these (repeatable)")
    ap.add_argument("--rounds", type=int, default=15, help="blocks per copy (default 15)")
    ap.add_argument("--block", type=int, default=20, help="steps per block (default 20)")
    ap.add_argument(
        "--late", action="store_true", help="also every = 1 with the gradients' statistics after the update"
    )
    args = ap.parse_args(argv)
    keras = bo.import_keras()
    keras.utils.disable_interactive_logging()
    print(f"# the compiled step alone: {bo.machine()}", flush=True)
    rows = []
    for name in args.model or MODELS:
        got = dict((k, (lo, med)) for k, lo, med in run(keras, name, args.rounds, args.block, args.late))
        base_lo, base_med = got["plain"]
        rows.append(
            f"| {name} | {1e3 * base_lo:.2f} | "
            + " | ".join(
                f"{got[k][0] / base_lo:.3f} ({got[k][1] / base_med:.3f})" for k in ("every1", "every10")
            )
            + (f" | {got['late'][0] / base_lo:.3f} ({got['late'][1] / base_med:.3f})" if args.late else "")
            + " |"
        )
        print(rows[-1], flush=True)
    print()
    print("CPU time per step; ratio to plain of the minimum block (of the median block in brackets)")
    print()
    late = " every = 1, after the update |" if args.late else ""
    print("| model | plain ms/step (min) | every = 1 | every = 10 |" + late)
    print("|---|---:|---:|---:|" + ("---:|" if args.late else ""))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
