"""Every diagnosis with its layer, step and advice, newest first; ``f`` applies the remedy."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from gradtui.diagnosis import Diagnosis
from gradtui.text import plain
from gradtui.tui.messages import ApplyFix
from gradtui.tui.render import STATUS_MARK, STATUS_STYLE


def _value(value: Any) -> str:
    """A fix's value as a preset file writes it: ``true``, ``0.0001``, ``he_normal``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict) and "name" in value:
        return str(value["name"])
    return str(value)


def describe_fix(fix: dict[str, Any] | None) -> str:
    """A fix in words: ``layers[0]: activation=relu, initializer=he_normal; clipnorm=1``,
    ``layers[1,3]: qk_norm=true``, ``z_loss=0.0001``."""
    if not isinstance(fix, dict) or not fix:
        return "nothing to change"
    # read from a run folder, whatever its shape: a damaged fix is described, never a crash
    layer_set, entries, train = fix.get("set"), fix.get("entries"), fix.get("train")
    parts = []
    if isinstance(entries, list) and entries and isinstance(layer_set, dict) and layer_set:
        changes = ", ".join(f"{k}={_value(v)}" for k, v in layer_set.items())
        parts.append(f"layers[{','.join(str(i) for i in entries)}]: {changes}")
    if isinstance(train, dict) and train:
        parts.append(", ".join(f"{k}={_value(v)}" for k, v in train.items()))
    return "; ".join(parts) or "nothing to change"


def describe(d: Diagnosis) -> Text:
    """A diagnosis as the panel shows it: kind, layer, step; message; advice; the fix hint."""
    sev = d.severity if d.severity in STATUS_STYLE else "warning"
    text = Text()
    # names and messages come from run folders: plain text, never markup or terminal escapes
    text.append(f"{STATUS_MARK[sev]} {plain(d.kind)}", STATUS_STYLE[sev])
    text.append(f"  {plain(d.layer or 'model')}  step {plain(d.step)}", "bold")
    if d.cleared_step is not None:
        # a transient problem that went away stays listed, marked so nobody chases it
        text.append(f"  cleared @ step {d.cleared_step}", "green")
    text.append("\n")
    text.append(plain(d.message, one_line=False) + "\n")
    text.append("→ " + plain(d.advice, one_line=False), "italic")
    if d.fix:
        # what f sets, in the preset's words (its values come from a run folder: plain text)
        text.append("\n  [f] " + plain(describe_fix(d.fix), one_line=False), "dim")
    return text


class WarningsPanel(OptionList):
    """The diagnoses of the run on screen, newest first; the highlighted one is the fix target."""

    DEFAULT_CSS = """
    WarningsPanel { height: 1fr; border: round $warning 60%; }
    """

    BINDINGS = [Binding("enter", "apply_fix", "Apply fix", show=False)]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.diagnoses: list[Diagnosis] = []
        self.extra: list[Text] = []

    def on_mount(self) -> None:
        """Title the panel."""
        self.border_title = "Warnings (newest first)"
        self._rebuild()

    def show(self, diagnoses: list[Diagnosis], extra: list[Text] | None = None) -> None:
        """Show ``diagnoses`` (oldest first, as recorded) and any extra lines (errors) on top."""
        extra = list(extra or [])
        if [d.to_dict() for d in diagnoses] == [d.to_dict() for d in self.diagnoses] and [
            str(x) for x in extra
        ] == [str(x) for x in self.extra]:
            return
        self.diagnoses = list(diagnoses)
        self.extra = extra
        self._rebuild()

    def _rebuild(self) -> None:
        self.clear_options()
        options: list[Option | None] = []
        for i, line in enumerate(self.extra):
            options.append(Option(line, id=f"extra-{i}"))
        # newest first: by the step each was raised at (a summary lists them by kind, a drain
        # by rule), the later raised first among those of one step
        for i, d in sorted(enumerate(self.diagnoses), key=lambda x: (x[1].step, x[0]), reverse=True):
            options.append(Option(describe(d), id=f"diag-{i}"))
        if not options:
            options.append(Option(Text("No problems found (yet).", "dim"), id="none", disabled=True))
        self.add_options([o for o in options if o is not None])
        self.border_subtitle = f"{len(self.diagnoses)} diagnoses" if self.diagnoses else ""
        first = next((i for i, o in enumerate(options) if o and o.id and o.id.startswith("diag-")), None)
        if first is not None:
            self.highlighted = first

    @property
    def selected(self) -> Diagnosis | None:
        """The highlighted diagnosis, or the newest one when none is highlighted."""
        if self.highlighted is not None:
            option = self.get_option_at_index(self.highlighted)
            if option.id and option.id.startswith("diag-"):
                return self.diagnoses[int(option.id.removeprefix("diag-"))]
        return max(reversed(self.diagnoses), key=lambda d: d.step) if self.diagnoses else None

    def action_apply_fix(self) -> None:
        """Ask the app to apply the highlighted diagnosis's remedy."""
        if self.selected is not None:
            self.post_message(ApplyFix(self.selected))
