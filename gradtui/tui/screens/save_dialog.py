"""Ask where to save the stack as a preset TOML; a failed save keeps the dialog open."""

from __future__ import annotations

from collections.abc import Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class SaveDialog(ModalScreen[str | None]):
    """A path input; ``save(path)`` returns an error message, or ``None`` when it saved.

    Args:
        path: the path proposed.
        save: writes the preset; its error (e.g. an unwritable folder) is shown in the dialog.
    """

    DEFAULT_CSS = """
    SaveDialog { align: center middle; }
    SaveDialog > Vertical {
        width: 90; height: auto; border: thick $primary; background: $surface; padding: 1 2;
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
        error = self.save(path)
        if error:
            self.query_one("#save-error", Static).update(error)
            return
        self.dismiss(path)

    @on(Button.Pressed, "#save-cancel")
    def action_cancel(self) -> None:
        """Close without saving."""
        self.dismiss(None)
