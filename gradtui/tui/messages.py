"""App-wide messages: what the background threads tell the screen, and what widgets tell the app.

Thread workers talk to the UI only through these (``post_message`` is thread-safe). A newer
:class:`StatsUpdated` or :class:`TrainingStatus` replaces a stale one still in the queue
(``can_replace``), so a fast model never floods a slow screen.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

from gradtui.diagnosis import Diagnosis
from gradtui.preset import Preset
from gradtui.tui.feed import Snapshot


class KerasReady(Message):
    """TensorFlow/Keras finished importing in the background."""

    def __init__(self, device: str, error: str | None = None) -> None:
        self.device = device
        self.error = error
        super().__init__()


class TrainingStatus(Message):
    """A line of progress before the first step (loading data, building the model)."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__()

    def can_replace(self, message: Message) -> bool:
        """A newer status line supersedes an older one."""
        return isinstance(message, TrainingStatus)


class TrainingStarted(Message):
    """The model is built and the first step is about to run."""

    def __init__(self, snapshot: Snapshot, info: Any) -> None:
        self.snapshot = snapshot
        self.info = info
        super().__init__()


class StatsUpdated(Message):
    """New statistics: a complete :class:`Snapshot`, so a stale one can be dropped."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        super().__init__()

    def can_replace(self, message: Message) -> bool:
        """Each snapshot holds everything the older one did (diagnoses included)."""
        return isinstance(message, StatsUpdated)


class TrainingEnded(Message):
    """Training finished, stopped or failed; the run directory is written."""

    def __init__(
        self,
        summary: dict[str, Any],
        snapshot: Snapshot | None,
        *,
        error: str | None = None,
        trace: str | None = None,
        preset: Preset | None = None,
        followed: bool = False,
    ) -> None:
        self.summary = summary
        self.snapshot = snapshot
        self.error = error
        self.trace = trace
        self.preset = preset
        #: a followed run that another process was writing has just finished
        self.followed = followed
        super().__init__()


class ApplyFix(Message):
    """A widget asks the app to apply a diagnosis's remedy to the stack."""

    def __init__(self, diagnosis: Diagnosis) -> None:
        self.diagnosis = diagnosis
        super().__init__()


class StackChanged(Message):
    """The builder produced a new, valid preset."""

    def __init__(self, preset: Preset) -> None:
        self.preset = preset
        super().__init__()


def message_for(event: Any) -> Message:
    """The app message of a source's event (:mod:`gradtui.source`)."""
    from gradtui import source

    if isinstance(event, source.Updated):
        return StatsUpdated(event.snapshot)
    if isinstance(event, source.Status):
        return TrainingStatus(event.text)
    if isinstance(event, source.Started):
        return TrainingStarted(event.snapshot, event.info)
    if isinstance(event, source.Ended):
        return TrainingEnded(
            event.summary,
            event.snapshot,
            error=event.error,
            trace=event.trace,
            preset=event.preset,
            followed=event.followed,
        )
    raise TypeError(f"not a source event: {event!r}")
