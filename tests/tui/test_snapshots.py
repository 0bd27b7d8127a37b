"""Snapshots of the builder, the monitor and the compare view, fed from recorded runs.

The monitor and compare views are drawn from run directories recorded once with
``gradtui run ... --max-steps 60 --every 2`` (``tests/tui/data``), so no TensorFlow runs here
and every screenshot is the same on every machine. Update them with ``--snapshot-update``
after checking the new SVGs by eye.
"""

from __future__ import annotations

import json

from textual.pilot import Pilot

from gradtui.runlog import read_run
from gradtui.tui.feed import Snapshot, snapshot_from_records

from .conftest import DATA, SIZE, forms_mounted


def recorded(name: str) -> Snapshot:
    """A recorded run as the monitor shows it, with machine-independent path and timing."""
    run = read_run(DATA / name)
    snap = snapshot_from_records(run.records, run.summary, out=f"runs/{name}")
    snap.elapsed = 12.0
    snap.steps_per_epoch = 51
    return snap


def test_recorded_runs_are_what_the_snapshots_claim() -> None:
    summary = json.loads((DATA / "run-vanishing" / "summary.json").read_text())
    assert [d["kind"] for d in summary["diagnoses"]] == ["vanishing"]
    assert json.loads((DATA / "run-fixed" / "summary.json").read_text())["diagnoses"] == []


def test_builder(snap_compare, make_app) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app("vanishing-sigmoid"), terminal_size=SIZE)


def test_builder_with_variance_scaling_form(snap_compare, make_app) -> None:  # type: ignore[no-untyped-def]
    async def edit(pilot: Pilot) -> None:
        await forms_mounted(pilot)
        form = pilot.app.query_one("#layer-form")
        form.query_one("#f-init").value = "variance_scaling"
        await pilot.pause()

    assert snap_compare(make_app("vanishing-sigmoid"), terminal_size=SIZE, run_before=edit)


def test_monitor_vanishing(snap_compare, make_app) -> None:  # type: ignore[no-untyped-def]
    async def show(pilot: Pilot) -> None:
        await pilot.pause()  # the tabs settle on their initial tab first
        pilot.app.show_run(recorded("run-vanishing"))
        pilot.app.action_tab("monitor")
        await pilot.pause()

    assert snap_compare(make_app("vanishing-sigmoid"), terminal_size=SIZE, run_before=show)


def test_compare_before_and_after_the_fix(snap_compare, make_app) -> None:  # type: ignore[no-untyped-def]
    async def show(pilot: Pilot) -> None:
        await pilot.pause()  # the tabs settle on their initial tab first
        pilot.app.show_run(recorded("run-fixed"), previous=recorded("run-vanishing"))
        pilot.app.action_tab("compare")
        await pilot.pause()

    assert snap_compare(make_app("vanishing-sigmoid"), terminal_size=SIZE, run_before=show)
