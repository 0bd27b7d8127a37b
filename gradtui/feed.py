"""What the screen shows of a run, as plain data: built by a source, read by the UI.

A :class:`Snapshot` is a self-contained copy of everything the monitor draws (per-layer series,
the loss, epoch logs, every diagnosis so far), so a newer one can replace a stale one in the
message queue without losing anything, and the UI thread never reads a structure that the
training thread is still writing. The same snapshot is built from a finished run directory for
the compare view and for deterministic snapshot tests.

No Textual here: this module is plain Python over the engine's types.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradtui.diagnosis import Diagnosis
from gradtui.history import History, TimeCurve
from gradtui.runlog import Run
from gradtui.stack import LayerInfo

#: points of each layer's gradient-norm series sent to the screen
SERIES_POINTS = 96


@dataclass
class LayerRow:
    """One weighted layer's statistics as the monitor shows them.

    Attributes:
        name: the Keras layer name.
        grad: the recent gradient norms, oldest first.
        grad_norm: the newest gradient norm.
        update_ratio: the newest ‖Δw‖/‖w‖.
        act_key: ``"saturation"``, ``"dead"`` or ``None`` when the layer has no such statistic.
        act_value: the newest saturation or dead fraction.
        nonfinite: whether the newest gradients held NaN/Inf.
        attn_logit_max: an attention query row's recent largest |q·k|/√d, oldest first (steps
            without it left out; empty on other rows).
        attn_entropy: its recent attention entropy in nats (lowest head), likewise.
    """

    name: str
    grad: list[float] = field(default_factory=list)
    grad_norm: float = math.nan
    update_ratio: float = math.nan
    act_key: str | None = None
    act_value: float = math.nan
    nonfinite: bool = False
    attn_logit_max: list[float] = field(default_factory=list)
    attn_entropy: list[float] = field(default_factory=list)


def _measured(history: History, name: str, key: str, points: int) -> list[float]:
    """The recent values of a statistic recorded on some steps only: NaN (not measured) left out."""
    series = history.series(name, key)
    if series is None:
        return []
    return [v for v in series.points() if v == v][-points:]


@dataclass
class Snapshot:
    """Everything the monitor draws at one moment of a run.

    Attributes:
        name: the preset's name.
        step: the newest recorded optimizer step (-1 before the first).
        epoch: the epoch of that step (0-based).
        total_steps: steps the run will take at most.
        steps_per_epoch: optimizer steps in one epoch.
        epochs: epochs planned.
        elapsed: seconds since training started.
        loss: the recorded training loss, oldest first.
        loss_steps: the step of each ``loss`` point.
        epoch_logs: the Keras logs of each finished epoch; ``_step`` is the step it ended at.
        rows: the weighted layers, input first.
        diagnoses: every diagnosis so far, oldest first.
        device: ``CPU`` or the GPU's name.
        status: ``running``, ``paused``, ``completed``, ``stopped``, ``failed``...
        out: the run directory.
        time_curves: each recurrent layer's newest curve of the gradient through time.
        recurrent: the model has recurrent layers (their curves may not be measured yet).
    """

    name: str = ""
    step: int = -1
    epoch: int = 0
    total_steps: int = 0
    steps_per_epoch: int = 0
    epochs: int = 0
    elapsed: float = 0.0
    loss: list[float] = field(default_factory=list)
    loss_steps: list[int] = field(default_factory=list)
    epoch_logs: list[dict[str, float]] = field(default_factory=list)
    rows: list[LayerRow] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    device: str = ""
    status: str = "running"
    out: str = ""
    time_curves: list[TimeCurve] = field(default_factory=list)
    recurrent: bool = False

    @property
    def steps_done(self) -> int:
        """Optimizer steps finished (the newest recorded step + 1)."""
        return self.step + 1

    @property
    def eta(self) -> float | None:
        """Seconds left at the pace so far, or ``None`` before the pace is known."""
        done = self.steps_done
        if done <= 0 or self.elapsed <= 0 or self.total_steps <= 0:
            return None
        return max(0.0, self.elapsed / done * (self.total_steps - done))

    def final(self) -> dict[str, float]:
        """The newest epoch's logs, or the newest loss when no epoch has finished."""
        if self.epoch_logs:
            return dict(self.epoch_logs[-1])
        return {"loss": self.loss[-1]} if self.loss else {}


#: the monitor's row of a recurrent layer's recurrent kernel is this mark and the layer's name (the
#: mark first: a narrow name column cuts the end)
RECURRENT_MARK = "↻"


