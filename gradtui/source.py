"""Sources of what the monitor draws: a live training, a recorded run, a run being written.

The TUI does not own training: it draws what a source emits. A source's :meth:`run` is called in
a background thread with an ``emit`` callable and reports the same four events whatever it
reads from:

- :class:`Status` -- a line of progress before the first step (loading data, building the model);
- :class:`Started` -- the first :class:`~gradtui.feed.Snapshot` (the layers are known);
- :class:`Updated` -- a newer, complete snapshot (a stale one may be dropped);
- :class:`Ended` -- the summary and the final snapshot; :meth:`run` returns it too.

:class:`TrainingSource` trains a preset through a :class:`~gradtui.session.Session` (the
controller: start, stop, pause, resume from any thread). :class:`RunSource` reads a run directory
once, or follows one that another process is still appending to until its ``summary.json``
appears. No Textual here: ``gradtui open --follow``'s loop and the training controller are plain
Python, tested without a screen.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradtui.diagnosis import Diagnosis
from gradtui.errors import GradtuiError
from gradtui.feed import Snapshot, snapshot_from_history
from gradtui.history import History
from gradtui.preset import Preset
from gradtui.runlog import RunDir, RunReader, open_regular
from gradtui.session import Session, StartInfo
from gradtui.text import plain

if TYPE_CHECKING:
    from gradtui.probe import Records


@dataclass
class Status:
    """Progress before the first step."""

    text: str


@dataclass
class Started:
    """The first snapshot; ``info`` is the session's :class:`StartInfo` (``None`` for a run read back)."""

    snapshot: Snapshot
    info: Any = None


@dataclass
class Updated:
    """A newer snapshot holding everything the older ones did."""

    snapshot: Snapshot


@dataclass
class Ended:
    """The source is done: the run's summary, its final snapshot, and how it ended.

    Attributes:
        summary: ``summary.json`` (``{"status": "incomplete"}`` for a run without one).
        snapshot: the final snapshot, or ``None`` when nothing was recorded.
        error: the error line of a failed run.
        trace: the traceback of a failed training, when there is one.
        preset: the preset that was trained (live trainings).
        followed: the source followed a run that another process was writing, and saw it end.
    """

    summary: dict[str, Any]
    snapshot: Snapshot | None
    error: str | None = None
    trace: str | None = None
    preset: Preset | None = None
    followed: bool = False


Event = Status | Started | Updated | Ended
Emit = Callable[[Event], Any]


class SnapshotListener:
    """A session listener that turns the engine's callbacks into snapshots and events.

    It copies what the screen needs into a :class:`Snapshot` in the training thread, so a
    reader never sees a structure being written.

    Args:
        emit: called with each event (thread-safe on the receiving side).
        session: the session, for its pause state.
        clock: monotonic seconds. Defaults to :func:`time.monotonic`.
    """

    def __init__(
        self, emit: Emit, session: Session | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.emit = emit
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
        self.emit(Status(text))

    def on_start(self, info: StartInfo) -> None:
        """The model is built."""
        self.info = info
        self.started = self.clock()
        self.emit(Started(self.snapshot(), info))

    def on_records(self, records: Records, diagnoses: list[Diagnosis], history: History) -> None:
        """New statistics (and any new diagnoses)."""
        self.history = history
        self.diagnoses.extend(diagnoses)
        self.emit(Updated(self.snapshot()))

    def on_epoch(self, epoch: int, logs: dict[str, Any]) -> None:
        """An epoch ended: keep its logs for the chart."""
        entry = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float))}
        if self.history is not None:
            entry["_step"] = float(self.history.last_step + 1)
        self.epoch_logs.append(entry)
        self.emit(Updated(self.snapshot()))

    def on_end(self, summary: dict[str, Any]) -> None:
        """Training ended; :meth:`TrainingSource.run` emits :class:`Ended`."""


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


