"""One monitored training: the recorder, the run directory, the diagnoses, listeners.

:class:`Monitor` is shared by ``gradtui run``, the TUI and :func:`watch`, so all three record
the same statistics and diagnoses into the same run directory layout, through the same
:class:`gradtui.recorder.Recorder`: the training itself is never replaced.
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gradtui import keras_compat as kc
from gradtui import versions
from gradtui.diagnose import Diagnoser, Diagnosis
from gradtui.history import History
from gradtui.preset import Thresholds, TrainSpec
from gradtui.probe import Records, make_callback
from gradtui.recorder import Recorder
from gradtui.rows import describe
from gradtui.runlog import RunDir
from gradtui.stack import LayerInfo

#: a custom loop's histogram interval, in optimizer steps (``fit`` takes one an epoch)
HISTOGRAM_STEPS = 100
#: how many measured time curves a recurrent layer's through-time ratio is the median of
TIME_RATIO_MEASUREMENTS = 3
#: called with the new records (a drain's arrays) and the diagnoses they raised
RecordListener = Callable[[Records, list[Diagnosis]], None]


def _initial_weights(model: Any, tracked: list[Any]) -> dict[str, float]:
    """Each row's weight norm now, before the first update: ``stats.jsonl`` records it after
    each step's update, so a first step that throws the weights out would hide the start."""
    out: dict[str, float] = {}
    try:
        weights = model.trainable_weights
        for t in tracked:
            out[t.name] = math.sqrt(
                sum(float(np.sum(np.square(np.asarray(weights[i].numpy(), np.float64)))) for i in t.variables)
            )
    except Exception:  # a model whose weights cannot be read yet: growth is judged from the records
        return {}
    return out


