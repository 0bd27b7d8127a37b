"""The monitor tab: per-layer rows on the left; loss/accuracy chart and warnings on the right."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget

from gradtui.tui.feed import Snapshot
from gradtui.tui.widgets.layer_monitor import LayerMonitor
from gradtui.tui.widgets.loss_chart import LossChart
from gradtui.tui.widgets.warnings_panel import WarningsPanel


class MonitorView(Widget):
    """Everything about the run on screen: its layers, its curves, its diagnoses."""

    DEFAULT_CSS = """
    MonitorView { layout: horizontal; height: 1fr; }
    MonitorView #monitor-side { width: 58; }
    """

    def compose(self) -> ComposeResult:
        """Layer rows, then chart above warnings."""
        yield LayerMonitor(id="layer-monitor")
        with Vertical(id="monitor-side"):
            yield LossChart(id="loss-chart")
            yield WarningsPanel(id="warnings")

    def show(self, snapshot: Snapshot, errors: list[Text] | None = None) -> None:
        """Draw one snapshot."""
        self.query_one(LayerMonitor).show(snapshot.rows, snapshot.diagnoses)
        self.query_one(LossChart).show(snapshot)
        self.query_one(WarningsPanel).show(snapshot.diagnoses, errors)

    def show_errors(self, errors: list[Text], snapshot: Snapshot | None) -> None:
        """Show errors (a failed run) above the diagnoses."""
        self.query_one(WarningsPanel).show(snapshot.diagnoses if snapshot else [], errors)
