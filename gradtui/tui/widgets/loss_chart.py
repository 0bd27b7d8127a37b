"""Loss and accuracy, train and validation, as braille line charts."""

from __future__ import annotations

import math

from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget

from gradtui.tui.feed import Snapshot
from gradtui.tui.render import braille_chart

TRAIN, VAL = "#5fafff", "#ffaf5f"


def _epoch_points(snapshot: Snapshot, key: str) -> list[tuple[float, float]]:
    out = []
    for i, logs in enumerate(snapshot.epoch_logs):
        value = logs.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            x = logs.get("_step", (i + 1) * max(1, snapshot.steps_per_epoch))
            out.append((float(x), float(value)))
    return out


class LossChart(Widget):
    """Training loss per recorded step and validation loss per epoch (log scale), then
    training and validation accuracy per epoch."""

    DEFAULT_CSS = """
    LossChart { height: 16; border: round $secondary; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.snapshot: Snapshot | None = None

    def on_mount(self) -> None:
        """Title the panel."""
        self.border_title = "Loss & accuracy"

    def show(self, snapshot: Snapshot) -> None:
        """Draw this run's curves."""
        self.snapshot = snapshot
        self.refresh()

    def render(self) -> RenderableType:
        """Two stacked charts with a legend line each."""
        s = self.snapshot
        width = max(10, self.size.width - 8)
        if s is None or not s.loss:
            return Text("no run yet", "dim")
        rows = max(2, (self.size.height - 2) // 2)
        train = [
            (float(x), math.log10(v))
            for x, v in zip(s.loss_steps or range(len(s.loss)), s.loss, strict=False)
            if math.isfinite(v) and v > 0
        ]
        val = [(x, math.log10(v)) for x, v in _epoch_points(s, "val_loss") if v > 0]
        x_max = float(max(s.total_steps, *(p[0] for p in train + val), 1))
        out = Text()
        final = s.final()
        out.append("loss ", "bold")
        out.append("━ train ", TRAIN)
        out.append("━ val", VAL)
        if "val_loss" in final:
            out.append(f"  val {final['val_loss']:.4g}", VAL)
        out.append(f"  train {s.loss[-1]:.4g}\n", TRAIN)
        ys = [p[1] for p in train + val]
        lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        chart = braille_chart([(train, TRAIN), (val, VAL)], width, rows, x_range=(0, x_max))
        for i, line in enumerate(chart):
            label = f"{10**hi:7.3g} " if i == 0 else (f"{10**lo:7.3g} " if i == rows - 1 else " " * 8)
            out.append(label, "dim")
            out.append_text(line)
            out.append("\n")
        acc = _epoch_points(s, "accuracy")
        val_acc = _epoch_points(s, "val_accuracy")
        out.append("accuracy ", "bold")
        out.append("━ train ", TRAIN)
        out.append("━ val", VAL)
        if "accuracy" in final:
            out.append(f"  train {final['accuracy']:.3f}", TRAIN)
        if "val_accuracy" in final:
            out.append(f"  val {final['val_accuracy']:.3f}", VAL)
        out.append("\n")
        acc_rows = max(1, self.size.height - rows - 2)
        chart = braille_chart(
            [(acc, TRAIN), (val_acc, VAL)],
            width,
            acc_rows,
            y_range=(0.0, 1.0),
            x_range=(0, x_max),
        )
        for i, line in enumerate(chart):
            label = "   1.00 " if i == 0 else ("   0.00 " if i == acc_rows - 1 else " " * 8)
            out.append(label, "dim")
            out.append_text(line)
            if i < acc_rows - 1:
                out.append("\n")
        return out
