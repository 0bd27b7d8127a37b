"""End to end: the convolutional, recurrent and residual presets trained headless for 150 steps.

Each problem preset must get its diagnosis, each remedy none of vanishing, exploding, non_finite
(issue 12). Beside the diagnoses, each test asserts the recorded statistics that make the story
true.
"""

from __future__ import annotations

from typing import Any

import pytest

from gradtui.preset import load
from gradtui.runlog import read_run
from gradtui.session import Session

pytestmark = pytest.mark.slow

STEPS = 150
ALARMS = {"vanishing", "exploding", "non_finite"}
_cache: dict[str, dict[str, Any]] = {}


def train(name: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Train a preset once per test session; every test of it reads the same run."""
    if name not in _cache:
        out = tmp_path_factory.mktemp(name) / "run"
        summary = Session(load(name).with_overrides(max_steps=STEPS), out).run()
        _cache[name] = {"summary": summary, "records": read_run(out).records}
    return _cache[name]


def kinds(summary: dict[str, Any]) -> set[str]:
    return {d["kind"] for d in summary["diagnoses"]}


def series(records: list[dict[str, Any]], layer: str, key: str = "grad_norm") -> list[float]:
    return [r["layers"][layer][key] for r in records]


def mean_loss(records: list[dict[str, Any]], part: slice) -> float:
    chunk = records[part]
    return sum(r["loss"] for r in chunk) / len(chunk)


# --------------------------------------------------------------------------- the measured stories


def test_conv_sigmoid_gradients_fade_toward_the_input(tmp_path_factory: pytest.TempPathFactory) -> None:
    records = train("conv-sigmoid", tmp_path_factory)["records"]
    first, top = series(records, "conv2d")[0], series(records, "dense")[0]
    assert first < 1e-3 * top, (first, top)  # measured 3e-6 against 0.4


def test_conv_dead_relu_first_channels_get_no_gradient(tmp_path_factory: pytest.TempPathFactory) -> None:
    records = train("conv-dead-relu", tmp_path_factory)["records"]
    assert max(series(records, "conv2d")) == 0.0


def test_rnn_exploding_weights_are_thrown_out_and_clipnorm_holds_them(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    wild = series(train("rnn-exploding", tmp_path_factory)["records"], "simple_rnn", "weight_norm")
    clipped = series(train("rnn-clipnorm", tmp_path_factory)["records"], "simple_rnn", "weight_norm")
    assert max(wild) > 100 * wild[0], (wild[0], max(wild))  # measured 10 -> 3e7
    assert max(clipped) < 1.5 * clipped[0], (clipped[0], max(clipped))


def test_sigmoid_rnn_on_pixels_learns_nothing_where_the_lstm_learns(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    rnn = train("rnn-pixels", tmp_path_factory)["summary"]
    lstm = train("lstm-pixels", tmp_path_factory)["summary"]
    assert rnn["final"]["val_accuracy"] < 0.2  # chance is 0.1
    assert lstm["final"]["val_accuracy"] > 0.35


# --------------------------------------------------------------------------- the diagnoses


@pytest.mark.parametrize(
    ("preset", "kind"),
    [
        pytest.param("conv-sigmoid", "vanishing"),
        pytest.param("conv-dead-relu", "dead_units"),
        pytest.param("rnn-exploding", "exploding"),
        pytest.param("rnn-pixels", "vanishing"),
        ("deep-plain", "vanishing"),
    ],
)
def test_problem_presets_get_their_diagnosis(
    preset: str, kind: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    summary = train(preset, tmp_path_factory)["summary"]
    found = {d["kind"]: d for d in summary["diagnoses"]}
    assert kind in found, summary["diagnoses"]
    assert found[kind]["advice"] and found[kind]["message"]
    assert found[kind]["step"] < 100


@pytest.mark.parametrize(
    ("preset", "fix_key"),
    [
        pytest.param("rnn-exploding", "clipnorm"),
        pytest.param("rnn-pixels", "type"),
        pytest.param("deep-plain", "residual"),
    ],
)
def test_problem_presets_offer_the_fix_that_fits(
    preset: str, fix_key: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The fix forms of issue 12: clipping, LSTM/GRU for a SimpleRNN, residual connections."""
    summary = train(preset, tmp_path_factory)["summary"]
    fixes = [d.get("fix") or {} for d in summary["diagnoses"]]
    assert any(fix_key in {**f.get("set", {}), **f.get("train", {})} for f in fixes), fixes


@pytest.mark.parametrize("preset", ["conv-relu-bn", "rnn-clipnorm", "lstm-pixels", "deep-residual"])
def test_remedies_raise_no_alarm_and_learn(preset: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    result = train(preset, tmp_path_factory)
    summary, records = result["summary"], result["records"]
    assert not kinds(summary) & ALARMS, summary["diagnoses"]
    assert summary["status"] == "completed" and summary["steps"] == STEPS
    assert len(records) == STEPS
    first, last = mean_loss(records, slice(0, 10)), mean_loss(records, slice(-10, None))
    assert last < 0.8 * first, (first, last)
