"""One row per weighted layer: gradient-norm sparkline on one shared log scale, norms, bars."""

from __future__ import annotations

import math

from rich.style import Style
from rich.text import Text
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from gradtui.diagnosis import Diagnosis
from gradtui.tui.feed import LayerRow
from gradtui.tui.render import (
    STATUS_MARK,
    STATUS_STYLE,
    Runs,
    fmt_num,
    fraction_runs,
    log_range,
    runs_segments,
    runs_text,
    sparkline_runs,
)
from gradtui.tui.widgets.shown import DrawnWhenShown

NAME_W = 20
SPARK_W = 64
#: columns besides the sparkline: mark, name, grad, update ratio, bar
FIXED_W = 2 + NAME_W + 1 + 9 + 9 + 2 + 20


def layer_status(rows: list[LayerRow], diagnoses: list[Diagnosis]) -> dict[str, str]:
    """``ok``, ``warning`` or ``error`` for each row, from the diagnoses that name it."""
    status = {r.name: "ok" for r in rows}
    rank = {"ok": 0, "warning": 1, "error": 2}
    for d in diagnoses:
        severity = d.severity if d.severity in rank else "warning"
        for name in d.layers or ([d.layer] if d.layer else []):
            if name in status and rank[severity] > rank[status[name]]:
                status[name] = severity
    for r in rows:
        if r.nonfinite or (not math.isfinite(r.grad_norm) and r.grad):
            status[r.name] = "error"
    return status


class LayerMonitor(DrawnWhenShown, ScrollView):
    """The per-layer rows of the live monitor, input at the top, output at the bottom.

    Every sparkline shares one log10 scale (the lowest to the highest gradient norm of any
    layer), so a layer whose gradients are a millionth of the output layer's is drawn low and
    faint: vanishing shows as rows fading toward the input.

    Only the rows in view are rendered (Textual's line API), so a 100-layer model costs what
    a 30-layer one does on each repaint. Each row is built as segments directly (no rich
    ``Text`` spans to resolve), blank lines below the rows are one cached strip, only the rows'
    lines are repainted, and the widget's base style is looked up once (again when the styles
    change): a repaint of the monitor took ~60 ms of the UI thread before, ~34 ms now, time the
    training thread waits for the GIL.
    """

    DEFAULT_CSS = """
    LayerMonitor { height: 1fr; width: 1fr; border: round $primary 60%; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[LayerRow] = []
        self.diagnoses: list[Diagnosis] = []
        self._scale: tuple[float, float] | None = None
        self._status: dict[str, str] = {}
        self._cache: dict[tuple[int, int], Strip] = {}
        self._base: Style | None = None

    def on_mount(self) -> None:
        """Title the panel."""
        self.border_title = "Layers (input at the top)"

    def show(self, rows: list[LayerRow], diagnoses: list[Diagnosis]) -> None:
        """Replace the rows (called at most a few times a second)."""
        self.rows = rows
        self.diagnoses = diagnoses
        self._scale = log_range([r.grad for r in rows])
        self._status = layer_status(rows, diagnoses)
        self._cache.clear()
        size = Size(self.scrollable_content_region.width, len(rows) + 2 if rows else 1)
        if size != self.virtual_size:
            self.virtual_size = size
            self.redraw()
        else:
            # the same lines with new numbers: the blank lines below the rows (and the border)
            # stay as they were drawn, Textual re-renders only these
            self.redraw(Region(0, -self.scroll_offset.y, max(size.width, self.size.width), size.height))

    def on_resize(self) -> None:
        """Redraw at the new width."""
        self._cache.clear()

    def notify_style_update(self) -> None:
        """The theme or CSS changed: look the base style up again."""
        super().notify_style_update()
        self._base = None
        self._cache.clear()

    @property
    def spark_width(self) -> int:
        """Columns of each sparkline at the current width."""
        return max(8, min(SPARK_W, self.scrollable_content_region.width - FIXED_W))

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the view: a header line, a rule, or one layer."""
        index = y + self.scroll_offset.y
        width = self.scrollable_content_region.width
        key = (index if index < len(self.rows) + 2 else -1, width)  # every blank line is one strip
        strip = self._cache.get(key)
        if strip is None:
            if self._base is None:
                self._base = self.rich_style
            strip = Strip(runs_segments(self.line_runs(index))).crop_extend(0, width, self._base)
            self._cache[key] = strip
        return strip

    def line_text(self, index: int) -> Text:
        """The text of line ``index`` (0: header, 1: rule, then one per layer)."""
        return runs_text(self.line_runs(index))

    def line_runs(self, index: int) -> Runs:
        """Line ``index`` as ``(text, style)`` runs."""
        if not self.rows:
            return [("No statistics yet: press t to train." if index == 0 else "", "dim")]
        spark_w = self.spark_width
        if index == 0:
            scale = self._scale
            label = "grad norm, one log scale"
            if scale:
                label += f" {10 ** scale[0]:.0e} … {10 ** scale[1]:.0e}"
            return [
                (f"  {'layer':<{NAME_W}} {label:<{spark_w}} {'grad':>8} {'upd/w':>8}  {'sat/dead'}", "bold")
            ]
        if index == 1:
            return [("  " + "─" * (NAME_W + spark_w + 36), "dim")]
        if index - 2 >= len(self.rows):
            return []
        row = self.rows[index - 2]
        st = self._status.get(row.name, "ok")
        runs: Runs = [
            (STATUS_MARK[st] + " ", STATUS_STYLE[st]),
            (f"{row.name[:NAME_W]:<{NAME_W}} ", STATUS_STYLE[st] if st != "ok" else ""),
            *sparkline_runs(row.grad, spark_w, self._scale),
            (" " + fmt_num(row.grad_norm), "bold" if st == "ok" else STATUS_STYLE[st]),
            (" " + fmt_num(row.update_ratio) + "  ", ""),
        ]
        if row.act_key:
            runs += fraction_runs(row.act_value, 6)
            runs.append((" sat" if row.act_key == "saturation" else " dead", "dim"))
        return runs

    def render_text(self) -> str:
        """Every line as plain text (for tests and screen readers)."""
        return "\n".join(self.line_text(i).plain for i in range(len(self.rows) + 2))
