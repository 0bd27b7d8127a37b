"""One training run from a preset: data, model, monitor, run directory, start/stop/pause.

Used by ``gradtui run`` (in the main thread) and by the TUI (in a worker thread): it reports
through a listener object and can be stopped or paused from another thread.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gradtui.diagnosis import Diagnosis
from gradtui.errors import GradtuiError, in_file
from gradtui.history import History
from gradtui.preset import Preset
from gradtui.runlog import RunDir, RunDirError, default_run_dir
from gradtui.stack import LayerInfo, check_memory, param_counts, plan

if TYPE_CHECKING:
    from gradtui.data import Dataset
    from gradtui.probe import Records


class Listener(Protocol):
    """What a session tells its audience; every method is optional."""

    def on_status(self, text: str) -> None: ...
    def on_start(self, info: StartInfo) -> None: ...
    def on_records(self, records: Records, diagnoses: list[Diagnosis], history: History) -> None: ...
    def on_epoch(self, epoch: int, logs: dict[str, Any]) -> None: ...
    def on_end(self, summary: dict[str, Any]) -> None: ...


@dataclass
class StartInfo:
    """What is known when training starts."""

    name: str
    out: Path
    layers: list[LayerInfo]
    params: dict[str, int]
    device: str
    total_steps: int
    steps_per_epoch: int
    epochs: int
    every: int
    started: float = field(default_factory=time.monotonic)


@dataclass
class Prepared:
    """A preset whose data is loaded and whose model fits in memory, not yet built."""

    preset: Preset
    data: Dataset
    layers: list[LayerInfo]
    steps_per_epoch: int
    total_steps: int


def prepare(preset: Preset, *, output_follows_data: bool = False) -> Prepared:
    """Load the data and check the model against it and against memory (bad input -> error).

    With ``output_follows_data`` (data named on the command line) the output layer takes the
    data's number of classes instead of refusing a preset written for another number; the
    returned ``Prepared.preset`` is then the changed preset.
    """
    from gradtui.data import load

    with in_file(preset.source):
        data = load(preset.data, seed=preset.train.seed)
        if output_follows_data and isinstance(data.num_classes, int) and data.num_classes >= 2:
            preset = preset.with_output_units(data.num_classes)
        layers = plan(preset, data.input_shape, data.num_classes)
        check_memory(preset, layers)
    steps_per_epoch = max(1, math.ceil(len(data.x_train) / preset.train.batch_size))
    total = steps_per_epoch * preset.train.epochs
    if preset.train.max_steps is not None:
        total = min(total, preset.train.max_steps)
    return Prepared(preset, data, layers, steps_per_epoch, total)


class Session:
    """Train one preset, recording a run directory.

    Args:
        preset: the validated preset.
        out: the run directory. Defaults to ``runs/<UTC timestamp>-<name>``.
        listener: receives progress; see :class:`Listener`.
        overwrite (bool): allow an existing run directory. Defaults to False.
        prepared: a :func:`prepare` result, if the caller already has one.
        fail_on: diagnosis kinds that stop training at their first diagnosis (status
            ``stopped``; the diagnosis is kept in ``failed_on``), for ``--fail-on``.
        tensorboard: a :class:`gradtui.tensorboard.TensorBoardSink` to write too (scalars of
            every recorded step, histograms once an epoch, diagnoses); closed at the end.
    """

    def __init__(
        self,
        preset: Preset,
        out: str | Path | None = None,
        *,
        listener: Any = None,
        overwrite: bool = False,
        prepared: Prepared | None = None,
        flush_interval: float = 0.2,
        fail_on: frozenset[str] | set[str] = frozenset(),
        tensorboard: Any = None,
    ) -> None:
        self.preset = preset
        self.tensorboard = tensorboard
        self.out = Path(out) if out is not None else default_run_dir(preset.name)
        self.listener = listener
        self.overwrite = overwrite
        self.prepared = prepared
        self.flush_interval = flush_interval
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self.monitor: Any = None
        self.summary: dict[str, Any] | None = None
        self.status = "idle"
        self.traceback: str | None = None
        self.fail_on = frozenset(fail_on)
        #: the first diagnosis of a ``fail_on`` kind, which stopped training
        self.failed_on: Diagnosis | None = None
        #: why ``summary.json`` could not be written (a full disk, the folder deleted mid-run)
        self.write_error: RunDirError | None = None

    # ------------------------------------------------------------------ control (any thread)

    def stop(self) -> None:
        """Ask training to stop after the current step (status ``stopped``)."""
        self._stop.set()
        self._resume.set()

    def pause(self) -> None:
        """Hold training before the next step."""
        self._resume.clear()

    def resume(self) -> None:
        """Continue a paused training."""
        self._resume.set()

    @property
    def paused(self) -> bool:
        """Whether training is held."""
        return not self._resume.is_set()

    def _check_fail_on(self, records: Records, new: list[Diagnosis]) -> None:
        """Stop at the first diagnosis of a ``fail_on`` kind: a CI gate need not train on."""
        if self.failed_on is None:
            match = next((d for d in new if d.kind in self.fail_on), None)
            if match is not None:
                self.failed_on = match
                self.stop()

    def _emit(self, method: str, *args: Any) -> None:
        fn = getattr(self.listener, method, None)
        if fn is not None:
            fn(*args)

    # ------------------------------------------------------------------ run

    def run(self) -> dict[str, Any]:
        """Train to the end; returns the summary. Bad input raises :class:`GradtuiError`
        before the run directory is created; anything after that is recorded in it."""
        self._emit("on_status", "loading data")
        prepared = self.prepared or prepare(self.preset)
        preset = prepared.preset
        run = RunDir(self.out, overwrite=self.overwrite, wording="cli")
        try:
            run.write_preset(preset.to_toml())
        except RunDirError:  # a full disk before the first step: one line, nothing trained
            run.close()
            raise
        status, error = "failed", None
        monitor = None
        params = param_counts(prepared.layers)
        try:
            self._emit("on_status", "starting TensorFlow")
            from gradtui.build import build, device_name, import_keras
            from gradtui.monitor import Monitor

            keras = import_keras()
            self._emit("on_status", "building the model")
            model, layers = build(
                preset, prepared.data.input_shape, prepared.data.num_classes, total_steps=prepared.total_steps
            )
            from gradtui.build import keras_param_counts

            params = keras_param_counts(model)
            monitor = Monitor(
                model,
                layers,
                every=preset.monitor.every,
                thresholds=preset.monitor.thresholds,
                train=preset.train,
                stop_on_nonfinite=preset.monitor.stop_on_nonfinite,
                name=preset.name,
                run=run,
                histograms=self.tensorboard is not None and self.tensorboard.histograms,
            )
            if self.tensorboard is not None:
                monitor.add_tensorboard(self.tensorboard)
            monitor.callback.interval = self.flush_interval
            monitor.device = device_name()
            self.monitor = monitor
            if self.fail_on:
                monitor.listeners.append(self._check_fail_on)
            monitor.listeners.append(lambda recs, new: self._emit("on_records", recs, new, monitor.history))
            monitor.epoch_listeners.append(lambda e, logs: self._emit("on_epoch", e, logs))
            info = StartInfo(
                name=preset.name,
                out=self.out,
                layers=layers,
                params=params,
                device=monitor.device,
                total_steps=prepared.total_steps,
                steps_per_epoch=prepared.steps_per_epoch,
                epochs=preset.train.epochs,
                every=preset.monitor.every,
            )
            self._emit("on_start", info)
            self.status = "running"
            control = _control_callback(keras, self, prepared.total_steps)
            data = prepared.data
            monitor.mode_probe = _mode_probe(layers, data, preset)
            validation = (data.x_val, data.y_val) if data.x_val is not None else None
            model.fit(
                data.x_train,
                data.y_train,
                batch_size=preset.train.batch_size,
                epochs=preset.train.epochs,
                validation_data=validation,
                shuffle=True,
                verbose=0,
                callbacks=[monitor.callback, control],
            )
            # a stop asked at the last drain (a --fail-on match found as training ended) stopped
            # nothing: every step ran
            cut_short = self._stop.is_set() and control.steps < prepared.total_steps
            status = "stopped" if monitor.nonfinite_stop or cut_short else "completed"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except GradtuiError as exc:
            status, error = "failed", exc.one_line()  # a RunDirError too: the disk filled up
        except Exception as exc:  # a Keras or TensorFlow error: recorded, not lost
            status, error = "failed", f"{type(exc).__name__}: {_error_line(exc)}"
            self.traceback = traceback.format_exc()
        finally:
            with _interrupts_held():
                self.status = status
                self.summary = self._record_end(run, monitor, preset, status, error, params)
                self.status = self.summary["status"]
            if self.tensorboard is not None:
                self.tensorboard.add_diagnoses(self.summary.get("diagnoses", []))
                self.tensorboard.close()
            self._emit("on_end", self.summary)
        return self.summary

    def _record_end(
        self,
        run: RunDir,
        monitor: Any,
        preset: Preset,
        status: str,
        error: str | None,
        params: dict[str, int],
    ) -> dict[str, Any]:
        """Write ``summary.json`` (and ``traceback.txt``) and close the run directory; returns
        the summary.

        A run directory that cannot be written (a full disk, deleted mid-run) ends the run as
        ``failed`` with the reason in the summary; if even ``summary.json`` cannot be written,
        :attr:`write_error` keeps the reason for the caller to say in one line.
        """
        summary: dict[str, Any] | None = None
        try:
            if monitor is not None:
                summary = monitor.finish(status, error=error, params=params)
                if run.error is not None and summary["status"] != "failed":
                    # the last drain could not be written (the disk filled up as training ended)
                    summary["status"], summary["error"] = "failed", run.error.one_line()
                    run.write_summary(summary)
            else:
                summary = _bare_summary(preset, status, error, params)
                run.write_summary(summary)
            if self.traceback:
                # summary.json has the one line; the whole story is kept beside it
                run.write_text("traceback.txt", self.traceback)
        except RunDirError as exc:
            self.write_error = exc
            if summary is None:
                summary = monitor.summary(status, error=error, params=params)
            summary["status"], summary["error"] = "failed", error or exc.one_line()
        finally:
            run.close()
        return summary


def stopped_at_nonfinite(summary: dict[str, Any]) -> bool:
    """Whether a run's summary says training was stopped at a NaN/Inf (``stopped`` with a
    ``non_finite`` diagnosis): ``gradtui run`` and ``tui --headless --train`` then exit 1."""
    return summary.get("status") == "stopped" and any(
        isinstance(d, dict) and d.get("kind") == "non_finite" for d in summary.get("diagnoses") or []
    )


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ignore Ctrl-C while the run directory is finished.

    A user often presses Ctrl-C twice; the second one must not cut the last records or
    ``summary.json`` short. Only the main thread can handle signals; elsewhere (the TUI's
    worker) there is nothing to hold.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler installed from C: leave it alone
        yield
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _error_line(exc: BaseException) -> str:
    """The line of an exception's message that says what went wrong.

    TensorFlow's errors start with ``Graph execution error:`` and the node's stack; the message
    that matters (``Received a label value of 99 ...``) comes last.
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0]
    if text.endswith(":") and len(lines) > 1:
        useful = [ln for ln in lines[1:] if not ln.startswith(("File ", "[[", "Detected at node"))]
        if useful:
            text = f"{text} {useful[-1]}"
    return text if len(text) <= 300 else text[:297] + "..."


