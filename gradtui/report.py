"""``gradtui report``: one figure of a recorded run, as a PNG or a self-contained HTML page.

The figure: a layers x steps heatmap of gradient norms on a log colour scale (vanishing reads as a
dark lower band, exploding as a bright spreading one), the loss per recorded step with the final
metrics, each layer's update ratio, the saturation and dead fractions over time, each recurrent
layer's gradient through time (a few of its curves over training), and the diagnoses with their
advice. matplotlib is imported only here, through its object API (no
pyplot, no global backend state): the Agg canvas draws without a display.
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from pathlib import Path
from typing import Any

from gradtui.errors import GradtuiError
from gradtui.history import TimeCurve, time_curves
from gradtui.runlog import Run, atomic_write
from gradtui.text import for_matplotlib, plain

#: figure width in inches (at :data:`DPI`): readable pasted into a pull request
WIDTH_IN = 13.0
DPI = 110
#: curves through time drawn per recurrent layer: spread over training, the newest among them
TIME_CURVES = 5
#: recurrent layers drawn side by side in the figure's row of curves through time
TIME_COLUMNS = 3


#: the heatmap's colour for a gradient of exactly 0 (white is "not recorded")
ZERO_COLOUR = "#3d7fd9"


def _array(rows: list[list[float]], width: int) -> Any:
    """``[record][layer]`` as a 2-D array (also with no record or no layer)."""
    import numpy as np

    return np.array(rows, dtype=float).reshape(len(rows), width)


def _diagnosis_lines(run: Run, width: int = 120) -> list[tuple[str, str]]:
    """``(text, colour)`` lines: each diagnosis's message and advice, wrapped."""
    out: list[tuple[str, str]] = []
    for d in run.summary.get("diagnoses", []):
        colour = "#b00020" if d.get("severity") == "error" else "#a06000"
        head = f"{d.get('kind')} ({d.get('severity', '')}) at step {d.get('step')}"
        if d.get("layer"):
            head += f", {d['layer']}"
        if d.get("cleared_step") is not None:
            head += f"; cleared at step {d['cleared_step']}"
        # wrapped: a line wider than the figure would make the constrained layout squeeze the plots
        for i, line in enumerate(textwrap.wrap(head + ": " + str(d.get("message", "")), width)):
            out.append((line if i == 0 else "    " + line, colour))
        for line in textwrap.wrap("advice: " + str(d.get("advice", "")), width):
            out.append(("    " + line, "#333333"))
    out = [(for_matplotlib(text), colour) for text, colour in out]
    unread = run.unreadable.get("summary.json")
    if run.note:  # what the reader skipped, first: an unreadable summary.json hides its diagnoses
        wrapped = textwrap.wrap(f"not shown: {run.note}", width)
        out[:0] = [(for_matplotlib(x if i == 0 else "    " + x), "#b00020") for i, x in enumerate(wrapped)]
    if not run.count:
        out.insert(0, ("no records: stats.jsonl holds no recorded step", "#555555"))
    if not run.summary.get("diagnoses") and not unread:
        if run.status == "incomplete":
            out.append(("no diagnoses recorded yet (the run has no summary.json)", "#555555"))
        else:
            out.append(
                ("no diagnoses: no vanishing, exploding, non-finite, saturated or dead layers", "#1b7f3b")
            )
    return out


