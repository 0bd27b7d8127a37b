"""Any Keras model, any Keras training: gradtui records it without changing it (SPEC section 4).

Each test trains a real, small model: a custom ``train_step`` (with its own clipping), a GAN-style
step with its own loss, ``jit_compile`` with Adam, mixed precision, ``tf.distribute`` (in
processes of their own, see tests/scripts/distributed.py), a ``GradientTape`` loop, two ``fit``
calls in a row; and the rows of nested models (a Bidirectional LSTM, a transformer block,
convolutions with dead channels).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradtui
from gradtui.runlog import read_run

SCRIPT = Path(__file__).parent / "scripts" / "distributed.py"


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(256, 20)).astype("float32"), rng.integers(0, 3, 256)


def mlp(optimizer="sgd", jit_compile=False, cls=None, compile=True):
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((20,))
    h = keras.layers.Dense(32, activation="relu", name="hidden")(inp)
    h = keras.layers.Dense(16, activation="tanh", name="middle")(h)
    out = keras.layers.Dense(3, activation="softmax", name="out", dtype="float32")(h)
    model = (cls or keras.Model)(inp, out)
    if compile:
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", jit_compile=jit_compile)
    return model


def test_a_custom_train_step_with_clipping_trains_the_same_watched(tmp_path: Path, blobs) -> None:
    """The "customizing fit" guide's step with one line of clipping: the clipping stays, the loss
    history is the same watched and unwatched, every step is recorded (gradients before the
    step's own clipping are the ones the optimizer receives: after it)."""
    import keras
    import tensorflow as tf

    class Clipped(keras.Model):
        def train_step(self, data):
            x, y = data
            with tf.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = self.compute_loss(y=y, y_pred=y_pred)
            grads = tape.gradient(loss, self.trainable_variables)
            grads = [tf.clip_by_value(g, -1e-3, 1e-3) for g in grads]
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=False))
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred)
            return {m.name: m.result() for m in self.metrics}

    x, y = blobs
    plain, watched = mlp(cls=Clipped), mlp(cls=Clipped)
    gradtui.watch(watched, out=tmp_path / "run")
    h1 = plain.fit(x, y, epochs=3, batch_size=32, verbose=0)
    h2 = watched.fit(x, y, epochs=3, batch_size=32, verbose=0)
    assert h1.history == h2.history
    run = read_run(tmp_path / "run")
    assert [r["step"] for r in run.records] == list(range(24))
    # the optimizer received the clipped gradients: no component above 1e-3
    assert all(v["grad_max"] <= 1e-3 * (1 + 1e-6) for r in run.records for v in r["layers"].values())
    assert run.records[0]["loss"] == pytest.approx(h1.history["loss"][0], rel=0.2)


def test_a_gan_style_step_with_its_own_loss_and_optimizer(tmp_path: Path, blobs) -> None:
    """A step that computes its own loss (no ``compute_loss``) and applies its own optimizer:
    watched with ``optimizer=``, it trains as before; the loss is unknown (null), never NaN."""
    import keras
    import tensorflow as tf

    class OwnLoss(keras.Model):
        def compile(self, g_optimizer):
            super().compile()
            self.g_optimizer = g_optimizer

        def train_step(self, data):
            x, y = data
            with tf.GradientTape() as tape:
                logits = self(x, training=True)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits))
            grads = tape.gradient(loss, self.trainable_variables)
            self.g_optimizer.apply_gradients(zip(grads, self.trainable_variables, strict=False))
            return {"g_loss": loss}

    def make():
        m = mlp(cls=OwnLoss, compile=False)
        m.compile(g_optimizer=keras.optimizers.Adam(1e-3))
        return m

    x, y = blobs
    plain, watched = make(), make()
    monitor = gradtui.watch(watched, out=tmp_path / "gan", optimizer=watched.g_optimizer)
    h1 = plain.fit(x, y, epochs=2, batch_size=64, verbose=0)
    h2 = watched.fit(x, y, epochs=2, batch_size=64, verbose=0)
    monitor.close()
    assert h1.history == h2.history
    run = read_run(tmp_path / "gan")
    assert len(run.records) == 8 and all(r["loss"] is None for r in run.records)
    assert not [d for d in monitor.diagnoses if d.kind == "non_finite"]


def test_jit_compile_with_adam_records_every_step(tmp_path: Path, blobs) -> None:
    x, y = blobs
    plain, watched = mlp("adam", jit_compile=True), mlp("adam", jit_compile=True)
    gradtui.watch(watched, out=tmp_path / "xla")
    h1 = plain.fit(x, y, epochs=2, batch_size=32, verbose=0)
    h2 = watched.fit(x, y, epochs=2, batch_size=32, verbose=0)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-6)
    run = read_run(tmp_path / "xla")
    assert [r["step"] for r in run.records] == list(range(16))
    assert all(r["layers"]["hidden"]["update_ratio"] > 0 for r in run.records)


