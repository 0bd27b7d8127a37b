"""Ask where to save the stack as a preset TOML; a failed save keeps the dialog open."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from gradtui.errors import GradtuiError
from gradtui.text import plain
from gradtui.tui.confine import confine, served_root


class SaveDialog(ModalScreen[str | None]):
    """A path input; ``save(path)`` returns an error message, or ``None`` when it saved.

    Args:
        path: the path proposed.
        save: writes the preset; its error (e.g. an unwritable folder) is shown in the dialog.
    """

    DEFAULT_CSS = """
    SaveDialog { align: center middle; }
    SaveDialog > Vertical {
        width: 90; max-width: 100%; height: auto; max-height: 100%;
        border: thick $primary; background: $surface; padding: 1 2;
    }
    SaveDialog #save-error { color: $error; height: auto; }
    SaveDialog Horizontal { height: auto; align-horizontal: right; }
    SaveDialog Button { margin-left: 1; }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, path: str, save: Callable[[str], str | None]) -> None:
        super().__init__()
        self.path = path
        self.save = save

    def compose(self) -> ComposeResult:
        """Label, path, error line, buttons."""
        with Vertical():
            yield Label("Save the stack as a preset (TOML that `gradtui run` accepts):")
            yield Input(self.path, id="save-path")
            yield Static("", id="save-error")
            with Horizontal():
                yield Button("Save", variant="primary", id="save-ok")
                yield Button("Cancel", id="save-cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#save-ok")
    def _save(self) -> None:
        path = self.query_one("#save-path", Input).value.strip()
        if not path:
            self.query_one("#save-error", Static).update("give a file name, e.g. my-stack.toml")
            return
        root = served_root()
        if root is not None:  # a served tab writes only inside the server's folder
            target = Path(path).expanduser()
            if target.suffix != ".toml" and target.name:  # the file save() writes
                target = target.with_suffix(".toml")
            try:
                path = str(confine(str(target), root))
            except GradtuiError as exc:
                self._show_error(exc.one_line())
                return
        error = self.save(path)
        if error:
            self._show_error(error)
            return
        self.dismiss(path)

    def _show_error(self, error: str) -> None:
        # a typed path is data: shown literally, never read as markup (``[/]`` would crash)
        self.query_one("#save-error", Static).update(Text(plain(error)))

    @on(Button.Pressed, "#save-cancel")
    def action_cancel(self) -> None:
        """Close without saving."""
        self.dismiss(None)
