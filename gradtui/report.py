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
import math
import textwrap
from pathlib import Path
from typing import Any

from gradtui.envelope import Buckets, Envelope, envelope, thin_labels
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
#: spans of steps drawn across the heatmap and across a half-width plot: about their width in
#: pixels (a longer run is drawn as each span's min / max / mean, see :mod:`gradtui.envelope`)
HEAT_BUCKETS = int(WIDTH_IN * DPI * 0.85)
LINE_BUCKETS = int(WIDTH_IN * DPI * 0.42)
#: the layer names' font size on the heatmap (points), and the room a label takes (x the size)
LABEL_PT = 8
LABEL_SPACING = 1.25


#: the heatmap's colour for a gradient of exactly 0 (white is "not recorded")
ZERO_COLOUR = "#3d7fd9"


def _diagnosis_lines(run: Run, width: int = 120, records: int | None = None) -> list[tuple[str, str]]:
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
    if not (records if records is not None else run.count):
        out.insert(0, ("no records: stats.jsonl holds no recorded step", "#555555"))
    if not run.summary.get("diagnoses") and not unread:
        if run.status == "incomplete":
            out.append(("no diagnoses recorded yet (the run has no summary.json)", "#555555"))
        else:
            out.append(
                ("no diagnoses: no vanishing, exploding, non-finite, saturated or dead layers", "#1b7f3b")
            )
    return out


#: per-layer fields drawn as lines (log scale: only positive values are drawn)
LINE_FIELDS = {"update_ratio": True, "saturation": False, "dead": False}
#: records read from the run at once
BLOCK = 4096


class FigureData:
    """What the figure draws of a run, fed in blocks of records, in memory bounded by the
    figure's size (not by the run's length): the gradient norms as :data:`HEAT_BUCKETS` spans
    of steps, the loss and the per-layer lines as :data:`LINE_BUCKETS` spans, and the few
    numbers the panels say (highest fraction, exact zeros, positive range of the loss).

    A run of at most :data:`HEAT_BUCKETS` records is kept as it is (one cell and one point a
    record); a longer one is reduced as it is fed, over ``first`` .. ``last`` step when they are
    given (else the spans double as the steps go on).
    """

    def __init__(self, names: list[str], first: float | None = None, last: float | None = None) -> None:
        self.names = list(names)
        self.first, self.last = first, last
        self.records = 0
        self.last_step = math.nan
        self._raw: list[tuple[Any, Any, dict[str, Any]]] | None = []
        self._env: dict[str, Envelope] = {}
        self.loss_finite = False
        self.loss_pos = (math.inf, -math.inf)
        self.finite_any = dict.fromkeys(LINE_FIELDS, False)
        self.finite_max = dict.fromkeys(LINE_FIELDS, -math.inf)
        self.zeros = {k: [False] * len(self.names) for k in LINE_FIELDS}

    def add(self, steps: Any, losses: Any, fields: dict[str, Any]) -> None:
        """Feed records: ``steps`` and ``losses`` ``(m,)``; ``fields[key]`` ``(m, layers)`` for
        ``grad_norm`` and :data:`LINE_FIELDS` (NaN where a layer lacks it)."""
        import numpy as np

        steps = np.asarray(steps, dtype=float)
        if not len(steps):
            return
        losses = np.asarray(losses, dtype=float)
        self.records += len(steps)
        self.last_step = float(steps[-1])
        fin = np.isfinite(losses)
        if fin.any():
            self.loss_finite = True
            pos = losses[fin & (losses > 0)]
            if pos.size:
                self.loss_pos = (
                    min(self.loss_pos[0], float(pos.min())),
                    max(self.loss_pos[1], float(pos.max())),
                )
        for key, log in LINE_FIELDS.items():
            v = fields[key]
            finite = np.isfinite(v)
            if finite.any():
                self.finite_any[key] = True
                self.finite_max[key] = max(self.finite_max[key], float(v[finite].max()))
            if log:
                zero = (finite & (v == 0)).any(axis=0)
                self.zeros[key] = [a or bool(b) for a, b in zip(self.zeros[key], zero, strict=True)]
        if self._raw is not None:
            self._raw.append((steps, losses, fields))
            if self.records <= HEAT_BUCKETS:
                return
            raw, self._raw = self._raw, None  # too long to keep: reduce from here on
            for block in raw:
                self._reduce(*block)
            return
        self._reduce(steps, losses, fields)

    def _reduce(self, steps: Any, losses: Any, fields: dict[str, Any]) -> None:
        import numpy as np

        if not self._env:
            c = len(self.names)
            first = self.first if self.first is not None else float(steps[0])

            def make(buckets: int, columns: int) -> Envelope:
                if self.last is None or not self.last > first:
                    return Envelope(buckets, columns, start=first)
                return Envelope(
                    buckets, columns, start=first, width=(self.last - first) / buckets * (1 + 1e-9)
                )

            self._env = {"grad_norm": make(HEAT_BUCKETS, c), "loss": make(LINE_BUCKETS, 1)}
            self._env.update({k: make(LINE_BUCKETS, c) for k in LINE_FIELDS})
        self._env["grad_norm"].add(steps, fields["grad_norm"])
        self._env["loss"].add(steps, losses)
        for key, log in LINE_FIELDS.items():
            v = fields[key]
            self._env[key].add(steps, np.where(np.isfinite(v) & (v > 0), v, np.nan) if log else v)

    def spans(self, key: str) -> Buckets:
        """``key``'s spans (``grad_norm``, ``loss`` or one of :data:`LINE_FIELDS`); lines drop
        what a log scale cannot draw."""
        import numpy as np

        if self._raw is None:
            return self._env[key].result()
        blocks = self._raw
        steps = np.concatenate([b[0] for b in blocks]) if blocks else np.zeros(0)
        if key == "loss":
            return envelope(steps, np.concatenate([b[1] for b in blocks]) if blocks else steps, LINE_BUCKETS)
        c = len(self.names)
        v = np.concatenate([b[2][key] for b in blocks]) if blocks else np.zeros((0, c))
        if LINE_FIELDS.get(key):
            v = np.where(np.isfinite(v) & (v > 0), v, np.nan)
        return envelope(steps, v.reshape(len(steps), c), HEAT_BUCKETS if key == "grad_norm" else LINE_BUCKETS)


