"""gradtui.watch through the life of a Keras training: distillation (a teacher nobody updates),
fine-tuning (compile again after unfreezing), gradient accumulation, a NaN that stops ``fit``.

Each compares with the same training unwatched (weights bit-identical) and, where gradients are
recorded, with the training's own log of them.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

import gradtui
from gradtui.runlog import read_run


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(256, 8)).astype("float32"), rng.integers(0, 3, 256)


def distiller(seed: int = 0):
    """The keras-io knowledge distillation's shape: a wrapper whose ``train_step`` updates the
    student only; the teacher is left trainable (as published) and never updated."""
    import keras
    import tensorflow as tf

    class Distiller(keras.Model):
        def __init__(self, student, teacher):
            super().__init__()
            self.teacher, self.student = teacher, student

        def compile(self, optimizer, student_loss_fn, distillation_loss_fn, alpha=0.1, temperature=3):
            super().compile(optimizer=optimizer)
            self.student_loss_fn, self.distillation_loss_fn = student_loss_fn, distillation_loss_fn
            self.alpha, self.temperature = alpha, temperature

        def train_step(self, data):
            x, y = data
            teacher_predictions = self.teacher(x, training=False)
            with tf.GradientTape() as tape:
                student_predictions = self.student(x, training=True)
                student_loss = self.student_loss_fn(y, student_predictions)
                t = self.temperature
                distillation_loss = self.distillation_loss_fn(
                    tf.nn.softmax(teacher_predictions / t, axis=1),
                    tf.nn.softmax(student_predictions / t, axis=1),
                ) * (t**2)
                loss = self.alpha * student_loss + (1 - self.alpha) * distillation_loss
            trainable_vars = self.student.trainable_variables
            gradients = tape.gradient(loss, trainable_vars)
            self.optimizer.apply_gradients(zip(gradients, trainable_vars, strict=True))
            return {
                "loss": loss,
                "first": tf.sqrt(tf.reduce_sum(gradients[0] ** 2) + tf.reduce_sum(gradients[1] ** 2)),
            }

        def call(self, x):
            return self.student(x)

    keras.utils.set_random_seed(seed)

    def net(name, width):
        return keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(width, activation="relu", name=f"{name}1"),
                keras.layers.Dense(3, name=f"{name}2"),
            ],
            name=name,
        )

    d = Distiller(net("student", 8), net("teacher", 32))
    d.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        keras.losses.KLDivergence(),
    )
    return d


def batch_log(model, *args, **kwargs) -> list[dict]:
    import keras

    log: list[dict] = []
    cb = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: log.append(dict(logs)))
    model.fit(*args, verbose=0, callbacks=[cb], **kwargs)
    return log


def test_a_teacher_nobody_updates_gets_no_row(tmp_path: Path, data) -> None:
    x, y = data
    plain = distiller()
    batch_log(plain, x, y, epochs=1, batch_size=32)
    model = distiller()
    assert not model.built
    monitor = gradtui.watch(model, out=tmp_path / "kd")
    log = batch_log(model, x, y, epochs=1, batch_size=32)
    for a, b in zip(plain.weights, model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    records = read_run(tmp_path / "kd").records
    assert len(records) == 8 and all(
        set(r["layers"]) == {"student/student1", "student/student2"} for r in records
    )
    np.testing.assert_allclose(
        [r["layers"]["student/student1"]["grad_norm"] for r in records], [b["first"] for b in log], rtol=1e-5
    )
    assert not [d for d in monitor.diagnoses if d.layer and d.layer.startswith("teacher")]
    monitor.close()


def transfer(seed: int = 0):
    """The transfer-learning guide's shape: a frozen base, a new head."""
    import keras

    keras.utils.set_random_seed(seed)
    base = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="b1")], name="base"
    )
    base.trainable = False
    inp = keras.Input((8,))
    out = keras.layers.Dense(3, name="head")(base(inp, training=False))
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, base


def fine_tune(model, base, x, y) -> None:
    import keras

    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    base.trainable = True
    model.compile(keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)