def test_mixed_float16_records_unscaled_gradients(tmp_path: Path, blobs) -> None:
    """Under ``mixed_float16`` the gradients are recorded as the optimizer applies them, divided
    by the loss scale: within a few percent of the float32 run's (float16 rounding)."""
    import keras

    x, y = blobs
    ref = mlp("adam")
    gradtui.watch(ref, out=tmp_path / "f32")
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = mlp("adam")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(ref.get_weights())
    assert type(mixed.optimizer).__name__ == "LossScaleOptimizer"
    monitor = gradtui.watch(mixed, out=tmp_path / "f16")
    ref.fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False)
    mixed.fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False)
    a, b = read_run(tmp_path / "f32"), read_run(tmp_path / "f16")
    assert b.status == "completed" and len(b.records) == len(a.records) == 8
    for name in ("hidden", "middle", "out"):
        ga, gb = a.records[0]["layers"][name]["grad_norm"], b.records[0]["layers"][name]["grad_norm"]
        assert gb == pytest.approx(ga, rel=0.05), name
    assert b.records[0]["loss"] == pytest.approx(a.records[0]["loss"], rel=0.01)
    assert monitor.diagnoses == []


def test_a_loss_scale_skip_is_no_alarm(tmp_path: Path, blobs) -> None:
    """A loss scale so large that float16 gradients overflow: the scaler skips those steps and
    lowers the scale. Nothing is recorded for a skipped step, nothing is raised, training goes on."""
    import keras

    x, y = blobs
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = mlp()
        opt = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.05), initial_scale=2.0**30)
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    monitor = gradtui.watch(model, out=tmp_path / "skip")
    model.fit(x, y, epochs=4, batch_size=32, verbose=0)
    run = read_run(tmp_path / "skip")
    assert float(opt.dynamic_scale.numpy()) < 2.0**30  # steps were skipped
    assert run.status == "completed" and 0 < len(run.records) < 32
    assert all(v["nonfinite"] == 0 for r in run.records for v in r["layers"].values())
    assert not {d.kind for d in monitor.diagnoses} & {"non_finite", "exploding"}


def test_a_gradient_tape_loop_records_every_apply_gradients(tmp_path: Path, blobs) -> None:
    import keras
    import tensorflow as tf

    x, y = blobs
    model = mlp()
    opt = keras.optimizers.SGD(0.05)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=False))
        return loss

    with gradtui.watch(model, out=tmp_path / "loop", optimizer=opt) as monitor:
        for i in range(0, len(x), 16):
            train_step(x[i : i + 16], y[i : i + 16])
    run = read_run(tmp_path / "loop")
    assert run.status == "completed" and monitor.closed
    assert [r["step"] for r in run.records] == list(range(16))
    assert list(run.records[0]["layers"]) == ["hidden", "middle", "out"]
    assert "dead" in run.records[0]["layers"]["hidden"]  # the forward pass was seen too
    assert "_backend_apply_gradients" not in vars(opt)  # the optimizer is given back


def test_two_fits_continue_steps_and_epochs(tmp_path: Path, blobs) -> None:
    x, y = blobs
    model = mlp()
    monitor = gradtui.watch(model, out=tmp_path / "twice")
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    run = read_run(tmp_path / "twice")
    assert [r["step"] for r in run.records] == list(range(12))
    assert [r["epoch"] for r in run.records] == [0] * 4 + [1] * 4 + [2] * 4
    assert run.summary["steps"] == 12 and run.summary["epochs"] == 3 and monitor.steps == 12


def test_rows_of_a_bidirectional_lstm_and_a_transformer_block(tmp_path: Path) -> None:
    """One row per innermost weighted layer, keyed by its path; recurrent kernels apart."""
    import keras

    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.att = keras.layers.MultiHeadAttention(2, 8, name="attention")
            self.ffn = keras.Sequential(
                [keras.layers.Dense(16, activation="relu", name="up"), keras.layers.Dense(16, name="down")],
                name="ffn",
            )
            self.norm1 = keras.layers.LayerNormalization(name="norm1")
            self.norm2 = keras.layers.LayerNormalization(name="norm2")

        def call(self, x):
            x = self.norm1(x + self.att(x, x))
            return self.norm2(x + self.ffn(x))

    keras.utils.set_random_seed(0)
    inp = keras.Input((12,), dtype="int32")
    h = keras.layers.Embedding(50, 16, name="embed")(inp)
    h = Block(name="block")(h)
    h = keras.layers.Bidirectional(keras.layers.LSTM(8), name="bi")(h)
    out = keras.layers.Dense(2, activation="softmax", name="out")(h)
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 50, (64, 12)), rng.integers(0, 2, 64)
    gradtui.watch(model, out=tmp_path / "nested")
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    rec = read_run(tmp_path / "nested").records[0]["layers"]
    assert list(rec) == [
        "embed",
        "block/attention/query",
        "block/attention/key",
        "block/attention/value",
        "block/attention/attention_output",
        "block/ffn/up",
        "block/ffn/down",
        "block/norm1",
        "block/norm2",
        "bi/forward_lstm",
        "bi/backward_lstm",
        "out",
    ]
    for name in ("bi/forward_lstm", "bi/backward_lstm"):
        assert rec[name]["recurrent_grad_norm"] > 0 and rec[name]["grad_norm"] > 0
    assert "recurrent_grad_norm" not in rec["out"]
    assert "dead" in rec["block/ffn/up"]  # a ReLU inside a nested block is watched too


