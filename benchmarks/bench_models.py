"""Watched vs plain ``model.fit`` on the five keras-io model shapes of issue 10.

Issue 10 asks that recording with :func:`gradtui.watch` (every = 1) cost at most 20% on the first
epoch, tracing included, and at most 5% on a warm epoch, for a Keras user's own models. The five
shapes are small versions of public keras-io examples, sized so that an epoch takes ~1-3 s on
2 CPU cores, each trained on generated data of the example's shape (no downloads):

* ``convnet``: "Simple MNIST convnet": Conv2D 32 3x3 relu, MaxPool, Conv2D 64 3x3 relu,
  MaxPool, Flatten, Dropout 0.5, Dense 10 softmax; 28 x 28 x 1 images.
* ``bilstm``: "Bidirectional LSTM on IMDB": Embedding(vocab, 128), two Bidirectional(LSTM(64)),
  Dense 1 sigmoid; integer sequences (vocabulary 5,000 instead of 20,000, length 100 instead
  of 200).
* ``conv1d``: "Timeseries classification from scratch": three Conv1D(64, 3) + BatchNorm + ReLU,
  GlobalAveragePooling1D, Dense 2 softmax; (500, 1) series.
* ``sepconv``: "Image classification from scratch", an Xception-like mini: Rescaling, Conv2D
  stride 2 + BN + ReLU, two residual blocks of [ReLU, SeparableConv2D, BN] x 2 + MaxPool added
  to a strided 1x1 Conv2D projection, SeparableConv2D + BN + ReLU, GlobalAveragePooling2D,
  Dropout, Dense; 64 x 64 x 3 images.
* ``transformer``: "Text classification with Transformer": a ``TokenAndPositionEmbedding``
  layer, a ``TransformerBlock`` layer (MultiHeadAttention, a Sequential FFN, two
  LayerNormalization, two Dropout), GlobalAveragePooling1D, Dropout, Dense 20 relu, Dropout,
  Dense 2 softmax; integer sequences (vocabulary 5,000, length 100; embedding 32, 2 heads).

For each shape, two models are built identically (same seed, same weights), compiled with Adam
and a sparse/binary cross-entropy, and fitted with the same arguments (``batch_size=32,
epochs=1, shuffle=True, verbose=0``); one of them is watched: ``gradtui.watch(model,
out=tmp/..., every=1)`` (statistics recorded in the step, drained, written to ``stats.jsonl``,
diagnosed). Measured, in this one process:

1. **first epoch**: a fresh pair is built ``--first-rounds`` times (default 3); each model's
   first ``fit`` (tracing of the step included, ``watch()`` itself not included: it is timed
   apart) is timed, the two in alternating order from round to round and from model to model.
   Before the rounds one plain model of the shape is fitted on a few batches and thrown away,
   so that what the process pays once per shape (kernel caches, the first tracing of these
   layer types) lands on neither side. The median of the rounds' ratios watched / plain is
   judged against 1.20.
2. **warm epochs**: the last round's pair, both traced, runs ``--pairs`` rounds (default 6) of
   one epoch each, order alternating every round. The median of the ratios watched / plain is
   judged against 1.05; the spread and the process CPU-time ratio (less disturbed by other
   jobs on a shared machine) are shown beside it.

Run: ``python benchmarks/bench_models.py`` (``--help`` for options; ``--model NAME`` repeatable).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from bench_overhead import machine  # noqa: E402  (the benchmarks' folder is on sys.path)

from gradtui.build import import_keras  # noqa: E402

BATCH = 32
SEED = 1234
FIRST_TARGET = 1.20
WARM_TARGET = 1.05
VOCAB = 5000
MAXLEN = 100


# ---------------------------------------------------------------------------- the models


def convnet(keras: Any) -> Any:
    """keras-io "Simple MNIST convnet"."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ],
        name="convnet",
    )


def bilstm(keras: Any) -> Any:
    """keras-io "Bidirectional LSTM on IMDB" (smaller vocabulary, shorter sequences)."""
    layers = keras.layers
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(VOCAB, 128)(inputs)
    x = layers.Bidirectional(layers.LSTM(64, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(64))(x)
    outputs = layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="bilstm")


def conv1d(keras: Any) -> Any:
    """keras-io "Timeseries classification from scratch" (FCN)."""
    layers = keras.layers
    inputs = keras.Input(shape=(500, 1))
    x = inputs
    for _ in range(3):
        x = layers.Conv1D(filters=64, kernel_size=3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="conv1d")


