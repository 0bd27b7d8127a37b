"""One row per weighted layer: gradient-norm sparkline on one shared log scale, norms, bars.

A MultiHeadAttention's query row that carries attention statistics (``attn_logit_max``,
``attn_entropy``) gets two lines of its own right below it, ``└ qk max`` and ``└ entropy``, each
a sparkline and its newest value, with a legend under the rows that says what they are and
their scales. Rows without them (and steps where they were not measured) show nothing extra.
"""

from __future__ import annotations

import math

from rich.style import Style
from rich.text import Text
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from gradtui.diagnosis import Diagnosis
from gradtui.text import plain
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

#: the widest a layer name is drawn (longer ones are cut), and the narrowest
NAME_W = 20
NAME_MIN = 5
SPARK_W = 64
#: the narrowest sparkline worth drawing; below it the optional columns go first
SPARK_MIN = 16
MARK_W = 2
GRAD_W = 9  # " " + 8
UPD_W = 9  # " " + 8
BAR_W = 2 + 6 + 5 + 5  # "  " + bar + " 100%" + " dead"
#: the attention lines under a query row: their label in the name column
QK_LABEL = "└ qk max"
ENTROPY_LABEL = "└ entropy"


def fit_name(name: str, width: int) -> str:
    """``name`` in ``width`` columns: cut at the end, or for a sublayer's path
    (``block/multi_head_attention/query``) at the start, so its own part shows (``…ion/query``)."""
    if len(name) <= width:
        return name
    if "/" in name and width > 1:
        return "…" + name[-(width - 1) :]
    return name[:width]


def attention_legend(
    qk_scale: tuple[float, float] | None, entropy_high: float | None, width: int
) -> list[str]:
    """The lines under the rows that say what the attention lines are, as long as ``width`` allows.

    ``qk_scale`` is the qk max lines' shared log10 range, ``entropy_high`` the top of the
    entropy lines' linear scale (from 0); ``None`` leaves that line out.
    """
    lines = []
    if qk_scale is not None:
        lo, hi = f"{10 ** qk_scale[0]:.0e}", f"{10 ** qk_scale[1]:.0e}"
        choices = [
            f"{QK_LABEL}: largest attention logit |q·k|/√d, one log scale {lo} … {hi}",
            f"{QK_LABEL}: largest |q·k|/√d, log {lo}…{hi}",
            f"{QK_LABEL}: max |q·k|/√d, {lo}…{hi}",
            f"{QK_LABEL}: max |q·k|/√d",
            QK_LABEL,
        ]
        lines.append(next((c for c in choices if len(c) <= width), ""))
    if entropy_high is not None:
        hi = f"{entropy_high:.2g}"
        choices = [
            f"{ENTROPY_LABEL}: attention entropy in nats (lowest head), scale 0 … {hi}",
            f"{ENTROPY_LABEL}: nats, lowest head, 0…{hi}",
            f"{ENTROPY_LABEL}: nats, 0…{hi}",
            f"{ENTROPY_LABEL}: nats",
            ENTROPY_LABEL,
        ]
        lines.append(next((c for c in choices if len(c) <= width), ""))
    return lines


