"""The recorder: per-layer statistics taken where every Keras training passes, step unchanged.

gradtui does not replace a model's step. It wraps, on the instances it watches, the optimizer's
application of the gradients and the layers' ``call`` (see :mod:`gradtui.keras_compat`), so
``fit`` with Keras's own or a user's ``train_step``, a ``GradientTape`` loop, ``jit_compile``,
mixed precision and ``tf.distribute`` are all recorded by the same code, and train exactly as
they would without gradtui:

- a layer's ``call`` in a training forward pass leaves its output with the recorder (nothing is
  computed there); a ``MultiHeadAttention``'s attention computation leaves its projected query
  and key (and mask), from which the recorder takes the largest |logit| and the lowest head's
  entropy (:func:`attention_stats`), and a model on logits leaves its output logits;
- the optimizer's ``_backend_apply_gradients`` (gradients unscaled, before clipping; under
  ``tf.distribute`` the replicas' sum) runs the update, then, every ``every`` steps, reduces each
  variable's gradient, weight and update and each tapped output to a few numbers and writes them
  as one row of a ring buffer held in a ``tf.Variable``. A host thread or a Keras callback
  drains the ring a few times a second (:meth:`Recorder.drain`).

The loss of a row is the one the step gave ``model.compute_loss`` or the optimizer's
``scale_loss`` (what Keras's own step and the "customizing fit" guide's steps call); a step that
calls neither leaves it unknown.
"""

from __future__ import annotations

import functools
import math
import threading
import weakref
from typing import Any

import numpy as np

from gradtui import keras_compat as kc
from gradtui import versions
from gradtui.probe import COLUMNS, K, Records
from gradtui.rows import Tracked, rows_of

#: a sigmoid/tanh output counts as saturated where the derivative is below 8% of its maximum
SIGMOID_SAT = 0.0204  # s(1-s) < 0.02 = 8% of 0.25
TANH_SAT = 0.959  # 1-t^2 < 0.08
#: per-variable values of a row: half sum of squares of the gradient, its largest and smallest
#: value, half sums of squares of the weights and of the update (NaN/Inf counts come last)
VAR_COLUMNS = ("grad_sq", "grad_hi", "grad_lo", "weight_sq", "update_sq")
#: the gradient reaching a recurrent layer's input is summed into at most this many spans of time
TIME_BUCKETS = 32
#: ...and measured every this many recorded steps (its reduction runs in the backward pass)
TIME_EVERY = 10
#: graphs of control flow inside a step (their tensors belong to the step)
_BRANCH_GRAPHS = ("CondBranchFuncGraph", "WhileCondFuncGraph", "WhileBodyFuncGraph")
#: values of a row before the per-variable blocks: step (int32 bits), loss, whether it is known,
#: the row's sequence number (int32 bits: the count of rows written before it)
HEAD = 4
#: the column of a row's sequence number
SEQ = 3


def _f32(t: Any) -> Any:
    import tensorflow as tf

    t = tf.convert_to_tensor(t)
    return t if t.dtype == tf.float32 else tf.cast(t, tf.float32)


#: per graph being built, the axes constants of :func:`_all_axes` by rank
_AXES: weakref.WeakKeyDictionary[Any, dict[int, Any]] = weakref.WeakKeyDictionary()


def _all_axes(t: Any) -> Any:
    """The axes of ``t`` for a reduction to a scalar: one constant per rank and graph, shared
    by the recorder's reductions (``tf.reduce_max`` makes one per call)."""
    import tensorflow as tf

    rank = t.shape.rank
    if rank is None:
        return tf.range(tf.rank(t))
    if tf.executing_eagerly():
        return tf.constant(list(range(rank)), tf.int32)
    graph = tf.compat.v1.get_default_graph()
    cache = _AXES.setdefault(graph, {})
    axes = cache.get(rank)
    if axes is None:
        with graph.control_dependencies(None):  # shared: free of the caller's control edges
            axes = cache[rank] = tf.constant(list(range(rank)), tf.int32)
    return axes


def _same_tensor(t: Any, g: Any) -> bool:
    """Whether ``t`` is the tensor ``g`` itself, or ``g`` passed through identities (a
    distribution strategy's ``update`` hands the optimizer its gradient through ``IdentityN``)."""
    for _ in range(8):
        if t.graph is g.graph and t.op.name == g.op.name and t.value_index == g.value_index:
            return True
        if t.op.type == "Identity":
            t = t.op.inputs[0]
        elif t.op.type == "IdentityN":
            t = t.op.inputs[t.value_index]
        else:
            return False
    return False


def _scale_of(change: Any, g: Any) -> Any:
    """``s`` when an update ``change`` is ``s * g``, a scalar times this very gradient tensor
    (plain SGD's update): its sum of squares is then ``s**2`` times the gradient's, which needs
    no pass over it. ``None`` otherwise (clipped, cast or any other gradient, any other update)."""
    op = getattr(change, "op", None)
    if op is None or op.type != "Mul" or g is None or getattr(g, "dtype", None) != change.dtype:
        return None
    a, b = op.inputs
    for t, scale in ((a, b), (b, a)):
        if scale.shape.rank == 0 and t.shape == g.shape and _same_tensor(t, g):
            return scale
    return None


#: what TensorFlow's ``dot_product_attention`` puts at the positions a mask hides (float32)
_LARGE_NEGATIVE = 3.38953e38 * -0.7


def _sequence_logits(layer: Any, query: Any, key: Any, mask: Any, causal: bool) -> tuple[Any, Any, Any]:
    """Query ``(B, T, N, H)`` and key ``(B, S, N, H)``: the logits ``(B, N, T, S)`` in float32,
    with the masked positions at a large negative value, and the mask (or ``None``).

    The ops are those of Keras's TensorFlow ``dot_product_attention`` (the layer's own path when
    its dropout is 0), einsum in the layer's compute dtype then float32, the same scale, the
    same mask ops: in a compiled step TensorFlow's common-subexpression pass (or XLA's) then
    computes them, and the softmax, once for the layer and the recorder."""
    import tensorflow as tf

    dtype = query.dtype if query.dtype == key.dtype else tf.float32
    query, key = tf.cast(query, dtype), tf.cast(key, dtype)
    logits = tf.cast(tf.einsum("BTNH,BSNH->BNTS", query, key, optimize="optimal"), tf.float32)
    logits = tf.multiply(logits, tf.cast(kc.attention_scale(layer), tf.float32))
    if mask is None and not causal:
        return logits, logits, None
    valid = tf.ones_like(logits, dtype="bool")
    if mask is not None:
        mask = tf.cast(mask, "bool")
        for _ in range(4 - mask.shape.rank):
            mask = tf.expand_dims(mask, axis=-3)
        valid = tf.logical_and(valid, mask)
    if causal:
        shape = tf.shape(logits)
        band = tf.linalg.band_part(tf.ones((shape[2], shape[3]), "bool"), -1, 0)
        valid = tf.logical_and(valid, band[None, None, :, :])
    return logits, tf.where(valid, logits, tf.constant(_LARGE_NEGATIVE, tf.float32)), valid


