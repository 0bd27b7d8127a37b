"""The load and save dialogs: a served tab stays inside the server's folder; a typed path is text.

``gradtui serve`` gives each tab's process its folder in ``GRADTUI_SERVE_ROOT``; these tests set
it as the server does and drive the real dialogs with Pilot.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from gradtui.preset import load
from gradtui.text import plain
from gradtui.tui.confine import ROOT_ENV
from gradtui.tui.screens.load_dialog import LoadDialog
from gradtui.tui.screens.save_dialog import SaveDialog

from .conftest import opened

SECRET = "root:$6$SECRETHASH$xyz:19000:0:99999:7:::"


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(the served folder, a folder beside it holding a secret and a preset not to overwrite)."""
    root = tmp_path / "served"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "shadow").write_text(SECRET + "\n")
    (outside / "shadow.toml").write_text(f'name = "{SECRET}"\n[[layers]]\nunits = "{SECRET}"\n')
    (outside / "victim.toml").write_text("keep me\n")
    (root / "to-shadow.toml").symlink_to(outside / "shadow.toml")
    (root / "trap.toml").symlink_to(outside / "victim.toml")
    (root / "mine.toml").write_text(load("he-relu").to_toml())
    monkeypatch.setenv(ROOT_ENV, str(root))
    return root, outside


def _error(dialog: LoadDialog | SaveDialog) -> str:
    return str(dialog.query_one("#load-error" if isinstance(dialog, LoadDialog) else "#save-error").render())


async def _type(pilot, dialog, field: str, value: str, button: str) -> None:  # type: ignore[no-untyped-def]
    dialog.query_one(field, Input).value = value
    await pilot.pause(0.25)  # a button ignores a second click within its 0.2 s press effect
    await pilot.click(button)
    await pilot.pause()


async def test_a_served_load_dialog_reads_nothing_outside_its_folder(make_app, served) -> None:  # type: ignore[no-untyped-def]
    root, outside = served
    app = make_app("vanishing-sigmoid")
    async with opened(app) as pilot:
        await pilot.press("o")
        dialog = app.screen
        assert isinstance(dialog, LoadDialog)
        errors = {}
        for typed in (
            "/etc/shadow",  # the probe of the issue
            str(outside / "shadow"),
            str(outside / "shadow.toml"),  # a TOML error would quote its values
            "../outside/shadow.toml",
            "to-shadow.toml",  # a link inside, to a file outside
            str(outside / "no-such.toml"),  # the same answer whether it exists or not
            "~/.bashrc",
        ):
            await _type(pilot, dialog, "#load-path", typed, "#load-ok")
            assert app.screen is dialog, typed  # refused in the dialog, no crash
            errors[typed] = _error(dialog)
            assert "outside the folder this server serves" in errors[typed], errors[typed]
            assert "SECRETHASH" not in errors[typed] and "root:" not in errors[typed]
        assert (
            errors[str(outside / "no-such.toml")].split(": ", 1)[1]
            == errors[str(outside / "shadow")].split(": ", 1)[1]
        )
        assert app.preset.name == "vanishing-sigmoid"
        # inside the folder (relative to it, not to the process's folder) and bundled names load
        await _type(pilot, dialog, "#load-path", "mine.toml", "#load-ok")
        assert not isinstance(app.screen, LoadDialog) and app.preset == load(str(root / "mine.toml"))
        await pilot.press("o")
        await _type(pilot, app.screen, "#load-path", "vanishing-sigmoid", "#load-ok")
        assert app.preset.name == "vanishing-sigmoid"


async def test_a_served_save_dialog_writes_nothing_outside_its_folder(make_app, served) -> None:  # type: ignore[no-untyped-def]
    root, outside = served
    app = make_app("he-relu")
    async with opened(app) as pilot:
        await pilot.press("ctrl+s")
        dialog = app.screen
        assert isinstance(dialog, SaveDialog)
        for typed in (
            str(outside / "victim.toml"),
            "../outside/victim",  # save() adds .toml
            "trap.toml",  # a link inside, to a file outside
            "/tmp/gradtui-served-escape.toml",
        ):
            await _type(pilot, dialog, "#save-path", typed, "#save-ok")
            assert app.screen is dialog, typed
            assert "outside the folder this server serves" in _error(dialog), _error(dialog)
        assert (outside / "victim.toml").read_text() == "keep me\n"
        assert not Path("/tmp/gradtui-served-escape.toml").exists()
        await _type(pilot, dialog, "#save-path", "sub/../kept", "#save-ok")
        assert not isinstance(app.screen, SaveDialog)
        assert load(str(root / "kept.toml")) == app.preset


