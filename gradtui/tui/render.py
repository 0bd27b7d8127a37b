"""Rich renderables the widgets share: log-scale sparklines on one scale, bars, a braille chart.

Textual's own ``Sparkline`` scales each line to its own minimum and maximum, which would make a
layer whose gradients are 1e-8 look as busy as one at 1e-1. Here every row is drawn on ONE
shared log scale and coloured by its height, so vanishing layers show as rows fading toward the
input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text

#: a line as runs of ``(text, style)``: built once, drawn as a rich ``Text`` (tests, the compare
#: view) or straight as segments (the live monitor, which redraws every row a few times a second)
Runs = list[tuple[str, str]]

BLOCKS = "▁▂▃▄▅▆▇█"
#: colours from faint (lowest) to bright (highest) for sparkline levels
RAMP = (
    "#3a3a3a",
    "#4e4e4e",
    "#5f6f7f",
    "#4f7fa0",
    "#3f9fbf",
    "#3fbfcf",
    "#5fdfdf",
    "#9ff5f5",
)
STATUS_STYLE = {"ok": "green", "warning": "yellow", "error": "bold red"}
STATUS_MARK = {"ok": "●", "warning": "▲", "error": "✖"}


def fmt_num(value: float, width: int = 8) -> str:
    """A compact number: ``3.2e-08``, ``0.0123``, ``nan``, right-aligned to ``width``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        text = "-"
    elif not math.isfinite(value):
        text = "inf" if value > 0 else "-inf"
    elif value == 0:
        text = "0"
    elif 1e-3 <= abs(value) < 1e4:
        text = f"{value:.4g}"
    else:
        text = f"{value:.1e}"
    return text.rjust(width)


def log_range(series: Sequence[Sequence[float]]) -> tuple[float, float] | None:
    """The shared (low, high) of every finite positive value, in log10, or ``None``."""
    logs = [math.log10(v) for s in series for v in s if isinstance(v, float) and math.isfinite(v) and v > 0]
    if not logs:
        return None
    return min(logs), max(logs)


def runs_text(runs: Runs) -> Text:
    """``runs`` as a rich ``Text`` (a span per styled run)."""
    text = Text()
    for chunk, style in runs:
        text.append(chunk, style)
    return text


def runs_segments(runs: Runs) -> list[Segment]:
    """``runs`` as segments, drawn as :func:`runs_text` would draw them, without its span
    bookkeeping (``Style.parse`` is cached by rich)."""
    null = Style.null()
    segments: list[Segment] = []
    text, style = "", ""
    for chunk, chunk_style in runs:
        if chunk_style != style and text:  # adjacent runs of one style are one segment
            segments.append(Segment(text, Style.parse(style) if style else null))
            text = ""
        text += chunk
        style = chunk_style
    if text:
        segments.append(Segment(text, Style.parse(style) if style else null))
    return segments


def sparkline_runs(
    values: Sequence[float], width: int, scale: tuple[float, float] | None, *, log: bool = True
) -> Runs:
    """The runs of :func:`log_sparkline`: one per stretch of one colour.

    With ``log=False`` the ``scale`` is in the values' own units and a value at or below its
    low end is drawn as the lowest block (an entropy of 0 is a value, not a missing one).
    """
    vals = list(values)[-width:]
    runs: Runs = [(" " * (width - len(vals)), "")]
    if scale is None:
        lo, hi = 0.0, 0.0
    else:
        lo, hi = scale
    span = hi - lo
    top = len(BLOCKS) - 1
    log10, isfinite = math.log10, math.isfinite
    run, run_style = "", ""
    for v in vals:
        if not isfinite(v):
            char, style = "!", "bold red"
        elif v <= 0 and log:
            char, style = "·", RAMP[0]
        else:
            frac = 0.5 if span <= 0 else ((log10(v) if log else v) - lo) / span
            level = min(top, max(0, int(frac * top + 0.5)))
            char, style = BLOCKS[level], RAMP[level]
        if style != run_style and run:
            runs.append((run, run_style))
            run = ""
        run += char
        run_style = style
    if run:
        runs.append((run, run_style))
    return runs


def log_sparkline(values: Sequence[float], width: int, scale: tuple[float, float] | None) -> Text:
    """The last ``width`` values as blocks on a shared log10 ``scale``, coloured by height.

    Non-finite values are a red ``!``, zeros a faint ``·``; the line is left-padded to ``width``.
    """
    return runs_text(sparkline_runs(values, width, scale))


