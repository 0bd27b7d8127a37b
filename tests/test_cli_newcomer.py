"""A newcomer's first hour (issue 11), through the CLI: data with its own number of classes, a
relative ``--dataset`` replayed from elsewhere, ``--fail-on`` as a fast gate, progress in a pipe,
diagnoses that cleared."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from gradtui.cli import app
from gradtui.diagnosis import Diagnosis
from gradtui.preset import load
from gradtui.runlog import read_run
from gradtui.view import print_summary

runner = CliRunner()


def three_class_csv(path: Path, rows: int = 90) -> Path:
    """Four features and a ``label`` column with the classes 0, 1, 2."""
    rng = random.Random(0)
    lines = ["a,b,c,d,label"]
    for i in range(rows):
        k = i % 3
        lines.append(",".join(f"{k + rng.random():.3f}" for _ in range(4)) + f",{k}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_dataset_classes_size_the_output_layer_and_a_relative_path_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """he-relu (10 softmax units) on a 3-class csv named relative to the working folder: the
    output layer follows the data (one stderr line says so), and the run's preset.toml stores the
    csv absolute, so it loads and its data reads from any other folder."""
    work = tmp_path / "work"
    work.mkdir()
    three_class_csv(work / "mine.csv")
    monkeypatch.chdir(work)
    result = runner.invoke(
        app, ["run", "he-relu", "--dataset", "mine.csv", "--max-steps", "3", "--out", "run", "-q"]
    )
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if "output layer" in line]
    assert len(said) == 1 and "3 units" in said[0] and "10" in said[0] and "3 classes" in said[0], (
        result.stderr
    )
    run = read_run(work / "run")
    assert run.status == "completed"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    replayed = load(str(work / "run" / "preset.toml"))
    assert replayed.data.dataset == str(work / "mine.csv")
    assert replayed.layers[-1].units == 3
    from gradtui.session import prepare

    prepared = prepare(replayed)  # the data loads and the model fits it, from another folder
    assert prepared.data.num_classes == 3


def test_output_units_follow_without_changing_the_rest() -> None:
    """Only the final layer changes: a last entry with ``repeat`` keeps its other copies."""
    p = load("he-relu")
    same = p.with_output_units(p.layers[-1].units)
    assert same is p
    three = p.with_output_units(3)
    assert three.layers[:-1] == p.layers[:-1]
    assert three.layers[-1].units == 3 and three.layers[-1].activation == p.layers[-1].activation
    import dataclasses

    repeated = dataclasses.replace(p, layers=(*p.layers[:-1], dataclasses.replace(p.layers[-1], repeat=2)))
    split = repeated.with_output_units(3)
    assert [(x.units, x.repeat) for x in split.layers[-2:]] == [(p.layers[-1].units, 1), (3, 1)]


def test_fail_on_stops_training_at_the_first_match(tmp_path: Path) -> None:
    """``--fail-on vanishing``: one stderr line names the kind, the layer and the step; training
    stops there (status ``stopped``, far fewer steps than asked for) and the exit code is 3."""
    out = tmp_path / "gate"
    result = runner.invoke(
        app,
        [
            "run",
            "vanishing-sigmoid",
            "--max-steps",
            "2000",
            "--fail-on",
            "vanishing",
            "--out",
            str(out),
            "-q",
        ],
    )
    assert result.exit_code == 3, result.output
    lines = [line for line in result.stderr.splitlines() if "--fail-on" in line]
    assert len(lines) == 1, result.stderr
    assert "vanishing" in lines[0] and "layer dense " in lines[0] and "at step 2" in lines[0]
    summary = read_run(out).summary
    assert summary["status"] == "stopped"
    assert summary["steps"] < 1000, summary["steps"]


def test_progress_in_a_pipe_is_whole_lines(tmp_path: Path) -> None:
    """CliRunner's stdout is not a terminal: each progress update is one whole line (one per
    epoch), and the summary's lines are not folded at 80 columns mid-word."""
    result = runner.invoke(
        app,
        ["run", "vanishing-sigmoid", "--max-steps", "60", "--out", str(tmp_path / "p")],
        env={"COLUMNS": "80"},
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    progress = [line for line in lines if line.startswith("vanishing-sigmoid [")]
    assert len(progress) == 2  # 51 steps an epoch: one line at each epoch's end
    for line in progress:
        assert "ETA " in line and "steps/s" in line and "loss " in line and "step " in line
    assert any(line.endswith(" 60/60") or "step 60/60" in line for line in progress)
    assert not any(line.strip().startswith(("0s", "s ", "steps/s", "CPU")) for line in lines)
    summary = next(line for line in lines if line.startswith("vanishing-sigmoid: completed"))
    assert "loss" in summary and "accuracy" in summary and "val_accuracy" in summary
    error = next(line for line in lines if line.startswith("ERROR"))
    assert "x that of dense_12" in error
    assert any(line.strip().startswith("fix: ") and "batch_norm" in line for line in lines)


def test_cleared_diagnoses_say_so_in_the_final_summary() -> None:
    """A transient diagnosis that stopped holding shows ``cleared @ step N``; one that still
    holds does not."""
    cleared = Diagnosis(
        "dead_units", "dense_3", 12, "warning", "62% of dense_3's units are dead", "use leaky_relu"
    )
    cleared.cleared_step = 52
    active = Diagnosis("vanishing", "dense", 2, "error", "gradient norm tiny", "use he_normal")
    summary = {
        "name": "x",
        "status": "completed",
        "steps": 100,
        "epochs": 1,
        "device": "CPU",
        "initial": {"loss": 2.3},
        "final": {"loss": 2.0},
        "diagnoses": [cleared.to_dict(), active.to_dict()],
    }
    buf = io.StringIO()
    print_summary(summary, Console(file=buf, width=200))
    text = buf.getvalue()
    dead = next(line for line in text.splitlines() if "dead_units" in line)
    vanish = next(line for line in text.splitlines() if "vanishing" in line)
    assert "cleared @ step 52" in dead and "cleared" not in vanish


def test_cleared_layer_gets_a_hollow_mark() -> None:
    """In the per-layer table a layer whose only diagnosis cleared is marked ``○``, not ``●`` red."""
    from gradtui.history import History
    from gradtui.view import layer_table

    d = Diagnosis("dead_units", "dense_3", 12, "warning", "m", "a", cleared_step=40)
    buf = io.StringIO()
    Console(file=buf, width=200).print(layer_table(History(), ["dense_3", "dense_4"], [d]))
    rows = {line.split()[0]: line for line in buf.getvalue().splitlines()[1:] if line.strip()}
    assert rows["dense_3"].rstrip().endswith("○") and rows["dense_4"].rstrip().endswith("●")
    d.cleared_step = None
    buf = io.StringIO()
    Console(file=buf, width=200).print(layer_table(History(), ["dense_3"], [d]))
    assert buf.getvalue().splitlines()[1].rstrip().endswith("▲")


# --------------------------------------------------------------------------- --help and --version


def test_help_usage_kinds_exit_codes_and_whole_descriptions() -> None:
    """At 100 columns: the usage line says PRESET, --fail-on lists the kinds, the exit codes are
    there, and no command's one-line description is cut (no trailing ``...``)."""
    from gradtui.diagnosis import KINDS

    top = runner.invoke(app, ["--help"], terminal_width=100)
    assert top.exit_code == 0, top.output
    assert "Exit codes:" in top.output and "3 a --fail-on kind" in top.output
    commands = top.output.split("Commands:")[1].split("\n\n")[0].splitlines()
    assert len(commands) >= 4
    for line in commands:
        assert not line.rstrip().endswith("..."), line
    run = runner.invoke(app, ["run", "--help"], terminal_width=100)
    assert run.exit_code == 0, run.output
    usage = run.output.splitlines()[0]
    assert usage.endswith(" run [OPTIONS] PRESET"), usage
    assert "{" not in run.output
    flat = " ".join(run.output.split())
    fail_on = flat.split("--fail-on KINDS")[1].split("-q, --quiet")[0]
    assert all(kind in fail_on for kind in KINDS), fail_on
    assert "Exit codes:" in flat and "130 interrupted" in flat
    tui = runner.invoke(app, ["tui", "--help"], terminal_width=100)
    assert tui.output.splitlines()[0].endswith(" tui [OPTIONS] [PRESET]")


def test_version_prints_the_version() -> None:
    """``gradtui --version`` prints ``gradtui X.Y.Z`` and exits 0 (SPEC section 1)."""
    import gradtui

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"gradtui {gradtui.__version__}"


def test_fail_on_match_at_the_last_step_stopped_nothing(tmp_path: Path) -> None:
    """A match found only when the last records are drained still exits 3 and names the kind,
    but training ran every step: status ``completed``, no "training stopped" on stderr."""
    out = tmp_path / "end"
    result = runner.invoke(
        app,
        ["run", "vanishing-sigmoid", "--max-steps", "3", "--fail-on", "vanishing", "--out", str(out), "-q"],
    )
    assert result.exit_code == 3, result.output
    summary = read_run(out).summary
    ran_all = summary["steps"] == 3
    assert summary["status"] == ("completed" if ran_all else "stopped")
    assert ("training stopped" in result.stderr) == (not ran_all)