def figure_data(run: Run, names: list[str] | None = None) -> FigureData:
    """A run's :class:`FigureData`, fed a chunk of records at a time by the run's own
    ``stream`` (a :class:`gradtui.runindex.IndexedRun` reads them from its index on disk, a
    :class:`gradtui.runlog.Run` from its records)."""
    names = names if names is not None else run.layer_names()
    first, last = _step_range(run)
    data = FigureData(names, first, last)
    keys = ["grad_norm", *LINE_FIELDS]
    for steps, losses, values in run.stream(keys, names):
        data.add(steps, losses, values)
    return data


def _step_range(run: Run) -> tuple[float | None, float | None]:
    """The first and last recorded step, read without reading the run."""
    index = getattr(run, "index", None)
    if index is not None:
        if not index.count:
            return None, None
        return float(index.rows(0, 1)["step"][0]), float(index.rows(index.count - 1, index.count)["step"][0])
    recs = run.records
    if not recs:
        return None, None
    return _step(recs[0], 0), _step(recs[-1], len(recs) - 1)


def _step(record: dict[str, Any], i: int) -> float:
    try:
        return float(record.get("step", i))
    except (TypeError, ValueError):
        return float(i)


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def make_figure(run: Run, data: FigureData | None = None) -> Any:
    """The report's figure (a :class:`matplotlib.figure.Figure`); ``data``: the run's
    :class:`FigureData` when the caller read it (default: streamed from the run)."""
    import numpy as np
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    data = data if data is not None else figure_data(run)
    names = data.names
    recorded = data.records
    diag = _diagnosis_lines(run, records=recorded)
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
    title = f"{for_matplotlib(run.name)} - {for_matplotlib(run.status)}, {recorded} recorded steps"
    if run.summary.get("steps"):
        title += f" of {run.summary['steps']}"
    fig.suptitle(title, fontsize=13, fontweight="bold")

    # --- heatmap: layers (input at the top, as in the TUI and the tables) x steps
    ax = fig.add_subplot(grid[0, :])
    if recorded and names:
        # a long run: one column a span of steps, coloured by the span's largest norm (a spike of
        # one step, the start of an explosion, stays visible; a vanishing layer is low throughout,
        # so its largest norm is low too); a NaN/Inf anywhere in the span marks the cell
        cells = data.spans("grad_norm")
        top = cells.hi
        edges = cells.edges()
        shade = np.ma.masked_where(~np.isfinite(top) | (top <= 0), top).T
        positive = top[np.isfinite(top) & (top > 0)]
        if positive.size:
            norm = LogNorm(vmin=float(positive.min()), vmax=float(positive.max()))
            mesh = ax.pcolormesh(
                edges, np.arange(n_layers + 1), shade, norm=norm, cmap="magma", shading="flat"
            )
            cbar = fig.colorbar(mesh, ax=ax, pad=0.01)
            cbar.set_label("gradient norm (log)" + (", largest of each span" if _spans(cells) else ""))
        zero = np.isfinite(top) & (top == 0)  # every finite norm of the span exactly 0
        zero_legend = None
        if zero.any():
            # exactly 0 (a dead layer, an underflow) is a finding, not missing data: its own
            # colour, where white means "not recorded"
            from matplotlib.colors import ListedColormap
            from matplotlib.patches import Patch

            ax.pcolormesh(
                edges,
                np.arange(n_layers + 1),
                np.ma.masked_where(~zero, np.ones_like(top)).T,
                cmap=ListedColormap([ZERO_COLOUR]),
                shading="flat",
            )
            zero_legend = ax.legend(
                handles=[
                    Patch(color=ZERO_COLOUR, label="exactly 0"),
                    Patch(color="white", label="not recorded"),
                ],
                loc="upper left",
                fontsize=8,
            )
        bad = cells.nonfinite > 0
        if bad.any():
            r, c = np.nonzero(bad)
            ax.scatter(cells.x[r], c + 0.5, marker="x", color="cyan", s=12, label="NaN/Inf")
            ax.legend(loc="upper right", fontsize=8)
            if zero_legend is not None:  # the NaN legend replaced the zeros' one: keep both
                ax.add_artist(zero_legend)
        ax.set_ylim(n_layers, 0)
        # as many names as fit at the heatmap's height, the first and last always
        size = LABEL_PT if n_layers <= 24 else 6
        shown = thin_labels(n_layers, _heat_axes_pt(heat_h), size, LABEL_SPACING)
        ax.set_yticks(np.array(shown) + 0.5)
        ax.set_yticklabels([for_matplotlib(names[i]) for i in shown], fontsize=size)
        if len(shown) < n_layers:
            ax.set_ylabel(f"{len(shown)} of {n_layers} layers named", fontsize=8, color="#555555")
    else:
        empty = "no recorded steps" if not recorded else "no layer statistics recorded"
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_title("gradient norm per layer (input at the top)", loc="left", fontsize=10)

    colours = _layer_colours(n_layers)

    # --- loss, with the final metrics
    ax = fig.add_subplot(grid[1, :3])
    losses = recorded and data.loss_finite
    if recorded and not data.loss_finite:
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
    if losses:
        spans = data.spans("loss")
        if _spans(spans):  # more steps than the plot has pixels: the band each span covers
            most = int(spans.records.max())
            ax.fill_between(
                spans.x, spans.lo[:, 0], spans.hi[:, 0], color="#9db8e0", lw=0, label="loss (batch): min-max"
            )
            ax.plot(spans.x, spans.mean[:, 0], color="#1f4e99", lw=1.0, label=f"mean of up to {most:,} steps")
        else:
            ax.plot(spans.x, spans.mean[:, 0], color="#1f4e99", lw=1.2, label="loss (batch)")
        bad = spans.nonfinite[:, 0] > 0
        if bad.any():  # NaN/Inf: off the scale; a mark at the top where they happened
            ax.plot(
                spans.x[bad],
                np.full(int(bad.sum()), 0.97),
                "x",
                color="#b00020",
                transform=ax.get_xaxis_transform(),
                label="loss NaN/Inf",
            )
        low, high = data.loss_pos
        if high > 0 and high / low > 100:  # an avalanche of loss: log scale shows both ends
            ax.set_yscale("log")
    ax.set_xlabel("step")
    _plain_steps(ax)
    ax.set_ylabel("loss")
    ax.set_title("loss per recorded step", loc="left", fontsize=10)
    acc_keys = [k for k in ("accuracy", "val_accuracy") if isinstance(final.get(k), (int, float))]
    if "val_loss" in final and recorded:
        ax.plot(
            [data.last_step],
            [final["val_loss"]],
            "o",
            color="#d9822b",
            label=f"final val_loss {final['val_loss']:.3g}",
        )
    if acc_keys and recorded:
        twin = ax.twinx()
        for k, marker in zip(acc_keys, ("s", "D"), strict=False):
            twin.plot(
                [data.last_step], [final[k]], marker, color="#2e8b57", label=f"final {k} {final[k]:.3g}"
            )
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("accuracy (end of training)")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = twin.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper right")
    elif losses:
        ax.legend(fontsize=8, loc="upper right")

    # --- update ratios
    ax = fig.add_subplot(grid[1, 3:])
    ax.set_title("update ratio ||dw|| / ||w|| per layer", loc="left", fontsize=10)
    if not _lines(ax, data, "update_ratio", colours):
        why = (
            "every update ratio is exactly 0 (no weight moved)"
            if data.finite_any["update_ratio"]
            else "no layer records update_ratio"
        )
        _empty(ax, why)
    ax.set_xlabel("step")
    _plain_steps(ax)

    # --- saturation and dead fractions
    for col, key, label in (
        (0, "saturation", "saturated units (sigmoid/tanh)"),
        (1, "dead", "dead units (ReLU family)"),
    ):
        ax = fig.add_subplot(grid[2, 3 * col : 3 * col + 3])
        shown = _lines(ax, data, key, colours, note=False)
        ax.set_ylim(-0.02, 1.02)
        highest = f", highest {data.finite_max[key]:.2f}" if data.finite_any[key] else ""
        ax.set_title(f"fraction of {label}{highest}", loc="left", fontsize=10)
        ax.set_xlabel("step")
        _plain_steps(ax)
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