class TrainingSource:
    """A live training of a preset: the UI-free controller of one :class:`Session`.

    Args:
        session: the session to run; its listener becomes this source's
            :class:`SnapshotListener` (plus ``extra_listener``, e.g. a TensorBoard sink).
        clock: monotonic seconds for the snapshots. Defaults to :func:`time.monotonic`.
    """

    def __init__(self, session: Session, clock: Callable[[], float] = time.monotonic) -> None:
        self.session = session
        self.clock = clock
        self.listener: SnapshotListener | None = None

    # control, from any thread
    def stop(self) -> None:
        """Stop after the current step."""
        self.session.stop()

    def pause(self) -> None:
        """Hold before the next step."""
        self.session.pause()

    def resume(self) -> None:
        """Continue."""
        self.session.resume()

    @property
    def paused(self) -> bool:
        """Whether training is held."""
        return self.session.paused

    def run(self, emit: Emit, listener: SnapshotListener | None = None) -> Ended:
        """Train to the end in this thread, emitting events; never raises. Returns :class:`Ended`
        (also emitted)."""
        session, preset = self.session, self.session.preset
        listener = listener or SnapshotListener(emit, session, self.clock)
        self.listener = listener
        if session.listener is None or session.listener is listener:
            session.listener = listener
        else:  # keep what was already listening (a TensorBoard sink)
            from gradtui.tensorboard import Tee

            session.listener = Tee(listener, session.listener)
        ended = _train(session, listener, preset)
        emit(ended)
        return ended


def _train(session: Session, listener: SnapshotListener, preset: Preset) -> Ended:
    try:
        summary = session.run()
    except GradtuiError as exc:
        error = exc.one_line()
        summary = record_failure(session.out, preset, error)
        return Ended(summary, listener.last, error=error, preset=preset)
    except BaseException as exc:  # noqa: BLE001 - anything must reach the screen, not kill the app
        error = f"{type(exc).__name__}: {exc}"
        trace = traceback.format_exc()
        summary = session.summary or record_failure(session.out, preset, error)
        return Ended(summary, listener.last, error=error, trace=trace, preset=preset)
    snap = listener.snapshot(status=str(summary.get("status", "completed")))
    error = summary.get("error")
    return Ended(
        summary,
        snap,
        error=error,
        trace=getattr(session, "traceback", None) if error else None,
        preset=preset,
    )


def _whole(record: dict[str, Any]) -> bool:
    """Whether a record read back has what the rules read of every layer (a damaged field the
    reader left out must not read as NaN: it would raise a false ``non_finite``)."""
    layers = record.get("layers")
    return isinstance(layers, dict) and all(
        isinstance(v, dict)
        and all(
            isinstance(v.get(k), (int, float)) and not isinstance(v.get(k), bool)
            for k in ("grad_norm", "weight_norm")
        )
        for v in layers.values()
    )


#: records of a run without ``summary.json`` that the rules read when it is opened (its last
#: ones: the rules' windows and plateaus are a few hundred steps; ``stats.idx`` seeks to them)
LIVE_DIAGNOSED = 2000


