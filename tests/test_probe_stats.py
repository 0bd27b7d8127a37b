"""The recorder's statistics, checked against values computed independently of it.

A tiny model trains with plain SGD (no momentum) on known batches while the recorder records it. A
twin of the model, started from the same weights, replays each step eagerly: its gradients come
from a ``tf.GradientTape`` on the same batch, its update is SGD's known ``w -= lr * g``, and the
activation statistics are computed with numpy from a forward pass written out by hand. The
recorded grad_norm, grad_max, weight_norm, update_ratio, nonfinite, saturation and dead must
match, for ``every=1`` and ``every=3``, also with ``steps_per_execution > 1``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from gradtui.probe import make_callback
from gradtui.recorder import SIGMOID_SAT, TANH_SAT, Recorder

LR = 0.05
BATCH = 16
STEPS = 7


def tiny_model(steps_per_execution: int = 1) -> Any:
    """Dense sigmoid -> tanh -> relu -> BatchNorm -> softmax, initialized to saturate and die."""
    from gradtui.build import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(3)
    init = keras.initializers.RandomNormal(stddev=2.0, seed=1)
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(7, activation="sigmoid", kernel_initializer=init, name="sig"),
            keras.layers.Dense(6, activation="tanh", kernel_initializer=init, name="tanh"),
            keras.layers.Dense(
                8,
                activation="relu",
                kernel_initializer=init,
                bias_initializer=keras.initializers.Constant(-1.5),
                name="relu",
            ),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(LR),
        loss="sparse_categorical_crossentropy",
        steps_per_execution=steps_per_execution,
    )
    return model


def data(bad_batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.5, (STEPS * BATCH, 5)).astype("float32")
    y = rng.integers(0, 3, STEPS * BATCH)
    if bad_batch is not None:
        x[bad_batch * BATCH] = np.nan
    return x, y


def record(model: Any, x: np.ndarray, y: np.ndarray, every: int) -> tuple[Recorder, list[dict[str, Any]]]:
    """Train one epoch (one optimizer step per batch, in order) and collect the records."""
    inst = Recorder(model, every=every)
    records: list[dict[str, Any]] = []

    def flush(_why: str) -> None:
        records.extend(inst.drain().to_records())

    callback = make_callback(flush)
    callback.flush_every = 2  # drain often: also exercises draining between steps
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    return inst, records


def replay(twin: Any, x: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """Independent per-step statistics of every step, from the twin's eager SGD."""
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    names = ["sig", "tanh", "relu", "bn", "out"]
    out = []
    for step in range(STEPS):
        xb, yb = x[step * BATCH : (step + 1) * BATCH], y[step * BATCH : (step + 1) * BATCH]
        # activations of the forward pass, by hand in float64 (BatchNorm comes after them)
        w = {layer.name: [v.numpy().astype("float64") for v in layer.weights] for layer in twin.layers}
        a1 = 1.0 / (1.0 + np.exp(-(xb @ w["sig"][0] + w["sig"][1])))
        a2 = np.tanh(a1 @ w["tanh"][0] + w["tanh"][1])
        a3 = np.maximum(a2 @ w["relu"][0] + w["relu"][1], 0.0)
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, twin(xb, training=True))
        grads = tape.gradient(loss, twin.trainable_weights)
        before = [v.numpy().copy() for v in twin.trainable_weights]
        for v, g in zip(twin.trainable_weights, grads, strict=True):
            v.assign(v - LR * g)
        layers = {}
        for name in names:
            idx = [
                i
                for i, v in enumerate(twin.trainable_weights)
                if any(v is lv for lv in twin.get_layer(name).trainable_weights)
            ]
            g = np.concatenate([grads[i].numpy().ravel().astype("float64") for i in idx])
            w1 = np.concatenate([twin.trainable_weights[i].numpy().ravel().astype("float64") for i in idx])
            w0 = np.concatenate([before[i].ravel().astype("float64") for i in idx])
            layers[name] = {
                "grad_norm": float(np.sqrt(np.sum(g**2))),
                "grad_max": float(np.max(np.abs(g))),
                "weight_norm": float(np.sqrt(np.sum(w1**2))),
                "update_ratio": float(np.sqrt(np.sum((w1 - w0) ** 2)) / np.sqrt(np.sum(w1**2))),
                "nonfinite": int(np.sum(~np.isfinite(g))),
            }
        layers["sig"]["saturation"] = float(np.mean((a1 < SIGMOID_SAT) | (a1 > 1.0 - SIGMOID_SAT)))
        layers["tanh"]["saturation"] = float(np.mean(np.abs(a2) > TANH_SAT))
        layers["relu"]["dead"] = float(np.mean(np.max(a3, axis=0) <= 0.0))
        for name, a in (("sig", a1), ("tanh", a2), ("relu", a3)):
            layers[name]["act_mean"] = float(np.mean(a))
        out.append({"step": step, "loss": float(loss), "layers": layers})
    return out


def twin_of(model: Any) -> Any:
    twin = tiny_model()
    twin.set_weights(model.get_weights())
    return twin


def close(a: float, b: float) -> bool:
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.isnan(a) == math.isnan(b) and (math.isnan(a) or a == b)
    return math.isclose(a, b, rel_tol=2e-4, abs_tol=1e-6)