class Columns:
    """Which columns a row has at a given width, and how wide each is.

    What matters first always shows: the status mark, the layer's name, its sparkline and its
    latest gradient norm. The update ratio and the saturation/dead bar join as the panel grows,
    each only once the sparkline keeps at least :data:`SPARK_MIN` columns.
    """

    def __init__(self, width: int, names: list[str]) -> None:
        longest = max((len(n) for n in names), default=NAME_MIN)
        self.name_w = max(NAME_MIN, min(NAME_W, longest, width // 4))
        rest = width - MARK_W - (self.name_w + 1) - GRAD_W
        self.upd = rest - UPD_W >= SPARK_MIN
        if self.upd:
            rest -= UPD_W
        self.bar = rest - BAR_W >= SPARK_MIN
        if self.bar:
            rest -= BAR_W
        self.spark_w = max(4, min(SPARK_W, rest))


def scale_label(scale: tuple[float, float] | None, width: int) -> str:
    """The sparkline column's header: the shared log scale, as long as ``width`` allows.

    ``grad norm, one log scale 3e-08 … 1e+00``, shortened to ``log 3e-08…1e+00``, then
    ``3e-08…1e+00``, then ``grad norm``: a cut ``1e+0`` would read as another number.
    """
    if scale is None:
        choices = ["grad norm, one log scale", "grad norm (log)", "grad norm", "grad"]
    else:
        lo, hi = f"{10 ** scale[0]:.0e}", f"{10 ** scale[1]:.0e}"
        choices = [
            f"grad norm, one log scale {lo} … {hi}",
            f"grad norm (log) {lo} … {hi}",
            f"log {lo}…{hi}",
            f"{lo}…{hi}",
            "grad norm",
            "grad",
        ]
    label = next((c for c in choices if len(c) <= width), "")
    return f"{label:<{width}}"


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
        self._cols: tuple[tuple[int, int, int], Columns] | None = None
        #: each line below the header and rule: ``(row index, part)``, part ``row``, ``qk`` or
        #: ``entropy`` (the attention lines under a query row)
        self._lines: list[tuple[int, str]] = []
        self._qk_scale: tuple[float, float] | None = None
        self._entropy_high: float | None = None
        self._legend_lines: tuple[tuple[int, object, object], list[str]] | None = None

    def on_mount(self) -> None:
        """Title the panel."""
        self.border_title = "Layers (input at the top)"

    def show(self, rows: list[LayerRow], diagnoses: list[Diagnosis]) -> None:
        """Replace the rows (called at most a few times a second)."""
        self.rows = rows
        self.diagnoses = diagnoses
        self._scale = log_range([r.grad for r in rows])
        self._status = layer_status(rows, diagnoses)
        self._lines = []
        for i, r in enumerate(rows):
            self._lines.append((i, "row"))
            if r.attn_logit_max:
                self._lines.append((i, "qk"))
            if r.attn_entropy:
                self._lines.append((i, "entropy"))
        # one scale per statistic across every attention layer, so the layers compare
        self._qk_scale = log_range([r.attn_logit_max for r in rows])
        entropies = [v for r in rows for v in r.attn_entropy if math.isfinite(v)]
        self._entropy_high = max(max(entropies), 1e-9) if entropies else None
        if any(r.attn_logit_max for r in rows) and self._qk_scale is None:
            self._qk_scale = (0.0, 0.0)  # measured, none positive: still say what the line is
        self._cache.clear()
        size = Size(self.scrollable_content_region.width, self._line_count if rows else 1)
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
    def _legend(self) -> list[str]:
        """The attention legend at the current width (asked for by every line drawn: kept)."""
        key = (self.scrollable_content_region.width, self._qk_scale, self._entropy_high)
        if self._legend_lines is None or self._legend_lines[0] != key:
            width = max(0, key[0] - MARK_W)
            self._legend_lines = (key, attention_legend(self._qk_scale, self._entropy_high, width))
        return self._legend_lines[1]

    @property
    def _line_count(self) -> int:
        """Header, rule, a line per row and attention line, the legend."""
        return 2 + len(self._lines) + len(self._legend)

    @property
    def columns(self) -> Columns:
        """The columns that fit the panel's current width (worked out once per width and rows:
        every line of every repaint asks)."""
        width = self.scrollable_content_region.width
        key = (width, len(self.rows), id(self.rows))
        if self._cols is None or self._cols[0] != key:
            names = [plain(r.name) for r in self.rows]
            if any(part != "row" for _, part in self._lines):
                names += [QK_LABEL, ENTROPY_LABEL]
            self._cols = (key, Columns(width, names))
        return self._cols[1]

    @property
    def spark_width(self) -> int:
        """Columns of each sparkline at the current width."""
        return self.columns.spark_w

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the view: a header line, a rule, or one layer."""
        index = y + self.scroll_offset.y
        width = self.scrollable_content_region.width
        key = (index if index < self._line_count else -1, width)  # every blank line is one strip
        strip = self._cache.get(key)
        if strip is None:
            if self._base is None:
                self._base = self.rich_style
            strip = Strip(runs_segments(self.line_runs(index))).crop_extend(0, width, self._base)
            self._cache[key] = strip
        return strip

    def line_text(self, index: int) -> Text:
        """The text of line ``index`` (0: header, 1: rule, then one per layer and attention line,
        then the legend)."""
        return runs_text(self.line_runs(index))

    def line_runs(self, index: int) -> Runs:
        """Line ``index`` as ``(text, style)`` runs."""
        if not self.rows:
            return [("No statistics yet: press t to train." if index == 0 else "", "dim")]
        cols = self.columns
        name_w, spark_w = cols.name_w, cols.spark_w
        if index == 0:
            # every numeric column has its header, right-aligned over its numbers; the sparkline's
            # header is the shared scale, shortened (never cut) to fit the sparkline's width
            head = f"{'layer':<{name_w}} {scale_label(self._scale, spark_w)} {'grad':>8}"
            if cols.upd:
                head += f" {'upd/w':>8}"
            if cols.bar:
                head += f"  {'sat/dead':<{BAR_W - 2}}"
            return [(" " * MARK_W + head, "bold")]
        if index == 1:
            width = name_w + 1 + spark_w + GRAD_W + (UPD_W if cols.upd else 0) + (BAR_W if cols.bar else 0)
            return [("  " + "─" * width, "dim")]
        if index - 2 >= len(self._lines):
            legend = self._legend
            at = index - 2 - len(self._lines)
            if at >= len(legend):
                return []
            # padded like a row, so the legend sits on the rows' background
            width = self.scrollable_content_region.width
            return [(f"{' ' * MARK_W}{legend[at]:<{width - MARK_W}}", "dim")]
        i, part = self._lines[index - 2]
        row = self.rows[i]
        st = self._status.get(row.name, "ok")
        if part != "row":
            return self._attention_runs(row, part, st)
        runs: Runs = [
            (STATUS_MARK[st] + " ", STATUS_STYLE[st]),
            (f"{fit_name(plain(row.name), name_w):<{name_w}} ", STATUS_STYLE[st] if st != "ok" else ""),
            *sparkline_runs(row.grad, spark_w, self._scale),
            (" " + fmt_num(row.grad_norm), "bold" if st == "ok" else STATUS_STYLE[st]),
        ]
        if cols.upd:
            runs.append((" " + fmt_num(row.update_ratio), ""))
        if cols.bar and row.act_key:
            runs.append(("  ", ""))
            runs += fraction_runs(row.act_value, 6)
            runs.append((" sat" if row.act_key == "saturation" else " dead", "dim"))
        return runs

    def _attention_runs(self, row: LayerRow, part: str, status: str) -> Runs:
        """An attention line under a query row: its label, sparkline and newest value."""
        cols = self.columns
        if part == "qk":
            label, values = QK_LABEL, row.attn_logit_max
            spark = sparkline_runs(values, cols.spark_w, self._qk_scale)
        else:
            label, values = ENTROPY_LABEL, row.attn_entropy
            high = self._entropy_high or 1.0
            spark = sparkline_runs(values, cols.spark_w, (0.0, high), log=False)
        runs: Runs = [
            (" " * MARK_W, ""),
            (f"{label[: cols.name_w]:<{cols.name_w}} ", "dim"),
            *spark,
            (" " + fmt_num(values[-1]), STATUS_STYLE[status] if status != "ok" else ""),
        ]
        # the columns it has no value for, blank on the rows' background
        used = sum(len(text) for text, _ in runs)
        runs.append((" " * max(0, self.scrollable_content_region.width - used), ""))
        return runs

    def render_text(self) -> str:
        """Every line as plain text (for tests and screen readers)."""
        return "\n".join(self.line_text(i).plain for i in range(self._line_count))
