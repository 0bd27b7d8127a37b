"""Measure a transformer preset's instabilities directly, without gradtui's recorder.

Trains the preset's model (:func:`gradtui.build.build`, the model ``gradtui run`` trains) with a
plain ``model.fit`` and, every ``--every`` steps and at the end, on one fixed training batch:

- ``logit_max``: the largest |q·k|/√key_dim of every attention layer (the logits it computes,
  after any qk-norm; :func:`gradtui.blocks.attention_logits`);
- ``logz``: the mean over the batch and positions of logsumexp of the output logits (log Z);
- ``grad_rms``: each row's gradient RMS, sqrt(mean(g²)) over its weights; the smallest, and how
  many rows are at or below the optimizer's epsilon.

Prints one line per probe and a JSON summary on the last line. ``--set KEY=VALUE`` overrides a
``[train]`` key (``--set learning_rate=0.003``), ``--beta-2`` the Adam family's beta_2 (not a
preset key), ``--scale`` multiplies the loss (a way to make every gradient small).

Usage::

    PYTHONPATH=. python benchmarks/transformer_probe.py PRESET [--steps N] [--every K]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--beta-2", type=float, default=None)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the loss by this")
    args = parser.parse_args(argv)

    import dataclasses

    import numpy as np

    from gradtui.build import build, import_keras
    from gradtui.data import load as load_data
    from gradtui.preset import apply_fix, load

    preset = load(args.preset)
    if args.set:
        train = {}
        for item in args.set:
            key, _, value = item.partition("=")
            train[key] = json.loads(value) if value[:1] in '[{"tft' else float(value)
        preset = apply_fix(preset, {"train": train})
    keras = import_keras()
    from keras import ops

    from gradtui.blocks import attention_logits

    data = load_data(preset.data, seed=preset.train.seed)
    preset = dataclasses.replace(preset, train=dataclasses.replace(preset.train, max_steps=args.steps))
    model, _ = build(preset, data.input_shape, data.num_classes, total_steps=args.steps)
    opt = model.optimizer
    if args.beta_2 is not None:
        opt.beta_2 = args.beta_2
    if args.scale != 1.0:
        inner = model.loss
        model.compile(optimizer=opt, loss=lambda y, p: args.scale * inner(y, p), metrics=["accuracy"])
    bs = preset.train.batch_size
    xb, yb = data.x_train[:bs], data.y_train[:bs]
    eps = float(getattr(opt, "epsilon", 0.0) or 0.0)
    rows = [(v.path, v) for v in model.trainable_variables]
    probes: list[dict] = []

    def probe(step: int, loss: float) -> None:
        # the attention input of each block: run the model layer by layer on the fixed batch
        h = ops.convert_to_tensor(xb)
        maxima = []
        for layer in model.layers:
            if type(layer).__name__ == "TransformerBlock":
                a_in = layer.attention_norm(h) if layer.norm == "pre" else h
                maxima.append(float(ops.max(ops.abs(attention_logits(layer.attention, a_in)))))
            h = layer(h, training=False)
        logz = float(ops.mean(ops.logsumexp(h, axis=-1)))
        import tensorflow as tf

        with tf.GradientTape() as tape:
            pred = model(xb, training=True)
            value = model.compute_loss(x=xb, y=yb, y_pred=pred)
        grads = tape.gradient(value, [v for _, v in rows])
        # a row is a layer: the RMS over all its weights (kernel and bias together)
        squares: dict[str, list[float]] = {}
        for (path, _), g in zip(rows, grads, strict=True):
            values = np.square(tf.convert_to_tensor(g).numpy())
            row = "/".join(path.split("/")[1:-1])  # model name and variable name dropped
            acc = squares.setdefault(row, [0.0, 0])
            acc[0] += float(values.sum())
            acc[1] += values.size
        rms = {row: math.sqrt(total / n) for row, (total, n) in squares.items()}
        low = min(rms, key=rms.get)
        entry = {
            "step": step,
            "loss": loss,
            "logit_max": max(maxima) if maxima else None,
            "logz": logz,
            "grad_rms_min": rms[low],
            "grad_rms_min_at": low,
            "grad_rms_median": float(np.median(list(rms.values()))),
            "rows_at_or_below_epsilon": sum(r <= eps for r in rms.values()),
            "epsilon": eps,
        }
        probes.append(entry)
        print(
            f"step {step:5d} loss {loss:8.4f} logit_max {entry['logit_max'] or 0:10.4g} "
            f"logZ {logz:9.4g} grad_rms min {rms[low]:.3g} ({low}) median {entry['grad_rms_median']:.3g} "
            f"<=eps {entry['rows_at_or_below_epsilon']}/{len(rms)}",
            flush=True,
        )

    class Probe(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.step = 0
            self.loss = math.nan

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.step += 1
            self.loss = float((logs or {}).get("loss", math.nan))
            if self.step % args.every == 0 and self.step < args.steps:
                probe(self.step, self.loss)
            if self.step >= args.steps:
                self.model.stop_training = True

    probe(0, math.nan)
    cb = Probe()
    start = time.perf_counter()
    epochs = math.ceil(args.steps / max(1, math.ceil(len(data.x_train) / bs)))
    model.fit(
        data.x_train, data.y_train, batch_size=bs, epochs=epochs, verbose=0, callbacks=[cb], shuffle=True
    )
    seconds = time.perf_counter() - start
    probe(cb.step, cb.loss)
    val = model.evaluate(data.x_val, data.y_val, batch_size=bs, verbose=0, return_dict=True)
    summary = {
        "preset": preset.name,
        "steps": cb.step,
        "seconds": round(seconds, 1),
        "final_loss": cb.loss,
        "val_loss": val.get("loss"),
        "val_accuracy": val.get("accuracy") or val.get("compile_metrics"),
        "logit_max_first": probes[0]["logit_max"],
        "logit_max_last": probes[-1]["logit_max"],
        "logit_max_peak": max((p["logit_max"] or 0) for p in probes),
        "logz_first": probes[0]["logz"],
        "logz_last": probes[-1]["logz"],
        "logz_peak_abs": max(abs(p["logz"]) for p in probes),
        "grad_rms_min_last": probes[-1]["grad_rms_min"],
        "rows_at_or_below_epsilon_last": probes[-1]["rows_at_or_below_epsilon"],
        "beta_2": float(getattr(opt, "beta_2", math.nan)),
        "scale": args.scale,
        "set": args.set,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
