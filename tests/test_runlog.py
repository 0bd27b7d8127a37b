"""The run directory: whole lines, atomic files, no silent overwrite, incomplete runs read back.

Pure file handling: nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradtui.cli import app
from gradtui.errors import GradtuiError
from gradtui.preset import load, loads
from gradtui.runlog import RunDir, RunDirError, atomic_write, read_run

runner = CliRunner()


def _record(step: int) -> dict:
    return {"step": step, "epoch": 0, "loss": 2.3, "layers": {"dense": {"grad_norm": 0.1, "nonfinite": 0}}}


# --------------------------------------------------------------------------- stats.jsonl


def test_records_are_appended_as_whole_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each ``os.write`` to stats.jsonl carries whole JSON lines (one write per drain), and a short
    write (a signal) is continued where it stopped, so the file holds every line exactly once."""
    run = RunDir(tmp_path / "run")
    writes: list[bytes] = []
    real_write = os.write

    def short(fd: int, data: bytes) -> int:
        chunk = bytes(data[:1000])  # the kernel may write less than asked
        writes.append(chunk)
        return real_write(fd, chunk)

    run.append([_record(i) for i in range(5)])
    monkeypatch.setattr(os, "write", short)
    run.append_lines("".join(json.dumps(_record(i)) + "\n" for i in range(5, 60)))
    run.close()
    assert len(writes) > 1
    lines = (tmp_path / "run" / "stats.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(60))


def test_non_finite_values_are_written_as_json_and_read_back(tmp_path: Path) -> None:
    """NaN and Inf (not JSON) are stored as strings and come back as floats."""
    run = RunDir(tmp_path / "run")
    record = _record(0)
    record["loss"] = math.nan
    record["layers"]["dense"]["grad_norm"] = math.inf
    run.append([record])
    run.write_summary({"status": "stopped", "final": {"loss": -math.inf}})
    run.close()
    for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    back = read_run(tmp_path / "run")
    assert math.isnan(back.records[0]["loss"])
    assert back.records[0]["layers"]["dense"]["grad_norm"] == math.inf
    assert back.summary["final"]["loss"] == -math.inf


# --------------------------------------------------------------------------- reading back


def test_run_without_summary_is_incomplete(tmp_path: Path) -> None:
    """A run directory without summary.json (a killed run) reads back as ``incomplete``."""
    run = RunDir(tmp_path / "run")
    run.write_preset(load("he-relu").to_toml())
    run.append([_record(0), _record(1)])
    back = read_run(tmp_path / "run")
    assert back.status == "incomplete"
    assert [r["step"] for r in back.records] == [0, 1]
    assert loads(back.preset_text or "") == load("he-relu")


def test_torn_last_line_is_dropped(tmp_path: Path) -> None:
    """A last line cut short (by another writer or a full disk) is left out, the rest is kept."""
    folder = tmp_path / "run"
    folder.mkdir()
    lines = [json.dumps(_record(i)) for i in range(3)]
    (folder / "stats.jsonl").write_text("\n".join(lines) + "\n" + lines[0][:17])
    back = read_run(folder)
    assert back.status == "incomplete"
    assert [r["step"] for r in back.records] == [0, 1, 2]


def test_damaged_summary_is_incomplete(tmp_path: Path) -> None:
    """A summary.json that is not JSON reads back as ``incomplete``, not an exception."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "summary.json").write_text('{"status": "compl')
    assert read_run(folder).status == "incomplete"


def test_missing_run_directory_is_a_gradtui_error(tmp_path: Path) -> None:
    """Reading a folder that does not exist is a one-line error naming it."""
    with pytest.raises(GradtuiError, match="no-such-run"):
        read_run(tmp_path / "no-such-run")


# --------------------------------------------------------------------------- atomic files


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    """A write that fails half way (full disk, Ctrl-C) leaves the old file whole and no temp file."""
    target = tmp_path / "summary.json"
    target.write_text('{"status": "completed"}\n')

    def fail(fd: int) -> None:
        raise failure

    monkeypatch.setattr(os, "fsync", fail)  # the new text is in the temp file, not yet renamed
    with pytest.raises(type(failure)):
        atomic_write(target, '{"status": "interrupted", "much": "longer text"}\n')
    assert target.read_text() == '{"status": "completed"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_run_summary_and_preset_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``write_summary`` and ``write_preset`` go through the temp file and rename."""
    run = RunDir(tmp_path / "run")
    run.write_summary({"status": "completed"})
    run.write_preset(load("he-relu").to_toml())
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(5, "I/O error")))
    # a failed write is one line naming the file (RunDirError), the old file left whole
    with pytest.raises(RunDirError, match="summary.json: I/O error"):
        run.write_summary({"status": "failed"})
    with pytest.raises(RunDirError, match="preset.toml: I/O error"):
        run.write_preset(load("vanishing-sigmoid").to_toml())
    run.close()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"
    assert loads((tmp_path / "run" / "preset.toml").read_text()) == load("he-relu")
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_saved_preset_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A preset saved over an existing file (as the TUI does) keeps the old one if the save fails."""
    target = tmp_path / "mine.toml"
    old = load("he-relu").to_toml()
    target.write_text(old)

    def torn(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", torn)
    with pytest.raises(OSError):
        atomic_write(target, load("vanishing-sigmoid").to_toml())
    assert target.read_text() == old
    assert load(str(target)) == load("he-relu")


# --------------------------------------------------------------------------- no silent overwrite


def test_existing_run_directory_is_refused(tmp_path: Path) -> None:
    """A folder that already holds files is refused, and nothing in it is touched."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "summary.json").write_text("old")
    with pytest.raises(GradtuiError, match="overwrite=True"):
        RunDir(folder)
    assert (folder / "summary.json").read_text() == "old"


