"""What gradtui writes (issue 19, 21): a run directory replaced whole or not at all, a full disk
or a deleted folder said in one line, names from files shown as text, ``check`` and ``run``
accepting the same names, a NaN stop that exits non-zero, a failed ``watch()`` that leaves no
folder behind."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from gradtui.cli import app
from gradtui.diagnosis import Diagnosis
from gradtui.errors import GradtuiError
from gradtui.runlog import RUN_FILES, RunDir, RunDirError, RunDirGone, read_run

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]

#: a tiny stack on digits: a few steps train in well under a second
TINY = """{head}
[[layers]]
type = "dense"
units = 8
activation = "relu"
initializer = "he_normal"

[[layers]]
type = "dense"
units = 10
activation = "softmax"

[train]
epochs = 20
"""


#: ReLU layers initialised N(0, 1) at learning rate 0.5: NaN within a few steps
BOOM = """name = "boom"
[[layers]]
type = "dense"
units = 64
activation = "relu"
initializer = { name = "random_normal", stddev = 1.0 }
repeat = 6

[[layers]]
type = "dense"
units = 10
activation = "softmax"

[train]
optimizer = "sgd"
learning_rate = 0.5
max_steps = 200
"""


def tiny(path: Path, head: str = "") -> Path:
    """A tiny preset at ``path`` with ``head`` (e.g. ``name = "..."``) on top."""
    path.write_text(TINY.format(head=head), encoding="utf-8")
    return path


def one_line(result) -> str:  # type: ignore[no-untyped-def]
    """The single stderr line of a refused command (and no traceback anywhere)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    return lines[0]


# --------------------------------------------------------------------------- --overwrite


