"""Where the recorder's per-step cost goes: warm-epoch CPU time of variants of one model.

A diagnostic, not a pass/fail benchmark. Each variant is a freshly built copy of the same model
(same seed), traced first, then timed one epoch at a time, the order rotating every round, in
this one process; the table shows each variant's median process CPU time per epoch against the
plain model's, and the difference per step:

* ``plain``: no gradtui;
* ``every1`` / ``every10``: a :class:`gradtui.recorder.Recorder` recording every step / every
  10th step (drained after each epoch, no sinks);
* ``notaps``: ``every1`` without the activation taps (the layers' ``call`` unwrapped: the row
  holds NaN for them);
* ``noattn``: ``every1`` without the attention statistics and ``logz_mean`` (their taps taken
  off: the row holds NaN for them);
* ``nostats``: the optimizer's wrapper kept, the statistics gone (``_apply`` calls through);
* ``smartcond``: ``every1`` traced with ``tf.cond`` on a constant predicate evaluated at trace
  time (since session 5 the step has no condition at every = 1 but the NaN count's, whose
  predicate is not constant: this variant now measures about what ``every1`` does).

The variants reach into the recorder's private methods on purpose: re-check them when
:mod:`gradtui.recorder` changes. Run: ``python benchmarks/profile_recorder.py [--model sigmoid]``.
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

VARIANTS = ("plain", "every1", "every10", "notaps", "noattn", "nostats", "smartcond")


def main(argv: list[str] | None = None) -> int:
    """Time the variants; print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", default="sigmoid", choices=["sigmoid", "fmnist", *bm.SHAPES], help="default sigmoid"
    )
    ap.add_argument("--rounds", type=int, default=6, help="timed rounds (default 6)")
    ap.add_argument("--variant", action="append", choices=VARIANTS, help="only these (plain always)")
    args = ap.parse_args(argv)
    keras = bo.import_keras()
    keras.utils.disable_interactive_logging()
    import tensorflow as tf

    from gradtui import keras_compat as kc
    from gradtui.recorder import Recorder

    real_cond = tf.cond

    def smart_cond(pred: Any, true_fn: Any = None, false_fn: Any = None, name: Any = None) -> Any:
        value = tf.get_static_value(pred)
        if value is not None:
            return true_fn() if value else false_fn()
        return real_cond(pred, true_fn, false_fn, name=name)

    if args.model == "sigmoid":
        x, y = bo.digits_data()

        def make() -> Any:
            return bo.make_model("vanishing-sigmoid", (64,))[0]
    elif args.model == "fmnist":
        x, y = bo.fmnist_like(9600)

        def make() -> Any:
            return bo.make_model("fmnist-batchnorm", (28, 28))[0]
    else:
        shape = bm.SHAPES[args.model]
        x, y = shape.data(shape.samples // bm.BATCH * bm.BATCH, np.random.default_rng(bm.SEED))

        def make() -> Any:
            return bm.build(keras, shape)

    variants = ["plain", *[v for v in (args.variant or VARIANTS) if v != "plain"]]
    models, recorders = {}, {}
    for v in variants:
        m = make()
        if v != "plain":
            rec = recorders[v] = Recorder(m, every=10 if v == "every10" else 1)
            if v == "notaps":
                for _, t in rec.taps:  # no output reaches the recorder: the row holds NaN for them
                    kc.unwrap_method(t.act_source, "call")
            if v == "noattn":  # no attention layer or logits output reaches the recorder
                for _, t in rec.attn:
                    kc.untap_attention(t.attention, rec)
                for _, t in rec.logz:
                    kc.unwrap_method(t.layer, "call", rec)
            if v == "nostats":
                rec._apply = lambda orig, grads, variables: orig(grads, variables)
        tf.cond = smart_cond if v == "smartcond" else real_cond
        try:
            m.fit(x[: 20 * bm.BATCH], y[: 20 * bm.BATCH], batch_size=bm.BATCH, verbose=0)
        finally:
            tf.cond = real_cond
        models[v] = m
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants[r % len(variants) :] + variants[: r % len(variants)]:
            c0 = time.process_time()
            models[v].fit(x, y, batch_size=bm.BATCH, epochs=1, verbose=0)
            times[v].append(time.process_time() - c0)
            if v in recorders:
                recorders[v].drain()
    steps = len(x) // bm.BATCH
    base = statistics.median(times["plain"])
    print(f"# {args.model}: {steps} steps/epoch, {args.rounds} rounds, {bo.machine()}")
    print()
    print("| variant | CPU s/epoch (median) | / plain | extra per step |")
    print("|---|---:|---:|---:|")
    for v in variants:
        c = statistics.median(times[v])
        print(f"| {v} | {c:.3f} | {c / base:.3f} | {1e6 * (c - base) / steps:+.0f} us |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
