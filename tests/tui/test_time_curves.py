"""The monitor's panel of recurrent layers' gradients through time: one curve per recurrent
layer below the layer rows, for a recorded run (``gradtui open``), a followed one and a live
training's snapshots alike; absent for a model without recurrent layers.

``tests/tui/data/run-rnn`` is ``gradtui run rnn-pixels --max-steps 60 --every 2``: its SimpleRNN
vanishes through time (nothing reaches the first pixels: the gradient underflows to 0 there).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from textual.pilot import Pilot

from gradtui.history import History, TimeCurve
from gradtui.runlog import read_run
from gradtui.tui.app import open_app
from gradtui.tui.feed import Snapshot
from gradtui.tui.render import fmt_num
from gradtui.tui.widgets.layer_monitor import LayerMonitor
from gradtui.tui.widgets.time_curves import WAITING, TimeCurves, curve_lines, fit_spans, short_name

from .conftest import DATA, write_preset
from .test_open import wait_until
from .test_snapshots import recorded

SMALL = (80, 24)


def plain(runs: list[tuple[str, str]]) -> str:
    return "".join(text for text, _ in runs)


def test_fit_spans_widens_a_short_sequence_and_merges_a_long_one_by_rms() -> None:
    assert fit_spans([1.0, 2.0], 6) == [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]
    assert fit_spans([3.0, 4.0, 1.0, math.nan], 2) == pytest.approx([math.sqrt(12.5), 1.0])
    assert len(fit_spans([1.0] * 32, 200)) == 64  # never wider than CURVE_W
    assert fit_spans([], 10) == []


def test_a_curve_is_two_lines_name_and_sparkline_then_its_ends_and_ratio() -> None:
    curve = TimeCurve("simple_rnn", 40, (0, 2, 4, 6), (5e-5, 1e-3, 0.02, 0.17))
    head, ends = curve_lines(curve, 40, (math.log10(5e-5), math.log10(0.17)), name_w=10)
    assert plain(head).startswith("simple_rnn ") and plain(head)[11:] == "▁" * 8 + "▄" * 7 + "▆" * 7 + "█" * 7
    # under the sparkline when it fits, the ratio's label spelled out where wide enough
    assert plain(ends) == "  t=0 5.0e-05 → t=6 0.17  ×2.9e-04"
    _, under = curve_lines(curve, 50, None, name_w=10)
    assert plain(under) == " " * 11 + "t=0 5.0e-05 → t=6 0.17  ×2.9e-04"
    _, wide = curve_lines(curve, 70, None, name_w=10)
    assert plain(wide).strip() == "t=0 5.0e-05 → t=6 0.17  first/last 2.9e-04"
    for line in curve_lines(curve, 40, None, name_w=10):
        assert len(plain(line)) <= 40
    # a Bidirectional layer's long name keeps its telling part
    assert short_name("bidirectional/forward_lstm", 13) == "forward_lstm"
    assert short_name("simple_rnn", 13) == "simple_rnn"


async def test_open_a_recurrent_run_shows_its_curve_at_80x24(tmp_path: Path) -> None:
    app = open_app(DATA / "run-rnn", state=tmp_path / "state")
    async with app.run_test(size=SMALL) as pilot:
        curves = app.query_one(TimeCurves)
        await wait_until(pilot, lambda: not app.reading and curves.display and curves.size.height > 0)
        await pilot.pause(0.05)
        text = curves.render_text()
        first, second = text.splitlines()
        assert first.startswith("simple_rnn ·")  # nothing reaches the first pixels
        assert first.rstrip().endswith("█")  # the most, at the end of the sequence
        assert second.strip() == "t=0 0 → t=62 0.009778  ×0"
        assert curves.border_title == "Gradient through time (t=0 → end)"
        assert curves.border_subtitle == "step 40, every 10 records"
        assert curves.status == {"simple_rnn": "error"}  # the vanishing-through-time diagnosis
        # the panel fits whole, and the layer rows above it too
        assert curves.outer_size.height == 2 + 2 and curves.drawn == text
        monitor = app.query_one(LayerMonitor)
        assert [r.name for r in monitor.rows] == ["simple_rnn", "↻simple_rnn", "dense"]
        assert monitor.scrollable_content_region.height >= len(monitor.rows) + 2


async def test_no_panel_for_a_model_without_recurrent_layers(tmp_path: Path) -> None:
    app = open_app(DATA / "run-vanishing", state=tmp_path / "state")
    async with app.run_test(size=SMALL) as pilot:
        await wait_until(pilot, lambda: not app.reading and app.query_one(LayerMonitor).rows)
        assert not app.query_one(TimeCurves).display


async def test_a_followed_run_waits_for_its_first_curve_then_draws_it(tmp_path: Path) -> None:
    lines = (DATA / "run-rnn" / "stats.jsonl").read_text().splitlines(keepends=True)
    assert "time_grads" not in "".join(lines[1:10]) and "time_grads" in lines[10]
    run = tmp_path / "live"
    run.mkdir()
    stats = run / "stats.jsonl"
    stats.write_text("".join(lines[1:10]))  # steps 2..18: none measured through time
    app = open_app(run, follow=True, interval=0.05, state=tmp_path / "state")
    async with app.run_test(size=SMALL) as pilot:
        curves = app.query_one(TimeCurves)
        await wait_until(pilot, lambda: curves.drawn == WAITING)
        assert WAITING == "measured every 10 recorded steps: none yet"
        assert not curves.border_subtitle
        with stats.open("a") as f:
            f.write(lines[10])  # step 20, measured
        await wait_until(pilot, lambda: "t=0 0 → t=62 0.007848" in curves.drawn)
        assert curves.border_subtitle == "step 20, every 10 records"
        shutil.copy(DATA / "run-rnn" / "summary.json", run / "summary.json")
        await wait_until(pilot, lambda: not app.reading)


async def test_the_panel_draws_what_arrived_while_its_tab_was_hidden(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("rnn-pixels")
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        app.show_run(recorded("run-rnn"))  # while the builder is on screen
        curves = app.query_one(TimeCurves)
        assert curves.curves and not curves._on_screen
        app.action_tab("monitor")
        await wait_until(pilot, lambda: "t=62" in curves.drawn)
        # a live training's first snapshot: recurrent, nothing measured yet
        app.query_one("MonitorView").show(Snapshot(name="rnn-pixels", recurrent=True), [])
        await wait_until(pilot, lambda: curves.drawn == WAITING)


def test_monitor_rnn_80x24(snap_compare, make_app) -> None:  # type: ignore[no-untyped-def]
    async def show(pilot: Pilot) -> None:
        await pilot.pause()  # the tabs settle on their initial tab first
        pilot.app.show_run(recorded("run-rnn"))
        pilot.app.action_tab("monitor")
        await pilot.pause()
        await pilot.pause(0.05)

    assert snap_compare(make_app("rnn-pixels"), terminal_size=SMALL, run_before=show)


TINY_RNN = """
name = "tiny-rnn"
description = "a SimpleRNN on digits pixel by pixel, a few steps"