def test_overwrite_removes_every_file_gradtui_wrote(tmp_path: Path) -> None:
    """An old run's traceback.txt, report.html/.png and a killed write's temporary file go with
    its records: nothing of another run is left beside the new one."""
    folder = tmp_path / "run"
    old = RunDir(folder)
    old.append([{"step": 0, "layers": {}}])
    old.write_summary({"status": "failed"})
    old.write_text("traceback.txt", "Traceback (most recent call last): the old run's")
    old.close()
    for name in ("report.html", "report.png", ".summary.json.0123abcd.tmp"):
        (folder / name).write_text("of the old run")
    new = RunDir(folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["stats.jsonl"]
    assert (folder / "stats.jsonl").read_text() == ""
    new.close()


def test_overwrite_refuses_a_folder_holding_files_gradtui_did_not_write(tmp_path: Path) -> None:
    """A user's notes (or a folder) beside a run: refused in one error naming them, nothing
    deleted, whatever the caller (Python or the command line)."""
    folder = tmp_path / "run"
    RunDir(folder).close()
    (folder / "summary.json").write_text('{"status": "completed"}')
    (folder / "notes.txt").write_text("mine")
    (folder / "plots").mkdir()
    before = {p.name: p.is_file() and p.read_text() for p in folder.iterdir()}
    with pytest.raises(GradtuiError) as info:
        RunDir(folder, overwrite=True)
    message = info.value.one_line()
    assert "notes.txt" in message and "plots" in message and "did not write" in message
    assert {p.name: p.is_file() and p.read_text() for p in folder.iterdir()} == before

    result = runner.invoke(app, ["run", "he-relu", "--out", str(folder), "--overwrite", "-q"])
    assert result.exit_code == 2
    line = one_line(result)
    assert "notes.txt" in line and "--out" in line
    assert {p.name: p.is_file() and p.read_text() for p in folder.iterdir()} == before


def test_run_overwrite_leaves_no_report_or_traceback_of_the_old_run(tmp_path: Path) -> None:
    """``gradtui run --out DIR --overwrite`` over a run that failed and was reported: the new
    run's folder holds the new run's files only."""
    preset = tiny(tmp_path / "tiny.toml")
    out = tmp_path / "run"
    first = runner.invoke(app, ["run", str(preset), "--out", str(out), "--max-steps", "2", "-q"])
    assert first.exit_code == 0, first.output
    (out / "traceback.txt").write_text("Traceback of the old run")
    (out / "report.html").write_text("<html>the old run</html>")
    second = runner.invoke(
        app, ["run", str(preset), "--out", str(out), "--max-steps", "3", "--overwrite", "-q"]
    )
    assert second.exit_code == 0, second.output
    # stats.idx: the index of stats.jsonl (gradtui.runindex)
    assert sorted(p.name for p in out.iterdir()) == [
        "preset.toml",
        "stats.idx",
        "stats.jsonl",
        "summary.json",
    ]
    run = read_run(out)
    assert run.status == "completed" and run.summary["steps"] == 3 and len(run.records) == 3


# --------------------------------------------------------------------------- a full disk


def test_a_failed_append_is_one_run_dir_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while appending: a RunDirError (exit 1) naming the file and the reason, kept on
    the RunDir so that a caller that swallowed it still knows."""
    run = RunDir(tmp_path / "run")

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("gradtui.runlog.os.write", full)
    with pytest.raises(RunDirError) as info:
        run.append([{"step": 0}])
    assert info.value.exit_code == 1 and not isinstance(info.value, RunDirGone)
    assert "stats.jsonl" in info.value.one_line() and "No space left on device" in info.value.one_line()
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert run.error is not None
    run.close()


@pytest.mark.slow
def test_full_disk_during_run_is_recorded_as_failed(tmp_path: Path) -> None:
    """A real file-size limit (RLIMIT_FSIZE) hit by stats.jsonl mid-run: ``summary.json`` (small)
    says ``failed`` and why, exit 1, and no traceback reaches the terminal."""
    resource = pytest.importorskip("resource")
    preset = tiny(tmp_path / "tiny.toml")
    out = tmp_path / "run"
    limit = 30_000

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "gradtui", "run", str(preset), "--out", str(out), "--max-steps", "600", "-q"],
        preexec_fn=cap,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert "stats.jsonl" in summary["error"] and "File too large" in summary["error"], summary["error"]
    assert (out / "stats.jsonl").stat().st_size <= limit
    assert not (out / "traceback.txt").exists()  # the one line says it all
    assert "File too large" in proc.stdout  # the summary printed says why
    assert read_run(out).status == "failed"


def test_summary_that_cannot_be_written_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If even ``summary.json`` cannot be written (the disk is full), the reason is one line on
    stderr and the exit code is 1: no chained tracebacks."""
    import gradtui.runlog as runlog

    real = runlog.atomic_write

    def full(path: Path, text: str) -> None:
        if Path(path).name in ("summary.json", "traceback.txt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, text)

    monkeypatch.setattr(runlog, "atomic_write", full)
    preset = tiny(tmp_path / "tiny.toml")
    result = runner.invoke(
        app, ["run", str(preset), "--out", str(tmp_path / "run"), "--max-steps", "2", "-q"]
    )
    assert result.exit_code == 1, result.output
    line = one_line(result)
    assert "summary.json" in line and "No space left on device" in line and str(tmp_path / "run") in line


def test_run_folder_deleted_mid_run_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run folder removed while training (rm -rf from another shell): training stops at the
    next drain, one line says so, exit 2, and the folder is not made again."""
    real = RunDir.append_lines
    out = tmp_path / "run"

    def delete_then_append(self: RunDir, text: str) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        real(self, text)

    monkeypatch.setattr(RunDir, "append_lines", delete_then_append)
    preset = tiny(tmp_path / "tiny.toml")
    result = runner.invoke(app, ["run", str(preset), "--out", str(out), "--max-steps", "50", "-q"])
    assert result.exit_code == 2, result.output
    line = one_line(result)
    assert "deleted" in line and str(out) in line
    assert not out.exists()


def test_appending_to_a_deleted_folder_is_noticed(tmp_path: Path) -> None:
    """An open ``stats.jsonl`` whose folder was removed would take appends silently: each append
    checks, and says the folder is gone (exit 2)."""
    run = RunDir(tmp_path / "run")
    run.append([{"step": 0}])
    shutil.rmtree(tmp_path / "run")
    with pytest.raises(RunDirGone) as info:
        run.append([{"step": 1}])
    assert info.value.exit_code == 2 and "deleted" in info.value.one_line()
    with pytest.raises(RunDirGone):
        run.write_summary({"status": "completed"})
    run.close()
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- names TensorFlow rejects


@pytest.mark.parametrize(
    ("file", "head", "shown"),
    [
        ("resume.toml", 'name = "résumé"', "résumé"),
        ("_draft.toml", "", "_draft"),
        ("odd.toml", 'name = "-a b/c (2)"', "-a b/c (2)"),
    ],
)
def test_check_and_run_accept_the_same_names(tmp_path: Path, file: str, head: str, shown: str) -> None:
    """A name TensorFlow's scopes reject (accents, a leading ``_`` or ``-``, ``/``): ``check``
    passes and ``run`` trains; both show the preset's name as written."""
    preset = tiny(tmp_path / file, head)
    checked = runner.invoke(app, ["check", str(preset), "--json"])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["name"] == shown
    out = tmp_path / "run"
    ran = runner.invoke(app, ["run", str(preset), "--out", str(out), "--max-steps", "2", "-q"])
    assert ran.exit_code == 0, ran.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["name"] == shown, summary
    assert ran.stdout.startswith(f"{shown}: completed")


def test_model_names_are_valid_tensorflow_scopes() -> None:
    """Whatever the preset's name, the model's name opens a TensorFlow root scope."""
    import tensorflow as tf

    from gradtui.build import model_name
    from gradtui.preset import loads

    pattern = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$")  # TensorFlow's, in ops.name_scope
    for name in ("résumé", "_x", "-x", "__", "日本語", "a/b", "\x1b]0;x\x07", "[/]", "ok-name_1.2", "Ωmega"):
        p = loads(TINY.format(head=f"name = {json.dumps(name)}"))
        safe = model_name(p)
        assert pattern.match(safe), (name, safe)
        with tf.name_scope(safe):
            pass


# --------------------------------------------------------------------------- names are text

EVIL_NAME = "evil\x1b]0;pwned\x07[/][bold]x"
EVIL_DESC = "[link=https://example.invalid]click[/link]\x1b[2J"


def test_check_and_run_show_names_as_text(tmp_path: Path) -> None:
    """A preset whose name and description hold terminal escapes and Rich markup: ``check`` and
    ``run`` print them escaped (``\\x1b``), never as control sequences, never as markup."""
    head = f"name = {json.dumps(EVIL_NAME)}\ndescription = {json.dumps(EVIL_DESC)}"
    preset = tiny(tmp_path / "evil.toml", head)
    checked = runner.invoke(app, ["check", str(preset)], env={"COLUMNS": "200"})
    assert checked.exit_code == 0, checked.output
    assert "\x1b" not in checked.output and "\x07" not in checked.output
    assert 'Model: "evil\\x1b]0;pwned\\x07[/][bold]x"' in checked.stdout
    assert "[link=https://example.invalid]click[/link]\\x1b[2J" in checked.stdout

    out = tmp_path / "run"
    ran = runner.invoke(app, ["run", str(preset), "--out", str(out), "--max-steps", "2", "-q"])
    assert ran.exit_code == 0, ran.output
    assert "\x1b" not in ran.output and "\x07" not in ran.output
    assert ran.stdout.startswith("evil\\x1b]0;pwned\\x07[/][bold]x: completed")
    assert json.loads((out / "summary.json").read_text())["name"] == EVIL_NAME  # kept as written


def test_one_line_errors_show_file_text_escaped(tmp_path: Path) -> None:
    """A key read from a preset file reaches the error line as text: ESC shows as ``\\x1b``."""
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.format(head='"\\u001b[2Jkey" = 1'), encoding="utf-8")
    result = runner.invoke(app, ["check", str(bad)])
    assert result.exit_code == 2
    line = one_line(result)
    assert "\x1b" not in line and "\\x1b[2Jkey" in line


def test_view_prints_layer_names_and_diagnoses_as_text() -> None:
    """The live table and the diagnoses of ``gradtui run`` and ``print_summary`` (a shared run
    folder's summary) on a real terminal console: escapes shown, markup not read."""
    from gradtui.history import History
    from gradtui.view import diagnosis_text, layer_table, print_summary

    layer = "dense\x1b[2J[/]"
    d = Diagnosis(
        kind="vanishing",
        layer=layer,
        step=3,
        severity="error",
        message="[link=https://example.invalid]x[/link] \x1b]0;t\x07",
        advice="[bold]use he_normal\x1b[31m",
    )
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200, color_system=None)
    console.print(layer_table(History(8), [layer], [d]))
    console.print(diagnosis_text(d))
    print_summary(
        {
            "name": EVIL_NAME,
            "status": "failed",
            "steps": 1,
            "epochs": 0,
            "device": "CPU\x1b[2J",
            "error": "[/] \x1b[2J",
            "diagnoses": [d.to_dict()],
        },
        console,
        out="runs/x\x1b[2J",
    )
    text = buf.getvalue()
    assert "\x1b[2J" not in text and "\x1b]0;" not in text and "\x07" not in text
    assert "dense\\x1b[2J[/]" in text and "[link=https://example.invalid]x[/link]" in text
    assert "[bold]use he_normal\\x1b[31m" in text and "evil\\x1b]0;pwned\\x07[/][bold]x" in text


