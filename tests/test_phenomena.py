"""End to end: the phenomena of the literature trained on small data (seeded), each getting its
diagnosis within the first 1000 steps, and the healthy stacks getting none of them.

- one-sided saturation: Glorot & Bengio (2010, Fig. 2), sigmoid with U[-1/sqrt(n), 1/sqrt(n)]:
  the top hidden layer is driven toward 0 while the lower ones stay near 0.5;
- not learning: a stack whose labels carry nothing about its inputs sits at ln(10);
- learning rate out of range: SGD at 1e-5, whose updates are 1e-6 of the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradtui.preset import load, loads
from gradtui.runlog import read_run
from gradtui.session import Session

pytestmark = pytest.mark.slow

NEW_KINDS = {"one_sided_saturation", "learning_rate", "not_learning"}

GLOROT_SIGMOID = """
name = "glorot-2010-sigmoid"
[data]
dataset = "digits"

[[layers]]
type = "dense"
units = 128
activation = "sigmoid"
# U[-1/sqrt(n), 1/sqrt(n)]: variance 1/(3n), the init of Glorot & Bengio's Fig. 2
initializer = { name = "variance_scaling", scale = 0.3333333, mode = "fan_in", distribution = "uniform" }
repeat = 4

[[layers]]
type = "dense"
units = 10
activation = "softmax"

[train]
optimizer = "sgd"
learning_rate = 0.5
batch_size = 10
epochs = 10
max_steps = 400
"""


def test_top_sigmoid_layer_driven_to_zero_is_one_sided_saturation(tmp_path: Path) -> None:
    """The recorder's ``act_mean`` of each sigmoid layer (the mean output of the training
    forward pass) shows the top hidden layer driven toward 0 while the lower ones stay near the
    middle; the live diagnoser says so, with the side and the layer."""
    from gradtui.build import build
    from gradtui.data import load as load_data
    from gradtui.monitor import Monitor

    preset = loads(GLOROT_SIGMOID)
    data = load_data(preset.data, seed=0)
    model, layers = build(preset, data.input_shape, data.num_classes)
    hidden = [x for x in layers if x.is_dense and not x.is_output]
    monitor = Monitor(model, layers, out=tmp_path / "run", train=preset.train, name=preset.name)
    _fit_steps(model, data, 400, [monitor.callback])
    monitor.finish("completed")
    found = {d.kind: d for d in monitor.diagnoses}
    assert "one_sided_saturation" in found, [d.to_dict() for d in found.values()]
    d = found["one_sided_saturation"]
    top = hidden[-1].name
    assert d.layer == top and d.layers == [top], d.to_dict()
    assert "toward 0 " in d.message and d.step < 1000
    assert "batch_norm" in d.advice and d.fix == {"entries": [0], "set": {"batch_norm": "before"}}
    at = next(r for r in read_run(tmp_path / "run").records if r["step"] == d.step)
    lower = [at["layers"][x.name]["act_mean"] for x in hidden[:-1]]
    assert all(0.3 < m < 0.8 for m in lower), lower  # the lower layers stay near the middle
    assert at["layers"][top]["act_mean"] < 0.1


def _fit_steps(model: Any, data: Any, steps: int, callbacks: list[Any]) -> None:
    """Fit exactly ``steps`` batches of 10, repeating the (small) training set."""
    reps = -(-steps * 10 // len(data.x_train))
    x = np.concatenate([data.x_train] * reps)[: steps * 10]
    y = np.concatenate([data.y_train] * reps)[: steps * 10]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    model.fit(x[order], y[order], batch_size=10, epochs=1, verbose=0, shuffle=False, callbacks=callbacks)


def _run(text: str, tmp_path: Path) -> dict[str, Any]:
    return Session(loads(text), tmp_path / "run").run()


def test_labels_unrelated_to_inputs_are_not_learning(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.npz"
    np.savez(path, x_train=rng.normal(size=(2000, 32)).astype("float32"), y_train=rng.integers(0, 10, 2000))
    summary = _run(
        f"""
[data]
dataset = "{path}"
[[layers]]
type = "dense"
units = 32
activation = "relu"
initializer = "he_normal"
repeat = 2
[[layers]]
type = "dense"
units = 10
activation = "softmax"
[train]
optimizer = "sgd"
learning_rate = 0.01
epochs = 20
max_steps = 400
""",
        tmp_path,
    )
    kinds = {d["kind"]: d for d in summary["diagnoses"]}
    assert list(kinds) == ["not_learning"], summary["diagnoses"]
    d = kinds["not_learning"]
    assert d["step"] < 1000 and "ln(10) = 2.3" in d["message"] and "update ratios" in d["message"]
    assert "labels" in d["advice"]


def test_a_learning_rate_far_too_small_is_reported_with_the_one_that_fits(tmp_path: Path) -> None:
    preset = load("he-relu").with_overrides(max_steps=60)
    text = preset.to_toml().replace("learning_rate = 0.01", "learning_rate = 1e-05")
    assert "1e-05" in text
    summary = _run(text, tmp_path)
    kinds = {d["kind"]: d for d in summary["diagnoses"]}
    assert "learning_rate" in kinds, summary["diagnoses"]
    d = kinds["learning_rate"]
    assert d["step"] < 1000 and "do not move" in d["message"]
    lr = d["fix"]["train"]["learning_rate"]
    assert 1e-3 <= lr <= 1e-1, d  # back to ~1e-3 update ratios: SGD's 0.01 is where he-relu learns
    assert not set(kinds) & {"vanishing", "exploding", "non_finite"}


HEALTHY = ["he-relu", "selu-lecun", "batchnorm-sigmoid", "leaky-relu", "elu", "prelu"]


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_stacks_get_none_of_the_new_kinds(name: str, tmp_path: Path) -> None:
    summary = Session(load(name).with_overrides(max_steps=300), tmp_path / "run").run()
    kinds = {d["kind"] for d in summary["diagnoses"]}
    assert not kinds & (NEW_KINDS | {"vanishing", "exploding", "non_finite"}), summary["diagnoses"]
