"""``gradtui compare``: recorded runs side by side, layer by layer, as a Rich table.

Each run's value for a layer is the median of its last :data:`RECENT` recorded steps (one noisy
batch does not decide), and the ratio column is each run over the first one: a remedy that
lifts the lower layers' gradients reads as ratios far above 1 at the bottom of the table.
"""

from __future__ import annotations

import math
import re
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
    """The median of each layer's ``key`` over the run's last :data:`RECENT` records (read from
    the end of the run: its index, :mod:`gradtui.runindex`, never the whole file)."""
    rows = run.tail(key, names, RECENT).tolist()
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


#: a place in a stack: the layer's kind and its rank among the layers of that kind, or the output
Place = tuple[str, int]
#: Keras's ``_N`` suffix of a repeated layer name
_SUFFIX = re.compile(r"_\d+$")
OUTPUT: Place = ("output", 0)


def _projections(run: Run) -> set[str]:
    """The residual projections of a run trained from a preset (layers a plain stack lacks):
    read from the plan of its ``preset.toml``; none for a run of ``watch`` or a preset that no
    longer loads."""
    if not run.preset_text:
        return set()
    try:
        from gradtui.preset import loads, named_input
        from gradtui.stack import plan

        preset = loads(run.preset_text, source=str(run.path / "preset.toml"))
        shape = named_input(preset.data)
        if shape is None:
            return set()
        return {x.name for x in plan(preset, *shape) if x.role == "projection"}
    except Exception:  # a damaged or foreign preset: compare by names' kinds alone
        return set()


def places(run: Run) -> dict[str, Place]:
    """Each layer row's place in the stack (issue 21: compare by place, not by name): the
    last row is the output; a residual projection is a place of its own; every other row is the
    n-th of its kind (the name without Keras's ``_N`` suffix, within its block's path). So a
    plain stack and its residual form line up layer for layer although the projection shifts
    the residual form's names."""
    names = run.layer_names()
    projections = _projections(run)
    out: dict[str, Place] = {}
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        top = name.split("/", 1)[0]
        if i == len(names) - 1 and len(names) > 1:
            out[name] = OUTPUT
            continue
        kind = "projection" if top in projections else _SUFFIX.sub("", top)
        inner = _SUFFIX.sub("", name.split("/", 1)[1]) if "/" in name else ""
        key = f"{kind}/{inner}" if inner else kind
        out[name] = (key, seen.get(key, 0))
        seen[key] = seen.get(key, 0) + 1
    return out


def _merge_order(orders: list[list[Place]]) -> list[Place]:
    """Every place once, in stack order: each run's places in its order, a place that only a
    later run has put after the place it follows there."""
    merged: list[Place] = []
    for order in orders:
        at = 0
        for place in order:
            if place in merged:
                at = merged.index(place) + 1
            else:
                merged.insert(at, place)
                at += 1
    return merged


def compare_table(runs: list[Run]) -> Group:
    """The legend (one line a run), the per-layer table and the whole-model diagnoses."""
    legend = Text()
    for i, run in enumerate(runs):
        final = run.summary.get("final") or {}
        # names and paths read from files: plain text (no markup, no terminal control sequence)
        line = f"{_tag(i)}  {plain(run.name)} [{plain(run.status)}] {run.count} records"
        if "loss" in final:
            line += f", loss {fmt(final['loss'])}"
        if "val_accuracy" in final:
            line += f", val acc {fmt(final['val_accuracy'])}"
        legend.append(line + "\n", "bold" if i == 0 else "")
        legend.append(f"   {plain(run.path)}\n", "dim")
    at = [places(r) for r in runs]
    by_place = [{p: n for n, p in a.items()} for a in at]
    order = _merge_order([list(a.values()) for a in at])
    grads = [recent(r, "grad_norm", list(a)) for r, a in zip(runs, at, strict=True)]
    updates = [recent(r, "update_ratio", list(a)) for r, a in zip(runs, at, strict=True)]
    kinds = [_kinds(r) for r in runs]
    table = Table(
        title=f"gradient norm, update ratio: median of the last {RECENT} records, by place",
        title_justify="left",
        box=None,
        padding=(0, 0, 0, 1),  # one space between columns: three runs still fit 80 columns
        header_style="bold",
    )
    table.add_column("layer", overflow="fold", min_width=8, max_width=22)
    for i in range(len(runs)):
        table.add_column(f"grad {_tag(i)}", justify="right", no_wrap=True)
    for i in range(1, len(runs)):
        table.add_column(f"{_tag(i)}/A", justify="right", style="cyan", no_wrap=True)
    for i in range(len(runs)):
        table.add_column(f"upd {_tag(i)}", justify="right", no_wrap=True)
    table.add_column("diagnoses", overflow="fold")
    missing = Text("missing", "dim")
    for place in order:
        names = [b.get(place) for b in by_place]
        shown = list(dict.fromkeys(n for n in names if n is not None))
        label = Text(plain(shown[0]))
        for i, n in enumerate(names):
            if n is not None and n != shown[0]:
                label.append(f" {_tag(i)}:{plain(n)}", "dim")
        if place[0] == "projection":
            label.append(" (projection)", "dim")
        g = [grads[i][n] if n is not None else None for i, n in enumerate(names)]
        u = [updates[i][n] if n is not None else None for i, n in enumerate(names)]
        cells: list[Any] = [label]
        cells += [fmt(x, ".2g") if x is not None else missing for x in g]
        cells += [_ratio(x, g[0]) if x is not None and g[0] is not None else "-" for x in g[1:]]
        cells += [fmt(x, ".1e") if x is not None else missing for x in u]
        diag = [
            f"{_tag(i)}:{','.join(plain(SHORT.get(k, k)) for k in kinds[i][n])}"
            for i, n in enumerate(names)
            if n is not None and kinds[i].get(n)
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
