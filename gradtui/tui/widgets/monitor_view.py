"""The monitor tab: per-layer rows on the left; loss/accuracy chart and warnings on the right."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget

from gradtui.tui.feed import Snapshot
from gradtui.tui.widgets.layer_monitor import LayerMonitor
from gradtui.tui.widgets.loss_chart import LossChart
from gradtui.tui.widgets.time_curves import TimeCurves
from gradtui.tui.widgets.warnings_panel import WarningsPanel

#: below these widths the side column narrows (``-medium``), then drops the chart (``-narrow``)
MEDIUM, WIDE = 100, 140


class MonitorView(Widget):
    """Everything about the run on screen: its layers, its curves, its diagnoses.

    A model with recurrent layers also gets, below the layer rows, each recurrent layer's
    gradient through time (:class:`~gradtui.tui.widgets.time_curves.TimeCurves`).

    Laid out for 80x24 upward. What matters first always shows: every layer's sparkline, its
    latest gradient norm and status mark on the left, and the warnings with their advice on the
    right. Below 100 columns the loss chart gives its place to the warnings; the layer rows'
    update ratio and saturation/dead columns appear as the terminal grows (see
    :class:`~gradtui.tui.widgets.layer_monitor.Columns`).
    """

    DEFAULT_CSS = """
    MonitorView { layout: horizontal; height: 1fr; }
    MonitorView #monitor-main { width: 1fr; }
    MonitorView #monitor-side { width: 58; }
    MonitorView.-medium #monitor-side { width: 50; }
    MonitorView.-narrow #monitor-side { width: 36; }
    MonitorView.-narrow #loss-chart { display: none; }
    """

    def on_resize(self) -> None:
        """Pick the layout for the new width."""
        width = self.size.width
        self.set_class(width < MEDIUM, "-narrow")
        self.set_class(MEDIUM <= width < WIDE, "-medium")

    def compose(self) -> ComposeResult:
        """Layer rows above the recurrent layers' curves through time, then chart above warnings."""
        with Vertical(id="monitor-main"):
            yield LayerMonitor(id="layer-monitor")
            yield TimeCurves(id="time-curves")
        with Vertical(id="monitor-side"):
            yield LossChart(id="loss-chart")
            yield WarningsPanel(id="warnings")

    def show(self, snapshot: Snapshot, errors: list[Text] | None = None) -> None:
        """Draw one snapshot."""
        self.query_one(LayerMonitor).show(snapshot.rows, snapshot.diagnoses)
        self.query_one(TimeCurves).show_snapshot(snapshot)
        self.query_one(LossChart).show(snapshot)
        self.query_one(WarningsPanel).show(snapshot.diagnoses, errors)

    def show_errors(self, errors: list[Text], snapshot: Snapshot | None) -> None:
        """Show errors (a failed run) above the diagnoses."""
        self.query_one(WarningsPanel).show(snapshot.diagnoses if snapshot else [], errors)