class RunSource:
    """A recorded run directory, read once or followed while another process writes it.

    Memory does not grow with the run's length: the history is a fixed-size downsampling buffer
    filled from the run's index (``stats.idx``), and following reads only the bytes appended.

    Args:
        path: the run directory (a folder that is not a run raises :class:`GradtuiError`).
        follow (bool): keep reading until ``summary.json`` appears (or :meth:`stop`).
            Defaults to False: read what is there, once.
        interval (float): seconds between two reads while following. Defaults to 0.25.
        clock: monotonic seconds. Defaults to :func:`time.monotonic`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        follow: bool = False,
        interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # checks the folder now, before any screen opens; the records are fed on, never kept
        self.reader = RunReader(path, keep=False)
        import gradtui.runindex  # noqa: F401 - NumPy loaded here, not in the reading thread

        self.path = self.reader.path
        self.follow = follow
        self.interval = interval
        self.clock = clock
        self.history = History()
        self._stop = threading.Event()
        self.started = clock()
        #: an error that ended the reading (see :meth:`run`)
        self.error: str | None = None
        #: diagnoses of the records read so far, for a run with no ``summary.json`` yet (one being
        #: written, or killed): the same rules as the training's, fed its last
        #: :data:`LIVE_DIAGNOSED` records, then the lines as they arrive
        self._diagnoser: Any = None
        #: where the run's index lives (``stats.idx``, or a temporary file: a read-only folder)
        self.where = ""

    def stop(self) -> None:
        """Stop following (from any thread)."""
        self._stop.set()

    @property
    def preset(self) -> Preset | None:
        """The run's ``preset.toml`` as a preset, or ``None`` (``watch`` writes none, or it does
        not load)."""
        text = self.reader.run.preset_text
        if text is None:
            try:  # a FIFO in its place is refused, never waited on
                with open_regular(self.path / "preset.toml") as f:
                    text = f.read().decode("utf-8")
            except (OSError, UnicodeDecodeError):
                return None
        from gradtui.preset import loads

        try:
            return loads(text, source=str(self.path / "preset.toml"))
        except GradtuiError:
            return None

    def snapshot(self) -> Snapshot:
        """What the run holds so far."""
        run = self.reader.run
        summary = run.summary
        if self.reader.finished:
            status = str(summary.get("status", "incomplete"))
        else:
            status = "following" if self.follow and not self._stop.is_set() else "incomplete"
        if self.reader.finished or not self._diagnoser:
            diagnoses = [Diagnosis.from_dict(d) for d in summary.get("diagnoses", [])]
        else:  # no summary yet: what the records so far show
            diagnoses = list(self._diagnoser.diagnoses)
        final = summary.get("final") or {}
        steps = int(summary.get("steps") or self.history.last_step + 1)
        snap = snapshot_from_history(
            self.history,
            diagnoses=diagnoses,
            epoch_logs=[final] if final else [],
            name=run.name,
            total_steps=steps,
            epochs=int(summary.get("epochs") or 0),
            device=str(summary.get("device", "")),
            status=status,
            out=str(self.path),
            elapsed=self.clock() - self.started,
        )
        snap.step = max(snap.step, steps - 1)  # with ``every`` > 1 the last recorded step is not the last
        return snap

    def _read(self) -> bool:
        new = self.reader.poll()
        if new:
            self.history.extend(new)
            self._diagnose(new)
        return bool(new)

    def _live_diagnoser(self) -> Any:
        """The diagnoser of a run being written: the layers, thresholds and training of its
        ``preset.toml`` where it has one that plans, else the rules on the records alone."""
        if self._diagnoser is None:
            from gradtui.diagnose import Diagnoser

            preset = self.preset
            layers: list[Any] = []
            if preset is not None:
                try:
                    from gradtui.preset import named_input
                    from gradtui.stack import plan

                    shape = named_input(preset.data)
                    layers = plan(preset, *shape) if shape is not None else []
                except GradtuiError:
                    layers = []
            self._diagnoser = Diagnoser(
                layers,
                preset.monitor.thresholds if preset is not None else None,
                preset.train if preset is not None else None,
                keras_terms=preset is None,
            )
        return self._diagnoser

    def notes(self) -> list[str]:
        """What the user must be told about the reading, one line each: why following stopped
        (the run was deleted or replaced), what was skipped, or that nothing could be read."""
        reader = self.reader
        out = []
        if reader.gone:
            out.append(f"stopped following: {reader.gone}")
        note = reader.note()
        if not reader.usable() and (reader.finished or not self.follow or reader.gone or note):
            out.append(f"nothing in {self.path} can be read" + (f": {note}" if note else ""))
        elif note:
            out.append(note)
        if self.error:
            out.append(self.error)
        if self.where and self.where != "stats.idx":
            out.append(f"{self.path}: its index is kept in {self.where}")
        return [plain(x) for x in out]

    def run(self, emit: Emit) -> Ended:
        """Read (and follow) the run, emitting events; returns :class:`Ended` (also emitted).

        Never raises: an error while reading (a bug) ends the source with the error, which the
        screen shows, instead of leaving it "reading" forever."""
        try:
            return self._run(emit)
        except Exception as exc:  # noqa: BLE001 - anything must reach the screen, not a dead thread
            self.error = f"cannot read the run: {type(exc).__name__}: {exc}"
            run = self.reader.run
            summary = run.summary or {"name": run.name, "status": "incomplete"}
            try:
                snap = self.snapshot()
            except Exception:  # noqa: BLE001 - the error is what matters
                snap = None
            ended = Ended(summary, snap, error=plain(self.error), trace=traceback.format_exc())
            with contextlib.suppress(Exception):
                emit(ended)
            return ended

    def _load_index(self, emit: Emit) -> None:
        """Read what the run holds now through its index (:mod:`gradtui.runindex`): the history
        from its columns, a chunk at a time; the reader then goes on from the last line indexed.
        A run written without an index gets it built, once, with its progress on the screen."""
        from gradtui.runindex import open_index

        reader = self.reader
        if "stats.jsonl" in reader.skip.files:
            return

        began = self.clock()

        def progress(done: int, total: int) -> None:
            if self.clock() - began < 0.5:  # said only when it takes a while
                return
            emit(
                Status(
                    f"indexing {plain(self.path.name)}/stats.jsonl (once, for every later reading): "
                    f"{100 * done // max(total, 1)}%"
                )
            )

        index = open_index(self.path, progress)
        try:
            self.where = index.where
            self.history.add_index(index)
            reader.offset = index.covered
            reader.count = index.count
            for k, v in index.skip.lines.items():
                reader.skip.lines[k] = reader.skip.lines.get(k, 0) + v
            for k, v in index.skip.fields.items():
                reader.skip.fields[k] = reader.skip.fields.get(k, 0) + v
            reader.skip.files.update(index.skip.files)
            reader.poll()  # the summary, the preset, and lines written since
            if not reader.finished and index.count:
                # no summary yet (a run being written, or killed): its last records diagnosed
                # (bounded: not a million records fed to the rules again)
                self._diagnose(index.tail_records(LIVE_DIAGNOSED))
        finally:
            index.close()

    def _diagnose(self, records: list[dict[str, Any]]) -> None:
        if self.reader.finished or self._diagnoser is False or not records:
            return
        try:
            diagnoser = self._live_diagnoser()
            whole = [r for r in records if _whole(r)]
            if whole:
                diagnoser.feed_all(whole)
        except Exception:  # noqa: BLE001 - the reading goes on without live diagnoses
            self._diagnoser = False

    def _run(self, emit: Emit) -> Ended:
        self._load_index(emit)
        self._read()
        emit(Started(self.snapshot()))
        saw_end = False
        if self.follow:
            reader = self.reader
            # a stats.jsonl refused for good (a FIFO, a device) will not get better: no waiting
            while (
                not reader.finished
                and not reader.gone
                and "stats.jsonl" not in reader.skip.files
                and not self._stop.wait(self.interval)
            ):
                if self._read() or reader.finished or reader.gone:
                    emit(Updated(self.snapshot()))
            saw_end = reader.finished and not reader.gone
        self._read()
        if self.reader.partial.strip():
            self.reader.skip.line("torn (no newline at the end)")
        self.reader.partial = b""  # a line still without its newline is torn: dropped
        run = self.reader.run
        summary = run.summary or {"name": run.name, "status": "incomplete"}
        snap = self.snapshot()
        if not self.reader.finished:
            snap.status = "incomplete"
        error = summary.get("error")
        if self.reader.gone:
            error = f"stopped following: {self.reader.gone}"
        ended = Ended(summary, snap, error=error, followed=saw_end)
        emit(ended)
        return ended