#: examples of the validation set scored in both BatchNorm modes at each epoch's end
MODE_PROBE_SIZE = 256


def _mode_probe(layers: list[Any], data: Any, preset: Preset) -> tuple[Any, Any, str] | None:
    """One validation batch for the ``bn_statistics`` check, where the model has BatchNorm."""
    if data.x_val is None or not any(getattr(x, "type", "") == "BatchNormalization" for x in layers):
        return None
    n = min(MODE_PROBE_SIZE, len(data.x_val))
    return data.x_val[:n], data.y_val[:n], "loss" if preset.data.regression else "accuracy"


def _bare_summary(preset: Preset, status: str, error: str | None, params: dict[str, int]) -> dict[str, Any]:
    return {
        "name": preset.name,
        "status": status,
        "steps": 0,
        "epochs": 0,
        "device": "CPU",
        "params": params,
        "initial": {"loss": None},
        "final": {},
        "diagnoses": [],
        "healthy": True,
        "error": error,
    }


def _control_callback(keras: Any, session: Session, total_steps: int) -> Any:
    class Control(keras.callbacks.Callback):
        """Pause, stop and ``max_steps`` for a session."""

        def __init__(self) -> None:
            super().__init__()
            self.steps = 0

        def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
            if not session._resume.is_set():
                session.status = "paused"
                session._resume.wait()
                session.status = "running"

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.steps += 1
            if session._stop.is_set() or self.steps >= total_steps:
                self.model.stop_training = True

    return Control()