class Monitor:
    """Records per-layer statistics of a model's training and diagnoses them.

    Args:
        model: a built Keras model.
        layers: its :class:`LayerInfo`; derived from the model when omitted.
        out: the run directory to write, or ``None`` to keep everything in memory.
        every (int): record statistics every N optimizer steps. Defaults to 1.
        thresholds: diagnosis thresholds. Defaults to :class:`Thresholds`.
        train: the preset's training settings (for advice). Defaults to None.
        stop_on_nonfinite (bool): stop training at the first NaN/Inf. Defaults to True.
        overwrite (bool): allow writing into an existing run directory. Defaults to False.
        name (str): the run's name in ``summary.json``.
    """

    def __init__(
        self,
        model: Any,
        layers: list[LayerInfo] | None = None,
        *,
        out: str | Path | None = None,
        every: int = 1,
        thresholds: Thresholds | None = None,
        train: TrainSpec | None = None,
        stop_on_nonfinite: bool = True,
        overwrite: bool = False,
        name: str | None = None,
        history_size: int = 256,
        run: RunDir | None = None,
        optimizer: Any = None,
        histograms: bool = False,
    ) -> None:
        self.model = model
        self.instrument = Recorder(model, optimizer, every=every, histograms=histograms)
        described = describe(model, self.instrument.tracked)
        self.layers = _with_rows(layers, described) if layers is not None else described
        self.name = name or getattr(model, "name", "model")
        try:
            self.run = (
                run if run is not None else (RunDir(out, overwrite=overwrite) if out is not None else None)
            )
        except BaseException:
            self.instrument.detach()
            raise
        # a training without a preset (gradtui.watch of the user's own code) is advised in Keras terms
        self.diagnoser = Diagnoser(
            self.layers,
            thresholds,
            train,
            _initial_weights(model, self.instrument.tracked),
            keras_terms=train is None,
            optimizer=self.instrument.optimizer,
        )
        self._thresholds, self._train = thresholds, train
        #: one recorder and its diagnoser per watched optimizer (``gradtui run``: just one); a
        #: GAN's discriminator and generator are two networks, each judged along its own depth
        self.parts: list[tuple[Recorder, Diagnoser]] = [(self.instrument, self.diagnoser)]
        self._starts: dict[int, int] = {}
        self.history = History(history_size)
        self.stop_on_nonfinite = stop_on_nonfinite
        self.listeners: list[RecordListener] = []
        self.epoch_listeners: list[Callable[[int, dict[str, Any]], None]] = []
        self.callback = make_callback(
            self.flush, self._on_epoch, lambda _e: self.instrument.request_histograms()
        )
        #: sinks of gradient and weight histograms (``add_histograms(step, gradients, weights)``)
        self.histogram_sinks: list[Any] = []
        self._last_hist_request = 0
        self.callback.flush_every = max(1, self.instrument.capacity // 2) * self.instrument.every
        self.initial_loss: float | None = None
        self.last_loss: float | None = None
        self.last_logs: dict[str, Any] = {}
        self.epochs_done = 0
        self.nonfinite_stop = False
        self.device = "CPU"
        self._lock = threading.Lock()
        self._start_iterations = self._iterations()
        self._drainer: threading.Thread | None = None
        #: the TensorBoard sink of :meth:`add_tensorboard`, if any
        self._tensorboard: Any = None
        #: per recurrent layer, the latest measured time ratios (see :meth:`_time_ratio`)
        self._time_ratios: dict[str, deque[float]] = {}
        self._closing = threading.Event()
        self._said_nothing = False
        #: the model's optimizer when last seen (a fit after a new compile() follows the new one)
        self._compiled: Any = None
        self.closed = False
        #: a validation batch ``(x, y, metric)`` scored in both BatchNorm modes at each epoch's
        #: end (``bn_statistics``); set by :class:`gradtui.session.Session` for a model with
        #: BatchNormalization
        self.mode_probe: tuple[Any, Any, str] | None = None
        #: diagnoses found outside a drain (at an epoch's end), handed on with the next one
        self._pending: list[Diagnosis] = []

    @property
    def diagnoses(self) -> list[Diagnosis]:
        """What was found so far."""
        return [d for _, diagnoser in self.parts for d in diagnoser.diagnoses]

    @property
    def records_written(self) -> int:
        """Records drained so far."""
        return sum(rec.read_count - rec.lost for rec, _ in self.parts)

    @property
    def optimizers(self) -> list[Any]:
        """The optimizers whose updates are recorded."""
        return [rec.optimizer for rec, _ in self.parts]

    def add_optimizer(self, optimizer: Any, again: bool = False, continues: bool = False) -> bool:
        """Also record ``optimizer`` (its rows: the variables it is seen to update); False when
        it is recorded already (unless ``again``: its earlier recorder was detached).
        ``continues``: it takes over from the optimizer of an earlier ``compile()``, so its steps
        are numbered on from the steps taken so far."""
        if not again and any(rec.optimizer is optimizer for rec, _ in self.parts):
            return False
        offset = self.steps if continues else 0
        rec = Recorder(self.model, optimizer, every=self.instrument.every)
        rec.step_offset = offset - _iterations_of(optimizer) if continues else 0
        self.parts.append(
            (
                rec,
                Diagnoser(
                    describe(self.model, rec.tracked),
                    self._thresholds,
                    self._train,
                    _initial_weights(self.model, rec.tracked),
                    keras_terms=self._train is None,
                    optimizer=optimizer,
                ),
            )
        )
        self._starts[id(rec)] = _iterations_of(optimizer) - offset
        if continues:  # the earlier optimizer's steps are counted in this one's from now on
            for earlier, _ in self.parts[:-1]:
                if earlier is self.instrument:
                    self._start_iterations = self._iterations()
                else:
                    self._starts[id(earlier)] = _iterations_of(earlier.optimizer)
        return True

    def _iterations(self) -> int:
        return _iterations_of(self.instrument.optimizer)

    @property
    def steps(self) -> int:
        """Optimizer steps taken since the monitor was attached (the most of its optimizers')."""
        first = self._iterations() - self._start_iterations
        others = [_iterations_of(rec.optimizer) - self._starts.get(id(rec), 0) for rec, _ in self.parts[1:]]
        return max([first, *others])

    def flush(self, why: str = "") -> Records:
        """Drain new statistics: write them, diagnose them, tell the listeners.

        Everything is done on the drain's arrays at once (``stats.jsonl`` lines from one
        template, the history's series fed in bulk, the diagnoser's rules vectorized): the host
        side costs a few microseconds a record.
        """
        last = None
        for rec, diagnoser in list(self.parts):
            block = self._flush_part(rec, diagnoser)
            if len(block) or last is None:
                last = block
        return last

    def _flush_part(self, rec: Recorder, diagnoser: Diagnoser) -> Records:
        with self._lock, interrupts_deferred():
            block = rec.drain(getattr(self.callback, "epoch", 0))
            pending: list[Diagnosis] = []
            if rec is self.instrument:  # the epoch-end verdicts (bn_statistics) are the model's
                pending, self._pending = self._pending, []
            if not len(block):
                if pending:
                    for listener in list(self.listeners):
                        listener(block, pending)
                return block
            known = block.losses[block.loss_known] if block.loss_known is not None else block.losses
            if len(known):
                if self.initial_loss is None:
                    self.initial_loss = float(known[0])
                self.last_loss = float(known[-1])
            if self.run is not None:
                self.run.append_block(block)  # stats.jsonl and its index (gradtui.runindex)
            self.history.add_block(block)
            if block.time_grads:
                block.extra["time_ratio"] = self._time_ratio(block)
            new = pending + diagnoser.feed_block(_with_known_losses(block))
            _say_unknown_losses(new, block)
            if self.stop_on_nonfinite and any(d.kind == "non_finite" for d in new):
                self.nonfinite_stop = True
                self.model.stop_training = True
        for listener in list(self.listeners):
            listener(block, new)
        if self.histogram_sinks and rec is self.instrument:
            got = self.instrument.take_histograms()
            if got is not None:
                for sink in self.histogram_sinks:
                    sink.add_histograms(*got)
        return block

    def add_tensorboard(self, sink: Any) -> None:
        """Also write into a :class:`gradtui.tensorboard.TensorBoardSink`: the scalars of every
        drain, the epoch's metrics, the histograms kept at the histogram interval, and the
        diagnoses whenever the summary is written."""
        self.listeners.append(lambda records, new: sink.on_records(records, new, self.history))
        self.epoch_listeners.append(sink.on_epoch)
        self.histogram_sinks.append(sink)
        self._tensorboard = sink

    def _time_ratio(self, block: Records) -> Any:
        """Per row and layer, how much of the gradient reaching a recurrent layer's last time
        step reaches its first: first span / largest span of a measured curve, the median of the
        latest :data:`TIME_RATIO_MEASUREMENTS` measurements (carried forward between them; NaN
        before the first, and for other layers). A single curve is one batch: on the adding task
        it swings over three decades from one measurement to the next (rnn-clipnorm: 0.00084 once
        between values near 1), so one of them is not a verdict."""
        import numpy as np

        out = np.full((len(block), len(block.layers)), np.nan)
        kept = self._time_ratios
        names = block.names
        for name, (_, norms) in (block.time_grads or {}).items():
            li = names.index(name)
            seen = kept.setdefault(name, deque(maxlen=TIME_RATIO_MEASUREMENTS))
            value = float(np.median(seen)) if seen else np.nan
            for i, row in enumerate(norms):
                if not np.isnan(row).all():
                    top = np.nanmax(row)
                    seen.append(row[0] / top if top > 0 else np.nan)
                    value = float(np.median(seen))
                out[i, li] = value
        return out

    def _on_epoch(self, epoch: int, logs: dict[str, Any]) -> None:
        self.epochs_done = epoch + 1
        self.last_logs = {k: _float(v) for k, v in logs.items()}
        if self.mode_probe is not None and not self.closed:
            found = self._judge_modes()
            if found:
                with self._lock:
                    self._pending.extend(found)
                self.flush("bn_statistics")
        for listener in list(self.epoch_listeners):
            listener(epoch, self.last_logs)

    def _judge_modes(self) -> list[Diagnosis]:
        """Score the probe batch with BatchNorm's moving statistics (inference) and with the
        batch's own (training mode, through ``stateless_call``: no moving statistic, dropout
        seed or weight of the user's model changes)."""
        x, y, metric = self.mode_probe  # type: ignore[misc]
        try:
            model = self.model
            inference = np.asarray(model(x, training=False))
            out, _ = model.stateless_call(
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
                x,
                training=True,
            )
            training = np.asarray(out)
        except Exception:  # a model that cannot be called twice this way: no verdict
            return []
        y = np.asarray(y)
        if metric == "accuracy":
            inf_score = float(np.mean(np.argmax(inference, axis=-1) == y))
            tr_score = float(np.mean(np.argmax(training, axis=-1) == y))
        else:
            target = y.reshape(inference.shape) if y.size == inference.size else y
            inf_score = float(np.mean(np.square(inference - target)))
            tr_score = float(np.mean(np.square(training - target)))
        with self._lock:
            return self.diagnoser.judge_modes(
                max(self._iterations() - 1, 0), inf_score, tr_score, metric=metric
            )

    def summary(
        self, status: str, *, error: str | None = None, params: dict[str, int] | None = None
    ) -> dict[str, Any]:
        """The ``summary.json`` content for the run so far."""
        final = {
            k: self.last_logs[k]
            for k in ("loss", "accuracy", "val_loss", "val_accuracy")
            if k in self.last_logs
        }
        if "loss" not in final and self.last_loss is not None:
            final["loss"] = self.last_loss
        if params is None:
            params = _params(self.model)
        kinds = {d.kind for d in self.diagnoses}
        return {
            "name": self.name,
            "status": status,
            "steps": self.steps,
            "epochs": self.epochs_done,
            "device": self.device,
            "params": params,
            "initial": {"loss": self.initial_loss},
            "final": final,
            "diagnoses": [d.to_dict() for d in self.diagnoses],
            "healthy": not kinds & {"vanishing", "exploding", "non_finite"},
            "error": error,
            "every": self.instrument.every,
            "records": self.records_written,
            "lost_records": sum(rec.lost for rec, _ in self.parts),
            # wall time inside fit (tracing included) and its rate: the same clock for
            # `gradtui run`, the TUI and watch(), so their throughput compares
            "train_seconds": round(self.callback.train_seconds, 3),
            "steps_per_second": round(self.steps / self.callback.train_seconds, 2)
            if self.callback.train_seconds > 0
            else None,
        }

    def finish(
        self,
        status: str,
        *,
        error: str | None = None,
        params: dict[str, int] | None = None,
        drained: bool = False,
    ) -> dict[str, Any]:
        """Drain what is left (unless ``drained``: the caller knows nothing is) and write
        ``summary.json``; returns the summary."""
        try:
            if not drained:
                self.flush("finish")
        except Exception:  # the model may be in a broken state after a failure
            pass
        summary = self.summary(status, error=error, params=params)
        if self.run is not None:
            self.run.write_summary(summary)
        sink = self._tensorboard
        if sink is not None:
            sink.add_diagnoses(summary["diagnoses"], step=self.steps)
            sink.flush()
        return summary

    # ------------------------------------------------------------------ custom training loops

    def start_draining(self, interval: float = 0.2) -> None:
        """Drain from a background thread every ``interval`` seconds (a custom training loop
        has no callback to do it); :meth:`close` stops it."""
        if self._drainer is not None:
            return

        def loop() -> None:
            while not self._closing.wait(interval):
                try:
                    steps = self.steps
                    if steps - self._last_hist_request >= HISTOGRAM_STEPS or not self._last_hist_request:
                        self._last_hist_request = max(steps, 1)
                        self.instrument.request_histograms()
                    self.flush("timer")
                except Exception:  # the training thread may be tearing the model down
                    pass

        self._drainer = threading.Thread(target=loop, name="gradtui-drain", daemon=True)
        self._drainer.start()

    def close(self, status: str = "completed", *, error: str | None = None) -> dict[str, Any]:
        """Stop recording, drain what is left and write ``summary.json`` (once)."""
        self._closing.set()
        if self._drainer is not None:
            self._drainer.join(timeout=5)
            self._drainer = None
        summary = self.finish(status, error=error)
        for rec, _ in self.parts:
            rec.detach()
        sink = self._tensorboard
        if sink is not None:
            sink.close()
        self.closed = True
        return summary

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close("completed")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close("interrupted")
        else:
            self.close("failed", error=f"{exc_type.__name__}: {exc}")


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """A Ctrl-C during a drain waits for it to end: the rows taken from the ring are written
    (``stats.jsonl`` and its index) before ``KeyboardInterrupt`` is raised, so an interrupted
    run loses no record it counted. Only the main thread receives signals; elsewhere, and under
    a handler that is not Python's (or one that ignores them), nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):  # SIG_IGN, SIG_DFL, or a handler installed from C
        yield
        return
    caught: list[Any] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            previous(signal.SIGINT, caught[0])


def _with_rows(planned: list[LayerInfo], described: list[LayerInfo]) -> list[LayerInfo]:
    """A preset's planned layers, with a row for every recorded layer the plan names only by its
    parent (``bidirectional`` -> ``bidirectional/forward_lstm``): such a row takes the parent's
    entry, so advice and fixes still point at the preset's entry. Rows come in the model's
    order, the plan's weightless layers after them."""
    by_name = {info.name: info for info in planned}
    out: list[LayerInfo] = []
    for row in described:
        info = by_name.get(row.name)
        if info is None:
            parent = by_name.get(row.name.split("/", 1)[0])
            if parent is not None:
                row.entry = parent.entry
            info = row
        out.append(info)
    named = {info.name for info in out}
    return out + [info for info in planned if info.name not in named]


def _with_known_losses(block: Records) -> Records:
    """The block as the diagnoser reads it: an unknown loss (a step that computed it out of
    gradtui's sight) is no NaN, so it takes part in no loss rule."""
    if block.loss_known is None or block.loss_known.all():
        return block
    from dataclasses import replace

    import numpy as np

    return replace(block, losses=np.where(block.loss_known, block.losses, 0.0), _fields=block._fields)


def _say_unknown_losses(new: list[Diagnosis], block: Records) -> None:
    """A ``non_finite`` raised on a row whose loss gradtui did not see reads "(loss unknown)",
    not the 0 the diagnoser was given for it (see :func:`_with_known_losses`)."""
    if block.loss_known is None or block.loss_known.all():
        return
    for d in new:
        if d.kind != "non_finite":
            continue
        at = [i for i, s in enumerate(block.steps.tolist()) if s == d.step]
        if at and not block.loss_known[at[0]]:
            d.message = d.message.replace("(loss 0)", "(loss unknown)", 1)


def _optimizer_name(model: Any, opt: Any) -> str:
    """How a watched optimizer is named to the user: the model's attribute holding it
    (``model.d_optimizer``), with its class."""
    held = [
        k for k, v in [("optimizer", getattr(model, "optimizer", None)), *vars(model).items()] if v is opt
    ]
    where = f"model.{held[0]}" if held else "optimizer="
    return f"{where} ({type(opt).__name__})"


def _iterations_of(opt: Any) -> int:
    try:
        return int(opt.iterations.numpy()) if opt is not None else 0
    except Exception:
        return 0


def _float(v: Any) -> Any:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return f


def _params(model: Any) -> dict[str, int]:
    from gradtui.build import keras_param_counts

    return keras_param_counts(model)


#: how often ``watch`` drains the statistics of a user's script (seconds): nothing in that
#: process draws them, and a follower (``gradtui open --follow``, ``serve``) reads
#: ``stats.jsonl`` at most this much later; each drain costs ~1-3 ms of the training thread
WATCH_DRAIN_SECONDS = 0.5


#: a watch that has recorded nothing after this many steps of a ``fit`` says so
NOTHING_AFTER_STEPS = 10


class Watch(Monitor):
    """A :class:`Monitor` attached to a user's own model by :func:`watch`."""

    def summary(
        self, status: str, *, error: str | None = None, params: dict[str, int] | None = None
    ) -> dict[str, Any]:
        """:meth:`Monitor.summary`; written at the end of a ``fit`` while the watch stays
        attached, it says so (``watching``) and names its writer, so ``open --follow`` goes on
        reading the next ``fit`` of the same run while that process lives."""
        out = super().summary(status, error=error, params=params)
        if not self._closing.is_set():
            import os
            import socket

            out["watching"] = True
            out["writer"] = {"host": socket.gethostname(), "pid": os.getpid()}
        return out

    def follow_compile(self) -> None:
        """Follow a ``compile()`` made since the watch began (fine-tuning: unfreeze, compile
        again): its new optimizer is recorded, its rows the variables it updates now. The
        same optimizer with a new set of trainable variables is recorded afresh."""
        opt = getattr(self.model, "optimizer", None)
        if opt is None or (opt is self._compiled and not any(rec.optimizer is opt for rec, _ in self.parts)):
            return  # the optimizer compile() made before the watch, left out by optimizer=
        self._compiled = opt
        weights = [id(w) for w in self.model.trainable_weights]
        for rec, _ in self.parts:
            if rec.optimizer is opt:
                if rec._attached and [id(w) for w in rec._weights] != weights:
                    self.flush("recompile")
                    rec.detach()
                    self.add_optimizer(opt, again=True, continues=True)
                return
        self.add_optimizer(opt, continues=True)

    def say_if_nothing(self) -> None:
        """One line on stderr when steps were taken and none was recorded, naming the
        optimizers watched (a step that applies another optimizer)."""
        steps = max(self.steps, self.callback.batches_total)
        if not self.records_written and steps > 0:
            Monitor.flush(self, "check")
        if self.records_written or steps <= 0 or self._said_nothing:
            self._said_nothing = self._said_nothing or bool(self.records_written)
            return
        self._said_nothing = True
        names = ", ".join(_optimizer_name(self.model, o) for o in self.optimizers)
        print(
            f"gradtui: nothing recorded after {steps} steps: the optimizers watched ({names}) "
            "applied no gradients; pass optimizer= the one(s) the training step applies",
            file=sys.stderr,
        )

    def flush(self, why: str = "") -> Records:
        """:meth:`Monitor.flush`, and after the first :data:`NOTHING_AFTER_STEPS` steps of a
        ``fit`` with nothing recorded, the line of :meth:`say_if_nothing`."""
        block = super().flush(why)
        if not self._said_nothing and self.callback.batches_total >= NOTHING_AFTER_STEPS:
            self.say_if_nothing()
        return block

    def stop_line(self) -> str:
        """The one line that says why ``fit`` stopped early (``stop_on_nonfinite``)."""
        first = next((d for d in self.diagnoses if d.kind == "non_finite"), None)
        why = first.message if first is not None else "NaN/Inf in the training"
        return f"gradtui: fit stopped: {why} (watch(..., stop_on_nonfinite=False) trains on)"

    def close(self, status: str = "completed", *, error: str | None = None) -> dict[str, Any]:
        """Stop recording, write ``summary.json`` (once), and give back exactly what this watch
        took: the model's ``fit`` and the wraps of its own recorder (another watch of the same
        model keeps its own)."""
        try:
            self.say_if_nothing()
            return super().close(status, error=error)
        finally:
            kc.unwrap_method(self.model, "fit", self)


def watch(
    model: Any,
    out: str | Path | None = None,
    every: int = 1,
    *,
    optimizer: Any = None,
    overwrite: bool = False,
    tensorboard: str | Path | None = None,
    histograms: bool = True,
    stop_on_nonfinite: bool = True,
    thresholds: Any = None,
) -> Watch:
    """Record a user's Keras training into a gradtui run directory (see :func:`gradtui.watch`,
    which documents the parameters)."""
    from gradtui.build import device_name, import_keras
    from gradtui.runlog import default_run_dir

    import_keras()
    if not model.trainable_weights:  # built or not: a GAN/VAE wrapper holds built sub-models
        raise ValueError(
            "gradtui.watch needs a model whose weights exist: give it a keras.Input, or call it once "
            "on a batch (model(x[:1])) before watch()"
        )
    if optimizer is None:
        optimizers = kc.held_optimizers(model)
    else:
        optimizers = list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer]
    if not optimizers:
        raise ValueError(
            "gradtui.watch needs an optimizer: compile the model, or pass optimizer= (the one, or a "
            "list of those, whose apply_gradients your training calls)"
        )
    # before the run directory is touched: a hook missing is an error, never a wrong record
    for opt in optimizers:
        versions.check(model, opt)
    if out is None:
        out = default_run_dir(getattr(model, "name", "model"))
    run = None if not _is_chief() else RunDir(out, overwrite=overwrite)
    monitor: Watch | None = None
    try:
        monitor = Watch(
            model,
            None,
            every=every,
            optimizer=optimizers[0],
            stop_on_nonfinite=stop_on_nonfinite,
            thresholds=thresholds,
            run=run,
            histograms=tensorboard is not None and histograms,
        )
        for opt in optimizers[1:]:
            monitor.add_optimizer(opt)
        monitor._compiled = getattr(model, "optimizer", None)
        monitor.device = device_name()
        if tensorboard is not None and _is_chief():
            from gradtui.tensorboard import TensorBoardSink

            monitor.add_tensorboard(TensorBoardSink(tensorboard, histograms=histograms))
        monitor.callback.interval = WATCH_DRAIN_SECONDS
        if optimizer is not None:
            monitor.start_draining(WATCH_DRAIN_SECONDS)
    except BaseException:
        if monitor is not None:
            monitor._closing.set()
            for rec, _ in monitor.parts:
                rec.detach()  # the user's model and optimizers as they were
        if run is not None:
            run.discard()  # a watch() that failed leaves no folder to refuse the corrected retry
        raise
    kc.wrap_method(model, "fit", lambda original_fit: _watched_fit(monitor, original_fit), monitor)
    return monitor