def test_refusal_names_python_arguments_for_watch(tmp_path: Path) -> None:
    """RunDir as ``gradtui.watch`` makes it (no wording: the Python default) names the arguments
    ``out`` and ``overwrite=True``, never the command line's options (SPEC section 4)."""
    folder = tmp_path / "mine"
    RunDir(folder).close()
    (folder / "summary.json").write_text("{}")
    with pytest.raises(GradtuiError) as info:
        RunDir(folder)
    message = info.value.one_line()
    assert "overwrite=True" in message and "out" in message
    assert "--" not in message
    (tmp_path / "file").write_text("x")
    with pytest.raises(GradtuiError) as info:
        RunDir(tmp_path / "file")
    assert "--" not in info.value.one_line()


def test_refusal_names_cli_options_for_the_command_line(tmp_path: Path) -> None:
    """The command line's sessions ask for ``wording="cli"``: ``--out`` and ``--overwrite``."""
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "summary.json").write_text("{}")
    with pytest.raises(GradtuiError) as info:
        RunDir(folder, wording="cli")
    message = info.value.one_line()
    assert "--out" in message and "--overwrite" in message and "overwrite=True" not in message


def test_run_files_share_one_mode_from_the_umask(tmp_path: Path) -> None:
    """summary.json, preset.toml and stats.jsonl are all created 0666 less the user's umask
    (a temporary file from tempfile would leave summary.json 0600)."""
    for umask in (0o022, 0o077, 0o002):
        old = os.umask(umask)
        try:
            folder = tmp_path / f"run-{umask:o}"
            run = RunDir(folder)
            run.write_preset('name = "x"\n')
            run.append([_record(0)])
            run.write_summary({"status": "completed"})
            run.close()
        finally:
            os.umask(old)
        modes = {
            name: (folder / name).stat().st_mode & 0o777
            for name in ("summary.json", "preset.toml", "stats.jsonl")
        }
        assert set(modes.values()) == {0o666 & ~umask}, modes


def test_overwrite_replaces_the_old_run(tmp_path: Path) -> None:
    """With overwrite, the old run's files go: no stale summary, no records appended to old ones."""
    folder = tmp_path / "run"
    first = RunDir(folder)
    first.append([_record(i) for i in range(4)])
    first.write_summary({"status": "completed"})
    first.close()
    second = RunDir(folder, overwrite=True)
    second.append([_record(0)])
    second.close()
    back = read_run(folder)
    assert back.status == "incomplete"
    assert len(back.records) == 1


def test_empty_existing_folder_is_accepted(tmp_path: Path) -> None:
    """An empty folder (made by the user for the run) is not a run to protect."""
    (tmp_path / "run").mkdir()
    RunDir(tmp_path / "run").close()


def test_cli_refuses_existing_run_directory(tmp_path: Path) -> None:
    """``gradtui run --out`` an existing run: exit 2, one line naming it and --overwrite; untouched."""
    folder = tmp_path / "old-run"
    folder.mkdir()
    (folder / "summary.json").write_text('{"status": "completed"}')
    (folder / "stats.jsonl").write_text('{"step": 0}\n')
    result = runner.invoke(app, ["run", "he-relu", "--out", str(folder), "--max-steps", "1", "--quiet"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "old-run" in lines[0] and "--out" in lines[0] and "--overwrite" in lines[0]
    assert (folder / "summary.json").read_text() == '{"status": "completed"}'
    assert (folder / "stats.jsonl").read_text() == '{"step": 0}\n'


def test_unwritable_run_directory_is_one_line(tmp_path: Path) -> None:
    """A run directory that cannot be created is a one-line error, not a traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GradtuiError, match="cannot write the run directory"):
        RunDir(blocker / "run")
