"""Reading run directories back: torn lines, no summary, no preset, incremental following."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gradtui.errors import GradtuiError
from gradtui.runlog import RunReader, check_run_dir, read_run


def _rec(step: int) -> str:
    return json.dumps(
        {"step": step, "epoch": 0, "loss": 2.0 - step / 10, "layers": {"a": {"grad_norm": 1e-3}}}
    )


def test_torn_last_line_and_no_summary_read_as_incomplete(tmp_path: Path) -> None:
    (tmp_path / "stats.jsonl").write_text(_rec(0) + "\n" + _rec(1) + "\n" + _rec(2)[:20])
    run = read_run(tmp_path)
    assert run.status == "incomplete"
    assert run.steps() == [0, 1]
    assert run.preset_text is None
    assert run.name == tmp_path.name
    assert run.field("grad_norm") == [[1e-3], [1e-3]]


def test_a_folder_that_is_not_a_run_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(GradtuiError) as err:
        check_run_dir(tmp_path)
    assert "neither stats.jsonl nor summary.json" in err.value.one_line()
    with pytest.raises(GradtuiError):
        read_run(tmp_path / "missing")


def test_reader_follows_appends_and_waits_for_a_line_to_be_whole(tmp_path: Path) -> None:
    stats = tmp_path / "stats.jsonl"
    stats.write_text(_rec(0) + "\n")
    reader = RunReader(tmp_path)
    assert [r["step"] for r in reader.poll()] == [0]
    assert reader.poll() == []
    line = _rec(1) + "\n"
    with stats.open("a") as f:
        f.write(line[:15])
    assert reader.poll() == []  # half a line: not yet
    with stats.open("a") as f:
        f.write(line[15:] + _rec(2) + "\n")
    assert [r["step"] for r in reader.poll()] == [1, 2]
    assert not reader.finished
    (tmp_path / "summary.json").write_text(json.dumps({"name": "x", "status": "completed"}))
    reader.poll()
    assert reader.finished and reader.run.status == "completed" and reader.run.name == "x"
    assert reader.run.steps() == [0, 1, 2]


def test_recorded_fixture_reads_with_its_preset() -> None:
    run = read_run(Path(__file__).parent / "tui" / "data" / "run-vanishing")
    assert run.status == "completed" and run.preset_text and run.name == "vanishing-sigmoid"
    assert run.layer_names()[0] == "dense" and len(run.records) == 30