def sepconv(keras: Any) -> Any:
    """keras-io "Image classification from scratch": an Xception-like mini with residual blocks."""
    layers = keras.layers
    inputs = keras.Input(shape=(64, 64, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    previous = x
    for size in (32, 64):
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(size, 1, strides=2, padding="same")(previous)
        x = layers.add([x, residual])
        previous = x
    x = layers.SeparableConv2D(128, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.25)(x)
    outputs = layers.Dense(1, activation=None)(x)
    return keras.Model(inputs, outputs, name="sepconv")


def transformer(keras: Any) -> Any:
    """keras-io "Text classification with Transformer" (its custom layers, as written there)."""
    layers = keras.layers
    ops = keras.ops

    class TransformerBlock(layers.Layer):
        def __init__(self, embed_dim: int, num_heads: int, ff_dim: int, rate: float = 0.1) -> None:
            super().__init__()
            self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
            self.ffn = keras.Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
            self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
            self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
            self.dropout1 = layers.Dropout(rate)
            self.dropout2 = layers.Dropout(rate)

        def call(self, inputs: Any, training: bool = False) -> Any:
            attn_output = self.att(inputs, inputs)
            attn_output = self.dropout1(attn_output, training=training)
            out1 = self.layernorm1(inputs + attn_output)
            ffn_output = self.ffn(out1)
            ffn_output = self.dropout2(ffn_output, training=training)
            return self.layernorm2(out1 + ffn_output)

    class TokenAndPositionEmbedding(layers.Layer):
        def __init__(self, maxlen: int, vocab_size: int, embed_dim: int) -> None:
            super().__init__()
            self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
            self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

        def call(self, x: Any) -> Any:
            maxlen = ops.shape(x)[-1]
            positions = ops.arange(start=0, stop=maxlen, step=1)
            positions = self.pos_emb(positions)
            x = self.token_emb(x)
            return x + positions

    embed_dim, num_heads, ff_dim = 32, 2, 32
    inputs = layers.Input(shape=(MAXLEN,))
    x = TokenAndPositionEmbedding(MAXLEN, VOCAB, embed_dim)(inputs)
    x = TransformerBlock(embed_dim, num_heads, ff_dim)(x)
    x = layers.GlobalAveragePooling1D()(x)
    x = layers.Dropout(0.1)(x)
    x = layers.Dense(20, activation="relu")(x)
    x = layers.Dropout(0.1)(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs=inputs, outputs=outputs, name="transformer")


# ---------------------------------------------------------------------------- the data


def images(
    n: int, shape: tuple[int, ...], classes: int, rng: np.random.Generator, scale: float = 255.0
) -> Any:
    """uint8-like images (divided by ``scale``) and integer labels."""
    x = rng.integers(0, 256, (n, *shape)).astype(np.float32) / scale
    return x, rng.integers(0, classes, n).astype(np.int64)


def sequences(n: int, classes: int, rng: np.random.Generator) -> Any:
    """Token ids in [1, VOCAB) of length MAXLEN and integer labels."""
    return rng.integers(1, VOCAB, (n, MAXLEN)).astype(np.int32), rng.integers(0, classes, n).astype(np.int64)


def series(n: int, rng: np.random.Generator) -> Any:
    """Noisy sine waves of length 500 (one channel), two classes by frequency."""
    y = rng.integers(0, 2, n)
    t = np.linspace(0, 1, 500, dtype=np.float32)
    freq = np.where(y == 1, 7.0, 5.0)[:, None]
    x = np.sin(2 * np.pi * freq * t[None, :] + rng.uniform(0, 6.3, (n, 1))) + 0.3 * rng.standard_normal(
        (n, 500)
    )
    return x.astype(np.float32)[..., None], y.astype(np.int64)


@dataclass
class Shape:
    """One benchmarked model shape: how to build it, its data and its loss."""

    name: str
    title: str
    make: Callable[[Any], Any]
    data: Callable[[int, np.random.Generator], Any]
    loss: str
    #: samples per timed epoch by default (an epoch of ~1-3 s on 2 cores)
    samples: int
    first: list[tuple[float, float]] = field(default_factory=list)
    first_cpu: list[float] = field(default_factory=list)
    watch_setup: list[float] = field(default_factory=list)
    warm: list[tuple[float, float]] = field(default_factory=list)
    warm_cpu: list[float] = field(default_factory=list)
    rows: str = ""
    records: str = ""


SHAPES = {
    "convnet": Shape(
        "convnet",
        "Conv2D convnet (MNIST)",
        convnet,
        lambda n, rng: images(n, (28, 28, 1), 10, rng),
        "sparse_categorical_crossentropy",
        1600,
    ),
    "bilstm": Shape(
        "bilstm",
        "Embedding + 2 x BiLSTM (IMDB)",
        bilstm,
        lambda n, rng: sequences(n, 2, rng),
        "binary_crossentropy",
        192,
    ),
    "conv1d": Shape(
        "conv1d",
        "3 x Conv1D+BN (time series)",
        conv1d,
        lambda n, rng: series(n, rng),
        "sparse_categorical_crossentropy",
        512,
    ),
    "sepconv": Shape(
        "sepconv",
        "residual SeparableConv (Xception mini)",
        sepconv,
        lambda n, rng: images(n, (64, 64, 3), 2, rng, scale=1.0),
        "binary_crossentropy_logits",
        384,
    ),
    "transformer": Shape(
        "transformer",
        "Transformer block (text)",
        transformer,
        lambda n, rng: sequences(n, 2, rng),
        "sparse_categorical_crossentropy",
        960,
    ),
}


# ---------------------------------------------------------------------------- timing


def build(keras: Any, shape: Shape) -> Any:
    """A freshly built, compiled model of ``shape``: the same weights every time (same seed)."""
    keras.utils.set_random_seed(SEED)
    model = shape.make(keras)
    loss: Any = shape.loss
    if loss == "binary_crossentropy_logits":
        loss = keras.losses.BinaryCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
    return model


def timed_fit(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Wall and process CPU seconds of one epoch."""
    w0, c0 = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=True, verbose=0)
    return time.perf_counter() - w0, time.process_time() - c0


def run_shape(keras: Any, shape: Shape, index: int, args: argparse.Namespace, tmp: Path) -> None:
    """The first-epoch rounds and the warm pairs of one model shape (results kept on ``shape``)."""
    import gradtui

    n = (args.samples or round(shape.samples * args.scale)) // BATCH * BATCH
    x, y = shape.data(n, np.random.default_rng(SEED))
    steps = n // BATCH
    log = lambda msg: print(f"  {shape.name}: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    if not args.no_warmup:  # what the process pays once per shape, on neither side
        throwaway = build(keras, shape)
        throwaway.fit(x[: 4 * BATCH], y[: 4 * BATCH], batch_size=BATCH, epochs=1, verbose=0)
        del throwaway
    pair: tuple[Any, Any, Any] | None = None
    for r in range(args.first_rounds):
        pair = None
        gc.collect()
        plain = build(keras, shape)
        watched = build(keras, shape)
        t0 = time.perf_counter()
        monitor = gradtui.watch(watched, out=tmp / f"{shape.name}-{r}", every=args.every)
        shape.watch_setup.append(time.perf_counter() - t0)
        watched_first = (r + index) % 2 == 1
        order = (watched, plain) if watched_first else (plain, watched)
        times = {id(m): timed_fit(m, x, y) for m in order}
        (pw, pc), (ww, wc) = times[id(plain)], times[id(watched)]
        shape.first.append((pw, ww))
        shape.first_cpu.append(wc / pc)
        log(
            f"first epoch {r + 1}/{args.first_rounds} ({'watched' if watched_first else 'plain'} first): "
            f"plain {pw:.2f} s, watched {ww:.2f} s, ratio {ww / pw:.3f} (cpu {wc / pc:.3f})"
        )
        pair = (plain, watched, monitor)
    assert pair is not None
    plain, watched, monitor = pair
    for i in range(args.pairs):
        order = (watched, plain) if (i + index) % 2 == 0 else (plain, watched)
        times = {id(m): timed_fit(m, x, y) for m in order}
        (pw, pc), (ww, wc) = times[id(plain)], times[id(watched)]
        shape.warm.append((pw, ww))
        shape.warm_cpu.append(wc / pc)
        log(
            f"warm {i + 1}/{args.pairs}: plain {pw:.3f} s, watched {ww:.3f} s, ratio {ww / pw:.3f} (cpu {wc / pc:.3f})"
        )
    rec = monitor.instrument
    fits = 1 + args.pairs
    expected = fits * steps // args.every
    shape.rows = f"{rec.n_layers} rows, {len(rec.taps)} taps"
    shape.records = (
        f"{monitor.records_written}/{expected} records"
        + (f", {rec.lost} lost" if rec.lost else "")
        + f", {steps} steps/epoch"
    )
    monitor.close()
    del plain, watched, monitor, pair
    gc.collect()


def judge(ratios: list[float], target: float) -> tuple[float, str]:
    """The median ratio and PASS/FAIL against ``target``."""
    med = statistics.median(ratios)
    return med, "PASS" if med <= target else "FAIL"


def tables(shapes: list[Shape]) -> str:
    """The results as Markdown tables: first epoch, then warm epochs."""
    out = [
        "First epoch, tracing included (median of the rounds; `watch()` itself apart):",
        "",
        "| model | plain s | watched s | ratio (median) | spread (min-max) | CPU ratio | watch() s "
        "| target | result |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for s in shapes:
        ratios = [w / p for p, w in s.first]
        med, ok = judge(ratios, FIRST_TARGET)
        out.append(
            f"| {s.title} | {statistics.median(p for p, _ in s.first):.2f} "
            f"| {statistics.median(w for _, w in s.first):.2f} | {med:.3f} | {min(ratios):.3f}-{max(ratios):.3f} "
            f"| {statistics.median(s.first_cpu):.3f} | {statistics.median(s.watch_setup):.3f} "
            f"| <= {FIRST_TARGET:.2f} | {ok} |"
        )
    out += [
        "",
        "Warm epochs (both traced; pairs alternated):",
        "",
        "| model | plain s/epoch | watched s/epoch | ratio (median) | spread (min-max) | best | CPU ratio "
        "| target | result | recorded |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|---|",
    ]
    for s in shapes:
        ratios = [w / p for p, w in s.warm]
        med, ok = judge(ratios, WARM_TARGET)
        best = min(w for _, w in s.warm) / min(p for p, _ in s.warm)
        out.append(
            f"| {s.title} | {statistics.median(p for p, _ in s.warm):.3f} "
            f"| {statistics.median(w for _, w in s.warm):.3f} | {med:.3f} | {min(ratios):.3f}-{max(ratios):.3f} "
            f"| {best:.3f} | {statistics.median(s.warm_cpu):.3f} | <= {WARM_TARGET:.2f} | {ok} "
            f"| {s.rows}; {s.records} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the model shapes; print the tables; exit 1 if a target is missed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=6, help="warm epoch pairs per model (default 6)")
    ap.add_argument(
        "--first-rounds", type=int, default=3, help="fresh pairs timed on their first epoch (default 3)"
    )
    ap.add_argument(
        "--samples", type=int, default=0, help="samples per epoch for every model (default: each model's own)"
    )
    ap.add_argument(
        "--scale", type=float, default=1.0, help="multiply each model's default samples (default 1)"
    )
    ap.add_argument(
        "--every", type=int, default=1, help="gradtui's recording cadence (default 1: the target's)"
    )
    ap.add_argument("--model", action="append", choices=list(SHAPES), help="run only these (repeatable)")
    ap.add_argument(
        "--no-warmup", action="store_true", help="skip the throwaway fit before each shape's rounds"
    )
    args = ap.parse_args(argv)
    if args.pairs < 1 or args.first_rounds < 1:
        ap.error("--pairs and --first-rounds must be at least 1")

    keras = import_keras()
    keras.utils.disable_interactive_logging()
    chosen = [SHAPES[k] for k in (args.model or list(SHAPES))]
    print(f"# gradtui on keras-io model shapes: {machine()}", flush=True)
    load0 = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gradtui-bench-models-") as tmpdir:
        for index, shape in enumerate(chosen):
            run_shape(keras, shape, index, args, Path(tmpdir))
    load1 = os.getloadavg()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(tables(chosen))
    print()
    print(
        f"# batch {BATCH}, every = {args.every}, {args.first_rounds} first-epoch rounds and {args.pairs} warm pairs per "
        f"model; load average (1/5/15 min) {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f} at start, "
        f"{load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f} at end; {time.perf_counter() - started:.0f} s; "
        f"peak RSS {rss:.0f} MiB"
    )
    failed = [
        s
        for s in chosen
        if judge([w / p for p, w in s.first], FIRST_TARGET)[1] == "FAIL"
        or judge([w / p for p, w in s.warm], WARM_TARGET)[1] == "FAIL"
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