def make_figure(run: Run) -> Any:
    """The report's figure (a :class:`matplotlib.figure.Figure`)."""
    import numpy as np
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    names = run.layer_names()
    steps = np.array(run.steps(), dtype=float)
    grads = _array(run.field("grad_norm", names), len(names))
    diag = _diagnosis_lines(run)
    n_layers = max(1, len(names))
    heat_h = min(7.0, max(2.4, 0.28 * n_layers + 1.2))
    diag_h = max(0.8, 0.22 * len(diag) + 0.5)
    curves = _time_curves(run)
    time_rows = -(-len(curves) // TIME_COLUMNS)  # ceil
    heights = [heat_h, 2.9, 2.9] + [2.9] * time_rows + [diag_h]
    fig = Figure(figsize=(WIDTH_IN, sum(heights)), dpi=DPI, layout="constrained")
    # six columns: two plots a row above, two or three curves through time a row below
    grid = fig.add_gridspec(len(heights), 6, height_ratios=heights)
    final = run.summary.get("final") or {}
    # names read from files: no matplotlib math ($...$), no control characters
    title = f"{for_matplotlib(run.name)} - {for_matplotlib(run.status)}, {run.count} recorded steps"
    if run.summary.get("steps"):
        title += f" of {run.summary['steps']}"
    fig.suptitle(title, fontsize=13, fontweight="bold")

    # --- heatmap: layers (input at the top, as in the TUI and the tables) x steps
    ax = fig.add_subplot(grid[0, :])
    if len(steps) and names:
        data = np.ma.masked_where(~np.isfinite(grads) | (grads <= 0), grads).T
        positive = grads[np.isfinite(grads) & (grads > 0)]
        edges = _edges(steps)
        if positive.size:
            norm = LogNorm(vmin=float(positive.min()), vmax=float(positive.max()))
            mesh = ax.pcolormesh(
                edges, np.arange(n_layers + 1), data, norm=norm, cmap="magma", shading="flat"
            )
            cbar = fig.colorbar(mesh, ax=ax, pad=0.01)
            cbar.set_label("gradient norm (log)")
        zero = np.isfinite(grads) & (grads == 0)
        zero_legend = None
        if zero.any():
            # exactly 0 (a dead layer, an underflow) is a finding, not missing data: its own
            # colour, where white means "not recorded"
            from matplotlib.colors import ListedColormap
            from matplotlib.patches import Patch

            ax.pcolormesh(
                edges,
                np.arange(n_layers + 1),
                np.ma.masked_where(~zero, np.ones_like(grads)).T,
                cmap=ListedColormap([ZERO_COLOUR]),
                shading="flat",
            )
            ax.legend(
                handles=[
                    Patch(color=ZERO_COLOUR, label="exactly 0"),
                    Patch(color="white", label="not recorded"),
                ],
                loc="upper left",
                fontsize=8,
            )
        bad = ~np.isfinite(grads)
        if bad.any():
            r, c = np.nonzero(bad)
            ax.scatter(steps[r], c + 0.5, marker="x", color="cyan", s=12, label="NaN/Inf")
            ax.legend(loc="upper right", fontsize=8)
            if zero_legend is not None:  # the NaN legend replaced the zeros' one: keep both
                ax.add_artist(zero_legend)
        ax.set_ylim(n_layers, 0)
        ax.set_yticks(np.arange(n_layers) + 0.5)
        ax.set_yticklabels([for_matplotlib(n) for n in names], fontsize=8 if n_layers <= 24 else 6)
    else:
        empty = "no recorded steps" if not len(steps) else "no layer statistics recorded"
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_title("gradient norm per layer (input at the top)", loc="left", fontsize=10)

    colours = _layer_colours(n_layers)

    # --- loss, with the final metrics
    ax = fig.add_subplot(grid[1, :3])
    losses = np.array(run.losses(), dtype=float)
    if len(losses) and not np.isfinite(losses).any():
        ax.text(
            0.5,
            0.5,
            "loss not recorded: the training step computed it out of gradtui's sight",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="#777777",
            fontsize=9,
        )
        losses = np.array([])
    if len(losses):
        ax.plot(steps, losses, color="#1f4e99", lw=1.2, label="loss (batch)")
        pos = losses[np.isfinite(losses) & (losses > 0)]
        if pos.size and pos.max() / pos.min() > 100:  # an avalanche of loss: log scale shows both ends
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("loss per recorded step", loc="left", fontsize=10)
    acc_keys = [k for k in ("accuracy", "val_accuracy") if isinstance(final.get(k), (int, float))]
    if "val_loss" in final and len(steps):
        ax.plot(
            [steps[-1]],
            [final["val_loss"]],
            "o",
            color="#d9822b",
            label=f"final val_loss {final['val_loss']:.3g}",
        )
    if acc_keys and len(steps):
        twin = ax.twinx()
        for k, marker in zip(acc_keys, ("s", "D"), strict=False):
            twin.plot([steps[-1]], [final[k]], marker, color="#2e8b57", label=f"final {k} {final[k]:.3g}")
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("accuracy (end of training)")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = twin.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    elif len(losses):
        ax.legend(fontsize=8, loc="upper right")

    # --- update ratios
    ax = fig.add_subplot(grid[1, 3:])
    upd = _array(run.field("update_ratio", names), len(names))
    ax.set_title("update ratio ||dw|| / ||w|| per layer", loc="left", fontsize=10)
    if not _lines(ax, steps, upd, names, colours, log=True):
        finite = upd[np.isfinite(upd)] if upd.size else upd
        why = (
            "every update ratio is exactly 0 (no weight moved)"
            if finite.size
            else "no layer records update_ratio"
        )
        _empty(ax, why)
    ax.set_xlabel("step")

    # --- saturation and dead fractions
    for col, key, label in (
        (0, "saturation", "saturated units (sigmoid/tanh)"),
        (1, "dead", "dead units (ReLU family)"),
    ):
        ax = fig.add_subplot(grid[2, 3 * col : 3 * col + 3])
        vals = _array(run.field(key, names), len(names))
        shown = _lines(ax, steps, vals, names, colours, log=False, note=False)
        ax.set_ylim(-0.02, 1.02)
        finite = vals[np.isfinite(vals)] if vals.size else vals
        highest = f", highest {finite.max():.2f}" if finite.size else ""
        ax.set_title(f"fraction of {label}{highest}", loc="left", fontsize=10)
        ax.set_xlabel("step")
        if not shown:
            _empty(ax, f"no layer records {key}")

    # --- each recurrent layer's gradient through time
    if curves:
        span = 6 // min(TIME_COLUMNS, max(2, len(curves)))  # one layer: as wide as the plots above
        for i, (layer, measured) in enumerate(curves.items()):
            r, c = divmod(i, 6 // span)
            ax = fig.add_subplot(grid[3 + r, c * span : (c + 1) * span])
            _time_plot(ax, layer, measured)
            if c == 0:
                ax.set_ylabel("gradient norm reaching it")

    # --- diagnoses with their advice
    ax = fig.add_subplot(grid[-1, :])
    ax.axis("off")
    ax.set_title("diagnoses", loc="left", fontsize=10, fontweight="bold")
    y = 1.0
    step = 0.22 / diag_h  # one line of 9-point text, in axes fraction
    for text, colour in diag:
        ax.text(
            0.0,
            y,
            text,
            ha="left",
            va="top",
            fontsize=9,
            color=colour,
            family="monospace",
            transform=ax.transAxes,
        )
        y -= step
    return fig


def _time_curves(run: Run) -> dict[str, list[TimeCurve]]:
    """Per recurrent layer, every curve through time the run recorded, oldest first."""
    out: dict[str, list[TimeCurve]] = {}
    for record in run.time_curves(TIME_CURVES):  # a few records, read from the run's index
        if "time_grads" in record:
            for curve in time_curves(record):
                out.setdefault(curve.layer, []).append(curve)
    return out


def _time_plot(ax: Any, layer: str, measured: list[TimeCurve]) -> None:
    """A few of a layer's curves through time (spread over training, the newest in bold) on a
    log scale; a span whose gradient underflowed to 0 is left out of its line."""
    import numpy as np
    from matplotlib import colormaps

    picks = sorted({round(i * (len(measured) - 1) / max(1, TIME_CURVES - 1)) for i in range(TIME_CURVES)})
    shown = [measured[i] for i in picks]
    cmap = colormaps["Blues"]
    for k, curve in enumerate(shown):
        t, v = np.array(curve.t, dtype=float), np.array(curve.grad_norm, dtype=float)
        ok = np.isfinite(v) & (v > 0)
        newest = k == len(shown) - 1
        ax.plot(
            t[ok],
            v[ok],
            color=cmap(0.35 + 0.65 * (k + 1) / len(shown)),
            lw=1.8 if newest else 1.0,
            label=f"step {curve.step}",
        )
    last = shown[-1]
    if any(np.isfinite(v) and v > 0 for v in last.grad_norm):
        ax.set_yscale("log")
    # the start of the sequence where nothing arrives (0 in float32) is off a log scale: shaded
    zeros = 0
    while zeros < len(last.grad_norm) and last.grad_norm[zeros] == 0:
        zeros += 1
    note = ""
    if zeros:
        end = last.t[zeros] if zeros < len(last.t) else last.t[-1] + 1
        ax.axvspan(0, end, color="#dddddd", lw=0, label="0 (underflow)")
        note = f"; 0 before t={end}"
    if last.t:
        ax.set_xlim(0, max(last.t[-1], 1))
    ratio = last.ratio
    ax.set_title(
        f"{for_matplotlib(layer)}: first/last {ratio:.2g} at step {last.step}{note}"
        if np.isfinite(ratio)
        else for_matplotlib(layer),
        loc="left",
        fontsize=9,
    )
    ax.set_xlabel("time step of the input sequence")
    ax.legend(fontsize=7, loc="best")


def _edges(steps: Any) -> Any:
    """Cell edges around each recorded step (``every`` > 1 leaves gaps that cells should cover)."""
    import numpy as np

    if len(steps) == 1:
        return np.array([steps[0] - 0.5, steps[0] + 0.5])
    mid = (steps[1:] + steps[:-1]) / 2
    return np.concatenate([[steps[0] - (mid[0] - steps[0])], mid, [steps[-1] + (steps[-1] - mid[-1])]])


def _empty(ax: Any, why: str) -> None:
    """An empty panel says why it is empty."""
    ax.set_xticks([])
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="#777777", fontsize=9)


def _layer_colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def _lines(
    ax: Any, steps: Any, vals: Any, names: list[str], colours: list[Any], *, log: bool, note: bool = True
) -> int:
    """One line a layer (colour by depth, input dark); a legend when few. Returns lines drawn."""
    import numpy as np

    drawn = 0
    gaps = False
    for j, name in enumerate(names):
        v = vals[:, j] if vals.size else np.array([])
        ok = np.isfinite(v) & ((v > 0) if log else True)
        if not ok.any():
            continue
        gaps = gaps or bool(log and (np.isfinite(v) & (v == 0)).any())
        # NaN where a value cannot be drawn: the line breaks there instead of being drawn across
        ax.plot(steps, np.where(ok, v, np.nan), color=colours[j], lw=1.0, label=for_matplotlib(name))
        drawn += 1
    if log and drawn:
        ax.set_yscale("log")
        if gaps:
            ax.text(
                0.0,
                -0.22,
                "gaps: exactly 0 (no point on a log scale)",
                transform=ax.transAxes,
                fontsize=7,
                color="#555555",
            )
    if drawn and drawn <= 8:
        ax.legend(fontsize=7, loc="best", ncol=2)
    elif drawn and note:  # too many for a legend: how the colours run, above the plot, not over a line
        ax.set_title(
            f"{drawn} layers: dark = input side, yellow = output side",
            loc="right",
            fontsize=7,
            color="#555555",
        )
    return drawn


def png_bytes(run: Run) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    make_figure(run).savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def html_page(run: Run, png: bytes) -> str:
    """A self-contained page: the figure as a data URI, the summary and the diagnoses as text."""
    summary = run.summary
    final = summary.get("final") or {}
    rows = [
        ("status", run.status),
        ("steps", summary.get("steps", run.count)),
        ("recorded steps", run.count),
        ("device", summary.get("device", "-")),
    ]
    rows += [(k, f"{v:.4g}" if isinstance(v, float) else v) for k, v in final.items()]
    table = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    diags = []
    for d in summary.get("diagnoses", []):
        where = f" &mdash; {html.escape(str(d['layer']))}" if d.get("layer") else ""
        diags.append(
            f"<li class='{html.escape(str(d.get('severity', '')))}'><b>{html.escape(str(d.get('kind')))}</b>{where} "
            f"(step {html.escape(str(d.get('step')))}): {html.escape(str(d.get('message', '')))}"
            f"<br><i>advice:</i> {html.escape(str(d.get('advice', '')))}</li>"
        )
    diag_html = f"<ul>{''.join(diags)}</ul>" if diags else "<p>No diagnoses.</p>"
    if run.note:
        diag_html = f"<p class='note'>Not shown: {html.escape(run.note)}</p>" + diag_html
    if not run.count:
        diag_html = "<p>No records: stats.jsonl holds no recorded step.</p>" + diag_html
    data = base64.b64encode(png).decode("ascii")
    name = html.escape(run.name)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>gradtui report: {name}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }} th, td {{ padding: 2px 10px; text-align: left; }}