@pytest.mark.parametrize(
    "typed", ["[/]", "[link=https://evil.example]x[/link].toml", "a[/b]\x1b]0;t\x07.toml"]
)
async def test_a_typed_path_with_markup_is_shown_literally(make_app, tmp_path: Path, typed: str) -> None:  # type: ignore[no-untyped-def]
    """``[/]`` in a path crashed the whole app (MarkupError) and lost the unsaved stack."""
    app = make_app("vanishing-sigmoid")
    async with opened(app) as pilot:
        await pilot.press("o")
        dialog = app.screen
        await _type(pilot, dialog, "#load-path", typed, "#load-ok")
        assert app.screen is dialog and app.return_code is None  # still running
        shown = _error(dialog)
        assert plain(Path(typed)) in shown, shown  # as the path reads it ("//" is one "/")
        await pilot.press("escape")
        # save into a folder that does not exist: the error names the path as typed
        await pilot.press("ctrl+s")
        dialog = app.screen
        await _type(pilot, dialog, "#save-path", f"no-such-dir/{typed}", "#save-ok")
        assert app.screen is dialog and app.return_code is None
        assert "[" in _error(dialog) and "cannot write" in _error(dialog)


async def test_a_preset_named_with_markup_saves_and_loads(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The "saved …" and "loaded …" notes show such a name as it is."""
    app = make_app("he-relu")
    name = "[bold]mine [link=evil.example]x[]"  # no "/": it is a file name
    async with opened(app) as pilot:
        await pilot.press("ctrl+s")
        await _type(pilot, app.screen, "#save-path", f"{name}.toml", "#save-ok")
        assert not isinstance(app.screen, SaveDialog), _error(app.screen)
        assert (tmp_path / f"{name}.toml").is_file()
        assert f"saved {name}.toml" in [str(n.message) for n in app._notifications]  # 4 s long
        await pilot.press("o")
        await _type(pilot, app.screen, "#load-path", f"{name}.toml", "#load-ok")
        assert not isinstance(app.screen, LoadDialog) and app.return_code is None
        notes: list[str] = []
        for _ in range(100):  # the load ends in a worker: up to 10 s on a loaded machine
            await pilot.pause(0.1)
            notes = [str(n.message) for n in app._notifications]
            if f"loaded {name}.toml" in notes:
                break
        assert f"loaded {name}.toml" in notes, notes


async def test_a_served_tab_trains_on_no_data_file_outside_its_folder(make_app, served, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A CSV error quotes a cell and the header: a served tab's training reads no data file
    outside its folder, but the one of the preset the server was started with."""
    from gradtui.tui.confine import DATA_ENV, data_refusal

    root, outside = served
    secret = outside / "secret.csv"
    secret.write_text(f"{SECRET},label\n{SECRET},1\n")
    text = load("he-relu").to_toml().replace('dataset = "digits"', 'dataset = "../outside/secret.csv"')
    assert "secret.csv" in text
    (root / "leak.toml").write_text(text)
    app = make_app(str(root / "leak.toml"))
    async with opened(app) as pilot:
        await pilot.press("t")
        await pilot.pause(0.1)
        assert app.session is None  # nothing started
        notes = [str(n.message) for n in app._notifications]
        assert any("outside the folder this server serves" in n for n in notes), notes
        assert not any("SECRETHASH" in n for n in notes)
    assert data_refusal("digits") is None and data_refusal(str(root / "in.csv")) is None
    monkeypatch.setenv(DATA_ENV, str(secret))
    assert data_refusal(str(secret)) is None  # the server's own preset's data file


async def test_a_dataset_path_with_markup_is_shown_literally(make_app) -> None:  # type: ignore[no-untyped-def]
    """The training form's error quotes the typed dataset: ``x[/]y`` crashed the app."""
    app = make_app("vanishing-sigmoid")
    async with opened(app) as pilot:
        before = app.preset
        app.query_one("#t-dataset", Input).value = "x[/]y[link=https://evil.example]z"
        await pilot.pause(0.3)
        assert app.return_code is None and app.preset == before
        error = app.query_one("#train-form").error
        assert "'x[/]y[link=https://evil.example]z' is neither a known data set" in error, error
