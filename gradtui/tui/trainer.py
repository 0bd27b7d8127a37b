"""The bridge from a :class:`gradtui.session.Session` (training thread) to the screen.

:class:`TuiListener` receives the session's callbacks in the training thread, copies what the
screen needs into a :class:`~gradtui.tui.feed.Snapshot` there (so the UI never reads a
structure being written), and posts it as a message. The engine already calls ``on_records``
only a few times a second (``flush_interval``); a newer snapshot replaces a stale one still
queued, and the app repaints at its own bounded rate.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.message import Message

from gradtui.diagnosis import Diagnosis
from gradtui.errors import GradtuiError
from gradtui.history import History
from gradtui.preset import Preset
from gradtui.runlog import RunDir
from gradtui.session import Session, StartInfo
from gradtui.tui.feed import Snapshot, snapshot_from_history
from gradtui.tui.messages import StatsUpdated, TrainingEnded, TrainingStarted, TrainingStatus

if TYPE_CHECKING:
    from gradtui.probe import Records


class TuiListener:
    """A session listener that turns the engine's callbacks into app messages.

    Args:
        post: a thread-safe ``post_message``.
        session: the session, for its pause state.
        clock: monotonic seconds. Defaults to :func:`time.monotonic`.
    """

    def __init__(
        self,
        post: Callable[[Message], Any],
        session: Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.post = post
        self.session = session
        self.clock = clock
        self.info: StartInfo | None = None
        self.history: History | None = None
        self.diagnoses: list[Diagnosis] = []
        self.epoch_logs: list[dict[str, float]] = []
        self.started = clock()
        self.last: Snapshot | None = None

    def snapshot(self, status: str | None = None) -> Snapshot:
        """What the screen shows now."""
        info = self.info
        if status is None:
            status = "paused" if self.session is not None and self.session.paused else "running"
        fields: dict[str, Any] = {"status": status, "elapsed": self.clock() - self.started}
        if info is not None:
            fields.update(
                name=info.name,
                total_steps=info.total_steps,
                steps_per_epoch=info.steps_per_epoch,
                epochs=info.epochs,
                device=info.device,
                out=str(info.out),
            )
        snap = snapshot_from_history(
            self.history or History(),
            layers=info.layers if info else None,
            diagnoses=self.diagnoses,
            epoch_logs=self.epoch_logs,
            **fields,
        )
        self.last = snap
        return snap

    # ---- Listener protocol (training thread)

    def on_status(self, text: str) -> None:
        """Loading data, starting TensorFlow, building the model."""
        self.post(TrainingStatus(text))

    def on_start(self, info: StartInfo) -> None:
        """The model is built."""
        self.info = info
        self.started = self.clock()
        self.post(TrainingStarted(self.snapshot(), info))

    def on_records(self, records: Records, diagnoses: list[Diagnosis], history: History) -> None:
        """New statistics (and any new diagnoses)."""
        self.history = history
        self.diagnoses.extend(diagnoses)
        self.post(StatsUpdated(self.snapshot()))

    def on_epoch(self, epoch: int, logs: dict[str, Any]) -> None:
        """An epoch ended: keep its logs for the chart."""
        entry = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}
        if self.history is not None:
            entry["_step"] = float(self.history.last_step + 1)
        self.epoch_logs.append(entry)
        self.post(StatsUpdated(self.snapshot()))

    def on_end(self, summary: dict[str, Any]) -> None:
        """Training ended; :func:`train` posts the final message."""


def failed_summary(preset: Preset, error: str) -> dict[str, Any]:
    """The ``summary.json`` of a run that failed before its first step."""
    return {
        "name": preset.name,
        "status": "failed",
        "steps": 0,
        "epochs": 0,
        "device": "CPU",
        "params": {"total": 0, "trainable": 0, "non_trainable": 0},
        "initial": {"loss": None},
        "final": {},
        "diagnoses": [],
        "healthy": True,
        "error": error,
    }


def record_failure(out: Path, preset: Preset, error: str) -> dict[str, Any]:
    """Write a run directory with status ``failed`` for a run the engine refused to start.

    Bad input (a broken data file) is refused by the engine before it creates the run
    directory; the TUI still leaves a record of the attempt, as issue 3 asks.
    """
    summary = failed_summary(preset, error)
    try:
        run = RunDir(out)
        run.write_preset(preset.to_toml())
        run.write_summary(summary)
        run.close()
    except (GradtuiError, OSError):
        pass  # the error itself is what the user needs to see
    return summary


def train(session: Session, listener: TuiListener) -> TrainingEnded:
    """Run ``session`` to the end in this (worker) thread; never raises.

    Returns the :class:`TrainingEnded` message for the app: the summary, the final snapshot,
    and the error and its traceback when training failed.
    """
    preset = session.preset
    try:
        summary = session.run()
    except GradtuiError as exc:
        error = exc.one_line()
        summary = record_failure(session.out, preset, error)
        return TrainingEnded(summary, listener.last, error=error, preset=preset)
    except BaseException as exc:  # noqa: BLE001 - anything must reach the screen, not kill the app
        error = f"{type(exc).__name__}: {exc}"
        trace = traceback.format_exc()
        summary = session.summary or record_failure(session.out, preset, error)
        return TrainingEnded(summary, listener.last, error=error, trace=trace, preset=preset)
    snap = listener.snapshot(status=str(summary.get("status", "completed")))
    error = summary.get("error")
    return TrainingEnded(
        summary,
        snap,
        error=error,
        trace=getattr(session, "traceback", None) if error else None,
        preset=preset,
    )
