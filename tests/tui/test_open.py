"""``gradtui open``: the same monitor, warnings and loss chart, fed by a recorded run or by a run
another process is writing (``--follow``); ``compare --tui``. Run files are written by the tests."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from typer.testing import CliRunner

from gradtui.cli import app as cli
from gradtui.errors import GradtuiError
from gradtui.source import Ended, RunSource, Started, Updated
from gradtui.tui.app import GradtuiApp, compare_app, open_app
from gradtui.tui.widgets.compare_view import CompareView
from gradtui.tui.widgets.layer_monitor import LayerMonitor
from gradtui.tui.widgets.loss_chart import LossChart
from gradtui.tui.widgets.run_status import RunStatus
from gradtui.tui.widgets.warnings_panel import WarningsPanel

from .conftest import DATA, SIZE

LAYERS = ["dense", "dense_1", "dense_2"]


def line(step: int) -> str:
    """One stats.jsonl line: the lowest layer's gradient 1e-8, the top one's 1."""
    layers = {
        name: {
            "grad_norm": 10.0 ** (-8 + 4 * i),
            "grad_max": 1.0,
            "weight_norm": 1.0,
            "update_ratio": 1e-4,
            "nonfinite": 0,
            "saturation": 0.2,
        }
        for i, name in enumerate(LAYERS)
    }
    return json.dumps({"step": step, "epoch": 0, "loss": 2.3 - step / 100, "layers": layers}) + "\n"


SUMMARY = {
    "name": "mine",
    "status": "completed",
    "steps": 6,
    "epochs": 1,
    "device": "CPU",
    "final": {"loss": 2.2, "accuracy": 0.3},
    "diagnoses": [
        {
            "kind": "vanishing",
            "layer": "dense",
            "step": 2,
            "severity": "error",
            "message": "gradient norm of dense is 1e-08 x that of dense_2",
            "advice": "use he_normal",
        }
    ],
    "healthy": False,
    "error": None,
}


async def wait_until(pilot: Pilot, cond: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not met in time")


def shown_rows(app: GradtuiApp) -> list[str]:
    return [r.name for r in app.query_one(LayerMonitor).rows]


async def test_open_a_run_of_gradtui_run_shows_monitor_warnings_and_loss(tmp_path: Path) -> None:
    app = open_app(DATA / "run-vanishing", state=tmp_path / "state")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(
            pilot, lambda: not app.reading and app.query_one("TabbedContent").active == "monitor"
        )
        assert shown_rows(app)[0] == "dense" and shown_rows(app)[-1] == "dense_12"
        assert [d.kind for d in app.query_one(WarningsPanel).diagnoses] == ["vanishing"]
        assert app.query_one(LossChart).snapshot.loss  # the loss chart has the curve
        assert app.query_one(RunStatus).state == "completed"
        assert app.preset.name == "vanishing-sigmoid"  # the run's preset.toml, in the builder
        assert app.finished_note is None  # read, not followed


async def test_open_a_watch_run_without_preset_and_a_killed_one(tmp_path: Path) -> None:
    run = tmp_path / "killed"
    run.mkdir()
    (run / "stats.jsonl").write_text(line(0) + line(1) + line(2)[:30])  # torn, no summary, no preset
    app = open_app(run, state=tmp_path / "state")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: not app.reading)
        assert shown_rows(app) == LAYERS
        assert app.current.steps_done == 2 and app.current.status == "incomplete"
        status = app.query_one(RunStatus)
        assert status.state == "incomplete" and "no summary.json" in str(status.render())
        assert "e-0" in app.query_one(LayerMonitor).render_text()
        await pilot.press("q")


async def test_follow_draws_lines_as_they_arrive_and_says_when_the_run_finished(tmp_path: Path) -> None:
    run = tmp_path / "live"
    run.mkdir()
    stats = run / "stats.jsonl"
    stats.write_text(line(0))
    app = open_app(run, follow=True, interval=0.05, state=tmp_path / "state")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.current is not None and app.current.steps_done == 1)
        assert app.reading and app.query_one(RunStatus).state == "following"
        with stats.open("a") as f:
            f.write(line(1) + line(2)[:25])  # another process, mid-write
        await wait_until(pilot, lambda: app.current.steps_done == 2)
        with stats.open("a") as f:
            f.write(line(2)[25:] + line(3) + line(4) + line(5))
        await wait_until(pilot, lambda: app.current.steps_done == 6)
        # while the run is written, its records are diagnosed as they arrive (issue 21: it
        # said "No problems found (yet)" until summary.json came); no preset: Keras terms
        live = app.query_one(WarningsPanel).diagnoses
        assert app.reading and [d.kind for d in live] == ["vanishing"] and live[0].layer == "dense"
        assert "BatchNormalization" in live[0].advice
        # as the training writes it: whole, by a rename (a reader polling every 0.05 s saw the
        # empty file write_text creates first: "summary.json: not JSON", in CI)
        (run / "summary.json.tmp").write_text(json.dumps(SUMMARY))
        os.replace(run / "summary.json.tmp", run / "summary.json")
        await wait_until(pilot, lambda: not app.reading)
        assert app.finished_note == "the run finished: completed after 6 steps"
        assert app.query_one(RunStatus).state == "completed"
        assert [d.kind for d in app.query_one(WarningsPanel).diagnoses] == ["vanishing"]
        assert app.current.loss_steps[-1] == 5


def test_run_source_without_a_screen(tmp_path: Path) -> None:
    shutil.copytree(DATA / "run-fixed", tmp_path / "r")
    events: list = []
    ended = RunSource(tmp_path / "r").run(events.append)
    assert [type(e) for e in events] == [Started, Ended] and ended.snapshot.status == "completed"
    assert ended.snapshot.rows and not ended.followed
    (tmp_path / "x").mkdir()
    with pytest.raises(GradtuiError):
        RunSource(tmp_path / "x")
    assert Updated  # the follow loop's event, exercised above


def test_open_refuses_a_folder_that_is_not_a_run_and_tui_points_at_open(tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "empty").mkdir()
    result = runner.invoke(cli, ["open", str(tmp_path / "empty")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "not a run directory" in result.stderr
    result = runner.invoke(cli, ["tui", str(DATA / "run-fixed")])
    assert result.exit_code == 2 and "gradtui open" in result.stderr


async def test_compare_tui_opens_the_compare_view_on_recorded_runs(tmp_path: Path) -> None:
    app = compare_app([DATA / "run-vanishing", DATA / "run-fixed"], state=tmp_path / "state")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.query_one("TabbedContent").active == "compare")
        view = app.query_one(CompareView)
        assert view.before.name == "vanishing-sigmoid" and view.after.name == "vanishing-sigmoid-fixed"
        assert "vanishing" in str(view.render())
