"""One monitored training: the recorder, the run directory, the diagnoses, listeners.

:class:`Monitor` is shared by ``gradtui run``, the TUI and :func:`watch`, so all three record
the same statistics and diagnoses into the same run directory layout, through the same
:class:`gradtui.recorder.Recorder`: the training itself is never replaced.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

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
        self.diagnoser = Diagnoser(
            self.layers, thresholds, train, _initial_weights(model, self.instrument.tracked)
        )
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
        return self.diagnoser.diagnoses

    @property
    def records_written(self) -> int:
        """Records drained so far."""
        return self.instrument.read_count

    def _iterations(self) -> int:
        opt = self.instrument.optimizer
        try:
            return int(opt.iterations.numpy()) if opt is not None else 0
        except Exception:
            return 0

    @property
    def steps(self) -> int:
        """Optimizer steps taken since the monitor was attached."""
        return self._iterations() - self._start_iterations

    def flush(self, why: str = "") -> Records:
        """Drain new statistics: write them, diagnose them, tell the listeners.

        Everything is done on the drain's arrays at once (``stats.jsonl`` lines from one
        template, the history's series fed in bulk, the diagnoser's rules vectorized): the host
        side costs a few microseconds a record.
        """
        with self._lock:
            block = self.instrument.drain(getattr(self.callback, "epoch", 0))
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
                self.run.append_lines(block.to_jsonl())
            self.history.add_block(block)
            if block.time_grads:
                block.extra["time_ratio"] = self._time_ratio(block)
            new = pending + self.diagnoser.feed_block(_with_known_losses(block))
            if self.stop_on_nonfinite and any(d.kind == "non_finite" for d in new):
                self.nonfinite_stop = True
                self.model.stop_training = True
        for listener in list(self.listeners):
            listener(block, new)
        if self.histogram_sinks:
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
            "lost_records": self.instrument.lost,
            # wall time inside fit (tracing included) and its rate: the same clock for
            # `gradtui run`, the TUI and watch(), so their throughput compares
            "train_seconds": round(self.callback.train_seconds, 3),
            "steps_per_second": round(self.steps / self.callback.train_seconds, 2)
            if self.callback.train_seconds > 0
            else None,
        }

    def finish(
        self, status: str, *, error: str | None = None, params: dict[str, int] | None = None
    ) -> dict[str, Any]:
        """Drain what is left and write ``summary.json``; returns the summary."""
        try:
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
        self.instrument.detach()
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


class Watch(Monitor):
    """A :class:`Monitor` attached to a user's own model by :func:`watch`."""


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
    """Record a user's Keras training into a gradtui run directory, without changing it.

    Args:
        model: a built Keras model (its weights exist): Sequential, functional or subclassed,
            nested blocks included.
        out: the run directory to write. Defaults to ``runs/<timestamp>-<model name>``.
        every (int): record statistics every N optimizer steps. Defaults to 1.
        optimizer: the optimizer whose ``apply_gradients`` a custom training loop calls.
            Defaults to ``model.optimizer`` (what ``fit`` uses). Naming it starts a background
            drain, for loops that never call ``fit``; leave the ``with`` block (or call
            ``monitor.close()``) to write ``summary.json``.
        overwrite (bool): write into an existing run directory. Defaults to False.
        tensorboard: also write TensorBoard event files into this folder. Defaults to None.
        histograms (bool): with ``tensorboard``, also write gradient and weight histograms
            (once an epoch; every 100 steps in a custom loop). False: scalars and diagnoses
            only, and the step keeps no copy of the raw gradients. Defaults to True.
        stop_on_nonfinite (bool): stop ``fit`` at the first NaN/Inf. Defaults to True.
        thresholds: diagnosis thresholds (:class:`gradtui.preset.Thresholds`). Defaults to None.

    Returns:
        The monitor; ``monitor.diagnoses`` lists what was found so far.

    Example:
        >>> monitor = gradtui.watch(model, out="runs/mine", every=1)
        >>> model.fit(x, y, epochs=3)
        >>> [d.kind for d in monitor.diagnoses]

        >>> with gradtui.watch(model, out="runs/loop", optimizer=opt) as monitor:
        ...     for x, y in dataset:
        ...         train_step(x, y)
    """
    from gradtui.build import device_name, import_keras
    from gradtui.runlog import default_run_dir

    import_keras()
    if not model.built or not model.trainable_weights:
        raise ValueError(
            "gradtui.watch needs a model whose weights exist: give it a keras.Input, or call it once "
            "on a batch (model(x[:1])) before watch()"
        )
    if out is None:
        out = default_run_dir(getattr(model, "name", "model"))
    run = None if not _is_chief() else RunDir(out, overwrite=overwrite)
    monitor = Watch(
        model,
        None,
        every=every,
        optimizer=optimizer,
        stop_on_nonfinite=stop_on_nonfinite,
        thresholds=thresholds,
        run=run,
        histograms=tensorboard is not None and histograms,
    )
    monitor.device = device_name()
    if tensorboard is not None and _is_chief():
        from gradtui.tensorboard import TensorBoardSink

        monitor.add_tensorboard(TensorBoardSink(tensorboard, histograms=histograms))
    monitor.callback.interval = WATCH_DRAIN_SECONDS
    if optimizer is not None:
        monitor.start_draining(WATCH_DRAIN_SECONDS)
    original_fit = model.fit

    def fit(*args: Any, callbacks: Any = None, **fit_kwargs: Any) -> Any:
        cbs = list(callbacks or [])
        if monitor.callback not in cbs:
            cbs.append(monitor.callback)
        status, error = "completed", None
        try:
            result = original_fit(*args, callbacks=cbs, **fit_kwargs)
            if monitor.nonfinite_stop:
                status = "stopped"
            return result
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except Exception as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            monitor.finish(status, error=error)

    object.__setattr__(model, "fit", fit)
    return monitor


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
