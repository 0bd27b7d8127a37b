"""``gradtui fix RUN_DIR``: run -> fix -> run closes the loop headless (SPEC section 1), and the
merge of several diagnoses' fixes into one consistent change (:mod:`gradtui.remedy`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradtui.cli import app
from gradtui.diagnosis import Diagnosis
from gradtui.preset import Spec, load
from gradtui.remedy import apply_remedy
from gradtui.runlog import read_run

runner = CliRunner()


def _run(preset: str, out: Path, steps: int = 30) -> dict:
    result = runner.invoke(app, ["run", preset, "--max-steps", str(steps), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return read_run(out).summary


@pytest.mark.slow
def test_run_fix_run_cures_vanishing_sigmoid(tmp_path: Path) -> None:
    first = _run("vanishing-sigmoid", tmp_path / "a")
    assert "vanishing" in {d["kind"] for d in first["diagnoses"]}
    result = runner.invoke(app, ["fix", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    fixed = tmp_path / "a" / "fixed.toml"
    assert result.stdout.strip() == str(fixed)
    # one line per change on stderr, naming the entry, the key, old and new value and the kind
    lines = [x for x in result.stderr.splitlines() if x.startswith("gradtui: fix: ")]
    assert "layers[0] (dense).activation: 'sigmoid' -> 'relu' (vanishing)" in result.stderr
    assert len(lines) == 2, result.stderr
    preset = load(str(fixed))
    assert preset.layers[0].activation == Spec("relu") and preset.layers[0].initializer.name == "he_normal"
    assert preset.name == "vanishing-sigmoid-fixed"
    assert preset.train.max_steps == 30  # the run's own settings are kept
    second = _run(str(fixed), tmp_path / "b")
    assert "vanishing" not in {d["kind"] for d in second["diagnoses"]}
    assert second["final"]["val_accuracy"] > first["final"]["val_accuracy"]


def test_fix_writes_where_told_and_refuses_what_it_cannot_fix(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    preset = load("vanishing-sigmoid")
    (run_dir / "preset.toml").write_text(preset.to_toml())
    fix = {"entries": [0], "set": {"activation": "relu", "initializer": "he_normal"}}
    diag = Diagnosis("vanishing", "dense", 2, "error", "m", "a", ["dense"], fix).to_dict()
    summary = {"name": "x", "status": "completed", "diagnoses": [diag]}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "mine.toml"
    result = runner.invoke(app, ["fix", str(run_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert load(str(out)).layers[0].activation == Spec("relu")
    assert not (run_dir / "fixed.toml").exists()

    def refused(args: list[str], words: str) -> None:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, r.output
        assert len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr
        assert "Traceback" not in r.output

    refused(["fix", str(run_dir), "-o", str(tmp_path / "x.txt")], "give a .toml file")
    refused(["fix", str(run_dir), "-o", str(tmp_path / "nope" / "x.toml")], "does not exist")
    refused(["fix", str(run_dir), "-o", str(run_dir / "preset.toml")], "the run's own record")
    # a cleared diagnosis is not open: nothing to fix
    summary["diagnoses"] = [{**diag, "cleared_step": 9}]
    (run_dir / "summary.json").write_text(json.dumps(summary))
    refused(["fix", str(run_dir)], "no open diagnosis")
    # an open diagnosis without an automatic fix
    summary["diagnoses"] = [{**diag, "fix": None, "kind": "not_learning"}]
    (run_dir / "summary.json").write_text(json.dumps(summary))
    refused(["fix", str(run_dir)], "not_learning")
    # garbage where the diagnoses belong is data, not a crash
    summary["diagnoses"] = [1, 2]
    (run_dir / "summary.json").write_text(json.dumps(summary))
    refused(["fix", str(run_dir)], "summary.json")
    summary["diagnoses"] = [{**diag, "fix": {"entries": ["x"], "set": {"units": 3}}}]
    (run_dir / "summary.json").write_text(json.dumps(summary))
    refused(["fix", str(run_dir)], "a fix is not a table")
    # a run of watch() has no preset
    (run_dir / "preset.toml").unlink()
    refused(["fix", str(run_dir)], "no preset.toml")
    refused(["fix", str(tmp_path / "missing")], "no such folder")
    assert not (run_dir / "fixed.toml").exists()


def test_merged_fixes_are_one_consistent_change() -> None:
    preset = load("vanishing-sigmoid")
    vanish = Diagnosis(
        "vanishing", "dense", 2, "error", "m", "a", ["dense"],
        {"entries": [0], "set": {"activation": "relu", "initializer": "he_normal"}},
    )  # fmt: skip
    dead = Diagnosis(
        "dead_units", "dense", 5, "error", "m", "a", ["dense"],
        {"entries": [0], "set": {"activation": "elu", "initializer": "he_uniform", "bias_initializer": "zeros"}},
    )  # fmt: skip
    sat = Diagnosis(
        "saturation", "dense", 3, "error", "m", "a", ["dense"],
        {"entries": [0, 1], "set": {"bias_initializer": "ones"}},
    )  # fmt: skip
    clip = Diagnosis("exploding", "dense", 3, "error", "m", "a", [], {"train": {"clipnorm": 1.0}})
    glob = Diagnosis("non_finite", "dense", 3, "error", "m", "a", [], {"train": {"global_clipnorm": 5.0}})
    cleared = Diagnosis(
        "learning_rate", None, 1, "warning", "m", "a", [], {"train": {"learning_rate": 5.0}}, cleared_step=4
    )
    # whatever the order found: the more serious kind changes an entry whole, another entry
    # takes the next one's fix, [train] keys add up with one kind of clipping
    r = apply_remedy(preset, [dead, sat, cleared, vanish, clip, glob])
    layer, out = r.preset.layers
    assert layer.activation == Spec("relu") and layer.initializer.name == "he_normal"
    assert layer.bias_initializer.name == "zeros"  # neither dead's nor saturation's fix on entry 0
    assert out.bias_initializer.name == "ones"
    assert r.preset.train.global_clipnorm == 5.0 and r.preset.train.clipnorm is None
    assert r.preset.train.learning_rate == preset.train.learning_rate
    assert [d.kind for d in r.applied] == ["non_finite", "vanishing", "saturation"]
    assert "train.global_clipnorm: (unset) -> 5 (non_finite)" in r.changes
    assert len(r.changes) == 4, r.changes