th {{ color: #555; font-weight: normal; }} li {{ margin-bottom: .6em; }}
li.error b {{ color: #b00020; }} li.warning b {{ color: #a06000; }}
img {{ max-width: 100%; }} code {{ color: #555; }}
</style></head><body>
<h1>{name}</h1><p><code>{html.escape(str(run.path))}</code></p>
<table>{table}</table>
<h2>Diagnoses</h2>{diag_html}
<h2>Figure</h2><img alt="gradient norms, loss, update ratios, saturation and dead units of {name}"
 src="data:image/png;base64,{data}">
</body></html>
"""


def write_report(run: Run, out: str | Path | None = None) -> Path:
    """Write the report of ``run`` to ``out`` (``.html`` or ``.png``; default ``RUN_DIR/report.html``).

    Raises:
        GradtuiError: ``out`` ends in something else.
    """
    target = Path(out) if out is not None else run.path / "report.html"
    suffix = target.suffix.lower()
    if suffix not in (".html", ".htm", ".png"):
        raise GradtuiError(
            f"cannot write '{target.suffix or target.name}'; give a .html or .png file", key="-o"
        )
    png = png_bytes(run)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # a temporary file beside it, then a rename: a full disk leaves the old report whole
        atomic_write(target, png if suffix == ".png" else html_page(run, png))
    except OSError as exc:
        raise GradtuiError(f"cannot write it: {exc.strerror or exc}", file=plain(target), key="-o") from None
    return target
