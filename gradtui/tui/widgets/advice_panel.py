"""Pre-flight advice under the layer table: initializer/activation mismatches, totals, errors."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from gradtui.preset import Preset
from gradtui.tui.stackinfo import StackInfo


class AdvicePanel(Static):
    """What :func:`gradtui.stack.preflight` says about the stack as it stands, updated per edit."""

    DEFAULT_CSS = """
    AdvicePanel {
        height: auto;
        max-height: 12;
        border: round $secondary;
        border-title-color: $text;
        padding: 0 1;
    }
    """

    def on_mount(self) -> None:
        """Title the panel."""
        self.border_title = "Pre-flight"

    def show(self, preset: Preset, info: StackInfo) -> None:
        """Summarise the plan: layers, parameters, input and classes, then each piece of advice."""
        text = Text()
        if info.error:
            text.append("✖ cannot build: ", "bold red")
            text.append(info.error + "\n", "red")
        else:
            weighted = [x for x in info.layers if x.is_weighted]
            kinds = sorted({x.type for x in weighted})
            what = f"{kinds[0]} layers" if len(kinds) == 1 else "weighted layers"
            target = "a number (regression)" if preset.data.regression else f"{info.classes} classes"
            text.append(
                f"{len(weighted)} {what}, {len(info.layers)} Keras layers · "
                f"{info.params.get('total', 0):,} parameters "
                f"({info.params.get('trainable', 0):,} trainable) · "
                f"input {info.input_shape} → {target}\n",
                "dim",
            )
            if not info.advice:
                text.append("✓ every initializer fits its activation\n", "green")
            for advice in info.advice:
                text.append("▲ ", "bold yellow")
                text.append(advice.message + "\n")
        text.rstrip()
        self.update(text)
