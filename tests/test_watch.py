"""gradtui.watch on a user's own Keras models: their fit unchanged, the run directory recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gradtui
from gradtui.runlog import read_run


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype("float32")[:512], d.target[:512]


def sequential(depth: int, act: str, init: str = "glorot_uniform"):
    import keras

    keras.utils.set_random_seed(0)
    layers = [keras.Input((64,))]
    layers += [keras.layers.Dense(32, activation=act, kernel_initializer=init) for _ in range(depth)]
    layers += [keras.layers.Dense(10, activation="softmax")]
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def test_watch_records_the_run_and_leaves_fit_unchanged(tmp_path: Path, digits) -> None:
    x, y = digits
    plain = sequential(3, "relu", "he_normal")
    watched = sequential(3, "relu", "he_normal")
    monitor = gradtui.watch(watched, out=tmp_path / "mine", every=1)
    h_plain = plain.fit(x, y, epochs=2, batch_size=32, verbose=0, validation_split=0.1)
    h_watched = watched.fit(x, y, epochs=2, batch_size=32, verbose=0, validation_split=0.1)
    assert (
        h_plain.history.keys() == h_watched.history.keys() == {"loss", "accuracy", "val_loss", "val_accuracy"}
    )
    # the same seed, the same data: the instrumented step trains exactly like Keras's own
    np.testing.assert_allclose(h_plain.history["loss"], h_watched.history["loss"], rtol=1e-5)
    run = read_run(tmp_path / "mine")
    steps = 2 * int(np.ceil(len(x) * 0.9 / 32))
    assert run.status == "completed" and run.summary["steps"] == steps
    assert len(run.records) == steps
    names = [layer.name for layer in watched.layers]
    assert list(run.records[0]["layers"]) == names
    assert "dead" in run.records[0]["layers"][names[0]] and "dead" not in run.records[0]["layers"][names[-1]]
    assert monitor.diagnoses == [] and run.summary["healthy"] is True


def test_watch_diagnoses_a_vanishing_user_model(tmp_path: Path, digits) -> None:
    x, y = digits
    model = sequential(10, "sigmoid")
    monitor = gradtui.watch(model, out=tmp_path / "sig", every=2)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    kinds = [d.kind for d in monitor.diagnoses]
    assert "vanishing" in kinds
    v = monitor.diagnoses[kinds.index("vanishing")]
    assert (
        v.layer == model.layers[0].name
        and "use activation='relu' with kernel_initializer='he_normal'" in v.advice
    )  # Keras terms for a watch
    assert [r["step"] for r in read_run(tmp_path / "sig").records][:3] == [0, 2, 4]


def test_watch_a_functional_model_with_separate_activation_layers(tmp_path: Path, digits) -> None:
    import keras

    x, y = digits
    inp = keras.Input((64,))
    h = keras.layers.Dense(16, name="hidden")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.Activation("tanh", name="act")(h)
    out = keras.layers.Dense(10, activation="softmax", name="out")(h)
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    gradtui.watch(model, out=tmp_path / "fn")
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    rec = read_run(tmp_path / "fn").records[0]
    assert list(rec["layers"]) == ["hidden", "bn", "out"]
    assert 0.0 <= rec["layers"]["hidden"]["saturation"] <= 1.0


def test_watch_a_subclassed_model_records_gradients_only(tmp_path: Path, digits) -> None:
    import keras

    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.a = keras.layers.Dense(16, activation="relu")
            self.b = keras.layers.Dense(10, activation="softmax")

        def call(self, x):
            return self.b(self.a(x))

    x, y = digits
    model = Net()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"call it once on a batch"):
        gradtui.watch(model, out=tmp_path / "early")
    model(x[:1])
    gradtui.watch(model, out=tmp_path / "sub")
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    run = read_run(tmp_path / "sub")
    assert run.status == "completed" and len(run.records) == 8
    assert all(v["grad_norm"] > 0 for v in run.records[0]["layers"].values())


def test_watch_twice_into_one_out_names_the_python_argument(tmp_path: Path) -> None:
    """A second ``watch`` into the same ``out`` is refused in Python's words: ``overwrite=True``."""
    from gradtui.errors import GradtuiError

    model = sequential(1, "relu", "he_normal")
    gradtui.watch(model, out=tmp_path / "mine")
    with pytest.raises(GradtuiError) as info:
        gradtui.watch(model, out=tmp_path / "mine")
    message = str(info.value)
    assert "overwrite=True" in message and "--overwrite" not in message and "--out" not in message