def _general_logits(layer: Any, query: Any, key: Any, mask: Any) -> tuple[Any, Any, Any]:
    """:func:`_sequence_logits` for several attention axes (the layer's own einsum), flattened
    to ``(batch, N, T, S)``."""
    import tensorflow as tf

    equation, n_axes = kc.attention_equation(layer)
    logits = tf.einsum(equation, _f32(key), tf.multiply(_f32(query), kc.attention_scale(layer)))
    shape, r = tf.shape(logits), logits.shape.rank
    flat = tf.stack(
        [
            -1,
            shape[r - 2 * n_axes - 1],
            tf.reduce_prod(shape[r - 2 * n_axes : r - n_axes]),
            tf.reduce_prod(shape[r - n_axes :]),
        ]
    )
    logits = tf.reshape(logits, flat)
    if mask is None:
        return logits, logits, None
    valid = tf.cast(mask, tf.bool)
    while valid.shape.rank < r:
        valid = tf.expand_dims(valid, -2 * n_axes - 1)
    valid = tf.reshape(tf.broadcast_to(valid, shape), flat)
    return logits, tf.where(valid, logits, tf.constant(_LARGE_NEGATIVE, tf.float32)), valid


def attention_stats(layer: Any, query: Any, key: Any, mask: Any, causal: bool) -> Any:
    """An attention layer's two numbers from the query and key its softmax's logits are made of:
    the largest |logit| (q.k / sqrt(key_dim), the positions a mask hides left out) and the
    entropy in nats of the attention distribution, averaged over the queries that see any
    position, of the head where it is lowest; reduced in float32.

    Four passes over the logits besides the logits and the softmax themselves (which a
    compiled step shares with the layer, see :func:`_sequence_logits`): per query the largest
    logit ``m`` and the largest probability ``p_max``, the sum of ``p * logit``, and the
    smallest logit of all; the entropy is ``log Z - sum(p * logit)`` with
    ``log Z = m - log(p_max)``."""
    import tensorflow as tf

    if query.shape.rank == 4:
        logits, padded, valid = _sequence_logits(layer, query, key, mask, causal)
    else:
        logits, padded, valid = _general_logits(layer, query, key, mask)
    probs = tf.nn.softmax(padded, axis=-1)
    m = tf.reduce_max(padded, -1)  # (batch, N, T)
    entropy = m - tf.math.log(tf.reduce_max(probs, -1)) - tf.reduce_sum(probs * padded, -1)
    entropy = tf.maximum(entropy, 0.0)  # huge logits: a few float32 ulps of m below 0
    if valid is None:
        low = tf.reduce_min(logits)
        per_head = tf.reduce_mean(entropy, [0, 2])
    else:
        low = tf.reduce_min(tf.where(valid, logits, tf.constant(tf.float32.max, tf.float32)))
        seen = tf.cast(tf.reduce_any(valid, -1), tf.float32)  # a query that sees no position: left out
        per_head = tf.reduce_sum(entropy * seen, [0, 2]) / tf.maximum(tf.reduce_sum(seen, [0, 2]), 1.0)
    top = tf.maximum(tf.maximum(tf.reduce_max(m), -low), 0.0)
    return tf.stop_gradient(tf.stack([top, tf.reduce_min(per_head)]))


def logz_stats(logits: Any) -> Any:
    """The mean over the batch (and positions) of logsumexp over the last axis, in float32."""
    import tensorflow as tf

    return tf.reshape(tf.reduce_mean(tf.reduce_logsumexp(_f32(tf.stop_gradient(logits)), axis=-1)), [1])


def _combine_attention(values: list[Any]) -> Any:
    """Several calls of one attention layer in a step: the largest |logit|, the lowest entropy."""
    import tensorflow as tf

    if len(values) == 1:
        return values[0]
    both = tf.stack(values)
    return tf.stack([tf.reduce_max(both[:, 0]), tf.reduce_min(both[:, 1])])


