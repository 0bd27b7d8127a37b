"""The bridge from a source's events (a background thread) to the screen's messages.

The training controller and the snapshots are headless (:mod:`gradtui.source`); here they are
only wired to ``post_message``. A newer snapshot replaces a stale one still queued
(:class:`~gradtui.tui.messages.StatsUpdated`), and the app repaints at its own bounded rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual.message import Message

from gradtui.session import Session
from gradtui.source import (
    Ended,
    SnapshotListener,
    TrainingSource,
    failed_summary,
    record_failure,
)
from gradtui.tui.messages import TrainingEnded, message_for

__all__ = ["TuiListener", "failed_summary", "record_failure", "train", "poster"]


def poster(post: Callable[[Message], Any]) -> Callable[[Any], None]:
    """An ``emit`` for a source: each event posted as its app message."""

    def emit(event: Any) -> None:
        post(message_for(event))

    return emit


class TuiListener(SnapshotListener):
    """A :class:`~gradtui.source.SnapshotListener` posting app messages.

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
        super().__init__(poster(post), session, clock)
        self.post = post


def train(session: Session, listener: TuiListener) -> TrainingEnded:
    """Run ``session`` to the end in this (engine) thread; never raises.

    Returns the :class:`TrainingEnded` message for the app (the caller posts it).
    """
    ended: list[Ended] = []
    TrainingSource(session).run(ended.append, listener)
    return message_for(ended[-1])
