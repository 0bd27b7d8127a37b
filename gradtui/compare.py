"""``gradtui compare``: recorded runs side by side, layer by layer, as a Rich table.

Each run's value for a layer is the median of its last :data:`RECENT` recorded steps (one noisy
batch does not decide), and the ratio column is each run over the first one: a remedy that
lifts the lower layers' gradients reads as ratios far above 1 at the bottom of the table.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from gradtui.runlog import Run
from gradtui.text import plain
from gradtui.view import fmt

#: recorded steps whose median stands for a layer's value
RECENT = 10
#: short names of the diagnosis kinds, so the table fits 80 columns
SHORT = {
    "vanishing": "vanish",
    "exploding": "explode",
    "non_finite": "nan/inf",
    "saturation": "satur",
    "dead_units": "dead",
}


def recent(run: Run, key: str, names: list[str]) -> dict[str, float]:
    """The median of each layer's ``key`` over the run's last :data:`RECENT` records."""
    rows = run.field(key, names)[-RECENT:]
    out = {}
    for j, name in enumerate(names):
        vals = [r[j] for r in rows if not math.isnan(r[j])]
        out[name] = statistics.median(vals) if vals else math.nan
    return out


def _ratio(b: float, a: float) -> str:
    if not (math.isfinite(a) and math.isfinite(b)) or a == 0:
        return "-"
    r = b / a
    return f"{r:.2g}" if 0.01 <= r < 1000 else f"{r:.1e}"


def _tag(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"R{i}"


def _kinds(run: Run) -> dict[str | None, list[str]]:
    by_layer: dict[str | None, list[str]] = {}
    for d in run.summary.get("diagnoses", []):
        layers = d.get("layers") or [d.get("layer")]
        for layer in layers:
            kinds = by_layer.setdefault(layer, [])
            if d.get("kind") not in kinds:
                kinds.append(d.get("kind"))
    return by_layer


def compare_table(runs: list[Run]) -> Group:
    """The legend (one line a run), the per-layer table and the whole-model diagnoses."""
    legend = Text()
    for i, run in enumerate(runs):
        final = run.summary.get("final") or {}
        # names and paths read from files: plain text (no markup, no terminal control sequence)
        line = f"{_tag(i)}  {plain(run.name)} [{plain(run.status)}] {len(run.records)} records"
        if "loss" in final:
            line += f", loss {fmt(final['loss'])}"
        if "val_accuracy" in final:
            line += f", val acc {fmt(final['val_accuracy'])}"
        legend.append(line + "\n", "bold" if i == 0 else "")
        legend.append(f"   {plain(run.path)}\n", "dim")
    names: list[str] = []
    for run in runs:
        names += [n for n in run.layer_names() if n not in names]
    grads = [recent(r, "grad_norm", names) for r in runs]
    updates = [recent(r, "update_ratio", names) for r in runs]
    kinds = [_kinds(r) for r in runs]
    table = Table(
        title=f"gradient norm and update ratio (median of the last {RECENT} records)",
        title_justify="left",
        box=None,
        padding=(0, 0, 0, 1),  # one space between columns: three runs still fit 80 columns
        header_style="bold",
    )
    table.add_column("layer", overflow="fold", min_width=8, max_width=22)
    for i in range(len(runs)):
        table.add_column(f"grad {_tag(i)}", justify="right")
    for i in range(1, len(runs)):
        table.add_column(f"{_tag(i)}/A", justify="right", style="cyan")
    for i in range(len(runs)):
        table.add_column(f"upd {_tag(i)}", justify="right")
    table.add_column("diagnoses", overflow="fold")
    for name in names:
        cells: list[Any] = [Text(plain(name))]
        cells += [fmt(g[name], ".2g") for g in grads]
        cells += [_ratio(g[name], grads[0][name]) for g in grads[1:]]
        cells += [fmt(u[name], ".1e") for u in updates]
        diag = [
            f"{_tag(i)}:{','.join(plain(SHORT.get(k, k)) for k in k_[name])}"
            for i, k_ in enumerate(kinds)
            if k_.get(name)
        ]
        cells.append(Text(" ".join(diag), "yellow") if diag else Text("-", "dim"))
        table.add_row(*cells)
    parts: list[Any] = [legend, table]
    whole = [(i, k) for i, k_ in enumerate(kinds) for k in k_.get(None, [])]
    if whole:
        parts.append(Text("whole model: " + ", ".join(f"{_tag(i)}:{plain(k)}" for i, k in whole), "yellow"))
    return Group(*parts)


def print_compare(runs: list[Run], console: Console | None = None) -> None:
    """Print :func:`compare_table` (80 columns when not on a terminal)."""
    (console or Console()).print(compare_table(runs))
