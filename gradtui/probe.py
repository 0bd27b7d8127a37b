"""The instrumented train step: per-layer statistics computed inside the compiled step.

Keras callbacks never see gradients, so the statistics are computed in ``train_step`` itself,
from the gradients the step already has and the activations of the same forward pass: no
extra forward or backward pass. All layers are reduced together (one concatenation, segment
sums), so the cost does not grow with the number of Keras ops per layer. Each recorded step
writes one row into a ring buffer held in a ``tf.Variable``; a callback drains the ring a few
times a second, so there is no device-to-host copy per step and nothing is added to the logs
the user's ``fit`` shows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradtui.build import import_keras
from gradtui.stack import RELU_FAMILY, SATURATING, LayerInfo

#: columns of one layer's row in the ring buffer
COLUMNS = ("grad_norm", "grad_max", "weight_norm", "update_norm", "nonfinite", "act")
K = len(COLUMNS)
#: a sigmoid/tanh output counts as saturated where the derivative is below 8% of its maximum
SIGMOID_SAT = 0.0204  # s(1-s) < 0.02 = 8% of 0.25
TANH_SAT = 0.959  # 1-t^2 < 0.08
ACTIVATION_LAYERS = ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax")


@dataclass
class Tracked:
    """A layer with trainable weights, as the probe records it."""

    name: str
    activation: str
    act_kind: str | None  # "saturation", "dead" or None
    act_layer: str | None
    variables: list[int]  # indices into model.trainable_weights
    is_dense: bool
    is_output: bool


def activation_name(layer: Any) -> str:
    """The name of a Keras layer's activation (``linear`` when it has none)."""
    cls = type(layer).__name__
    if cls == "ReLU":
        return "relu"
    if cls == "LeakyReLU":
        return "leaky_relu"
    if cls == "PReLU":
        return "prelu"
    if cls == "ELU":
        return "elu"
    if cls == "Softmax":
        return "softmax"
    act = getattr(layer, "activation", None)
    if act is None:
        return "linear"
    name = getattr(act, "__name__", None) or type(act).__name__
    return {"silu": "swish"}.get(name, name)


def describe(model: Any) -> list[LayerInfo]:
    """:class:`LayerInfo` for any Keras model's layers (used by :func:`watch`)."""
    from gradtui.preset import Spec

    keras_layers = list(_flat_layers(model))
    infos: list[LayerInfo] = []
    dense_idx = [i for i, layer in enumerate(keras_layers) if hasattr(layer, "kernel")]
    for i, layer in enumerate(keras_layers):
        cls = type(layer).__name__
        trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
        total = trainable + sum(int(np.prod(w.shape)) for w in layer.non_trainable_weights)
        try:
            shape = tuple(int(d) if d is not None else -1 for d in layer.output.shape[1:])
        except Exception:
            shape = ()
        info = LayerInfo(layer.name, cls, None, shape, params=total, trainable=trainable)
        info.activation = activation_name(layer)
        if hasattr(layer, "kernel"):
            kshape = tuple(int(d) for d in layer.kernel.shape)
            info.fan_in = int(np.prod(kshape[:-1])) if len(kshape) > 1 else kshape[0]
            info.fan_out = kshape[-1]
            init = getattr(layer, "kernel_initializer", None)
            if init is not None:
                info.initializer = Spec(_snake(type(init).__name__))
            info.is_output = i == dense_idx[-1]
            if info.activation != "linear":
                info.activation_layer = layer.name
            else:
                # Dense -> [BatchNorm/Dropout] -> Activation counts as one block
                for nxt in keras_layers[i + 1 :]:
                    ncls = type(nxt).__name__
                    if hasattr(nxt, "kernel"):
                        break
                    if ncls == "BatchNormalization":
                        info.batch_norm = "before"
                        continue
                    if ncls in ACTIVATION_LAYERS:
                        info.activation = activation_name(nxt)
                        info.activation_layer = nxt.name
                        break
            # BN right after an activated Dense is "after"
            followed_by_bn = (
                i + 1 < len(keras_layers) and type(keras_layers[i + 1]).__name__ == "BatchNormalization"
            )
            if followed_by_bn and info.batch_norm == "none":
                info.batch_norm = "after"
        infos.append(info)
    return infos


