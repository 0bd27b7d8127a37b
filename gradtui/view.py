"""Rich output of the headless CLI: the live training view, the final summary, ``check``."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gradtui.diagnosis import Diagnosis
from gradtui.history import History, sparkline
from gradtui.preset import Preset
from gradtui.stack import Advice
from gradtui.text import plain

if TYPE_CHECKING:
    from gradtui.probe import Records

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow"}


def fmt(v: Any, spec: str = ".3g") -> str:
    """A number for a table cell; ``-`` for a missing one."""
    if v is None:
        return "-"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return "nan"
    return format(f, spec)


def eta(seconds: float) -> str:
    """``1m05s`` style."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    m, s = divmod(int(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def layer_table(history: History, names: list[str], diagnoses: list[Diagnosis], width: int = 28) -> Table:
    """One row per layer with weights: a log-scale sparkline of its gradient norm (one scale
    for all rows, so vanishing shows as rows fading toward the input) and latest statistics."""
    table = Table(expand=False, pad_edge=False, box=None, header_style="bold")
    for col, just in (
        ("layer", "left"),
        ("grad norm (log)", "left"),
        ("grad_norm", "right"),
        ("grad_max", "right"),
        ("update", "right"),
        ("sat/dead", "right"),
        ("", "left"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    allv = [
        v
        for n in names
        if (s := history.series(n, "grad_norm")) is not None
        for v in s.points()[-width:]
        if math.isfinite(v) and v > 0
    ]
    lo, hi = (min(allv), max(allv)) if allv else (None, None)
    # a diagnosis that still holds marks its layers over one that cleared (drawn as a hollow mark)
    ordered = sorted(diagnoses, key=lambda d: d.cleared_step is None)
    flagged = {n: d for d in ordered for n in (d.layers or [d.layer]) if n}
    for n in names:
        s = history.series(n, "grad_norm")
        latest = history.latest(n)
        act = latest.get("saturation", latest.get("dead"))
        d = flagged.get(n)
        # marks that differ by shape, not only by colour: a pipe or a log has no colour
        if d is None:
            status = Text("●", style="green")
        elif d.cleared_step is not None:
            status = Text("○", style="yellow")
        else:
            status = Text(
                "✖" if d.severity == "error" else "▲", style=SEVERITY_STYLE.get(d.severity, "yellow")
            )
        table.add_row(
            Text(plain(n)),  # a layer's name is data (a watched model's, a run folder's): no markup
            Text(sparkline(s.points() if s else [], width, lo=lo, hi=hi), style="cyan"),
            fmt(latest.get("grad_norm")),
            fmt(latest.get("grad_max")),
            fmt(latest.get("update_ratio"), ".2g"),
            "-" if act is None else f"{act:.0%}",
            status,
        )
    return table


def diagnosis_text(d: Diagnosis) -> Text:
    """``ERROR vanishing dense @ step 2: message`` and its advice on the next line.

    A diagnosis whose condition stopped holding says ``(cleared @ step N)`` after its message.
    """
    t = Text()
    t.append(f"{d.severity.upper():7} ", style=SEVERITY_STYLE.get(d.severity, ""))
    t.append(plain(d.kind), style="bold")
    t.append(f" {plain(d.layer or 'model')} @ step {d.step}: {plain(d.message)}")
    if d.cleared_step is not None:
        t.append(f" (cleared @ step {d.cleared_step})", style="green")
    t.append(f"\n        fix: {plain(d.advice)}", style="dim")
    return t


class RichView:
    """The live view of ``gradtui run``: progress, the per-layer table, diagnoses.

    Repaints at most ``fps`` times a second however fast statistics arrive. When stdout is not a
    terminal (a pipe, a file, CI's log) there is no live display: one whole progress line per
    epoch, never wrapped, then the last frame's layer table.
    """

    def __init__(self, *, quiet: bool = False, console: Console | None = None, fps: float = 4.0) -> None:
        self.quiet = quiet
        self.console = console or Console(stderr=False)
        self.err = Console(stderr=True)
        self.fps = fps
        self.live: Live | None = None
        self.info: Any = None
        self.history: History | None = None
        self.diagnoses: list[Diagnosis] = []
        self.status = "starting"
        self.step = 0
        self.epoch = 0
        self.logs: dict[str, Any] = {}
        self._last_paint = 0.0
        self.finished = False
        #: a pipe or file: whole lines instead of a live display (which reflows at 80 columns)
        self.plain = not self.console.is_terminal

    # listener hooks
    def on_status(self, text: str) -> None:
        self.status = text
        if not self.quiet and self.live is None and self.console.is_terminal:
            self.err.print(Text(f"{plain(text)}…", style="dim"))

    def on_start(self, info: Any) -> None:
        self.info = info
        self.status = "training"
        if not self.quiet and not self.plain:
            self.live = Live(self.render(), console=self.console, auto_refresh=False, transient=False)
            self.live.start()

    def on_records(self, records: Records, diagnoses: list[Diagnosis], history: History) -> None:
        self.history = history
        if len(records):
            self.step = int(records.steps[-1]) + 1
            self.epoch = records.epoch
        self.diagnoses.extend(diagnoses)
        if self.quiet and diagnoses:
            return
        self._paint()

    def on_epoch(self, epoch: int, logs: dict[str, Any]) -> None:
        self.logs = logs
        if self.plain and not self.quiet and self.info is not None:
            self.console.print(self.progress_line(), soft_wrap=True)
        self._paint(force=True)

    def on_end(self, summary: dict[str, Any]) -> None:
        self.status = summary["status"]
        self.finished = True  # the summary repeats the diagnoses: the last frame leaves them out
        if self.plain and not self.quiet and self.info is not None and self.history is not None:
            names = [x.name for x in self.info.layers if x.has_weights]
            self.console.print(layer_table(self.history, names, self.diagnoses))
        self._paint(force=True)
        self.close()

    def close(self) -> None:
        """Stop the live display (leaving its last frame)."""
        if self.live is not None:
            self.live.stop()
            self.live = None
            self.console.print()

    def _paint(self, force: bool = False) -> None:
        if self.live is None:
            return
        now = time.monotonic()
        if not force and now - self._last_paint < 1.0 / self.fps:
            return
        self._last_paint = now
        self.live.update(self.render(), refresh=True)

    def render(self) -> Any:
        """The current frame."""
        info = self.info
        if info is None:
            return Text(self.status)
        parts: list[Any] = [self.progress_line()]
        if self.history is not None:
            names = [x.name for x in info.layers if x.has_weights]
            parts.append(layer_table(self.history, names, self.diagnoses))
        if not self.finished:
            for d in reversed(self.diagnoses):
                parts.append(diagnosis_text(d))
        return Group(*parts)

    def progress_line(self) -> Text:
        """Name, progress bar, step, epoch, ETA, speed, device, loss: one line."""
        info = self.info
        total = max(1, info.total_steps)
        done = min(self.step, total)
        elapsed = time.monotonic() - info.started
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (total - done) / rate if rate > 0 else math.inf
        bar_w = 30
        filled = int(bar_w * done / total)
        head = Text()
        head.append(f"{plain(info.name)} ", style="bold")
        head.append(f"[{'█' * filled}{'░' * (bar_w - filled)}] ")
        head.append(f"step {done}/{total}  epoch {min(self.epoch + 1, info.epochs)}/{info.epochs}  ")
        head.append(f"ETA {eta(left)}  {rate:.0f} steps/s  {info.device}  ", style="dim")
        if self.history is not None and self.history.loss.count:
            head.append(f"loss {fmt(self.history.loss.last, '.4g')}")
        if "val_accuracy" in self.logs:
            head.append(f"  val_acc {fmt(self.logs['val_accuracy'], '.3f')}")
        return head

    def print_summary(self, summary: dict[str, Any]) -> None:
        """The final summary: status, loss, accuracy, diagnoses with advice, run directory."""
        print_summary(summary, self.console, out=self.info.out if self.info else None)


def print_summary(summary: dict[str, Any], console: Console | None = None, out: Any = None) -> None:
    """Print a run's summary (``summary.json``) for a person."""
    console = console or Console()
    # in a pipe or a file a line is a line: Rich would otherwise fold it at 80 columns, mid-word
    wrap = {"soft_wrap": not console.is_terminal}
    status = summary["status"]
    style = {
        "completed": "green",
        "stopped": "yellow",
        "interrupted": "yellow",
        "failed": "red",
    }.get(status, "")
    final = summary.get("final", {})
    initial = summary.get("initial", {}).get("loss")
    line = Text()
    # everything here may come from a run folder someone shared: plain text, escapes shown
    line.append(f"{plain(summary['name'])}: ", style="bold")
    line.append(plain(status), style=style)
    line.append(
        f" after {summary['steps']} steps, {summary['epochs']} epoch(s) on {plain(summary['device'])}; "
    )
    line.append(f"loss {fmt(initial, '.4g')} -> {fmt(final.get('loss'), '.4g')}")
    if "accuracy" in final:
        line.append(f", accuracy {fmt(final['accuracy'], '.3f')}")
    if "val_accuracy" in final:
        line.append(f", val_accuracy {fmt(final['val_accuracy'], '.3f')}")
    console.print(line, **wrap)
    if summary.get("error"):
        console.print(Text(f"error: {plain(summary['error'])}", style="red"), **wrap)
    diags = [Diagnosis.from_dict(d) for d in summary.get("diagnoses", [])]
    if diags:
        for d in diags:
            console.print(diagnosis_text(d), **wrap)
    else:
        console.print(Text("no problems found", style="green"))
    if out is not None:
        console.print(Text(f"run directory: {plain(out)}", style="dim"), **wrap)


def print_check(
    preset: Preset,
    shape: tuple[int, ...],
    classes: int,
    rows: list[dict[str, Any]],
    params: dict[str, int],
    advice: list[Advice],
    console: Console | None = None,
) -> None:
    """The Keras-style summary of ``gradtui check`` with fans, σ² and pre-flight advice."""
    console = console or Console()
    wrap = {"soft_wrap": not console.is_terminal}  # a pipe gets whole lines, as in print_summary
    # the preset's name and description are the file's text: never markup, never escapes
    console.print(
        Text(f'Model: "{plain(preset.name)}"  input {shape}, {classes} classes', style="bold"), **wrap
    )
    if preset.description:
        console.print(Text(plain(preset.description), style="dim"), **wrap)
    table = Table(header_style="bold")
    for col in (
        "Layer (type)",
        "Output Shape",
        "Param #",
        "activation",
        "initializer",
        "fan_in",
        "fan_out",
        "σ²",
    ):
        table.add_column(col, justify="right" if col in ("Param #", "fan_in", "fan_out", "σ²") else "left")
    for r in rows:
        shape_s = "(" + ", ".join("None" if d is None else str(d) for d in r["output_shape"]) + ")"
        table.add_row(
            Text(plain(f"{r['name']} ({r['type']})")),
            shape_s,
            f"{r['params']:,}",
            Text(plain(r["activation"] or "")),
            Text(plain(r["initializer"] or "")),
            str(r["fan_in"] or ""),
            str(r["fan_out"] or ""),
            fmt(r["variance"]) if r["variance"] is not None else "",
        )
    console.print(table)
    console.print(f" Total params: {params['total']:,}")
    console.print(f" Trainable params: {params['trainable']:,}")
    console.print(f" Non-trainable params: {params['non_trainable']:,}")
    if advice:
        console.print(Text("Pre-flight advice:", style="bold yellow"))
        for a in advice:
            console.print(Text(f"  • {plain(a.message)}"), **wrap)
    else:
        console.print(Text("Pre-flight: every initializer fits its activation.", style="green"))