@pytest.mark.parametrize(
    ("every", "steps_per_execution"),
    [(1, 1), (3, 1), (3, 2), (1, 3)],
    ids=["every1", "every3-dispatch", "every3-in-graph", "every1-spe3"],
)
def test_recorded_statistics_match_an_independent_replay(every: int, steps_per_execution: int) -> None:
    model = tiny_model(steps_per_execution)
    twin = twin_of(model)
    x, y = data()
    inst, records = record(model, x, y, every)
    expected = replay(twin, x, y)
    assert [r["step"] for r in records] == list(range(0, STEPS, every))
    # plain SGD's update is the learning rate times the gradient: its norm is taken from the
    # gradient's (no pass over the update), for each of the 9 variables, and checked below
    assert inst.scaled_updates >= 9
    # the statistics describe something real: some saturation, some dead units, a moving step
    assert any(e["layers"]["sig"]["saturation"] > 0 for e in expected)
    assert any(0 < e["layers"]["relu"]["dead"] < 1 for e in expected)
    for rec in records:
        exp = expected[rec["step"]]
        assert close(rec["loss"], exp["loss"]), (rec["step"], rec["loss"], exp["loss"])
        assert list(rec["layers"]) == list(exp["layers"])
        for name, stats in exp["layers"].items():
            got = rec["layers"][name]
            assert set(got) == set(stats), name
            for key, value in stats.items():
                assert close(got[key], value), (rec["step"], name, key, got[key], value)
    # the model trained exactly as the twin did: the probe changed nothing
    for a, b in zip(model.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_nonfinite_gradients_are_counted_per_layer() -> None:
    model = tiny_model()
    twin = twin_of(model)
    x, y = data(bad_batch=2)
    _, records = record(model, x, y, 1)
    expected = replay(twin, x, y)
    bad = records[2]
    assert bad["step"] == 2 and math.isnan(bad["loss"])
    for name, stats in expected[2]["layers"].items():
        assert bad["layers"][name]["nonfinite"] == stats["nonfinite"] > 0, name
    assert all(v["nonfinite"] == 0 for r in records[:2] for v in r["layers"].values())


def test_the_ring_keeps_up_and_detach_restores_keras_methods() -> None:
    model = tiny_model()
    x, y = data()
    inst, records = record(model, x, y, 1)
    assert inst.lost == 0 and inst.pending() == 0 and len(records) == STEPS
    inst.detach()
    assert "_backend_apply_gradients" not in vars(model.optimizer)
    assert all("call" not in vars(layer) for layer in model.layers)
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    assert inst.pending() == 0  # Keras's own step records nothing


@pytest.mark.parametrize(
    "optimizer",
    [
        {"class_name": "SGD", "config": {"learning_rate": 0.05, "momentum": 0.9}},
        {"class_name": "SGD", "config": {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}},
        {"class_name": "Adam", "config": {"learning_rate": 0.01}},
        {"class_name": "RMSprop", "config": {"learning_rate": 0.01, "momentum": 0.5}},
        {"class_name": "SGD", "config": {"learning_rate": 0.5, "clipnorm": 0.1}},
        {"class_name": "AdamW", "config": {"learning_rate": 0.01, "weight_decay": 0.1}},
        {"class_name": "Ftrl", "config": {"learning_rate": 0.1}},
    ],
    ids=["momentum", "nesterov", "adam", "rmsprop", "clipnorm", "adamw-decay", "ftrl"],
)
def test_update_ratio_is_the_weights_change_whatever_the_optimizer(optimizer: dict) -> None:
    """The update is read from the optimizer's own update tensor where it can be (one
    assign_add/assign_sub a variable) and from the weights before and after otherwise (weight
    decay, ``assign``); either way it is what the weights did, seen from outside the step."""
    from gradtui.build import import_keras

    keras = import_keras()
    model = tiny_model()
    model.compile(optimizer=keras.optimizers.get(optimizer), loss="sparse_categorical_crossentropy")
    x, y = data()
    snapshots: list[list[np.ndarray]] = []

    class Snap(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            snapshots.append([w.numpy().copy() for w in model.trainable_weights])

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            snapshots.append([w.numpy().copy() for w in model.trainable_weights])

    inst = Recorder(model, every=1)
    records: list[dict[str, Any]] = []
    callback = make_callback(lambda _why: records.extend(inst.drain().to_records()))
    model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0, callbacks=[Snap(), callback])
    assert len(records) == STEPS
    layer_vars = {
        layer.name: [
            i for i, v in enumerate(model.trainable_weights) if any(v is w for w in layer.trainable_weights)
        ]
        for layer in model.layers
        if layer.trainable_weights
    }
    moved = 0
    for rec in records:
        w0, w1 = snapshots[2 * rec["step"]], snapshots[2 * rec["step"] + 1]
        for name, idx in layer_vars.items():
            d = np.sqrt(sum(np.sum((w1[i].astype("float64") - w0[i]) ** 2) for i in idx))
            w = np.sqrt(sum(np.sum(w1[i].astype("float64") ** 2) for i in idx))
            got = rec["layers"][name]["update_ratio"]
            assert math.isclose(got, d / w, rel_tol=2e-3, abs_tol=1e-7), (
                optimizer,
                rec["step"],
                name,
                got,
                d / w,
            )
            moved += d > 0
    assert moved > STEPS  # the weights did move
    # which way the update was read: from the optimizer's assign calls (Ftrl assigns the new
    # value), or from the weights before and after (weight decay changes them outside those)
    expect_captured = type(model.optimizer).__name__ != "AdamW"
    assert (inst.captured_updates > 0) == expect_captured
    # none of these updates is a scalar times the gradient (momentum, moments, a clipped one)
    assert inst.scaled_updates == 0