def fraction_runs(value: float, width: int = 8, *, limit: float = 0.5) -> Runs:
    """The runs of :func:`fraction_bar`."""
    if value is None or not math.isfinite(value):
        return [(" " * (width + 5), "")]
    value = min(1.0, max(0.0, value))
    filled = int(round(value * width))
    style = "red" if value > limit else ("yellow" if value > limit / 2 else "green")
    return [("█" * filled, style), ("░" * (width - filled), "#444444"), (f" {value:>3.0%}", style)]


def fraction_bar(value: float, width: int = 8, *, limit: float = 0.5) -> Text:
    """A small bar of a fraction in [0, 1]: green below ``limit``/2, yellow, red above ``limit``."""
    return runs_text(fraction_runs(value, width, limit=limit))


def progress_bar(done: int, total: int, width: int = 24) -> Text:
    """A text progress bar ``━━━━╺───``."""
    frac = 0.0 if total <= 0 else min(1.0, max(0.0, done / total))
    filled = int(frac * width)
    text = Text("━" * filled, "green")
    text.append("━" * (width - filled), "#444444")
    return text


def fmt_duration(seconds: float | None) -> str:
    """``1:05`` (minutes:seconds) or ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-:--"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# --------------------------------------------------------------------------- braille chart

_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


def braille_runs(
    series: Sequence[tuple[Sequence[tuple[float, float]], str]],
    width: int,
    height: int,
    *,
    y_range: tuple[float, float] | None = None,
    x_range: tuple[float, float] | None = None,
) -> list[Runs]:
    """Lines of a braille line chart of several ``(points, style)`` series on shared axes, as
    runs (see :func:`braille_chart`)."""
    width, height = max(1, width), max(1, height)
    pts = [(x, y) for s, _ in series for x, y in s if math.isfinite(x) and math.isfinite(y)]
    cells = [[0] * width for _ in range(height)]
    styles: list[list[str | None]] = [[None] * width for _ in range(height)]
    if pts:
        x0, x1 = x_range or (min(p[0] for p in pts), max(p[0] for p in pts))
        y0, y1 = y_range or (min(p[1] for p in pts), max(p[1] for p in pts))
        if x1 <= x0:
            x1 = x0 + 1
        if y1 <= y0:
            y0, y1 = y0 - 0.5, y1 + 0.5
        dw, dh = width * 2, height * 4

        def plot(px: int, py: int, style: str) -> None:
            if 0 <= px < dw and 0 <= py < dh:
                row, col = py // 4, px // 2
                cells[row][col] |= _DOTS[py % 4][px % 2]
                styles[row][col] = style

        for points, style in series:
            prev: tuple[int, int] | None = None
            for x, y in points:
                if not (math.isfinite(x) and math.isfinite(y)):
                    prev = None
                    continue
                px = int(round((x - x0) / (x1 - x0) * (dw - 1)))
                py = dh - 1 - int(round((min(max(y, y0), y1) - y0) / (y1 - y0) * (dh - 1)))
                if prev is None:
                    plot(px, py, style)
                else:
                    steps = max(abs(px - prev[0]), abs(py - prev[1]), 1)
                    for i in range(1, steps + 1):
                        plot(
                            prev[0] + round((px - prev[0]) * i / steps),
                            prev[1] + round((py - prev[1]) * i / steps),
                            style,
                        )
                prev = (px, py)
    lines: list[Runs] = []
    for r in range(height):
        line: Runs = []
        run, run_style = "", ""
        for c in range(width):
            bits = cells[r][c]
            style = (styles[r][c] or "") if bits else ""
            if style != run_style and run:
                line.append((run, run_style))
                run = ""
            run += chr(0x2800 + bits) if bits else " "
            run_style = style
        if run:
            line.append((run, run_style))
        lines.append(line)
    return lines


def braille_chart(
    series: Sequence[tuple[Sequence[tuple[float, float]], str]],
    width: int,
    height: int,
    *,
    y_range: tuple[float, float] | None = None,
    x_range: tuple[float, float] | None = None,
) -> list[Text]:
    """Lines of a braille line chart of several ``(points, style)`` series on shared axes.

    Each character cell holds 2x4 dots; a later series wins a cell's colour. Returns ``height``
    lines of ``width`` cells, the top line first.
    """
    return [runs_text(line) for line in braille_runs(series, width, height, y_range=y_range, x_range=x_range)]