def _row(name: str, history: History, points: int) -> LayerRow:
    latest = history.latest(name)
    series = history.series(name, "grad_norm")
    act_key = "saturation" if "saturation" in latest else ("dead" if "dead" in latest else None)
    return LayerRow(
        name=name,
        grad=series.points()[-points:] if series is not None else [],
        grad_norm=latest.get("grad_norm", math.nan),
        update_ratio=latest.get("update_ratio", math.nan),
        act_key=act_key,
        act_value=latest.get(act_key, math.nan) if act_key else math.nan,
        nonfinite=latest.get("nonfinite", 0) > 0,
        attn_logit_max=_measured(history, name, "attn_logit_max", points),
        attn_entropy=_measured(history, name, "attn_entropy", points),
    )


def _steps(history: History) -> list[int]:
    series = history.loss
    steps = list(series.steps)
    if series._acc:  # the partial newest bucket that points() includes
        steps.append(series._acc_step)
    return steps


def weighted_names(layers: list[LayerInfo] | None, history: History) -> list[str]:
    """The rows of the monitor: layers with weights in model order, then any others recorded."""
    names = [x.name for x in layers or [] if x.has_weights]
    names += [n for n in history.layers if n not in names]
    return [n for n in names if n in history.layers] or names


def snapshot_from_history(
    history: History,
    *,
    layers: list[LayerInfo] | None = None,
    diagnoses: list[Diagnosis] | None = None,
    epoch_logs: list[dict[str, float]] | None = None,
    points: int = SERIES_POINTS,
    **info: Any,
) -> Snapshot:
    """A snapshot of a :class:`History`; ``info`` fills the other :class:`Snapshot` fields."""
    rows = []
    for n in weighted_names(layers, history):
        rows.append(_row(n, history, points))
        recurrent = history.series(n, "recurrent_grad_norm")
        if recurrent is not None:  # a recurrent layer's recurrent kernel: a row of its own
            rows.append(
                LayerRow(
                    name=f"{RECURRENT_MARK}{n}",
                    grad=recurrent.points()[-points:],
                    grad_norm=history.latest(n).get("recurrent_grad_norm", math.nan),
                )
            )
    time_curves = list(history.time.values())  # frozen, replaced when measured again: shared
    recurrent = (
        bool(time_curves)
        or any(x.is_recurrent for x in layers or [])
        or any(r.name.startswith(RECURRENT_MARK) for r in rows)
    )
    return Snapshot(
        step=history.last_step,
        epoch=history.last_epoch,
        loss=history.loss.points(),
        loss_steps=_steps(history),
        epoch_logs=[dict(x) for x in epoch_logs or []],
        rows=rows,
        diagnoses=list(diagnoses or []),
        time_curves=time_curves,
        recurrent=recurrent,
        **info,
    )


def snapshot_from_records(
    records: list[dict[str, Any]],
    summary: dict[str, Any] | None = None,
    *,
    name: str = "",
    out: str = "",
    points: int = SERIES_POINTS,
) -> Snapshot:
    """A snapshot of recorded statistics (a run directory's ``stats.jsonl`` and summary)."""
    summary = summary or {}
    history = History()
    history.extend(records)
    diagnoses = [Diagnosis.from_dict(d) for d in summary.get("diagnoses", [])]
    final = summary.get("final") or {}
    logs = [final] if final else []
    steps = int(summary.get("steps") or history.last_step + 1)
    snap = snapshot_from_history(
        history,
        diagnoses=diagnoses,
        epoch_logs=logs,
        points=points,
        name=name or str(summary.get("name", "")),
        total_steps=steps,
        epochs=int(summary.get("epochs") or 0),
        device=str(summary.get("device", "")),
        status=str(summary.get("status", "incomplete")),
        out=out,
    )
    # with ``every`` > 1 the last recorded step is not the last step taken
    snap.step = max(snap.step, steps - 1)
    return snap


def snapshot_from_run(path: str | Path) -> Snapshot:
    """A snapshot of a finished (or incomplete) run directory, read through its index (memory
    bounded whatever the run's length; see :class:`gradtui.source.RunSource`)."""
    from gradtui.source import RunSource

    source = RunSource(path)
    ended = source.run(lambda event: None)
    if ended.snapshot is not None:
        return ended.snapshot
    run: Run = source.reader.run
    return snapshot_from_records([], run.summary, out=str(run.path))


class Clock:
    """Monotonic seconds since creation; replaced by a fixed clock in tests."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.start