def _watched_fit(monitor: Watch, original_fit: Any) -> Any:
    """``fit`` as a watch wraps it: the watch's callback added, ``summary.json`` written after."""

    @functools.wraps(original_fit)
    def fit(*args: Any, callbacks: Any = None, **fit_kwargs: Any) -> Any:
        cbs = list(callbacks or [])
        if monitor.callback not in cbs:
            cbs.append(monitor.callback)
        monitor.follow_compile()
        status, error = "completed", None
        try:
            stopped_before = monitor.nonfinite_stop
            result = original_fit(*args, callbacks=cbs, **fit_kwargs)
            if monitor.nonfinite_stop:
                status = "stopped"
                if not stopped_before:
                    print(monitor.stop_line(), file=sys.stderr)
            monitor.say_if_nothing()
            return result
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except Exception as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            # a completed fit's callback drained after its last batch (on_train_end): an empty
            # drain more would cost a read of the ring per fit
            drained = status == "completed" and monitor.callback.drained
            monitor.finish(status, error=error, drained=drained)

    return fit


def _is_chief() -> bool:
    """Whether this process writes the run directory: the chief of a multi-worker training
    (``TF_CONFIG``'s task ``chief``, or ``worker`` 0 when there is no chief), or any process
    outside one."""
    import json
    import os

    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except ValueError:
        return True
    task = config.get("task") or {}
    cluster = config.get("cluster") or {}
    kind, index = task.get("type"), int(task.get("index", 0) or 0)
    if not kind:
        return True
    if "chief" in cluster:
        return kind == "chief"
    return kind == "worker" and index == 0
