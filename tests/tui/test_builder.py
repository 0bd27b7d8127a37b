"""Editing the stack in the builder: add, insert, edit, move, duplicate, delete, repeat; save, load."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, Select

from gradtui.preset import load
from gradtui.stack import plan
from gradtui.tui.screens.load_dialog import LoadDialog
from gradtui.tui.screens.save_dialog import SaveDialog
from gradtui.tui.widgets.layer_form import LayerForm
from gradtui.tui.widgets.layer_table import LayerTable

from .conftest import SIZE, forms_mounted, opened


def _types(app) -> list[tuple[str, int | None, str, int]]:  # type: ignore[no-untyped-def]
    return [(x.type, x.units, x.activation_name, x.repeat) for x in app.preset.layers]


async def test_add_insert_duplicate_move_delete(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app) as pilot:
        table = app.query_one(LayerTable)
        assert table.row_count == 2
        await pilot.press("a")  # after entry 0, before the output layer
        assert _types(app) == [
            ("dense", 64, "sigmoid", 12),
            ("dense", 64, "relu", 1),
            ("dense", 10, "softmax", 1),
        ]
        assert table.cursor_row == 1 and table.row_count == 3
        await pilot.press("c")  # duplicate entry 1
        assert len(app.preset.layers) == 4 and table.cursor_row == 2
        await pilot.press("left_square_bracket")  # move entry 2 up
        assert table.cursor_row == 1
        table.move_cursor(row=0)
        await pilot.press("i")  # insert before entry 0
        assert _types(app)[0] == ("dense", 64, "relu", 1)
        assert _types(app)[1] == ("dense", 64, "sigmoid", 12)
        await pilot.press("right_square_bracket")  # move it down below the sigmoid entry
        assert _types(app)[1] == ("dense", 64, "relu", 1)
        assert table.cursor_row == 1
        await pilot.press("x", "x")  # delete two relu entries
        assert _types(app) == [
            ("dense", 64, "sigmoid", 12),
            ("dense", 64, "relu", 1),
            ("dense", 10, "softmax", 1),
        ]
        assert app.dirty


async def test_buttons_reach_every_edit_with_the_mouse(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app) as pilot:
        await pilot.click("#btn-add")
        await pilot.click("#btn-duplicate")
        await pilot.click("#btn-up")
        await pilot.click("#btn-down")
        await pilot.click("#btn-delete")
        await pilot.click("#btn-insert")
        assert len(app.preset.layers) == 4


async def test_edit_form_changes_units_activation_initializer_repeat(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app) as pilot:
        form = app.query_one(LayerForm)
        units = form.query_one("#f-units", Input)
        units.value = "48"
        await pilot.pause()
        assert app.preset.layers[0].units == 48
        form.query_one("#f-activation", Select).value = "relu"
        await pilot.pause()
        form.query_one("#f-init", Select).value = "variance_scaling"
        await pilot.pause()
        assert form.query_one("#row-init-scale").display
        form.query_one("#f-init-scale", Input).value = "2.0"
        form.query_one("#f-init-mode", Select).value = "fan_avg"
        form.query_one("#f-init-distribution", Select).value = "uniform"
        await pilot.pause()
        form.query_one("#f-repeat", Input).value = "4"
        await pilot.pause()
        layer = app.preset.layers[0]
        assert layer.activation_name == "relu"
        assert layer.initializer.name == "variance_scaling"
        assert dict(layer.initializer.params) == {"scale": 2.0, "mode": "fan_avg", "distribution": "uniform"}
        assert layer.repeat == 4
        assert sum(s.repeat for s in app.preset.layers) == 5
        # the table and the pre-flight follow the edit
        # (by key: which columns show depends on the table's width and its cells' lengths)
        assert app.query_one(LayerTable).get_cell("0", "repeat") == "×4"
        # leaky_relu shows its parameter, and the form writes it
        form.query_one("#f-activation", Select).value = "leaky_relu"
        await pilot.pause()
        assert form.query_one("#row-act-param").display
        form.query_one("#f-act-param", Input).value = "0.1"
        await pilot.pause()
        assert dict(app.preset.layers[0].activation.params) == {"negative_slope": 0.1}


async def test_invalid_edit_is_refused_with_the_loader_error(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app) as pilot:
        before = app.preset
        form = app.query_one(LayerForm)
        form.query_one("#f-units", Input).value = "0"
        await pilot.pause()
        assert app.preset == before
        assert "layers[0].units" in form.error and "out of range" in form.error
        form.query_one("#f-units", Input).value = "16"
        await pilot.pause()
        assert form.error == ""
        assert app.preset.layers[0].units == 16


async def test_cannot_delete_the_last_dense_layer(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app) as pilot:
        await pilot.press("x")
        assert len(app.preset.layers) == 1
        before = app.preset
        await pilot.press("x")  # the only entry left: refused, stack intact
        assert app.preset == before


async def test_training_settings_and_clipping(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app) as pilot:
        form = app.query_one("#train-form")
        form.query_one("#t-optimizer", Select).value = "adam"
        form.query_one("#t-momentum", Input).value = "0"
        await pilot.pause()
        form.query_one("#t-clipping", Select).value = "global norm"
        await pilot.pause()
        form.query_one("#t-clip", Input).value = "0.5"
        form.query_one("#t-learning_rate", Input).value = "0.001"
        form.query_one("#t-max_steps", Input).value = "100"
        form.query_one("#t-every", Input).value = "2"
        await pilot.pause()
        t = app.preset.train
        assert (t.optimizer, t.global_clipnorm, t.clipnorm, t.learning_rate, t.max_steps) == (
            "adam",
            0.5,
            None,
            0.001,
            100,
        )
        assert app.preset.monitor.every == 2
        form.query_one("#t-clipping", Select).value = "value"
        await pilot.pause()
        assert app.preset.train.clipvalue == 0.5 and app.preset.train.global_clipnorm is None
        form.query_one("#t-dataset", Input).value = "nonsense"
        await pilot.pause()
        assert "data.dataset" in form.error
        assert app.preset.data.dataset == "digits"


async def test_preflight_advice_follows_the_stack(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app) as pilot:
        advice = str(app.query_one("#advice").render())
        assert "sigmoid layers without BatchNorm" in advice
        form = app.query_one(LayerForm)
        form.query_one("#f-activation", Select).value = "relu"
        await pilot.pause()
        advice = str(app.query_one("#advice").render())
        assert "relu with glorot_uniform" in advice and "he_normal" in advice
        form.query_one("#f-init", Select).value = "he_normal"
        await pilot.pause()
        assert "every initializer fits its activation" in str(app.query_one("#advice").render())


async def test_save_and_reload_a_preset(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    target = tmp_path / "mine.toml"
    async with opened(app) as pilot:
        await pilot.press("a")
        app.query_one(LayerForm).query_one("#f-units", Input).value = "24"
        await pilot.pause()
        edited = app.preset
        await pilot.press("ctrl+s")
        dialog = app.screen
        assert isinstance(dialog, SaveDialog)
        dialog.query_one("#save-path", Input).value = str(target)
        await pilot.click("#save-ok")
        assert not isinstance(app.screen, SaveDialog)
        assert not app.dirty
        # what `gradtui run` reads: the same loader, the same plan; the edited stack saved under
        # another name takes that name, and says what it was edited from (issue 21)
        reloaded = load(str(target))
        assert reloaded.name == "mine" and app.preset.name == "mine"
        assert reloaded.description.startswith("edited from vanishing-sigmoid: ")
        assert reloaded.layers == edited.layers and reloaded.train == edited.train
        edited = reloaded
        assert plan(reloaded, (64,), 10)
        # change the stack, then load the saved file back through the load dialog
        await pilot.press("x")
        assert app.preset != edited
        await pilot.press("o")
        assert isinstance(app.screen, LoadDialog)
        app.screen.query_one("#load-path", Input).value = str(target)
        await pilot.click("#load-ok")
        assert app.preset == edited
        assert not app.dirty


async def test_load_a_bundled_preset_and_a_bad_file(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text("[[layers]]\ntype = 'dense'\nunits = 'many'\n")
    app = make_app("vanishing-sigmoid")
    async with opened(app) as pilot:
        await pilot.press("o")
        dialog = app.screen
        dialog.query_one("#load-path", Input).value = str(bad)
        await pilot.click("#load-ok")
        assert isinstance(app.screen, LoadDialog)  # the error is shown, the dialog stays
        assert "layers[0].units" in str(dialog.query_one("#load-error").render())
        assert app.preset.name == "vanishing-sigmoid"
        dialog.query_one("#load-path", Input).value = "he-relu"
        await pilot.pause(0.3)  # a button ignores a second click within its 0.2 s press effect
        await pilot.click("#load-ok")
        assert app.preset.name == "he-relu"


async def test_save_to_an_unwritable_path_keeps_app_and_stack(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # a folder that is a file: unwritable for root too (a read-only folder is not, for root)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    await _unwritable(make_app, blocker / "x.toml")


async def test_save_into_a_missing_folder_shows_the_error(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    await _unwritable(make_app, tmp_path / "no" / "such" / "folder" / "x.toml")


async def _unwritable(make_app, target: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app) as pilot:
        await pilot.press("a")
        edited = app.preset
        await pilot.press("ctrl+s")
        dialog = app.screen
        dialog.query_one("#save-path", Input).value = str(target)
        await pilot.click("#save-ok")
        assert isinstance(app.screen, SaveDialog)
        assert "cannot write" in str(dialog.query_one("#save-error").render())
        await pilot.press("escape")
        assert app.preset == edited and app.dirty and app.is_running


async def test_unsaved_stack_is_kept_on_quit_and_restored(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app) as pilot:
        await pilot.press("a")
        edited = app.preset
        await pilot.press("q")
    assert app.kept_unsaved is not None and app.kept_unsaved.is_file()
    assert load(str(app.kept_unsaved)) == edited
    again = make_app(None)  # bare `gradtui`
    assert again.preset == edited and again.dirty
    async with opened(again) as pilot:
        await pilot.press("ctrl+s")
        again.screen.query_one("#save-path", Input).value = str(tmp_path / "kept.toml")
        await pilot.click("#save-ok")
        await pilot.press("q")
    assert not app.kept_unsaved.exists()  # saved: nothing left to restore
    assert make_app(None).preset.name == "vanishing-sigmoid"


async def test_escape_leaves_a_field_so_keys_work_again(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app) as pilot:
        app.query_one("#f-units", Input).focus()
        await pilot.press("escape")
        assert app.focused is app.query_one(LayerTable)
        await pilot.press("a")
        assert len(app.preset.layers) == 3


async def test_batch_norm_and_dropout_entries_keep_their_settings(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app) as pilot:
        form = app.query_one(LayerForm)
        await pilot.press("i")
        form.query_one("#f-type", Select).value = "batch_norm"
        await pilot.pause()
        assert form.query_one("#row-bn-momentum").display and not form.query_one("#row-units").display
        form.query_one("#f-bn-momentum", Input).value = "0.9"
        await pilot.pause()
        assert app.preset.layers[0].type == "batch_norm" and app.preset.layers[0].momentum == 0.9
        form.query_one("#f-repeat", Input).value = "2"
        await pilot.pause()
        assert app.preset.layers[0].momentum == 0.9 and app.preset.layers[0].repeat == 2
        form.query_one("#f-type", Select).value = "dropout"
        await pilot.pause()
        form.query_one("#f-rate", Input).value = "0.3"
        await pilot.pause()
        assert (app.preset.layers[0].type, app.preset.layers[0].rate) == ("dropout", 0.3)


async def test_a_fix_is_refused_when_its_layers_changed_since_the_run(make_app) -> None:  # type: ignore[no-untyped-def]
    from gradtui.diagnose import Diagnosis
    from gradtui.preset import Spec

    app = make_app("vanishing-sigmoid")
    # a fix that changes the new entry too (it is relu + he_normal already)
    fix = {"entries": [0], "set": {"activation": "elu", "initializer": "he_uniform"}}
    diagnosis = Diagnosis("vanishing", "dense", 2, "error", "m", "a", ["dense"], fix)
    async with opened(app) as pilot:
        app.trained_preset = app.preset
        await pilot.press("i")  # a new entry 0: the run's entry 0 is now entry 1
        edited = app.preset
        assert app.apply_diagnosis(diagnosis) is False
        assert app.preset == edited  # nothing changed
        app.trained_preset = app.preset  # as if this stack had been trained
        assert app.apply_diagnosis(diagnosis) is True
        assert app.preset.layers[0].activation == Spec("elu")
        assert app.apply_diagnosis(diagnosis) is False  # applied already: nothing changes


async def test_forms_arrive_after_the_first_paint_filled_with_the_stack(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with app.run_test(size=SIZE) as pilot:
        await forms_mounted(pilot)
        form = app.query_one(LayerForm)
        assert form.query_one("#f-units", Input).value == "64"
        assert form.query_one("#f-activation", Select).value == "sigmoid"
        assert app.query_one("#t-epochs", Input).value == str(app.preset.train.epochs)
        # the column was there (and the table beside it) before the forms were
        assert app.query_one("#builder-right").region.width == 58
