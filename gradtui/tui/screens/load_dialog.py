"""Choose a bundled preset or type a path to a preset file; a bad file keeps the dialog open."""

from __future__ import annotations

import os
from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from gradtui.errors import GradtuiError
from gradtui.preset import bundled_descriptions, bundled_presets
from gradtui.text import plain
from gradtui.tui.confine import confine, served_root


def _bundled() -> list[Option]:
    options = []
    for name, desc in bundled_descriptions():
        prompt = Text(f"{name:<20}", "bold")
        prompt.append(desc, "dim")
        options.append(Option(prompt, id=name))
    return options


class LoadDialog(ModalScreen[str | None]):
    """Bundled presets to pick from, and a path input for any ``.toml`` file.

    Args:
        open_preset: loads a name or path into the builder; returns an error or ``None``.
    """

    DEFAULT_CSS = """
    LoadDialog { align: center middle; }
    LoadDialog > Vertical {
        width: 120; max-width: 100%; height: 36; max-height: 100%;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    LoadDialog OptionList { height: 1fr; }
    LoadDialog #load-error { color: $error; height: auto; }
    LoadDialog Horizontal { height: auto; align-horizontal: right; }
    LoadDialog Button { margin-left: 1; }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, open_preset: Callable[[str], str | None]) -> None:
        super().__init__()
        self.open_preset = open_preset

    def compose(self) -> ComposeResult:
        """Bundled list, path input, error line, buttons."""
        with Vertical():
            yield Label("Load a bundled preset (enter) or a preset file:")
            yield OptionList(*_bundled(), id="load-list")
            yield Input(placeholder="path/to/preset.toml, then enter", id="load-path")
            yield Static("", id="load-error")
            with Horizontal():
                yield Button("Load", variant="primary", id="load-ok")
                yield Button("Cancel", id="load-cancel")

    def _show_error(self, error: str) -> None:
        # a typed path is data: shown literally, never read as markup (``[/]`` would crash)
        self.query_one("#load-error", Static).update(Text(plain(error)))

    def _open(self, name: str) -> None:
        root = served_root()
        if root is not None and not (os.sep not in name and name in bundled_presets()):
            try:  # a served tab reads files only inside the server's folder
                name = str(confine(name, root))
            except GradtuiError as exc:
                self._show_error(exc.one_line())
                return
        error = self.open_preset(name)
        if error:
            self._show_error(error)
            return
        self.dismiss(name)

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self._open(event.option.id)

    @on(Input.Submitted)
    def _typed(self) -> None:
        path = self.query_one("#load-path", Input).value.strip()
        if path:
            self._open(path)

    @on(Button.Pressed, "#load-ok")
    def _ok(self) -> None:
        path = self.query_one("#load-path", Input).value.strip()
        if path:
            self._open(path)
            return
        option_list = self.query_one(OptionList)
        if option_list.highlighted is not None:
            option = option_list.get_option_at_index(option_list.highlighted)
            if option.id:
                self._open(option.id)

    @on(Button.Pressed, "#load-cancel")
    def action_cancel(self) -> None:
        """Close without loading."""
        self.dismiss(None)