def _snake(name: str) -> str:
    out = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return out.replace("_normal", "_normal").replace("glorot__", "glorot_")


def _flat_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and type(layer).__name__ in ("Sequential", "Functional"):
            out.extend(_flat_layers(layer))
        elif type(layer).__name__ != "InputLayer":
            out.append(layer)
    return out


def tracked_layers(model: Any, infos: list[LayerInfo]) -> list[Tracked]:
    """The layers with trainable weights, in model order, with their variable indices."""
    weights = model.trainable_weights
    index = {id(w): i for i, w in enumerate(weights)}
    by_name = {info.name: info for info in infos}
    out = []
    for layer in _flat_layers(model):
        ids = [index[id(w)] for w in layer.trainable_weights if id(w) in index]
        if not ids:
            continue
        info = by_name.get(layer.name)
        act = info.activation if info else activation_name(layer)
        act_layer = info.activation_layer if info else None
        kind = None
        if info is not None and info.is_dense and act_layer is not None:
            if act in SATURATING:
                kind = "saturation"
            elif act == "relu":
                kind = "dead"
        out.append(
            Tracked(
                name=layer.name,
                activation=act,
                act_kind=kind,
                act_layer=act_layer,
                variables=ids,
                is_dense=bool(info and info.is_dense),
                is_output=bool(info and info.is_output),
            )
        )
    return out


def _relu_family(act: str) -> bool:
    return act in RELU_FAMILY


