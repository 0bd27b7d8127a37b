"""The CLI through typer's CliRunner: presets, check, run and the run directory it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradtui.cli import app
from gradtui.preset import bundled_presets, load
from gradtui.runlog import read_run

runner = CliRunner()

LAYER_KEYS = {"grad_norm", "grad_max", "weight_norm", "update_ratio", "nonfinite"}


def test_presets_lists_every_bundled_preset_with_its_description() -> None:
    result = runner.invoke(app, ["presets"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert len(lines) == len(bundled_presets()) >= 14
    by_name = {line.split()[0]: line for line in lines}
    assert load("vanishing-sigmoid").description in by_name["vanishing-sigmoid"]


def test_check_json_reports_fmnist_batchnorm_counts() -> None:
    result = runner.invoke(app, ["check", "fmnist-batchnorm", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["name"] == "fmnist-batchnorm"
    assert data["params"] == {"total": 271346, "trainable": 268978, "non_trainable": 2368}
    assert [layer["type"] for layer in data["layers"]] == [
        "Flatten",
        "BatchNormalization",
        "Dense",
        "BatchNormalization",
        "Dense",
        "BatchNormalization",
        "Dense",
    ]
    assert data["layers"][2]["output_shape"] == [None, 300] and data["layers"][2]["params"] == 235500
    assert data["advice"] == []


def test_check_text_shows_summary_fans_and_advice() -> None:
    result = runner.invoke(app, ["check", "exploding-relu"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Total params: 42,250" in result.output
    assert "Pre-flight advice" in result.output and "he_normal" in result.output
    js = json.loads(runner.invoke(app, ["check", "exploding-relu", "--json"]).stdout)
    assert js["advice"][0]["layer"] == "dense..dense_9"


def test_run_writes_the_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["run", "he-relu", "--max-steps", "30", "--out", str(out), "--quiet", "--every", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "he-relu: completed after 30 steps" in result.output
    run = read_run(out)
    assert run.status == "completed"
    s = run.summary
    assert set(s) >= {
        "name",
        "status",
        "steps",
        "epochs",
        "device",
        "params",
        "initial",
        "final",
        "diagnoses",
        "healthy",
        "error",
    }
    assert s["steps"] == 30 and s["device"] == "CPU" and s["healthy"] is True and s["error"] is None
    assert s["params"]["total"] == 64 * 64 * 12 + 64 * 12 + 650
    assert [r["step"] for r in run.records] == list(range(0, 30, 2))
    first = run.records[0]
    assert set(first) >= {"step", "epoch", "loss", "layers"}
    assert list(first["layers"]) == ["dense"] + [f"dense_{i}" for i in range(1, 13)]
    assert all(set(v) >= LAYER_KEYS for v in first["layers"].values())
    assert "dead" in first["layers"]["dense"] and "dead" not in first["layers"]["dense_12"]
    reloaded = load(str(out / "preset.toml"))
    assert reloaded.train.max_steps == 30 and reloaded.monitor.every == 2


def test_run_overrides_and_live_view(tmp_path: Path) -> None:
    out = tmp_path / "live"
    result = runner.invoke(
        app,
        ["run", "selu-lecun", "--max-steps", "12", "--epochs", "1", "--seed", "3", "--out", str(out)],
        env={"COLUMNS": "160"},
    )
    assert result.exit_code == 0, result.output
    assert (
        "step 12/12" in result.output and "dense_12" in result.output and "no problems found" in result.output
    )
    p = load(str(out / "preset.toml"))
    assert p.train.seed == 3 and p.train.epochs == 1


def test_fail_on_exits_3_when_a_kind_is_diagnosed(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "run",
            "vanishing-sigmoid",
            "--max-steps",
            "10",
            "--out",
            str(tmp_path / "v"),
            "--quiet",
            "--fail-on",
            "exploding,vanishing",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 3, result.output
    assert "vanishing" in result.output and "use relu with he_normal" in result.output
    ok = runner.invoke(
        app,
        [
            "run",
            "he-relu",
            "--max-steps",
            "10",
            "--out",
            str(tmp_path / "h"),
            "--quiet",
            "--fail-on",
            "vanishing",
        ],
    )
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "vanishing-sigmod"], "did you mean 'vanishing-sigmoid'"),
        (
            ["run", "he-relu", "--fail-on", "vanish"],
            "--fail-on: unknown diagnosis kind 'vanish' (did you mean",
        ),
        (["run", "he-relu", "--epochs", "0"], "--epochs"),
        (["check", "no/such/file.toml"], "no/such/file.toml: no such preset file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], needle: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "Traceback" not in result.output


def test_existing_run_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "stats.jsonl").write_text("{}\n")
    result = runner.invoke(app, ["run", "he-relu", "--max-steps", "2", "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert (tmp_path / "stats.jsonl").read_text() == "{}\n"


def test_same_seed_same_statistics(tmp_path: Path) -> None:
    for name in ("a", "b"):
        result = runner.invoke(
            app, ["run", "elu", "--max-steps", "6", "--out", str(tmp_path / name), "--quiet"]
        )
        assert result.exit_code == 0, result.output
    a, b = read_run(tmp_path / "a").records, read_run(tmp_path / "b").records
    assert len(a) == 6 and a == b
