"""Loss and accuracy, train and validation, as braille line charts."""

from __future__ import annotations

import math

from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from gradtui.tui.feed import Snapshot
from gradtui.tui.render import Runs, braille_runs, runs_segments
from gradtui.tui.widgets.shown import DrawnWhenShown

TRAIN, VAL = "#5fafff", "#ffaf5f"


def _epoch_points(snapshot: Snapshot, key: str) -> list[tuple[float, float]]:
    out = []
    for i, logs in enumerate(snapshot.epoch_logs):
        value = logs.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            x = logs.get("_step", (i + 1) * max(1, snapshot.steps_per_epoch))
            out.append((float(x), float(value)))
    return out


class LossChart(DrawnWhenShown, Widget):
    """Training loss per recorded step and validation loss per epoch (log scale), then
    training and validation accuracy per epoch.

    Drawn with Textual's line API from ``(text, style)`` runs: as a rich ``Text`` the chart
    went through Textual's content conversion on every repaint (about twice the chart's own
    cost, on the UI thread that the training thread shares the GIL with).
    """

    DEFAULT_CSS = """
    LossChart { height: 16; border: round $secondary; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.snapshot: Snapshot | None = None
        self._lines: list[Runs] | None = None
        self._strips: dict[int, Strip] = {}
        self._base: Style | None = None

    def on_mount(self) -> None:
        """Title the panel."""
        self.border_title = "Loss & accuracy"

    def show(self, snapshot: Snapshot) -> None:
        """Draw this run's curves."""
        self.snapshot = snapshot
        self._forget()
        self.redraw()

    def _forget(self) -> None:
        self._lines = None
        self._strips.clear()

    def on_resize(self) -> None:
        """Draw again at the new size."""
        self._forget()

    def notify_style_update(self) -> None:
        """The theme or CSS changed: look the base style up again."""
        super().notify_style_update()
        self._base = None
        self._forget()

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the charts."""
        strip = self._strips.get(y)
        if strip is None:
            if self._lines is None:
                self._lines = self.chart_runs(self.size.width, self.size.height)
            if self._base is None:
                self._base = self.visual_style.rich_style
            runs = self._lines[y] if y < len(self._lines) else []
            strip = (
                Strip(runs_segments(runs)).apply_style(self._base).crop_extend(0, self.size.width, self._base)
            )
            self._strips[y] = strip
        return strip

    def chart_runs(self, size_w: int, size_h: int) -> list[Runs]:
        """The lines of both charts at a content size of ``size_w`` x ``size_h``."""
        s = self.snapshot
        width = max(10, size_w - 8)
        if s is None or not s.loss:
            return [[("no run yet", "dim")]]
        rows = max(2, (size_h - 2) // 2)
        train = [
            (float(x), math.log10(v))
            for x, v in zip(s.loss_steps or range(len(s.loss)), s.loss, strict=False)
            if math.isfinite(v) and v > 0
        ]
        val = [(x, math.log10(v)) for x, v in _epoch_points(s, "val_loss") if v > 0]
        x_max = float(max(s.total_steps, *(p[0] for p in train + val), 1))
        final = s.final()
        head: Runs = [("loss ", "bold"), ("━ train ", TRAIN), ("━ val", VAL)]
        if "val_loss" in final:
            head.append((f"  val {final['val_loss']:.4g}", VAL))
        head.append((f"  train {s.loss[-1]:.4g}", TRAIN))
        lines = [head]
        ys = [p[1] for p in train + val]
        lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        chart = braille_runs([(train, TRAIN), (val, VAL)], width, rows, x_range=(0, x_max))
        for i, line in enumerate(chart):
            label = f"{10**hi:7.3g} " if i == 0 else (f"{10**lo:7.3g} " if i == rows - 1 else " " * 8)
            lines.append([(label, "dim"), *line])
        acc = _epoch_points(s, "accuracy")
        val_acc = _epoch_points(s, "val_accuracy")
        head = [("accuracy ", "bold"), ("━ train ", TRAIN), ("━ val", VAL)]
        if "accuracy" in final:
            head.append((f"  train {final['accuracy']:.3f}", TRAIN))
        if "val_accuracy" in final:
            head.append((f"  val {final['val_accuracy']:.3f}", VAL))
        lines.append(head)
        acc_rows = max(1, size_h - rows - 2)
        chart = braille_runs(
            [(acc, TRAIN), (val_acc, VAL)],
            width,
            acc_rows,
            y_range=(0.0, 1.0),
            x_range=(0, x_max),
        )
        for i, line in enumerate(chart):
            label = "   1.00 " if i == 0 else ("   0.00 " if i == acc_rows - 1 else " " * 8)
            lines.append([(label, "dim"), *line])
        return lines