class Recorder:
    """Records per-layer statistics of every step an optimizer applies to a model's weights.

    Args:
        model: a built Keras model.
        optimizer: the optimizer whose steps are recorded. Defaults to ``model.optimizer``.
        every (int): record every N optimizer steps. Defaults to 1.
        capacity (int): rows in the in-graph ring buffer. Defaults to 512.
        histograms (bool): keep a copy of the raw gradients of the step after each
            :meth:`request_histograms` (for TensorBoard's histograms). Defaults to False.

    Example:
        >>> rec = Recorder(model)
        >>> model.fit(x, y)
        >>> rec.drain().to_records()[0]["layers"]
    """

    def __init__(
        self,
        model: Any,
        optimizer: Any = None,
        *,
        every: int = 1,
        capacity: int = 512,
        histograms: bool = False,
    ) -> None:
        from gradtui.build import import_keras

        import_keras()
        import tensorflow as tf

        self.model = model
        self.every = max(1, int(every))
        self.capacity = int(capacity)
        optimizer = optimizer if optimizer is not None else getattr(model, "optimizer", None)
        if optimizer is None:
            raise ValueError(
                "gradtui.watch needs an optimizer: compile the model, or pass optimizer= (the one "
                "whose apply_gradients your training calls)"
            )
        self.optimizer = optimizer
        self.applier = kc.inner_optimizer(optimizer)
        versions.check(model, self.applier)  # a hook missing: an error, never a wrong record
        self.tracked: list[Tracked] = rows_of(model)
        self.layer_names = [t.name for t in self.tracked]
        self.n_layers = len(self.tracked)
        weights = model.trainable_weights
        self._weights = weights
        owner = np.full(len(weights), -1, dtype=np.int64)
        recurrent = np.zeros(len(weights), bool)
        for li, t in enumerate(self.tracked):
            owner[t.variables] = li
            recurrent[t.recurrent] = True
        #: trainable-weight index of each per-variable column of a row
        self._vars = [i for i in range(len(weights)) if owner[i] >= 0]
        self.n_vars = v = len(self._vars)
        self._column = {id(weights[i]): c for c, i in enumerate(self._vars)}
        for c, i in enumerate(self._vars):
            value = getattr(weights[i], "value", None)
            if value is not None:
                self._column[id(value)] = c
        # Host side: the per-variable columns of a row, sorted by layer, are combined per layer
        # with one reduceat each; recurrent kernels are summed apart
        cols_owner = owner[self._vars]
        self._rec_cols = recurrent[self._vars]
        self._has_rec = np.array([bool(t.recurrent) for t in self.tracked])
        self._perm = np.argsort(cols_owner, kind="stable")
        self._starts = np.searchsorted(cols_owner[self._perm], np.arange(self.n_layers))

        self.taps = [(li, t) for li, t in enumerate(self.tracked) if t.act_kind and t.act_source is not None]
        self._tap_of = {id(t.act_source): k for k, (_, t) in enumerate(self.taps)}
        self._act_layers = np.array([li for li, _ in self.taps], dtype=np.int64)
        # attention layers (on their query projection's row) and the output logits
        self.attn = [(li, t) for li, t in enumerate(self.tracked) if t.attention is not None]
        self.logz = [(li, t) for li, t in enumerate(self.tracked) if t.logits]
        self._attn_layers = np.array([li for li, _ in self.attn], dtype=np.int64)
        self._logz_layers = np.array([li for li, _ in self.logz], dtype=np.int64)
        #: values of a row for them: two per attention layer, then one per logits output
        self.n_extra = 2 * len(self.attn) + len(self.logz)
        # recurrent layers over a sequence of known length: the gradient reaching each time step
        self.time_rows: list[tuple[int, Tracked, int]] = []  # (layer index, row, sequence length)
        for li, t in enumerate(self.tracked):
            shape = kc.input_shape(t.layer) if hasattr(t.layer, "cell") else None
            if shape is not None and len(shape) >= 3 and shape[1] is not None and int(shape[1]) > 1:
                self.time_rows.append((li, t, int(shape[1])))
        self.time_buckets = [min(TIME_BUCKETS, n) for _, _, n in self.time_rows]
        # one row: HEAD, VAR_COLUMNS per variable, (fraction, mean) per tap, the attention and
        # logits values, NaN/Inf per variable, then the spans of time of each recurrent layer
        self._extra_at = HEAD + len(VAR_COLUMNS) * v + 2 * len(self.taps)
        self._time_at = self._extra_at + self.n_extra + v
        self.width = self._time_at + sum(self.time_buckets)
        self.strategy = kc.distribution_strategy(model)
        # The ring: ``capacity`` rows, then one row whose first value is the count of rows
        # written (int32 bits). A step writes its row and the new count with ONE scatter, so a
        # read of the variable (a snapshot) sees a row exactly when it sees it counted.
        with tf.init_scope(), self.strategy.scope():
            init = np.zeros((self.capacity + 1, self.width), np.float32)
            init[: self.capacity, 0] = np.array([-1], np.int32).view(np.float32)[0]  # no step yet
            init[: self.capacity, SEQ] = np.array([-1], np.int32).view(np.float32)[0]  # no row yet
            self.buffer = tf.Variable(init, trainable=False, name="gradtui_ring")
        # Histograms: on request (a flag the host sets), the next step copies its raw gradients
        # into variables of their own; one device only (a replica's copy would be its share)
        self.histograms = histograms and self.strategy.num_replicas_in_sync == 1
        self._hist_taken = -1
        if self.histograms:
            with tf.init_scope():
                self.hist_request = tf.Variable(False, trainable=False, name="gradtui_hist_request")
                self.hist_step = tf.Variable(
                    tf.constant(-1, tf.int64), trainable=False, name="gradtui_hist_step"
                )
                self.hist_grads = [
                    tf.Variable(tf.zeros(weights[i].shape, tf.float32), trainable=False, name="gradtui_hist")
                    for i in self._vars
                ]
        #: added to the step numbers of the rows (an optimizer that follows another one's
        #: steps after a new ``compile()``)
        self.step_offset = 0
        #: rows drained (read or found overwritten) so far
        self.read_count = 0
        #: rows overwritten before a drain read them (the ring overflowed)
        self.lost = 0
        #: ``stats.jsonl`` templates per set of recorded rows
        self._templates: dict[tuple[int, ...], dict[bytes, str]] = {}
        #: columns of the variables the optimizer was seen to receive (set when a step is traced):
        #: a row is recorded only once one of its variables is one of them
        self.received: set[int] = set()
        #: steps whose update norm came from the optimizer's own update tensors (set when traced)
        self.captured_updates = 0
        #: variables whose update norm came from their gradient's, the update being a scalar
        #: times it (plain SGD; counted per trace)
        self.scaled_updates = 0
        # what a training forward pass left, per traced graph and thread (replicas are threads)
        self._stash: dict[tuple[int, int], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._attached = False
        #: take the gradients' statistics before the update (one device, every step recorded)
        self._ahead = True
        self.attach()

    # ------------------------------------------------------------------ hooks

    def attach(self) -> None:
        """Wrap the optimizer's application of gradients and the tapped layers' ``call``."""
        if self._attached:
            return
        kc.wrap_method(self.applier, kc.APPLY, self._wrap_apply, self)
        kc.wrap_method(self.optimizer, "scale_loss", self._wrap_loss, self)
        kc.wrap_method(self.model, "compute_loss", self._wrap_loss, self)
        for _, t in self.taps:
            kc.wrap_method(t.act_source, "call", lambda orig, t=t: self._wrap_call(orig, t), self)
        for k, (_, t, length) in enumerate(self.time_rows):
            kc.wrap_method(
                t.layer, "call", lambda orig, k=k, t=t, n=length: self._wrap_time(orig, k, t, n), self
            )
        for k, (_, t) in enumerate(self.attn):
            kc.tap_attention(t.attention, functools.partial(self._seen_attention, k, t.attention), self)
        for k, (_, t) in enumerate(self.logz):
            kc.wrap_method(t.layer, "call", lambda orig, k=k, t=t: self._wrap_logits(orig, k, t), self)
        self._attached = True
        # A step compiled before now does not pass through the wrappers: compile it again.
        if getattr(self.model, "train_function", None) is not None:
            self.model.train_function = None

    def detach(self) -> None:
        """Give the optimizer and the layers back their own methods."""
        if not self._attached:
            return
        kc.unwrap_method(self.applier, kc.APPLY, self)
        kc.unwrap_method(self.optimizer, "scale_loss", self)
        kc.unwrap_method(self.model, "compute_loss", self)
        for _, t in self.taps:
            kc.unwrap_method(t.act_source, "call", self)
        for _, t, _ in self.time_rows:
            kc.unwrap_method(t.layer, "call", self)
        for _, t in self.attn:
            kc.untap_attention(t.attention, self)
        for _, t in self.logz:
            kc.unwrap_method(t.layer, "call", self)
        self._attached = False
        if getattr(self.model, "train_function", None) is not None:
            self.model.train_function = None

    def _key(self) -> tuple[int, int]:
        import tensorflow as tf

        if tf.executing_eagerly():
            return 0, threading.get_ident()
        # the step's own graph: a LossScaleOptimizer applies inside a tf.cond branch, whose
        # graph is nested in the step's
        graph = tf.compat.v1.get_default_graph()
        while type(graph).__name__ in _BRANCH_GRAPHS and getattr(graph, "outer_graph", None) is not None:
            graph = graph.outer_graph
        return id(graph), threading.get_ident()

    def _slot(self) -> dict[str, Any]:
        key = self._key()
        with self._lock:
            got = self._stash.get(key)
            if got is None:
                if len(self._stash) > 64:  # graphs traced long ago
                    self._stash.clear()
                got = self._stash[key] = {"acts": {}}
            return got

    def _take(self) -> tuple[dict[int, Any], Any, dict[int, Any], dict[str, dict[int, Any]]]:
        """What this step's forward and backward passes left with the recorder (the taps, the
        loss, the spans of time, the attention layers' and the logits' inputs or values), the
        stash emptied for the next step traced in this graph."""
        slot = self._slot()
        acts, loss, times = slot.get("acts", {}), slot.pop("loss", None), slot.pop("time", {})
        seen = {"attn": slot.pop("attn", {}), "logz": slot.pop("logz", {})}
        slot["acts"] = {}
        slot["trained"] = set()
        slot.pop("seen", None)
        return acts, loss, times, seen

    def _wrap_call(self, orig: Any, t: Tracked) -> Any:
        """A tapped layer's ``call`` that leaves its output with the recorder: reduced at once
        to the tap's two numbers when every step is recorded (while the output is fresh, and so
        that nothing holds it until the update). A training forward pass is preferred; a traced
        step that calls its sub-models without ``training=True`` (the keras-io GAN and VAE) is
        measured in those passes, the last of the step."""
        import tensorflow as tf

        k = self._tap_of[id(t.act_source)]

        @functools.wraps(orig)
        def call(*args: Any, **kwargs: Any) -> Any:
            out = orig(*args, **kwargs)
            y = out[0] if isinstance(out, (list, tuple)) else out
            if isinstance(y, tf.Tensor):
                slot = self._slot()
                training = kc.training_call(t.act_source)
                trained = slot.setdefault("trained", set())
                # an inference pass counts inside a traced step only (an eager model(x) of the
                # user's, outside any step, costs nothing more than it did)
                if training or (k not in trained and not tf.executing_eagerly()):
                    if training:
                        trained.add(k)
                    # every step recorded: the two numbers now; else the output, for the step's
                    # one condition to reduce (a condition per tap costs more than the tap)
                    slot["acts"][k] = self._tap_stats(t, tf.stop_gradient(y)) if self.every == 1 else y
            return out

        return call

    def _keep(self, kind: str, k: int, layer: Any, value: Any, combine: bool) -> None:
        """Leave what an attention layer or the output layer saw in this pass with the recorder:
        a training pass is preferred, else (inside a traced step only) the last inference pass,
        as for the activation taps. ``combine``: a layer called again in the same training
        pass adds to what it left (an attention layer shared by several blocks)."""
        import tensorflow as tf

        slot = self._slot()
        training = kc.training_call(layer)
        seen = slot.setdefault("seen", {}).setdefault(kind, {})
        if not training and (seen.get(k) or tf.executing_eagerly()):
            return
        kept = slot.setdefault(kind, {})
        if training and seen.get(k) and combine:
            kept[k].append(value)
        else:
            kept[k] = [value]
        seen[k] = seen.get(k) or training

    def _seen_attention(self, k: int, layer: Any, query: Any, key: Any, mask: Any, causal: bool) -> None:
        """An attention layer is about to compute its attention from ``query`` and ``key``: its
        two numbers at once when every step is recorded, else its inputs, for the step's one
        condition."""
        import tensorflow as tf

        if not isinstance(query, tf.Tensor) or not isinstance(key, tf.Tensor):
            return
        value = (
            attention_stats(layer, query, key, mask, causal)
            if self.every == 1
            else (query, key, mask, causal)
        )
        self._keep("attn", k, layer, value, combine=True)

    def _wrap_logits(self, orig: Any, k: int, t: Tracked) -> Any:
        """The output layer's ``call``: its logits' mean log-partition (or the logits)."""
        import tensorflow as tf

        @functools.wraps(orig)
        def call(*args: Any, **kwargs: Any) -> Any:
            out = orig(*args, **kwargs)
            if isinstance(out, tf.Tensor):
                self._keep("logz", k, t.layer, logz_stats(out) if self.every == 1 else out, combine=False)
            return out

        return call

    def _extras(self, seen: dict[str, dict[int, Any]], raw: bool) -> list[Any]:
        """The attention layers' and the logits' values of a row (NaN where not seen);
        ``raw``: from the inputs they left (not every step recorded)."""
        import tensorflow as tf

        out = []
        for k, (_, t) in enumerate(self.attn):
            got = seen["attn"].get(k)
            if not got:
                out.append(tf.fill([2], tf.constant(math.nan, tf.float32)))
                continue
            values = [attention_stats(t.attention, *v) for v in got] if raw else got
            out.append(_combine_attention(values))
        for k in range(len(self.logz)):
            got = seen["logz"].get(k)
            if not got:
                out.append(tf.fill([1], tf.constant(math.nan, tf.float32)))
                continue
            out.append(logz_stats(got[-1]) if raw else got[-1])
        return out

    def _due(self, period: int | None = None) -> Any:
        """Whether the step running now is recorded (every ``period`` steps; defaults to
        ``every``), a boolean tensor, or ``None`` when every step is (no condition to build)."""
        import tensorflow as tf

        period = self.every if period is None else period
        if period == 1:
            return None
        return tf.equal(tf.cast(tf.convert_to_tensor(self.applier.iterations), tf.int64) % period, 0)

    @staticmethod
    def _when(due: Any, fn: Any, n: int, fill: float = math.nan) -> Any:
        """``fn()`` (a float32 vector of ``n`` values) on a step to record, else ``n`` x ``fill``:
        without a condition when every step is recorded (``due is None``), else one functional
        ``If`` (:func:`gradtui.keras_compat.functional_cond`)."""
        import tensorflow as tf

        if due is None:
            return fn()
        return kc.functional_cond(due, fn, lambda: tf.fill([n], tf.constant(fill, tf.float32)))

    def _wrap_time(self, orig: Any, k: int, t: Tracked, length: int) -> Any:
        """A recurrent layer's ``call`` whose input passes an identity with a gradient of its own.

        In the backward pass that identity receives the gradient reaching each time step of the
        input and, every ``TIME_EVERY`` recorded steps, leaves its norm per span of time with
        the recorder. TensorFlow computes only the gradients the weights need, and a first
        layer's input needs none: the identity also takes the layer's kernel (and gives it a
        zero gradient, added to its own), so that the backward pass reaches it.
        """
        import tensorflow as tf

        buckets = self.time_buckets[k]
        period = self.every * TIME_EVERY
        segments = tf.constant(np.arange(length) * buckets // length, tf.int32)
        kernel = t.layer.trainable_weights[0]

        def measure(dy: Any) -> Any:
            axes = [i for i in range(dy.shape.rank) if i != 1]
            sq = tf.reduce_sum(tf.square(_f32(dy)), axis=axes)
            per_span = tf.math.unsorted_segment_sum(sq, segments, buckets)
            sizes = tf.math.unsorted_segment_sum(tf.ones_like(sq), segments, buckets)
            return tf.sqrt(per_span / sizes)  # the RMS over a span of each time step's norm

        @functools.wraps(orig)
        def call(*args: Any, **kwargs: Any) -> Any:
            x = args[0] if args else None
            if (
                not isinstance(x, tf.Tensor)
                or x.shape.rank is None
                or x.shape.rank < 3
                or not kc.training_call(t.layer)
            ):
                return orig(*args, **kwargs)
            slot = self._slot()

            @tf.custom_gradient
            def seen(x: Any, w: Any) -> Any:
                def grad(dy: Any) -> Any:
                    due = self._due(period)
                    slot.setdefault("time", {})[k] = self._when(due, lambda: measure(dy), buckets)
                    return dy, tf.zeros_like(w)

                return tf.identity(x), grad

            return orig(seen(x, tf.convert_to_tensor(kernel)), *args[1:], **kwargs)

        return call

    def _wrap_loss(self, orig: Any) -> Any:
        import tensorflow as tf

        # functools.wraps keeps the signature Keras inspects (compute_loss's ``training``)
        @functools.wraps(orig)
        def loss_fn(*args: Any, **kwargs: Any) -> Any:
            out = orig(*args, **kwargs)
            loss = args[0] if orig.__name__ == "scale_loss" and args else out
            if isinstance(loss, tf.Tensor) and loss.shape.rank == 0:
                self._slot()["loss"] = loss
            return out

        return loss_fn

    def _wrap_apply(self, orig: Any) -> Any:
        def apply(grads: Any, trainable_variables: Any) -> Any:
            if kc.discarded_trace():  # TensorFlow traces again and runs only that: no statistics here
                self._take()
                return orig(grads, trainable_variables)
            return self._apply(orig, list(grads), list(trainable_variables))

        return apply

    # ------------------------------------------------------------------ in the step (traced)

    def _apply(self, orig: Any, grads: list[Any], variables: list[Any]) -> Any:
        import tensorflow as tf

        opt = self.applier
        step = tf.cast(tf.convert_to_tensor(opt.iterations), tf.int32)
        due = self._due()
        columns = [self._column.get(id(var)) for var in variables]
        self.received.update(
            c for c, g in zip(columns, grads, strict=True) if c is not None and g is not None
        )
        applied_grads = grads  # what the optimizer is handed
        accumulated = kc.accumulation(opt, grads, variables)
        if accumulated is not None:
            # gradient accumulation: the micro-steps share one step number and only the last
            # applies an update, with the mean of theirs: one row per update, that mean
            is_update, grads = accumulated
            due = is_update if due is None else tf.logical_and(due, is_update)
        replicas = self.strategy.num_replicas_in_sync
        in_replica = tf.distribute.in_cross_replica_context() is False and tf.distribute.has_strategy()
        exact = replicas == 1 and not self._inexact(opt)
        reduced: list[Any] = []
        # One device, every step: the gradients' statistics are taken before the update, whose
        # ops are made to wait for them (control edges, no new ops), so that the optimizer is
        # their last reader and may reuse their buffers in place. Under tf.distribute they are
        # taken from the replicas' sum, known only later.
        ahead = replicas == 1 and due is None and self._ahead
        grad_stats = self._grad_stats(grads, columns) if ahead else None

        def keep_reduced(original: Any) -> Any:
            def all_reduce(grads_and_vars: Any) -> Any:
                out = original(grads_and_vars)
                reduced[:] = [g for g, _ in out]
                return out

            return all_reduce

        changes: dict[int, list[tuple[bool, Any]]] = {}
        graph = tf.compat.v1.get_default_graph()

        def capture(original: Any, name: str) -> Any:
            def method(variable: Any, value: Any) -> Any:
                c = self._column.get(id(variable))
                if c is not None and tf.compat.v1.get_default_graph() is graph:
                    change = _f32(tf.convert_to_tensor(value))  # IndexedSlices made dense
                    if name == "assign":  # the new value: the change is new - old
                        change = change - _f32(tf.convert_to_tensor(variable))
                    changes.setdefault(c, []).append((name == "assign_sub", change))
                return original(variable, value)

            return method

        before = (
            {}
            if exact
            else {c: _f32(var) for c, var in zip(columns, variables, strict=True) if c is not None}
        )
        hooks = [(kc.ALL_REDUCE, keep_reduced)] if replicas > 1 and hasattr(opt, kc.ALL_REDUCE) else []
        if exact:
            hooks += [(name, lambda o, name=name: capture(o, name)) for name in kc.ASSIGNS]
        token = object()  # this trace's own wraps (another watch's may be around them)
        for name, make in hooks:
            kc.wrap_method(opt, name, make, token)
        try:
            with tf.control_dependencies([grad_stats] if grad_stats is not None else []):
                result = orig(applied_grads, variables)
        finally:
            for name, _ in hooks:
                kc.unwrap_method(opt, name, token)
        if replicas > 1:
            clipped = any(getattr(opt, a, None) for a in ("clipnorm", "clipvalue", "global_clipnorm"))
            if clipped or len(reduced) != len([g for g in grads if g is not None]):
                # the optimizer summed clipped gradients: sum the raw ones to record
                ctx = tf.distribute.get_replica_context()
                present = [g for g in grads if g is not None]
                reduced = ctx.all_reduce(tf.distribute.ReduceOp.SUM, present) if in_replica else present
            it = iter(reduced)
            grads = [None if g is None else next(it) for g in grads]
        acts, loss, times, seen = self._take()
        if loss is not None and replicas > 1 and in_replica:
            # each replica's loss is its share (scaled by 1 / replicas): their sum is the step's
            loss = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, loss)
        if exact:
            self.captured_updates += 1

        def after() -> Any:
            """The step's statistics, those of the gradients and weights, and the taps' too when
            not every step is recorded (the gradients' are computed here unless taken ahead)."""
            g_stats = self._grad_stats(grads, columns) if grad_stats is None else grad_stats
            parts = [g_stats, self._weight_stats(variables, columns, before, changes, exact, grads, g_stats)]
            if due is not None:
                parts += [
                    self._tap_stats(t, acts[k]) if k in acts else tf.fill([2], math.nan)
                    for k, (_, t) in enumerate(self.taps)
                ]
                parts += self._extras(seen, raw=True)
            return tf.concat(parts, 0)

        if self.histograms:
            self._snapshot(step, grads, columns)
        if due is None:  # every step recorded: no condition
            extras = self._extras(seen, raw=False)
            row = self._row(step, loss, after(), acts, times, extras)
            kc.merge_call(self._write, self.strategy, row, step, None)
            return result
        v = self.n_vars

        def row() -> Any:
            stats = after()  # the taps' two numbers each come last, then the extras
            taps = {k: stats[6 * v + 2 * k : 6 * v + 2 * k + 2] for k in range(len(self.taps))}
            extras = [stats[6 * v + 2 * len(self.taps) :]]
            return self._row(step, loss, stats[: 6 * v], taps, times, extras)

        if not tf.distribute.has_strategy():
            # one condition that computes and writes the row: a step not recorded costs one node
            def record_row() -> Any:
                self._write(self.strategy, row(), step, None)
                return tf.constant(True)

            kc.functional_cond(due, record_row, lambda: tf.constant(False))
        else:
            values = kc.functional_cond(due, row, lambda: tf.zeros([self.width], tf.float32))
            kc.merge_call(self._write, self.strategy, values, step, due)
        return result

    def _snapshot(self, step: Any, grads: list[Any], columns: list[int | None]) -> None:
        """Copy this step's raw gradients for histograms when the host asked for them."""
        import tensorflow as tf

        def copy() -> Any:
            ops = [
                self.hist_grads[c].assign(_f32(tf.convert_to_tensor(g)))
                for c, g in zip(columns, grads, strict=True)
                if c is not None and g is not None
            ]
            with tf.control_dependencies(ops):
                self.hist_request.assign(False)
                self.hist_step.assign(tf.cast(step, tf.int64))
            return tf.constant(True)

        kc.functional_cond(self.hist_request, copy, lambda: tf.constant(False))

    def request_histograms(self) -> None:
        """Ask the next recorded step to keep its raw gradients (see :meth:`take_histograms`)."""
        if self.histograms:
            self.hist_request.assign(True)

    def take_histograms(self) -> tuple[int, dict[str, np.ndarray], dict[str, np.ndarray]] | None:
        """The gradients kept since the last call, and the weights now, per layer (flattened):
        ``(step, gradients, weights)``, or ``None`` when no new step was kept."""
        if not self.histograms:
            return None
        step = int(self.hist_step.numpy())
        if step <= self._hist_taken:
            return None
        self._hist_taken = step
        grads: dict[str, list[np.ndarray]] = {}
        weights: dict[str, list[np.ndarray]] = {}
        column = {i: c for c, i in enumerate(self._vars)}
        for t in self.tracked:
            for i in t.variables:
                grads.setdefault(t.name, []).append(self.hist_grads[column[i]].numpy().ravel())
                weights.setdefault(t.name, []).append(np.asarray(self._weights[i].numpy()).ravel())
        flat = {k: np.concatenate(v) for k, v in grads.items()}
        return step, flat, {k: np.concatenate(v) for k, v in weights.items()}

    @staticmethod
    def _inexact(opt: Any) -> bool:
        """Whether the optimizer changes weights outside the ``assign*`` calls of its update step
        (weight decay, EMA, gradient accumulation): then the change is after minus before."""
        return bool(
            getattr(opt, "weight_decay", None)
            or getattr(opt, "use_ema", False)
            or getattr(opt, "gradient_accumulation_steps", None)
        )

    def _grad_stats(self, grads: list[Any], columns: list[int | None]) -> Any:
        """Per variable column: half the gradient's sum of squares, its largest and smallest
        value, and its count of NaN/Inf (``[4 * n_vars]``, in that order)."""
        import tensorflow as tf

        v = self.n_vars
        if not v:
            return tf.zeros([0], tf.float32)
        zero = tf.constant(0.0)
        g_sq, g_hi, g_lo = ([zero] * v for _ in range(3))
        present: list[tuple[int, Any]] = []
        for c, g in zip(columns, grads, strict=True):
            if c is None or g is None:
                continue
            g = _f32(tf.convert_to_tensor(g))
            g_sq[c] = tf.nn.l2_loss(g)
            g_hi[c] = tf.raw_ops.Max(input=g, axis=_all_axes(g))
            g_lo[c] = tf.raw_ops.Min(input=g, axis=_all_axes(g))
            present.append((c, g))

        def count_bad() -> Any:
            # size - finite values: 3 ops a gradient (this branch is built on every trace)
            sizes, finite = [0.0] * v, [zero] * v
            for c, g in present:
                n = g.shape.num_elements()
                sizes[c] = float(n) if n is not None else 0.0
                ok = tf.raw_ops.Sum(input=tf.cast(tf.math.is_finite(g), tf.float32), axis=_all_axes(g))
                finite[c] = ok if n is not None else ok - tf.cast(tf.size(g), tf.float32)
            return tf.constant(sizes, tf.float32) - tf.stack(finite)

        # the exact count is only worth its ops when a sum of squares is not finite
        if present:
            finite = tf.math.is_finite(tf.add_n([g_sq[c] for c, _ in present]))
            nonfinite = self._when(tf.logical_not(finite), count_bad, v, 0.0)
        else:
            nonfinite = tf.zeros([v], tf.float32)
        return tf.concat([tf.stack(g_sq + g_hi + g_lo), nonfinite], 0)

    def _weight_stats(
        self,
        variables: list[Any],
        columns: list[int | None],
        before: dict[int, Any],
        changes: dict[int, list[tuple[bool, Any]]],
        exact: bool,
        grads: list[Any],
        grad_stats: Any,
    ) -> Any:
        """Per variable column: half the sums of squares of the weights after the update and of
        the update (``[2 * n_vars]``). An update that is a scalar times the gradient (plain
        SGD) takes its sum from the gradient's, ``grad_stats[:n_vars]``."""
        import tensorflow as tf

        v = self.n_vars
        if not v:
            return tf.zeros([0], tf.float32)
        zero = tf.constant(0.0)
        w_sq, u_sq, scales = [zero] * v, [zero] * v, [zero] * v
        scaled = False
        for c, var, g in zip(columns, variables, grads, strict=True):
            if c is None:
                continue
            w = _f32(var)
            w_sq[c] = tf.nn.l2_loss(w)
            if exact:
                parts = changes.get(c)
                if parts and len(parts) == 1:
                    scale = _scale_of(parts[0][1], g)
                    if scale is not None:
                        scales[c], scaled = scale, True
                        self.scaled_updates += 1
                        continue
                if parts:
                    delta = parts[0][1] if len(parts) == 1 else tf.add_n([-x if n else x for n, x in parts])
                    u_sq[c] = tf.nn.l2_loss(delta)
            elif c in before:
                u_sq[c] = tf.nn.l2_loss(w - before[c])
        updates = tf.stack(u_sq)
        if scaled:
            updates += tf.square(tf.stack(scales)) * grad_stats[:v]
        return tf.concat([tf.stack(w_sq), updates], 0)

    def _row(
        self,
        step: Any,
        loss: Any,
        stats: Any,
        acts: dict[int, Any],
        times: dict[int, Any],
        extras: list[Any],
    ) -> Any:
        """One row of the ring (see ``width``) from the step's pieces: ``stats`` holds
        ``g_sq, g_hi, g_lo, nonfinite, w_sq, u_sq``, a block of ``n_vars`` each; ``acts`` the
        taps' two numbers; ``times`` the spans of time measured; ``extras`` the attention
        layers' and logits' values (:meth:`_extras`)."""
        import tensorflow as tf

        v = self.n_vars
        known = loss is not None
        head = tf.stack(
            [
                tf.bitcast(step, tf.float32),
                tf.cast(tf.reshape(loss, []), tf.float32) if known else tf.constant(math.nan),
                tf.constant(1.0 if known else 0.0),
                tf.constant(0.0),  # the row's number, given when it is written
            ]
        )
        nan2 = tf.fill([2], tf.constant(math.nan, tf.float32))
        taps = [tf.reshape(acts[k], [2]) if k in acts else nan2 for k in range(len(self.taps))]
        spans = [
            tf.reshape(_f32(times[k]), [n]) if k in times else tf.fill([n], math.nan)
            for k, n in enumerate(self.time_buckets)
        ]
        extras = [tf.reshape(_f32(x), [-1]) for x in extras]
        # row order: head, g_sq g_hi g_lo w_sq u_sq, taps, extras, nonfinite, spans
        return tf.concat(
            [head, stats[: 3 * v], stats[4 * v :], *taps, *extras, stats[3 * v : 4 * v], *spans], 0
        )

    def _tap_stats(self, t: Tracked, a: Any) -> Any:
        """A tap's two numbers: the fraction of saturated or dead units, and the mean output."""
        import tensorflow as tf

        a = _f32(a)
        if t.act_kind == "dead":
            # a unit (a channel of a convolution) is dead when it outputs 0 for every sample of
            # the batch at every position
            rank = a.shape.rank or 2
            keep = (1 if t.channels_first and rank > 2 else -1) % rank
            reduce_axes = [i for i in range(rank) if i != keep]
            if self._nonneg(t):
                # a ReLU output is >= 0: a channel is all zeros exactly when it sums to 0, so one
                # pass gives both numbers
                sums = tf.reduce_sum(a, reduce_axes)
                frac = tf.reduce_mean(tf.cast(sums <= 0.0, tf.float32))
                mean = tf.reduce_sum(sums) / tf.cast(tf.size(a), tf.float32)
                return tf.stack([frac, mean])
            frac = tf.reduce_mean(tf.cast(tf.reduce_max(a, reduce_axes) <= 0.0, tf.float32))
        elif t.activation == "sigmoid":
            sat = tf.math.squared_difference(a, 0.5) > (0.5 - SIGMOID_SAT) ** 2
            frac = tf.reduce_mean(tf.cast(sat, tf.float32))
        else:
            frac = tf.reduce_mean(tf.cast(tf.abs(a) > TANH_SAT, tf.float32))
        return tf.stack([frac, tf.reduce_mean(a)])

    @staticmethod
    def _nonneg(t: Tracked) -> bool:
        """Whether a dead-unit tap's output is never negative (a ReLU layer with a negative
        ``threshold`` lets values in ``[threshold, 0)`` through)."""
        source = t.act_source
        return not (type(source).__name__ == "ReLU" and float(getattr(source, "threshold", 0.0) or 0.0) < 0.0)

    def _write(self, distribution: Any, values: Any, step: Any, record: Any) -> None:
        """Write one row into the ring (on every replica's copy, from its own values), if
        ``record`` (a boolean tensor; ``None``: unconditionally).

        The protocol: the writer reads the count ``n`` (the ring's last row), and with one
        ``scatter_nd_update`` writes the row, numbered ``n``, into slot ``n % capacity`` and the
        count ``n + 1``. A scatter holds the variable's lock and a reader's snapshot is never
        written into (TensorFlow copies a buffer a reader still holds), so no read sees a count
        before the values of the rows it counts (see :meth:`drain`)."""
        import tensorflow as tf

        capacity = self.capacity
        always = record is None  # (under tf.distribute, ``record`` is a per-replica value)
        del step  # the row carries its step

        def put(buffer: Any, row: Any, record: Any) -> Any:
            def write() -> Any:
                n = tf.bitcast(buffer.sparse_read([capacity])[0, 0], tf.int32)
                seq = tf.reshape(tf.bitcast(n, tf.float32), [1])
                numbered = tf.concat([row[:SEQ], seq, row[SEQ + 1 :]], 0)
                counter = tf.concat(
                    [tf.reshape(tf.bitcast(n + 1, tf.float32), [1]), tf.zeros_like(row[1:])], 0
                )
                slots = tf.reshape(tf.stack([n % capacity, tf.constant(capacity, tf.int32)]), [2, 1])
                buffer.scatter_nd_update(slots, tf.stack([numbered, counter]))
                return tf.constant(True)

            return write() if always else kc.functional_cond(record, write, lambda: tf.constant(False))

        flag = tf.constant(True) if always else record
        distribution.extended.update(self.buffer, put, args=(values, flag), group=False)

    # ------------------------------------------------------------------ host side

    @property
    def written(self) -> int:
        """Rows written into the ring so far (drained or not)."""
        return self._count_now()

    def _count_now(self) -> int:
        """The ring's count of rows written, read alone (its last row)."""
        try:
            return _count_of(np.asarray(self.buffer.sparse_read([self.capacity])), 0)
        except Exception:  # a distributed variable that reads no slice from here
            return _count_of(self.buffer.numpy(), self.capacity)

    def pending(self) -> int:
        """Rows written in the graph and not yet drained."""
        return self.written - self.read_count

    def drain(self, epoch: int = 0) -> Records:
        """The rows written since the last drain, oldest first (empty when there are none).

        The count ``c`` of rows written is read first (the ring's last row, alone), then only
        the slots of the rows ``read_count .. c-1`` (one gather; the last ``capacity`` of them
        when more were written: the older ones are overwritten). Every row numbered below
        ``c`` was written with its count (:meth:`_write`), and a scatter and a gather of the
        ring exclude each other, so each wanted slot holds either that row, or a row written
        ``capacity`` or more later (the ring overflowed: counted in :attr:`lost`). A slot
        holding an older row than expected cannot happen; it would stop the drain there, to be
        read again."""
        count = self._count_now()
        if count <= self.read_count:  # nothing new: nothing else is read
            return self._records(np.zeros((0, self.width), np.float32), epoch)
        first = max(self.read_count, count - self.capacity)
        wanted = np.arange(first, count, dtype=np.int64)
        slots = wanted % self.capacity
        rows = self._read_slots(slots)
        seqs = rows[:, SEQ].view(np.int32).astype(np.int64)
        behind = np.flatnonzero(seqs < wanted)
        if len(behind):  # not written yet: read from there next time
            wanted, rows, seqs = wanted[: behind[0]], rows[: behind[0]], seqs[: behind[0]]
        present = seqs == wanted
        self.lost += int(first - self.read_count) + int(len(wanted) - present.sum())
        self.read_count = first + len(wanted)
        return self._records(rows[present], epoch)

    def _read_slots(self, slots: np.ndarray) -> np.ndarray:
        """These rows of the ring, as one read (a gather of just them where the variable
        allows it from here; the whole ring otherwise, a distributed variable)."""
        try:
            return np.asarray(self.buffer.sparse_read(slots.astype(np.int32)))
        except Exception:
            return self.buffer.numpy()[slots]

    def rows_received(self) -> list[int]:
        """Indices (into :attr:`tracked`) of the rows whose variables the optimizer receives: a
        layer nobody updates here (a frozen or a distillation's teacher) is no row."""
        got = self.received
        return [
            li
            for li, t in enumerate(self.tracked)
            if any(self._column.get(id(self._weights[i])) in got for i in t.variables)
        ]

    def _records(self, rows: np.ndarray, epoch: int) -> Records:
        steps = rows[:, 0].copy().view(np.int32).astype(np.int64) + self.step_offset
        losses = rows[:, 1].astype(np.float64)
        losses[rows[:, 2] == 0] = math.nan
        keep = self.rows_received()
        layers = [self.tracked[li] for li in keep]
        names = {t.name for t in layers}
        times = {k: v for k, v in self._time_grads(rows).items() if k in names}
        return Records(
            steps,
            losses,
            self.layer_stats(rows)[:, keep],
            epoch,
            layers,
            self._templates.setdefault(tuple(keep), {}),
            loss_known=rows[:, 2] != 0,
            time_grads=times,
        )

    def _time_grads(self, rows: np.ndarray) -> dict[str, tuple[list[int], np.ndarray]]:
        """Per recurrent layer: the first time step of each span, and the ``(rows, spans)``
        gradient norms (NaN on rows where they were not measured)."""
        out = {}
        at = self._time_at
        for (_, t, length), n in zip(self.time_rows, self.time_buckets, strict=True):
            span = np.arange(length) * n // length
            starts = [int(np.argmax(span == b)) for b in range(n)]
            out[t.name] = (starts, rows[:, at : at + n].astype(np.float64))
            at += n
        return out

    def layer_stats(self, rows: np.ndarray) -> np.ndarray:
        """Per-layer statistics ``[n_rows, n_layers, K]`` (see :data:`gradtui.probe.COLUMNS`)."""
        v, n, t = self.n_vars, len(rows), len(self.taps)
        blocks = rows[:, HEAD : HEAD + 5 * v].astype(np.float64).reshape(n, 5, v)
        nonfinite = rows[:, self._extra_at + self.n_extra : self._time_at].astype(np.float64)
        out = np.full((n, self.n_layers, K), math.nan)
        col = {name: i for i, name in enumerate(COLUMNS)}
        if v:
            # sums per layer with reduceat over the columns sorted by layer (a matrix product
            # would spread one variable's Inf to every layer as Inf * 0 = NaN)
            perm, starts = self._perm, self._starts

            def per_layer(x: np.ndarray, ufunc: Any = np.add) -> np.ndarray:
                return ufunc.reduceat(x[:, perm], starts, axis=1)

            g = blocks[:, 0]
            with np.errstate(invalid="ignore", over="ignore"):
                out[:, :, col["grad_norm"]] = np.sqrt(2.0 * per_layer(np.where(self._rec_cols, 0.0, g)))
                rec_norm = np.sqrt(2.0 * per_layer(np.where(self._rec_cols, g, 0.0)))
                out[:, :, col["recurrent_grad_norm"]] = np.where(self._has_rec, rec_norm, math.nan)
                hi = np.maximum(blocks[:, 1], -blocks[:, 2])
                out[:, :, col["grad_max"]] = per_layer(hi, np.maximum)
                out[:, :, col["weight_norm"]] = np.sqrt(2.0 * per_layer(blocks[:, 3]))
                out[:, :, col["update_norm"]] = np.sqrt(2.0 * per_layer(blocks[:, 4]))
                out[:, :, col["nonfinite"]] = per_layer(nonfinite)
        if t:
            taps = rows[:, HEAD + 5 * v : HEAD + 5 * v + 2 * t].astype(np.float64).reshape(n, t, 2)
            out[:, self._act_layers, col["act"]] = taps[:, :, 0]
            out[:, self._act_layers, col["act_mean"]] = taps[:, :, 1]
        if self.n_extra:
            at, a = self._extra_at, len(self.attn)
            attn = rows[:, at : at + 2 * a].astype(np.float64).reshape(n, a, 2)
            out[:, self._attn_layers, col["attn_logit_max"]] = attn[:, :, 0]
            out[:, self._attn_layers, col["attn_entropy"]] = attn[:, :, 1]
            out[:, self._logz_layers, col["logz_mean"]] = rows[:, at + 2 * a : at + self.n_extra]
        return out


def _count_of(rows: np.ndarray, capacity: int) -> int:
    """The count of rows written, from a snapshot of the ring (its last row)."""
    return int(rows[capacity, 0:1].view(np.int32)[0])
