"""What a newcomer met in the TUI (issue 21): warnings newest first, a hint in the footer for
leaving a form field, an edited stack saved under its new name, a watch run's builder."""

from __future__ import annotations

import json
from pathlib import Path

from textual.widgets import Input

from gradtui.diagnosis import Diagnosis
from gradtui.preset import load
from gradtui.tui.app import open_app
from gradtui.tui.widgets.layer_form import LayerForm
from gradtui.tui.widgets.warnings_panel import WarningsPanel

from .conftest import SIZE


def diag(kind: str, step: int) -> Diagnosis:
    return Diagnosis(kind, "dense", step, "warning", f"{kind} message", f"{kind} advice")


async def test_warnings_are_listed_newest_first_whatever_their_order(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with app.run_test(size=SIZE) as pilot:
        panel = app.query_one(WarningsPanel)
        # a summary lists them by kind, not by step
        panel.show([diag("saturation", 40), diag("vanishing", 2), diag("dead_units", 90)])
        await pilot.pause()
        shown = [panel.get_option_at_index(i).id for i in range(panel.option_count)]
        assert shown == ["diag-2", "diag-0", "diag-1"]  # steps 90, 40, 2
        assert panel.selected is not None and panel.selected.kind == "dead_units"


async def test_a_form_field_shows_how_to_get_the_keys_back(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with app.run_test(size=SIZE) as pilot:
        while not app.query("LayerForm #f-units"):
            await pilot.pause(0.05)
        escape = app.screen.active_bindings.get("escape")
        assert escape is None or not escape.binding.show  # on the table: no such hint
        app.query_one(LayerForm).query_one("#f-units", Input).focus()
        await pilot.pause()
        escape = app.screen.active_bindings["escape"]
        assert escape.binding.show and "keys" in escape.binding.description.lower()
        await pilot.press("t")  # typed into the field, not a training
        assert not app.training
        await pilot.press("escape")
        assert app.focused is app.query_one("#layer-table")
        await pilot.press("t")
        assert app.training
        app.session.stop()


async def test_an_unchanged_stack_saved_elsewhere_keeps_its_name(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app("he-relu")
    async with app.run_test(size=SIZE):
        assert app.save_to(str(tmp_path / "copy.toml")) is None
    assert load(str(tmp_path / "copy.toml")).name == "he-relu"


async def test_a_watch_run_says_the_builder_does_not_hold_its_stack(tmp_path: Path) -> None:
    run = tmp_path / "from-watch"
    run.mkdir()
    layers = {"dense": {"grad_norm": 1.0, "grad_max": 1.0, "weight_norm": 1.0, "update_ratio": 1e-3}}
    (run / "stats.jsonl").write_text(json.dumps({"step": 0, "loss": 1.0, "layers": layers}) + "\n")
    app = open_app(run, state=tmp_path / "state")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.3)
        title = str(app.query_one("#stack-title").render())
        assert "not this run's stack" in title and "from-watch" in title
        app.set_preset(load("he-relu"))  # a stack the user chose: no note any more
        await pilot.pause()
        assert "not this run's stack" not in str(app.query_one("#stack-title").render())


async def test_the_load_and_save_dialogs_fit_80x24(make_app) -> None:  # type: ignore[no-untyped-def]
    from textual.containers import Vertical
    from textual.widgets import Button

    app = make_app("vanishing-sigmoid")
    async with app.run_test(size=(80, 24)) as pilot:
        for key in ("ctrl+s", "o"):
            await pilot.press(key)
            await pilot.pause()
            dialog = app.screen
            box = dialog.query_one(Vertical).region
            assert box.right <= 80 and box.bottom <= 24, (key, box)  # was 90 and 120 wide
            for button in dialog.query(Button):
                assert button.region.right <= box.right and button.region.width > 0, (key, button.region)
            await pilot.press("escape")
            await pilot.pause()