def _plain_steps(ax: Any) -> None:
    """Steps written out (1000000, not 1.0 with "1e6" in the corner, where the note on the
    spans is written)."""
    from matplotlib.ticker import ScalarFormatter

    if isinstance(ax.xaxis.get_major_formatter(), ScalarFormatter):
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)


def _spans(cells: Buckets) -> bool:
    """Whether a span holds more than one record (the run was downsampled)."""
    return bool(len(cells.records) and cells.records.max() > 1)


def _heat_axes_pt(heat_h: float) -> float:
    """The heatmap's plot height in points, for a row ``heat_h`` inches high: what its title,
    tick labels and x label leave (about 0.8 inch)."""
    return max(0.5, heat_h - 0.8) * 72


def _empty(ax: Any, why: str) -> None:
    """An empty panel says why it is empty."""
    ax.set_xticks([])
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="#777777", fontsize=9)


def _layer_colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(i / max(n - 1, 1)) for i in range(n)]


def _lines(ax: Any, data: FigureData, key: str, colours: list[Any], *, note: bool = True) -> int:
    """One line a layer (colour by depth, input dark); a legend when few. Returns lines drawn.

    A longer run than the plot has pixels: each layer's line is the mean of each span of steps,
    with its min-max band when at most 8 layers are drawn."""
    log = LINE_FIELDS[key]
    names = data.names
    spans = data.spans(key)
    drawn = 0
    gaps = False
    many = _spans(spans)
    has = (spans.count > 0).any(axis=0) if len(spans.x) else [False] * len(names)
    band = many and int(sum(bool(h) for h in has)) <= 8  # a band a layer only where few are drawn
    for j, name in enumerate(names):
        if not has[j]:
            continue
        gaps = gaps or data.zeros[key][j]
        if band:
            ax.fill_between(spans.x, spans.lo[:, j], spans.hi[:, j], color=colours[j], alpha=0.25, lw=0)
        # NaN where a value cannot be drawn: the line breaks there instead of being drawn across
        ax.plot(spans.x, spans.mean[:, j], color=colours[j], lw=1.0, label=for_matplotlib(name))
        drawn += 1
    if many and drawn:
        ax.text(
            1.0,
            -0.22,
            f"mean of up to {int(spans.records.max()):,} steps a point" + (", band: min-max" if band else ""),
            transform=ax.transAxes,
            ha="right",
            fontsize=7,
            color="#555555",
        )
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