# --------------------------------------------------------------------------- a newcomer's exits


def test_a_run_stopped_by_nan_exits_1(tmp_path: Path) -> None:
    """A stack that reaches NaN: training stops, exit 1 (documented), one stderr line says why,
    the run directory says ``stopped``."""
    out = tmp_path / "run"
    (tmp_path / "boom.toml").write_text(BOOM)
    result = runner.invoke(app, ["run", str(tmp_path / "boom.toml"), "--out", str(out), "-q"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "NaN" in lines[0], result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "stopped"
    assert any(d["kind"] == "non_finite" for d in summary["diagnoses"])


@pytest.mark.slow
def test_headless_tui_training_stopped_by_nan_exits_1(tmp_path: Path) -> None:
    """``gradtui tui PRESET --headless --train`` stopped at a NaN: the exit code of ``gradtui run``."""
    preset = tmp_path / "boom.toml"
    preset.write_text(BOOM)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRADTUI_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run(
        [sys.executable, "-m", "gradtui", "tui", str(preset), "--headless", "--train"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 1, proc.stderr
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "stopped" and "non_finite" in {d["kind"] for d in summary["diagnoses"]}


def test_a_failed_watch_leaves_no_folder_that_blocks_the_retry(tmp_path: Path) -> None:
    """``watch()`` raising (an uncompiled model: no optimizer) records nothing; the corrected
    retry into the same ``out``, without ``overwrite``, records."""
    import numpy as np

    import gradtui
    from gradtui.build import import_keras

    keras = import_keras()
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    out = tmp_path / "mine"
    with pytest.raises(ValueError, match="optimizer"):
        gradtui.watch(model, out=out)
    assert not out.exists()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    monitor = gradtui.watch(model, out=out)
    model.fit(np.zeros((8, 4), "float32"), np.zeros(8, "int64"), epochs=1, batch_size=4, verbose=0)
    monitor.close()
    assert read_run(out).status == "completed" and len(read_run(out).records) == 2


def test_discard_removes_what_an_empty_run_made(tmp_path: Path) -> None:
    """``RunDir.discard`` (for a caller that failed before the run began) removes the folder it
    made, and leaves a folder the user made, empty, in place."""
    RunDir(tmp_path / "made").discard()
    assert not (tmp_path / "made").exists()
    (tmp_path / "mine").mkdir()
    RunDir(tmp_path / "mine").discard()
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())


def test_discard_keeps_what_was_recorded(tmp_path: Path) -> None:
    """``RunDir.discard`` undoes only an empty run: once a record is written it is the user's."""
    run = RunDir(tmp_path / "run")
    run.append([{"step": 0}])
    run.discard()
    assert (tmp_path / "run" / "stats.jsonl").stat().st_size > 0
    assert set(RUN_FILES) >= {p.name for p in (tmp_path / "run").iterdir()}
