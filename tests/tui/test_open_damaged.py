"""``gradtui open`` on damaged runs (Pilot): the screen shows what was read and what was not, and
an error in the feed worker reaches the screen instead of leaving it "reading" forever."""

from __future__ import annotations

from pathlib import Path

import pytest
from damaged_corpus import DAMAGES, make

from gradtui.history import History
from gradtui.tui.app import open_app
from gradtui.tui.widgets.run_status import RunStatus

from .conftest import SIZE
from .test_open import shown_rows, wait_until


def damaged(name: str, tmp_path: Path) -> Path:
    return make(next(d for d in DAMAGES if d.name == name), tmp_path)


async def test_open_a_custom_loop_run_with_null_losses(tmp_path: Path) -> None:
    """The README's custom-loop example writes "loss": null: read to the end, not stuck."""
    app = open_app(damaged("loss-null", tmp_path), state=tmp_path / "state")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: not app.reading)
        assert shown_rows(app) == ["simple_rnn", "↻simple_rnn", "dense"]
        assert app.query_one(RunStatus).state == "completed"
        assert app.errors == []
        await pilot.press("q")


async def test_an_error_in_the_feed_worker_reaches_the_screen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: History, *args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug while reading")

    # the reading fills the history from the run's index (add_index), a follow from new lines
    monkeypatch.setattr(History, "extend", broken)
    monkeypatch.setattr(History, "add_index", broken)
    app = open_app(damaged("loss-null", tmp_path), state=tmp_path / "state")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: not app.reading)  # before: "reading" forever
        shown = " ".join(str(e) for e in app.errors)
        assert "reading stopped" in shown and "RuntimeError: a bug while reading" in shown
        assert app.query_one(RunStatus).state != "reading"
        await pilot.press("q")


async def test_what_was_skipped_is_on_the_screen(tmp_path: Path) -> None:
    app = open_app(damaged("summary-not-json", tmp_path), state=tmp_path / "state")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: not app.reading)
        shown = " ".join(str(e) for e in app.errors)
        assert "summary.json" in shown and "diagnoses are unknown" in shown
        assert app.current is not None and app.current.steps_done == 30
        assert "summary.json" in (app.finished_note or "")
        await pilot.press("q")


async def test_a_fifo_as_stats_jsonl_does_not_hang_the_screen(tmp_path: Path) -> None:
    app = open_app(damaged("stats-fifo-no-summary", tmp_path), state=tmp_path / "state")
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: not app.reading)
        shown = " ".join(str(e) for e in app.errors)
        assert "nothing in" in shown and "FIFO" in shown
        await pilot.press("q")
