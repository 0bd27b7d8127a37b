"""End to end: every bundled preset trained headless for 200 steps on real Keras models.

Problem presets must raise their diagnosis early (within the first 50 steps); the remedies
must raise none of vanishing, exploding, non_finite, and their loss must fall.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gradtui.preset import load
from gradtui.runlog import read_run
from gradtui.session import Session

pytestmark = pytest.mark.slow

STEPS = 200
_cache: dict[str, dict[str, Any]] = {}


def train(name: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Train a preset once per test session; every test of it reads the same run."""
    if name not in _cache:
        out = tmp_path_factory.mktemp(name) / "run"
        summary = Session(load(name).with_overrides(max_steps=STEPS), out).run()
        _cache[name] = {"summary": summary, "run": read_run(out)}
    return _cache[name]


def kinds(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in summary["diagnoses"]}


@pytest.mark.parametrize(
    ("preset", "kind"),
    [
        ("vanishing-sigmoid", "vanishing"),
        ("exploding-relu", "exploding"),
        ("exploding-relu", "non_finite"),
        ("saturated-tanh", "saturation"),
        ("dying-relu", "dead_units"),
        ("clipvalue", "exploding"),
    ],
)
def test_problem_presets_raise_their_diagnosis_early(
    preset: str, kind: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    summary = train(preset, tmp_path_factory)["summary"]
    found = kinds(summary)
    assert kind in found, summary["diagnoses"]
    d = found[kind]
    assert d["step"] < 50
    assert d["advice"] and d["message"]
    if kind in ("vanishing", "exploding", "non_finite"):
        assert summary["healthy"] is False


@pytest.mark.parametrize(
    "preset", ["he-relu", "selu-lecun", "batchnorm-sigmoid", "leaky-relu", "elu", "prelu"]
)
def test_remedies_are_healthy_and_learn(preset: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    result = train(preset, tmp_path_factory)
    summary = result["summary"]
    assert not set(kinds(summary)) & {"vanishing", "exploding", "non_finite"}, summary["diagnoses"]
    assert summary["status"] == "completed" and summary["steps"] == STEPS and summary["healthy"] is True
    records = result["run"].records
    assert len(records) == STEPS
    first = sum(r["loss"] for r in records[:20]) / 20
    last = sum(r["loss"] for r in records[-20:]) / 20
    assert last < 0.8 * first, (first, last)


def test_nan_stops_training_with_a_complete_run_directory(tmp_path_factory: pytest.TempPathFactory) -> None:
    result = train("exploding-relu", tmp_path_factory)
    summary = result["summary"]
    assert summary["status"] == "stopped"
    assert summary["steps"] < 10  # stopped within a few steps of the first NaN
    nf = kinds(summary)["non_finite"]
    assert nf["layer"] == "dense" and nf["step"] <= 2
    run: Any = result["run"]
    assert run.status == "stopped" and run.preset_text and run.records


def test_clipnorm_stays_finite_where_exploding_relu_does_not(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    clipped = train("clipnorm", tmp_path_factory)
    plain = train("exploding-relu", tmp_path_factory)
    assert "non_finite" not in kinds(clipped["summary"])
    assert clipped["summary"]["status"] == "completed" and clipped["summary"]["steps"] == STEPS
    assert all(r["loss"] == r["loss"] and abs(r["loss"]) != float("inf") for r in clipped["run"].records)
    assert "non_finite" in kinds(plain["summary"])


def test_vanishing_fades_toward_the_input(tmp_path_factory: pytest.TempPathFactory) -> None:
    rec = train("vanishing-sigmoid", tmp_path_factory)["run"].records[0]
    norms = [rec["layers"][n]["grad_norm"] for n in ["dense"] + [f"dense_{i}" for i in range(1, 13)]]
    assert norms == sorted(norms)  # each layer's gradient smaller than the one above it
    assert norms[0] / norms[-1] < 1e-6


def test_run_directory_round_trips_the_preset(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    run = train("he-relu", tmp_path_factory)["run"]
    again = load(str(run.path / "preset.toml"))
    assert again == load("he-relu").with_overrides(max_steps=STEPS)
