"""One row per weighted layer: gradient-norm sparkline on one shared log scale, norms, bars."""

from __future__ import annotations

import math

from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget

from gradtui.diagnose import Diagnosis
from gradtui.tui.feed import LayerRow
from gradtui.tui.render import STATUS_MARK, STATUS_STYLE, fmt_num, fraction_bar, log_range, log_sparkline

NAME_W = 20
SPARK_W = 64


def layer_status(rows: list[LayerRow], diagnoses: list[Diagnosis]) -> dict[str, str]:
    """``ok``, ``warning`` or ``error`` for each row, from the diagnoses that name it."""
    status = {r.name: "ok" for r in rows}
    rank = {"ok": 0, "warning": 1, "error": 2}
    for d in diagnoses:
        for name in d.layers or ([d.layer] if d.layer else []):
            if name in status and rank[d.severity if d.severity in rank else "warning"] > rank[status[name]]:
                status[name] = d.severity if d.severity in rank else "warning"
    for r in rows:
        if r.nonfinite or (isinstance(r.grad_norm, float) and not math.isfinite(r.grad_norm) and r.grad):
            status[r.name] = "error"
    return status


class LayerMonitor(Widget):
    """The per-layer rows of the live monitor, input at the top, output at the bottom.

    Every sparkline shares one log10 scale (the lowest to the highest gradient norm of any
    layer), so a layer whose gradients are a millionth of the output layer's is drawn low and
    faint: vanishing shows as rows fading toward the input.
    """

    DEFAULT_CSS = """
    LayerMonitor { height: auto; width: 1fr; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[LayerRow] = []
        self.diagnoses: list[Diagnosis] = []

    def show(self, rows: list[LayerRow], diagnoses: list[Diagnosis]) -> None:
        """Replace the rows (called at most a few times a second)."""
        resized = len(rows) != len(self.rows)
        self.rows = rows
        self.diagnoses = diagnoses
        self.refresh(layout=resized)

    def get_content_height(self, container, viewport, width: int) -> int:  # type: ignore[no-untyped-def]
        """Two header lines and one line per layer."""
        return len(self.rows) + 2 if self.rows else 1

    def render(self) -> RenderableType:
        """The header, then one line per layer."""
        if not self.rows:
            return Text("No statistics yet: press t to train.", "dim")
        spark_w = max(8, min(SPARK_W, self.size.width - NAME_W - 40))
        scale = log_range([r.grad for r in self.rows])
        status = layer_status(self.rows, self.diagnoses)
        lo = f"{10 ** scale[0]:.0e}" if scale else ""
        hi = f"{10 ** scale[1]:.0e}" if scale else ""
        head = Text(
            f"  {'layer':<{NAME_W}} {('grad norm, log scale ' + lo + ' … ' + hi):<{spark_w}} "
            f"{'grad':>8} {'upd/w':>8}  {'sat/dead':<13}",
            "bold",
        )
        lines = [head, Text("  " + "─" * (NAME_W + spark_w + 34), "dim")]
        for row in self.rows:
            st = status.get(row.name, "ok")
            line = Text()
            line.append(STATUS_MARK[st] + " ", STATUS_STYLE[st])
            line.append(f"{row.name[:NAME_W]:<{NAME_W}} ", STATUS_STYLE[st] if st != "ok" else "")
            line.append_text(log_sparkline(row.grad, spark_w, scale))
            line.append(" " + fmt_num(row.grad_norm), "bold" if st == "ok" else STATUS_STYLE[st])
            line.append(" " + fmt_num(row.update_ratio))
            line.append("  ")
            if row.act_key:
                line.append_text(fraction_bar(row.act_value, 6))
                line.append(" sat" if row.act_key == "saturation" else " dead", "dim")
            lines.append(line)
        return Text("\n").join(lines)
