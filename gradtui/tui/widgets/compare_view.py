"""Two runs side by side, layer by layer: gradient-norm sparklines on one scale, final metrics."""

from __future__ import annotations

import math

from rich.console import RenderableType
from rich.text import Text
from textual.widget import Widget

from gradtui.text import plain
from gradtui.tui.feed import LayerRow, Snapshot
from gradtui.tui.render import fmt_num, log_range, log_sparkline
from gradtui.tui.widgets.shown import DrawnWhenShown

NAME_W = 18


def _headline(tag: str, s: Snapshot | None) -> Text:
    text = Text()
    text.append(f"{tag}: ", "bold")
    if s is None:
        text.append("no run yet", "dim")
        return text
    final = s.final()
    text.append(f"{plain(s.name or '?')} ", "bold cyan")
    text.append(f"[{plain(s.status)}] {s.steps_done} steps  ")
    for key, label in (
        ("loss", "loss"),
        ("accuracy", "acc"),
        ("val_loss", "val loss"),
        ("val_accuracy", "val acc"),
    ):
        if key in final and isinstance(final[key], (int, float)):
            text.append(f"{label} {final[key]:.4g}  ")
    kinds = sorted({d.kind for d in s.diagnoses})
    if kinds:
        text.append("diagnoses: " + plain(", ".join(kinds)), "yellow")
    else:
        text.append("no diagnoses", "green")
    if s.out:
        text.append(f"\n   {plain(s.out)}", "dim")
    return text


class CompareView(DrawnWhenShown, Widget):
    """The previous run (A) and the current one (B), layer by layer.

    Both columns of sparklines share one log scale, so a remedy that lifts the lower layers'
    gradients shows as rows that were faint in A and bright in B; the last column is B's
    newest gradient norm over A's.
    """

    DEFAULT_CSS = """
    CompareView { height: auto; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.before: Snapshot | None = None
        self.after: Snapshot | None = None

    def show(self, before: Snapshot | None, after: Snapshot | None) -> None:
        """Compare ``before`` (A) with ``after`` (B)."""
        rows = len(self._names())
        self.before, self.after = before, after
        self.redraw(layout=len(self._names()) != rows)

    def _names(self) -> list[str]:
        names: list[str] = []
        for s in (self.after, self.before):
            for r in s.rows if s else []:
                if r.name not in names:
                    names.append(r.name)
        return names

    def get_content_height(self, container, viewport, width: int) -> int:  # type: ignore[no-untyped-def]
        """Headlines, a header and one line per layer."""
        return len(self._names()) + 8

    def render(self) -> RenderableType:
        """Headlines of both runs, then a row per layer."""
        a, b = self.before, self.after
        out = Text()
        out.append_text(_headline("A (previous)", a))
        out.append("\n")
        out.append_text(_headline("B (current) ", b))
        out.append("\n\n")
        if a is None and b is None:
            out.append("Train twice (e.g. apply a fix with f, then t) to compare the runs.", "dim")
            return out
        spark_w = max(8, (self.size.width - NAME_W - 36) // 2)
        rows_a = {r.name: r for r in a.rows} if a else {}
        rows_b = {r.name: r for r in b.rows} if b else {}
        scale = log_range([r.grad for r in (*rows_a.values(), *rows_b.values())])
        out.append(
            f"{'layer':<{NAME_W}} {'A: grad norm (shared log scale)':<{spark_w}} {'A grad':>8}  "
            f"{'B: grad norm':<{spark_w}} {'B grad':>8}  {'B/A':>8}\n",
            "bold",
        )
        empty = LayerRow("")
        for name in self._names():
            ra, rb = rows_a.get(name, empty), rows_b.get(name, empty)
            out.append(f"{plain(name)[:NAME_W]:<{NAME_W}} ")
            out.append_text(log_sparkline(ra.grad, spark_w, scale))
            out.append(" " + fmt_num(ra.grad_norm) + "  ")
            out.append_text(log_sparkline(rb.grad, spark_w, scale))
            out.append(" " + fmt_num(rb.grad_norm) + "  ")
            ratio = math.nan
            if ra.grad_norm > 0 and math.isfinite(ra.grad_norm) and math.isfinite(rb.grad_norm):
                ratio = rb.grad_norm / ra.grad_norm
            style = "green" if ratio > 10 else ("red" if ratio < 0.1 else "")
            out.append(fmt_num(ratio) + "\n", style)
        out.rstrip()
        return out