[data]
dataset = "digits"

[[layers]]
type = "simple_rnn"
units = 8
activation = "sigmoid"

[[layers]]
type = "dense"
units = 10
activation = "softmax"

[train]
optimizer = "adam"
learning_rate = 0.003
epochs = 1
batch_size = 32
max_steps = 12
"""


@pytest.mark.slow
async def test_a_live_training_draws_the_curve_the_run_directory_records(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(write_preset(tmp_path / "tiny-rnn.toml", TINY_RNN))
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        await pilot.press("t")
        curves = app.query_one(TimeCurves)
        await wait_until(pilot, lambda: not app.training and "step 10" in (curves.border_subtitle or ""), 120)
        await wait_until(pilot, lambda: "t=62" in curves.drawn)
        assert curves.drawn.startswith("simple_rnn ")
        (live,) = app.current.time_curves
        runs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
        recorded_history = History()
        recorded_history.extend(read_run(runs[-1]).records)
        again = recorded_history.time["simple_rnn"]
        assert (
            (live.layer, live.step, live.t)
            == (again.layer, again.step, again.t)
            == ("simple_rnn", 10, live.t)
        )
        assert again.grad_norm == pytest.approx(live.grad_norm, rel=1e-8)
        assert f"t=62 {fmt_num(live.last, 0)}" in curves.drawn