def test_convolutions_get_dead_channels_and_saturation(tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu", bias_initializer=keras.initializers.Constant(-50.0)),
            keras.layers.Conv2D(4, 3, activation="sigmoid", padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, (64, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 64)
    conv, sig = model.layers[0].name, model.layers[1].name
    monitor = gradtui.watch(model, out=tmp_path / "conv")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    rec = read_run(tmp_path / "conv").records[0]["layers"]
    assert rec[conv]["dead"] == 1.0  # every channel outputs 0 everywhere for the whole batch
    assert 0.0 <= rec[sig]["saturation"] <= 1.0 and math.isfinite(rec[sig]["act_mean"])
    assert "dead_units" in {d.kind for d in monitor.diagnoses}


@pytest.mark.parametrize(("where", "every"), [("inside", 1), ("outside", 1), ("inside", 2)])
def test_mirrored_strategy_records_what_one_device_records(tmp_path: Path, where: str, every: int) -> None:
    """Two logical CPUs, the same weights and data: the statistics of the aggregated gradients
    equal the one-device run's to float precision, with ``watch`` inside or outside the scope,
    recording every step or every other one (the row written behind a condition)."""
    cmd = [sys.executable, str(SCRIPT), "mirrored", where, str(tmp_path), str(every)]
    subprocess.run(cmd, check=True, timeout=300)
    one, two = read_run(tmp_path / "one"), read_run(tmp_path / "two")
    assert two.status == "completed" and len(one.records) == len(two.records) == 4 // every
    assert [r["step"] for r in two.records] == list(range(0, 4, every))
    for a, b in zip(one.records, two.records, strict=True):
        assert a["step"] == b["step"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        for (na, la), (_, lb) in zip(a["layers"].items(), b["layers"].items(), strict=True):
            for key in ("grad_norm", "grad_max", "weight_norm", "update_ratio"):
                assert lb[key] == pytest.approx(la[key], rel=1e-5), (na, key)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_mirrored_strategy_writes_the_chiefs_run_directory(tmp_path: Path) -> None:
    ports = ",".join(map(str, free_ports(2)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(gradtui.__file__).parents[1])] + sys.path)}
    procs = [
        subprocess.Popen([sys.executable, str(SCRIPT), "worker", str(i), ports, str(tmp_path)], env=env)
        for i in range(2)
    ]
    try:
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert codes == [0, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w0"]
    run = read_run(tmp_path / "w0")
    assert run.status == "completed" and [r["step"] for r in run.records] == list(range(8))
    assert json.loads((tmp_path / "w0" / "summary.json").read_text())["steps"] == 8


def test_a_deep_sigmoid_convnet_is_diagnosed_vanishing(tmp_path: Path) -> None:
    """Eight sigmoid Conv2D layers: the lowest one's gradient is ~1e-5 of the top's. Vanishing
    is judged over all weighted layers by depth, not only Dense ones."""
    import keras
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16).astype("float32").reshape(-1, 8, 8, 1)[:512], d.target[:512]
    keras.utils.set_random_seed(0)
    convs = [keras.layers.Conv2D(8, 3, padding="same", activation="sigmoid", name=f"c{i}") for i in range(8)]
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            *convs,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    monitor = gradtui.watch(model, out=tmp_path / "conv8")
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    found = {d.kind: d for d in monitor.diagnoses}
    assert "vanishing" in found and found["vanishing"].layer == "c0"


def test_recurrent_layers_record_the_gradient_across_time(tmp_path: Path) -> None:
    """Every ten recorded steps, the norm of the gradient reaching each span of a recurrent
    layer's input sequence: a SimpleRNN's fades toward the start of the sequence (vanishing
    through time); training is exactly what it is unwatched."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (256, 60, 2)).astype("float32")
    y = rng.normal(size=(256, 1)).astype("float32")

    def make():
        keras.utils.set_random_seed(0)
        inp = keras.Input((60, 2))
        h = keras.layers.SimpleRNN(16, name="rnn")(inp)
        model = keras.Model(inp, keras.layers.Dense(1, name="out")(h))
        model.compile(optimizer="sgd", loss="mse")
        return model

    plain, watched = make(), make()
    gradtui.watch(watched, out=tmp_path / "rnn")
    h1 = plain.fit(x, y, epochs=2, batch_size=32, verbose=0)
    h2 = watched.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert h1.history == h2.history
    for a, b in zip(plain.get_weights(), watched.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    records = read_run(tmp_path / "rnn").records
    timed = [r for r in records if "time_grads" in r]
    assert [r["step"] for r in timed] == [0, 10]
    curve = timed[0]["time_grads"]["rnn"]
    assert curve["t"][:3] == [0, 2, 4] and len(curve["grad_norm"]) == 32
    assert curve["grad_norm"][0] < 1e-2 * curve["grad_norm"][-1]
    assert list(timed[0]["time_grads"]) == ["rnn"]