def test_fine_tuning_follows_the_new_compile(tmp_path: Path, data) -> None:
    x, y = data
    plain, plain_base = transfer()
    fine_tune(plain, plain_base, x, y)
    model, base = transfer()
    monitor = gradtui.watch(model, out=tmp_path / "ft")
    fine_tune(model, base, x, y)
    for a, b in zip(plain.weights, model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    run = read_run(tmp_path / "ft")
    assert [r["step"] for r in run.records] == list(range(16))  # all 16 steps, numbered on
    assert all(set(r["layers"]) == {"head"} for r in run.records[:8])
    assert all(set(r["layers"]) == {"base/b1", "head"} for r in run.records[8:])
    assert run.summary["steps"] == 16 and run.summary["records"] == 16 and run.summary["lost_records"] == 0
    assert monitor.optimizers[-1] is model.optimizer
    monitor.close()


def test_gradient_accumulation_records_one_row_per_update_with_its_gradient(tmp_path: Path, data) -> None:
    import keras
    import tensorflow as tf

    x, y = data
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def setup():
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((8,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3)]
        )
        opt = keras.optimizers.SGD(0.1, gradient_accumulation_steps=4)

        @tf.function
        def step(xb, yb):
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, model(xb, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return grads[0], grads[1]

        return model, opt, step

    plain, _, plain_step = setup()
    for i in range(0, 256, 16):
        plain_step(x[i : i + 16], y[i : i + 16])
    model, opt, step = setup()
    micro = []
    with gradtui.watch(model, out=tmp_path / "acc", optimizer=opt):
        for i in range(0, 256, 16):
            micro.append([g.numpy() for g in step(x[i : i + 16], y[i : i + 16])])
    for a, b in zip(plain.weights, model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    run = read_run(tmp_path / "acc")
    assert [r["step"] for r in run.records] == [0, 1, 2, 3] and run.summary["lost_records"] == 0
    first = model.layers[0].name
    applied = [
        np.sqrt(sum(np.sum(np.mean([m[j] for m in micro[u * 4 : u * 4 + 4]], axis=0) ** 2) for j in (0, 1)))
        for u in range(4)
    ]
    np.testing.assert_allclose([r["layers"][first]["grad_norm"] for r in run.records], applied, rtol=1e-5)


def test_a_nan_stops_fit_with_one_line_saying_why(tmp_path: Path, data, capsys) -> None:
    import keras

    x, y = data
    x = x.copy()
    x[100] = np.nan  # in the fourth batch of 32
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)]
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    gradtui.watch(model, out=tmp_path / "nan")
    capsys.readouterr()
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0, shuffle=False)
    err = capsys.readouterr().err
    assert len(history.history["loss"]) == 1  # stopped in the first epoch
    assert err.count("\n") == 1 and err.startswith("gradtui: fit stopped: NaN/Inf") and "at step 3" in err
    assert "stop_on_nonfinite=False" in err
    assert read_run(tmp_path / "nan").status == "stopped"


def test_an_unknown_loss_is_said_unknown_not_zero(tmp_path: Path, data) -> None:
    import keras
    import tensorflow as tf

    x, y = data
    x = x.copy()
    x[40] = np.nan
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    opt = keras.optimizers.SGD(0.01)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        opt.apply_gradients(
            zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables, strict=True)
        )

    with gradtui.watch(model, out=tmp_path / "unk", optimizer=opt) as monitor:
        for i in range(0, 64, 16):
            step(x[i : i + 16], y[i : i + 16])
    bad = [d for d in monitor.diagnoses if d.kind == "non_finite"]
    assert bad and "(loss unknown)" in bad[0].message and "(loss 0)" not in bad[0].message


def test_help_shows_the_real_parameters() -> None:
    params = inspect.signature(gradtui.watch).parameters
    assert list(params) == [
        "model",
        "out",
        "every",
        "optimizer",
        "overwrite",
        "tensorboard",
        "histograms",
        "stop_on_nonfinite",
        "thresholds",
    ]
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in params.values())
    assert "a list of optimizers" in gradtui.watch.__doc__