class Instrument:
    """Replaces a model's ``train_step`` with one that records per-layer statistics.

    Args:
        model: a built Keras model (Sequential or functional for activation statistics).
        infos: the model's :class:`LayerInfo` (from :func:`gradtui.stack.plan` or
            :func:`describe`).
        every (int): record every N optimizer steps. Defaults to 1.
        capacity (int): rows in the in-graph ring buffer. Defaults to 512.

    Example:
        >>> inst = Instrument(model, describe(model), every=1)
        >>> model.fit(x, y, callbacks=[...])
        >>> records = inst.drain()
    """

    def __init__(self, model: Any, infos: list[LayerInfo], *, every: int = 1, capacity: int = 512) -> None:
        keras = import_keras()
        import tensorflow as tf

        self.model = model
        self.every = int(every)
        self.capacity = int(capacity)
        self.tracked = tracked_layers(model, infos)
        self.layer_names = [t.name for t in self.tracked]
        n_layers = len(self.tracked)
        self.n_layers = n_layers
        weights = model.trainable_weights
        # Segment id of every scalar of every trainable variable: one fused reduction per stat.
        seg = np.zeros(sum(int(np.prod(w.shape)) for w in weights), dtype=np.int32)
        offsets = np.cumsum([0] + [int(np.prod(w.shape)) for w in weights])
        self.owner = np.full(len(weights), -1, dtype=np.int32)
        for li, t in enumerate(self.tracked):
            for vi in t.variables:
                seg[offsets[vi] : offsets[vi + 1]] = li
                self.owner[vi] = li
        self._seg = tf.constant(seg)
        self._n_params = int(offsets[-1])

        # Activation taps: the same forward pass, with the activations as extra outputs.
        self.taps: list[tuple[int, str]] = []  # (layer index, kind)
        self.probe_model = None
        tap_layers = [(li, t) for li, t in enumerate(self.tracked) if t.act_kind and not t.is_output]
        if tap_layers:
            try:
                outputs = [model.get_layer(t.act_layer).output for _, t in tap_layers]
                self.probe_model = keras.Model(model.inputs, [*model.outputs, *outputs])
                self.taps = [(li, t.act_kind, t.activation) for li, t in tap_layers]  # type: ignore[misc]
            except Exception:
                # a subclassed or unbuilt model: gradient statistics only
                self.probe_model = None
                self.taps = []

        width = 1 + n_layers * K
        self.width = width
        with tf.init_scope():
            self.buffer = tf.Variable(tf.zeros((self.capacity, width)), trainable=False, name="gradtui_ring")
            self.steps = tf.Variable(
                tf.zeros((self.capacity,), tf.int64), trainable=False, name="gradtui_steps"
            )
            self.count = tf.Variable(tf.constant(0, tf.int64), trainable=False, name="gradtui_count")
            self.snapshot = tf.Variable(tf.zeros((self._n_params,)), trainable=False, name="gradtui_snapshot")
        self.read_count = 0
        self.lost = 0
        self._original_train_step = model.train_step
        model.train_step = self.train_step
        model.make_train_function(force=True)

    def remove(self) -> None:
        """Give the model back its own ``train_step``."""
        self.model.train_step = self._original_train_step
        self.model.make_train_function(force=True)

    # ------------------------------------------------------------------ in graph

    def train_step(self, data: Any) -> Any:
        """Keras's own TensorFlow ``train_step``, plus the statistics. Runs traced."""
        import tensorflow as tf
        from keras.src.losses import loss as loss_module
        from keras.src.trainers.data_adapters import data_adapter_utils

        model = self.model
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            if self.probe_model is not None:
                outs = self.probe_model(x, training=True)
                n_out = len(model.outputs)
                y_pred = outs[0] if n_out == 1 else outs[:n_out]
                acts = outs[n_out:]
            else:
                y_pred = model(x, training=True) if model._call_has_training_arg else model(x)
                acts = []
            loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            model._loss_tracker.update_state(
                loss_module.unscale_loss_for_distribution(loss),
                sample_weight=tf.shape(next(i for i in tf.nest.flatten(x) if i is not None))[0],
            )
            raw_loss = loss
            if model.optimizer is not None:
                loss = model.optimizer.scale_loss(loss)
        weights = model.trainable_weights
        grads = tape.gradient(loss, weights)
        step = tf.cast(model.optimizer.iterations, tf.int64)
        record = tf.equal(step % self.every, 0)

        def snap() -> Any:
            self.snapshot.assign(tf.concat([tf.reshape(w, [-1]) for w in weights], 0))
            return tf.constant(True)

        tf.cond(record, snap, lambda: tf.constant(False))
        model.optimizer.apply_gradients(zip(grads, weights, strict=False))

        def write() -> Any:
            row = self._row(raw_loss, grads, weights, acts)
            slot = self.count % self.capacity
            self.buffer.scatter_nd_update(tf.reshape(slot, [1, 1]), tf.reshape(row, [1, -1]))
            self.steps.scatter_nd_update(tf.reshape(slot, [1, 1]), tf.reshape(step, [1]))
            self.count.assign_add(1)
            return tf.constant(True)

        tf.cond(record, write, lambda: tf.constant(False))
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _row(self, loss: Any, grads: list[Any], weights: list[Any], acts: list[Any]) -> Any:
        import tensorflow as tf

        n = self.n_layers
        g = tf.concat([tf.reshape(tf.cast(gr, tf.float32), [-1]) for gr in grads], 0)
        w = tf.concat([tf.reshape(tf.cast(v, tf.float32), [-1]) for v in weights], 0)
        seg = self._seg
        finite = tf.math.is_finite(g)
        nonfinite = tf.math.unsorted_segment_sum(tf.cast(tf.logical_not(finite), tf.float32), seg, n)
        grad_norm = tf.sqrt(tf.math.unsorted_segment_sum(tf.square(g), seg, n))
        grad_max = tf.math.unsorted_segment_max(tf.abs(g), seg, n)
        weight_norm = tf.sqrt(tf.math.unsorted_segment_sum(tf.square(w), seg, n))
        update_norm = tf.sqrt(tf.math.unsorted_segment_sum(tf.square(w - self.snapshot), seg, n))
        act = tf.fill([n], -1.0)
        if self.taps:
            idx, vals = [], []
            for (li, kind, name), a in zip(self.taps, acts, strict=True):
                a = tf.cast(tf.reshape(a, [tf.shape(a)[0], -1]), tf.float32)
                if kind == "dead":
                    v = tf.reduce_mean(tf.cast(tf.reduce_max(a, axis=0) <= 0.0, tf.float32))
                elif name == "sigmoid":
                    v = tf.reduce_mean(tf.cast((a < SIGMOID_SAT) | (a > 1.0 - SIGMOID_SAT), tf.float32))
                else:
                    v = tf.reduce_mean(tf.cast(tf.abs(a) > TANH_SAT, tf.float32))
                idx.append([li])
                vals.append(v)
            act = tf.tensor_scatter_nd_update(act, tf.constant(idx), tf.stack(vals))
        stats = tf.stack([grad_norm, grad_max, weight_norm, update_norm, nonfinite, act], axis=1)
        return tf.concat([tf.reshape(tf.cast(loss, tf.float32), [1]), tf.reshape(stats, [-1])], 0)

    # ------------------------------------------------------------------ host side

    def pending(self) -> int:
        """Rows written in the graph and not yet drained."""
        return int(self.count.numpy()) - self.read_count

    def drain(self) -> list[tuple[int, float, np.ndarray]]:
        """New rows since the last drain: ``(step, loss, stats[n_layers, K])``, oldest first."""
        count = int(self.count.numpy())
        new = count - self.read_count
        if new <= 0:
            return []
        if new > self.capacity:
            self.lost += new - self.capacity
            self.read_count = count - self.capacity
            new = self.capacity
        buf = self.buffer.numpy()
        steps = self.steps.numpy()
        out = []
        for c in range(self.read_count, count):
            slot = c % self.capacity
            row = buf[slot]
            out.append((int(steps[slot]), float(row[0]), row[1:].reshape(self.n_layers, K)))
        self.read_count = count
        return out

    def to_record(self, step: int, epoch: int, loss: float, stats: np.ndarray) -> dict[str, Any]:
        """One ``stats.jsonl`` record (SPEC section 3)."""
        layers: dict[str, dict[str, float]] = {}
        for li, t in enumerate(self.tracked):
            gn, gm, wn, un, nf, act = (float(v) for v in stats[li])
            entry = {
                "grad_norm": gn,
                "grad_max": gm,
                "weight_norm": wn,
                "update_ratio": un / wn if wn > 0 and math.isfinite(wn) else (0.0 if un == 0 else math.inf),
                "nonfinite": int(nf),
            }
            if act >= 0 and t.act_kind:
                entry[t.act_kind] = act
            layers[t.name] = entry
        return {"step": step, "epoch": epoch, "loss": loss, "layers": layers}


Listener = Callable[[list[dict[str, Any]]], None]


def make_callback(flush: Callable[[str], None], on_epoch: Callable[[int, dict], None] | None = None) -> Any:
    """A Keras callback that drains the ring a few times a second (and at epoch/train ends)."""
    keras = import_keras()

    class GradtuiCallback(keras.callbacks.Callback):
        """Drains gradtui's statistics ring; never touches the logs the user sees."""

        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.interval = 0.2
            self._last = 0.0
            self._batches = 0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self._batches += 1
            now = time.monotonic()
            # Keras hands batch callbacks Python floats already: a NaN loss costs nothing to
            # see, and draining at once stops a diverging run within a step.
            loss = (logs or {}).get("loss", 0.0)
            blown = isinstance(loss, float) and not math.isfinite(loss)
            if blown or now - self._last >= self.interval or self._batches >= self.flush_every:
                self._last = now
                self._batches = 0
                flush("batch")

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            flush("epoch")
            if on_epoch is not None:
                on_epoch(epoch, dict(logs or {}))

        def on_train_end(self, logs: dict | None = None) -> None:
            flush("end")

    return GradtuiCallback()
