"""Each recurrent layer's gradient through time: how much of the gradient reaches each step of
its input sequence, from the first time step to the last, on one log scale.

A SimpleRNN that vanishes through time draws a curve that rises toward the end of the sequence
(the early steps get almost nothing, so they stop shaping the weights); an LSTM's stays flatter.
The curve is measured every :data:`~gradtui.history.TIME_EVERY` recorded steps, so it is the
newest measurement, with the step it was taken at.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from gradtui.diagnosis import Diagnosis
from gradtui.history import TIME_EVERY, TimeCurve
from gradtui.text import plain
from gradtui.tui.feed import LayerRow, Snapshot
from gradtui.tui.render import STATUS_STYLE, Runs, fmt_num, log_range, runs_text, sparkline_runs
from gradtui.tui.widgets.layer_monitor import layer_status

#: the widest a curve is drawn (a short sequence's spans are widened up to this)
CURVE_W = 64
#: shown until the first curve is measured
WAITING = f"measured every {TIME_EVERY} recorded steps: none yet"


def fit_spans(values: Sequence[float], width: int) -> list[float]:
    """``values`` across ``width`` columns (at most :data:`CURVE_W`): each span widened to fill
    them, or neighbouring spans merged by their RMS (what a span's value is: the RMS of its time
    steps' gradient norms) when there are more spans than columns."""
    n = len(values)
    width = min(width, CURVE_W)
    if not n or width <= 0:
        return []
    if n <= width:
        return [values[c * n // width] for c in range(width)]
    out = []
    for c in range(width):
        group = [v for v in values[c * n // width : (c + 1) * n // width] if not math.isnan(v)]
        out.append(math.sqrt(sum(v * v for v in group) / len(group)) if group else math.nan)
    return out


#: the widest a layer's name is drawn (a longer one keeps its last part: ``forward_lstm``)
NAME_W = 16


def short_name(name: str, width: int) -> str:
    """``name`` in ``width`` characters: whole, else its last ``/`` part (a Bidirectional
    layer's ``forward_lstm``, ``backward_lstm``), cut if still too long."""
    if len(name) <= width:
        return name
    return name.rsplit("/", 1)[-1][:width]


def _length(runs: Runs) -> int:
    return sum(len(text) for text, _ in runs)


def curve_lines(
    curve: TimeCurve,
    width: int,
    scale: tuple[float, float] | None,
    status: str = "ok",
    *,
    name_w: int | None = None,
    step: bool = False,
) -> list[Runs]:
    """One curve as two lines ``width`` wide: the layer's name and its sparkline over the spans
    of the sequence, from ``t = 0`` to the end; under it, what reaches the first and the last
    span and their ratio (``first/last``, ``×`` where narrow). ``step`` adds the step it was
    measured at."""
    if name_w is None:
        name_w = min(NAME_W, len(plain(curve.layer)), max(4, width // 3))
    name = short_name(plain(curve.layer), name_w)  # a run folder's layer name: text, no escapes
    values = fit_spans(list(curve.grad_norm), max(1, width - name_w - 1))
    head: Runs = [
        (f"{name:<{name_w}} ", "bold" if status == "ok" else STATUS_STYLE[status]),
        *sparkline_runs(values, len(values), scale),
    ]
    t_last = curve.t[-1] if curve.t else 0
    ratio = fmt_num(curve.ratio, 0)
    ends: Runs = [
        ("t=0 ", "dim"),
        (fmt_num(curve.first, 0), ""),
        (" → ", "dim"),
        (f"t={t_last} ", "dim"),
        (fmt_num(curve.last, 0), ""),
    ]
    tail = [(f" step {curve.step}", "dim")] if step else []
    # under the sparkline with the ratio's label spelled out, else shortened, else further left
    choices = [(name_w + 1, "  first/last "), (name_w + 1, "  ×"), (2, "  first/last "), (2, "  ×")]
    for indent, label in choices:  # noqa: B007 - the last choice stands when none fits
        line = [*ends, (label, "dim"), (ratio, "bold"), *tail]
        if _length(line) <= width - indent:
            break
    else:
        indent = 0
    return [head, [(" " * indent, ""), *line]]


class TimeCurves(VerticalScroll):
    """The monitor's panel of recurrent layers' gradients through time, one curve per layer.

    Shown only for a model with recurrent layers; until the first curve is measured it says how
    often one will be. The curves change every :data:`TIME_EVERY` recorded steps, so the panel
    is drawn again only when a curve, a layer's status or the width changed, and only while it is
    on screen (a hidden tab's repaint would lay the whole screen out again).
    """

    DEFAULT_CSS = """
    TimeCurves {
        height: auto; max-height: 50%; width: 1fr; display: none;
        border: round $primary 60%; padding: 0 1;
    }
    TimeCurves > Static { width: 1fr; height: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.curves: list[TimeCurve] = []
        self.recurrent = False
        self.status: dict[str, str] = {}
        self._drawn: tuple | None = None
        #: the text on screen (for tests and screen readers)
        self.drawn = ""
        self._on_screen = False

    def compose(self) -> ComposeResult:
        """The lines, as one block of text."""
        yield Static(id="time-lines")

    def on_mount(self) -> None:
        """Title the panel."""
        self.border_title = "Gradient through time (t=0 → end)"

    def show(self, curves: list[TimeCurve], diagnoses: list[Diagnosis], recurrent: bool) -> None:
        """Keep the newest curves; draw them if they changed and the panel is on screen."""
        self.curves = curves
        self.recurrent = recurrent or bool(curves)
        self.status = {c.layer: s for c, s in zip(curves, self._statuses(curves, diagnoses), strict=True)}
        if self.display != self.recurrent:
            self.display = self.recurrent
        if self._on_screen:
            self._draw()

    @staticmethod
    def _statuses(curves: list[TimeCurve], diagnoses: list[Diagnosis]) -> list[str]:
        status = layer_status([LayerRow(name=c.layer) for c in curves], diagnoses)
        return [status.get(c.layer, "ok") for c in curves]

    def show_snapshot(self, snapshot: Snapshot) -> None:
        """Draw a snapshot's curves."""
        self.show(snapshot.time_curves, snapshot.diagnoses, snapshot.recurrent)

    def on_show(self) -> None:
        """Shown: draw what arrived while hidden."""
        self._on_screen = True
        self._draw()

    def on_hide(self) -> None:
        """Hidden (another tab was chosen)."""
        self._on_screen = False

    def on_resize(self) -> None:
        """Draw again at the new width."""
        self._draw()

    def _draw(self) -> None:
        width = self.scrollable_content_region.width
        key = (width, tuple(self.curves), tuple(self.status.items()))  # curves are frozen: compared by value
        if width <= 0 or key == self._drawn:
            return
        self._drawn = key
        newest = max((c.step for c in self.curves), default=None)
        self.border_subtitle = "" if newest is None else f"step {newest}, every {TIME_EVERY} records"
        text = self.render_curves(width)
        self.drawn = text.plain
        self.query_one("#time-lines", Static).update(text)

    def curve_runs(self, width: int) -> list[Runs]:
        """Every line of the panel ``width`` wide, as runs."""
        if not self.curves:
            return [[(WAITING, "dim")]]
        scale = log_range([list(c.grad_norm) for c in self.curves])
        newest = max(c.step for c in self.curves)
        # one name column for every curve, so that their sparklines line up
        name_w = max(4, min(NAME_W, max(len(plain(c.layer)) for c in self.curves), width // 3))
        lines: list[Runs] = []
        for c in self.curves:
            status = self.status.get(c.layer, "ok")
            lines += curve_lines(c, width, scale, status, name_w=name_w, step=c.step != newest)
        return lines

    def render_curves(self, width: int) -> Text:
        """The panel's text ``width`` wide."""
        return Text("\n").join(runs_text(line) for line in self.curve_runs(width))

    def render_text(self, width: int | None = None) -> str:
        """Every line as plain text (for tests and screen readers)."""
        return self.render_curves(width or self.scrollable_content_region.width or 40).plain
