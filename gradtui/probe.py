"""The instrumented train step: per-layer statistics computed inside the compiled step.

Keras callbacks never see gradients, so the statistics are computed in ``train_step`` itself,
from the gradients the step already has and the activations of the same forward pass: no
extra forward or backward pass. Each variable is reduced by a few reductions that read it once
and materialize nothing (on a CPU, passes over big kernels and stacking or concatenating many
small tensors are what cost), and everything per layer is done on the host, vectorized over the
rows of a drain. Each recorded step writes one row into a ring buffer held in a
``tf.Variable``; a callback drains the ring a few times a second, so there is no device-to-host
copy per step and nothing is added to the logs the user's ``fit`` shows. ``benchmarks/bench_overhead.py`` measures what it costs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import numpy as np

from gradtui.build import import_keras
from gradtui.stack import SATURATING, LayerInfo

#: columns of one layer's row in the ring buffer
COLUMNS = ("grad_norm", "grad_max", "weight_norm", "update_norm", "nonfinite", "act")
K = len(COLUMNS)
#: a sigmoid/tanh output counts as saturated where the derivative is below 8% of its maximum
SIGMOID_SAT = 0.0204  # s(1-s) < 0.02 = 8% of 0.25
TANH_SAT = 0.959  # 1-t^2 < 0.08
ACTIVATION_LAYERS = ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax")
#: per-variable columns of a ring row: sum of squares of the gradient, its largest and smallest
#: value, sums of squares of the weights and of the update, count of NaN/Inf in the gradient
VAR_COLUMNS = ("grad_sq", "grad_hi", "grad_lo", "weight_sq", "update_sq", "nonfinite")
#: the per-layer fields of a ``stats.jsonl`` record, in the order they are written (a layer with
#: an activation tap adds ``saturation`` or ``dead``)
RECORD_FIELDS = ("grad_norm", "grad_max", "weight_norm", "update_ratio", "nonfinite")


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


@dataclass
class Records:
    """Consecutive recorded steps as arrays: what one drain of the ring gives.

    Everything downstream (``stats.jsonl``, the history, the diagnoser) reads these arrays
    directly, vectorized over the rows; :meth:`to_records` builds the ``stats.jsonl`` records as
    dicts for whoever wants them.

    Attributes:
        steps: the optimizer step of each row, ``(n,)`` int64.
        losses: the loss of each row's batch, ``(n,)`` float64.
        stats: ``(n, layers, K)`` float64, the columns of :data:`COLUMNS`.
        epoch: the epoch the rows were drained in.
        layers: the recorded layers, in model order.
    """

    steps: np.ndarray
    losses: np.ndarray
    stats: np.ndarray
    epoch: int
    layers: list[Tracked]
    #: ``%`` templates of ``stats.jsonl`` lines, kept across drains by the :class:`Instrument`
    templates: dict[bytes, str] = dataclass_field(default_factory=dict, repr=False, compare=False)
    _fields: dict[str, np.ndarray] = dataclass_field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def names(self) -> list[str]:
        """The recorded layers' names."""
        return [t.name for t in self.layers]

    def fields(self, t: Tracked) -> tuple[str, ...]:
        """The fields one layer's entry of a record has, in order."""
        return RECORD_FIELDS + ((t.act_kind,) if t.act_kind else ())

    def field(self, key: str) -> np.ndarray:
        """One ``stats.jsonl`` field for every row and layer, ``(n, layers)``; NaN where a layer
        does not have it (``saturation`` and ``dead`` belong to layers with that tap).
        Computed once per drain: ``stats.jsonl``, the history and the diagnoser all read it."""
        got = self._fields.get(key)
        if got is None:
            got = self._fields[key] = self._field(key)
        return got

    def _field(self, key: str) -> np.ndarray:
        s = self.stats
        if key == "update_ratio":
            wn, un = s[:, :, 2], s[:, :, 3]
            ok = (wn > 0) & np.isfinite(wn)
            ratio = np.divide(un, wn, out=np.zeros_like(un), where=ok)
            return np.where(ok, ratio, np.where(un == 0, 0.0, math.inf))
        if key in ("saturation", "dead"):
            has = np.array([t.act_kind == key for t in self.layers], bool)
            return np.where(has, s[:, :, 5], math.nan)
        return s[:, :, {"grad_norm": 0, "grad_max": 1, "weight_norm": 2, "nonfinite": 4}[key]]

    def _values(self) -> np.ndarray:
        """Every number of every record, in the order :meth:`to_jsonl` writes them."""
        cols = [self.steps.astype(np.float64), np.full(len(self), float(self.epoch)), self.losses]
        fields = {key: self.field(key) for key in (*RECORD_FIELDS, "saturation", "dead")}
        for li, t in enumerate(self.layers):
            cols.extend(fields[key][:, li] for key in self.fields(t))
        return np.stack(cols, axis=1)

    def to_records(self) -> list[dict[str, Any]]:
        """The ``stats.jsonl`` records (SPEC section 3), one dict per row."""
        out = []
        for row in self._values().tolist():
            layers: dict[str, dict[str, float]] = {}
            i = 3
            for t in self.layers:
                entry: dict[str, Any] = {}
                for key in self.fields(t):
                    entry[key] = int(row[i]) if key == "nonfinite" else row[i]
                    i += 1
                layers[t.name] = entry
            out.append({"step": int(row[0]), "epoch": int(row[1]), "loss": row[2], "layers": layers})
        return out

    def to_jsonl(self) -> str:
        """The records as compact ``stats.jsonl`` lines, formatted from one ``%`` template a row.

        Floats are written with 9 significant digits (``%.9g``: every float32 statistic reads
        back exactly), or with one decimal (``%.1f``) where ``%.9g`` would print an integer, so
        a float always reads back as a float. Shortest-``repr`` formatting, what ``json.dumps``
        does, costs 2.5 times as much here. NaN and Inf are written as the strings ``"nan"``,
        ``"inf"``, ``"-inf"``, as :func:`gradtui.runlog.dumps_record` does.
        """
        values = self._values()
        pieces, is_int = _jsonl_pieces(self)
        floats = ~np.array(is_int)
        with np.errstate(invalid="ignore"):
            size = np.abs(values)
            # %.9g drops the fraction of these (|v - rint(v)| < 0.5e-8 |v| suffices for that)
            whole = floats & (size < 1e16) & (np.abs(values - np.rint(values)) <= 1e-8 * size)
        finite = np.isfinite(values).all(axis=1).tolist()
        templates = self.templates
        out = []
        for row, ok, pattern in zip(values.tolist(), finite, whole, strict=True):
            if not ok:
                out.append(
                    _build(pieces, ["%s"] * len(row))
                    % tuple(_token(v, i, w) for v, i, w in zip(row, is_int, pattern.tolist(), strict=True))
                )
                continue
            key = pattern.tobytes()
            template = templates.get(key)
            if template is None:
                formats = [
                    "%d" if i else ("%.1f" if w else "%.9g")
                    for i, w in zip(is_int, pattern.tolist(), strict=True)
                ]
                template = templates[key] = _build(pieces, formats)
            out.append(template % tuple(row))
        return "".join(out)


def _token(value: float, is_int: bool, whole: bool) -> str:
    """One value of a row that holds a NaN or Inf, as JSON text: the formats of the template
    path (``whole``: ``%.9g`` would print an integer), NaN and Inf as strings."""
    if is_int:
        return str(int(value))
    if not math.isfinite(value):
        return '"nan"' if math.isnan(value) else ('"inf"' if value > 0 else '"-inf"')
    return f"{value:.1f}" if whole else f"{value:.9g}"


def _jsonl_pieces(records: Records) -> tuple[list[str], list[bool]]:
    """The text around the values of one compact JSON record (``%`` escaped), one piece before
    each value and one after the last, and which values are integers."""
    pieces = ['{"step":', ',"epoch":', ',"loss":']
    is_int = [True, True, False]
    sep = ',"layers":{'
    for t in records.layers:
        name = json.dumps(t.name).replace("%", "%%")
        for j, key in enumerate(records.fields(t)):
            pieces.append(sep + (name + ":{" if j == 0 else "") + f'"{key}":')
            is_int.append(key == "nonfinite")
            sep = ","
        sep = "},"
    pieces.append("}}}\n" if records.layers else ',"layers":{}}\n')
    return pieces, is_int


def _build(pieces: list[str], formats: list[str]) -> str:
    return "".join(p + f for p, f in zip(pieces, formats, strict=False)) + pieces[-1]


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
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


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


def _f32(t: Any) -> Any:
    import tensorflow as tf

    t = tf.convert_to_tensor(t)
    return t if t.dtype == tf.float32 else tf.cast(t, tf.float32)


class Instrument:
    """Replaces a model's train step with one that records per-layer statistics.

    The statistics come from the gradients the step already has and the activations of the same
    forward pass. Each variable is reduced inside the compiled step (see :data:`VAR_COLUMNS`; the
    NaN/Inf count only when its gradient is not finite), each activation tap to one fraction.
    One float32 row per recorded step goes into a ring buffer held in a ``tf.Variable``;
    :meth:`drain` turns the rows into per-layer statistics with numpy, vectorized over all the
    rows it reads, so the per-layer combination costs nothing per step. Nothing is added to the
    logs the user's ``fit`` shows.

    With ``every > 1`` the model gets two compiled steps, Keras's own and the recording one, and
    a Python dispatcher calls the recording one every ``every`` optimizer steps: the steps in
    between cost exactly what plain ``fit`` costs. (With ``steps_per_execution > 1`` one call runs
    several steps, so the cadence is decided inside the graph instead, with a ``tf.cond``.)

    Args:
        model: a built, compiled Keras model (Sequential or functional for activation statistics).
        infos: the model's :class:`LayerInfo` (from :func:`gradtui.stack.plan` or
            :func:`describe`).
        every (int): record every N optimizer steps. Defaults to 1.
        capacity (int): rows in the in-graph ring buffer. Defaults to 512.

    Example:
        >>> inst = Instrument(model, describe(model), every=1)
        >>> model.fit(x, y, callbacks=[make_callback(lambda why: print(inst.drain().to_records()))])
    """

    def __init__(self, model: Any, infos: list[LayerInfo], *, every: int = 1, capacity: int = 512) -> None:
        keras = import_keras()
        import tensorflow as tf

        self.model = model
        self.every = max(1, int(every))
        self.capacity = int(capacity)
        self.tracked = tracked_layers(model, infos)
        self.layer_names = [t.name for t in self.tracked]
        n_layers = len(self.tracked)
        self.n_layers = n_layers
        weights = model.trainable_weights
        self.owner = np.full(len(weights), -1, dtype=np.int32)
        for li, t in enumerate(self.tracked):
            for vi in t.variables:
                self.owner[vi] = li
        #: trainable-weight index of each per-variable column of a row
        self._vars = [i for i in range(len(weights)) if self.owner[i] >= 0]
        self.n_vars = len(self._vars)
        # Host side: the per-variable columns of a row, sorted by layer, are combined per layer
        # with one reduceat each.
        layer_of_column = self.owner[self._vars]
        self._perm = np.argsort(layer_of_column, kind="stable")
        self._starts = np.searchsorted(layer_of_column[self._perm], np.arange(n_layers))

        # Activation taps: the same forward pass, with the activations as extra outputs.
        self.taps: list[tuple[int, str, str]] = []  # (layer index, kind, activation)
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
        self._act_layers = np.array([li for li, _, _ in self.taps], dtype=np.int64)

        # one row: step (int32 bits), loss, VAR_COLUMNS per variable, one per activation tap
        self.width = 2 + len(VAR_COLUMNS) * self.n_vars + len(self.taps)
        with tf.init_scope():
            self.buffer = tf.Variable(
                tf.zeros((self.capacity, self.width)), trainable=False, name="gradtui_ring"
            )
            self.count = tf.Variable(tf.constant(0, tf.int64), trainable=False, name="gradtui_count")
        self.read_count = 0
        self.lost = 0
        self._templates: dict[bytes, str] = {}  # stats.jsonl line templates, see Records.to_jsonl
        #: variables whose update norm comes from the optimizer's update tensor (set when traced)
        self.captured_updates = 0
        self._host_step: int | None = None
        self._original_train_step = model.train_step
        model.train_step = self.train_step
        model.make_train_function = self._make_train_function
        model.make_train_function(force=True)

    def remove(self) -> None:
        """Give the model back its own ``train_step`` and compiled step."""
        self.model.train_step = self._original_train_step
        if "make_train_function" in vars(self.model):
            del self.model.make_train_function
        self.model.make_train_function(force=True)

    # ------------------------------------------------------------------ compiled steps

    def _make_train_function(self, force: bool = False) -> Any:
        """The model's ``make_train_function``: the recording step, or a dispatcher for ``every``."""
        model = self.model
        self._host_step = None  # fit calls this first: re-read the step counter
        if model.train_function is not None and not force:
            return model.train_function
        if self.every == 1:
            fn = self._compile(self._record_step)
        elif model.steps_per_execution > 1:
            fn = model._make_function(self.train_step)
        else:
            plain = self._compile(self._original_train_step)
            record = self._compile(self._record_step)

            def fn(iterator: Any) -> Any:
                step = self._host_step
                if step is None:
                    step = int(model.optimizer.iterations.numpy())
                out = (record if step % self.every == 0 else plain)(iterator)
                self._host_step = step + 1
                return out

        model.train_function = fn
        return fn

    def _compile(self, step_fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return compile_train_function(self.model, step_fn)

    def train_step(self, data: Any) -> Any:
        """Keras's own TensorFlow ``train_step``, recording every ``every`` steps. Runs traced."""
        return self._step(data, cadence=self.every > 1)

    def _record_step(self, data: Any) -> Any:
        """Keras's own TensorFlow ``train_step``, recording this step. Runs traced."""
        return self._step(data, cadence=False)

    def _step(self, data: Any, *, cadence: bool) -> Any:
        import tensorflow as tf
        from keras.src import tree
        from keras.src.losses import loss as loss_module
        from keras.src.trainers.data_adapters import data_adapter_utils

        model = self.model
        x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            if self.probe_model is not None:
                outs = self.probe_model(x, training=True)
                n_out = len(model.outputs)
                y_pred = outs[0] if n_out == 1 else outs[:n_out]
                acts = list(outs[n_out:])
            else:
                y_pred = model(x, training=True) if model._call_has_training_arg else model(x)
                acts = []
            loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            model._loss_tracker.update_state(
                loss_module.unscale_loss_for_distribution(loss),
                sample_weight=tf.shape(next(i for i in tree.flatten(x) if i is not None))[0],
            )
            raw_loss = loss
            if model.optimizer is not None:
                loss = model.optimizer.scale_loss(loss)
        weights = model.trainable_weights
        if weights:
            grads = tape.gradient(loss, weights)
            # read before the update: the step's number and (where the optimizer's own update
            # is not captured) the weights the update starts from
            step = tf.cast(model.optimizer.iterations, tf.int32)
            exact = self._exact_updates()
            before = [] if exact else [_f32(weights[i]) for i in self._vars]
            g = [_f32(grads[i]) for i in self._vars]
            if cadence:
                updates = self._apply(grads, weights, exact)
            else:
                grad_stats = self._grad_stats(g)
                # The optimizer runs once the gradients are reduced, so it can update in place
                # the gradient buffers nothing else holds any more (else it allocates copies).
                with tf.control_dependencies(grad_stats[0]):
                    updates = self._apply(grads, weights, exact)

            def write() -> Any:
                stats = self._grad_stats(g) if cadence else grad_stats
                self._write(step, raw_loss, stats, before, updates, weights, acts)
                return tf.constant(True)

            if cadence:
                tf.cond(tf.equal(step % self.every, 0), write, lambda: tf.constant(False))
            else:
                write()
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _exact_updates(self) -> bool:
        """Whether the optimizer changes the weights only through ``assign*`` calls it makes in
        the step itself (no weight decay, EMA, gradient accumulation or loss scaling)."""
        opt = self.model.optimizer
        return not (
            getattr(opt, "weight_decay", None)
            or getattr(opt, "use_ema", False)
            or getattr(opt, "gradient_accumulation_steps", None)
            or hasattr(opt, "inner_optimizer")
            or not all(hasattr(opt, m) for m in ("assign", "assign_add", "assign_sub"))
        )

    def _apply(self, grads: list[Any], weights: list[Any], exact: bool) -> dict[int, Any]:
        """Run the optimizer; with ``exact``, capture the change it makes to each variable.

        Keras optimizers update a variable with ``assign_sub``/``assign_add`` of the update
        tensor (or ``assign`` of the new value): the change is taken from those tensors (one
        read of the update) instead of from the weights before and after (a copy of every
        weight, a subtraction and a read). A change made where it cannot be seen from the step
        (inside a nested graph) is NaN. Without ``exact`` nothing is captured and the weights
        before and after are used.
        """
        import tensorflow as tf

        opt = self.model.optimizer
        self.captured_updates = 0
        if not exact:
            opt.apply_gradients(zip(grads, weights, strict=False))
            return {}
        column = {}
        for c, i in enumerate(self._vars):
            column[id(weights[i])] = c
            column[id(getattr(weights[i], "value", weights[i]))] = c
        graph = tf.compat.v1.get_default_graph()
        changes: dict[int, list[tuple[bool, Any]]] = {}
        unseen: set[int] = set()

        def capture(name: str) -> Callable[[Any, Any], Any]:
            original = getattr(opt, name)

            def method(variable: Any, value: Any) -> Any:
                c = column.get(id(variable))
                if c is not None:
                    if tf.compat.v1.get_default_graph() is not graph:
                        unseen.add(c)
                    else:
                        change = _f32(tf.convert_to_tensor(value))  # IndexedSlices made dense
                        if name == "assign":  # the new value: read the old one first
                            change = change - _f32(tf.convert_to_tensor(variable))
                        changes.setdefault(c, []).append((name == "assign_sub", change))
                return original(variable, value)

            return method

        names = ("assign", "assign_add", "assign_sub")
        for name in names:
            object.__setattr__(opt, name, capture(name))
        try:
            opt.apply_gradients(zip(grads, weights, strict=False))
        finally:
            for name in names:
                object.__delattr__(opt, name)
        out = {}
        for c in range(self.n_vars):
            parts = changes.get(c)
            if c in unseen or not parts:
                # not changed in this graph (frozen, or changed out of sight): no known change
                shape = weights[self._vars[c]].shape
                out[c] = tf.fill(shape, math.nan) if c in unseen else tf.zeros(shape)
                continue
            self.captured_updates += 1
            # one change: its sign does not matter to its norm; several add up
            out[c] = parts[0][1] if len(parts) == 1 else tf.add_n([-x if neg else x for neg, x in parts])
        return out

    def _grad_stats(self, g: list[Any]) -> tuple[list[Any], Any]:
        """Half sums of squares, maxima and minima of the gradients; their NaN/Inf counts."""
        import tensorflow as tf

        # Reductions only, one per variable: l2_loss, max and min read their input without
        # materializing a temporary. (Stacking same-shape variables to reduce them in one op
        # costs more here: a Pack takes ~30 us of kernel time on this CPU, see RESULTS.md.)
        half_sq = [tf.nn.l2_loss(x) for x in g]
        scalars = half_sq + [tf.reduce_max(x) for x in g] + [tf.reduce_min(x) for x in g]

        def count_nonfinite() -> Any:
            return tf.stack(
                [tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(x)), tf.float32)) for x in g]
            )

        # the exact count is only worth its ops when a sum of squares is not finite (their
        # total is finite exactly when each is, barring an overflow that then counts nothing)
        nonfinite = tf.cond(
            tf.math.is_finite(tf.add_n(half_sq)),
            lambda: tf.zeros([self.n_vars], tf.float32),
            count_nonfinite,
        )
        return scalars, nonfinite

    def _write(
        self,
        step: Any,
        loss: Any,
        grad_stats: tuple[list[Any], Any],
        before: list[Any],
        updates: dict[int, Any],
        weights: list[Any],
        acts: list[Any],
    ) -> None:
        import tensorflow as tf

        # On a CPU the executor's cost per op is what counts for small tensors, so every scalar
        # goes into one Pack and the row is one concat: no per-layer ops (see layer_stats).
        w1 = [_f32(weights[i]) for i in self._vars]
        delta = [updates[c] if c in updates else w1[c] - before[c] for c in range(self.n_vars)]
        scalars = [tf.bitcast(step, tf.float32), tf.cast(tf.reshape(loss, []), tf.float32)]
        scalars += grad_stats[0]
        scalars += [tf.nn.l2_loss(x) for x in w1]
        scalars += [tf.nn.l2_loss(x) for x in delta]
        scalars += self._act_stats(acts)
        row = tf.concat([tf.stack(scalars), grad_stats[1]], 0)
        slot = self.count % self.capacity
        self.buffer.scatter_nd_update(tf.reshape(slot, [1, 1]), tf.reshape(row, [1, -1]))
        self.count.assign_add(1)

    def _act_stats(self, acts: list[Any]) -> list[Any]:
        """One scalar per activation tap: the fraction of saturated or dead units."""
        import tensorflow as tf

        out = []
        for (_, kind, activation), a in zip(self.taps, acts, strict=True):
            a = _f32(a)
            if kind == "dead":
                # a unit is dead when it outputs 0 (or less) for every sample of the batch
                sat = tf.reduce_max(a, 0) <= 0.0
            elif activation == "sigmoid":
                # a < s or a > 1 - s, in one op
                sat = tf.math.squared_difference(a, 0.5) > (0.5 - SIGMOID_SAT) ** 2
            else:
                sat = tf.abs(a) > TANH_SAT
            out.append(tf.reduce_mean(tf.cast(sat, tf.float32)))
        return out

    # ------------------------------------------------------------------ host side

    def pending(self) -> int:
        """Rows written in the graph and not yet drained."""
        return int(self.count.numpy()) - self.read_count

    def drain(self, epoch: int = 0) -> Records:
        """The rows written since the last drain, oldest first (empty when there are none)."""
        count = int(self.count.numpy())
        new = count - self.read_count
        if new <= 0:
            return Records(
                np.zeros(0, np.int64),
                np.zeros(0),
                np.zeros((0, self.n_layers, K)),
                epoch,
                self.tracked,
                self._templates,
            )
        if new > self.capacity:
            self.lost += new - self.capacity
            self.read_count = count - self.capacity
        slots = np.arange(self.read_count, count) % self.capacity
        rows = self.buffer.numpy()[slots]
        self.read_count = count
        steps = rows[:, 0].copy().view(np.int32).astype(np.int64)
        stats = self.layer_stats(rows)
        return Records(steps, rows[:, 1].astype(np.float64), stats, epoch, self.tracked, self._templates)

    def layer_stats(self, rows: np.ndarray) -> np.ndarray:
        """Per-layer statistics ``[n_rows, n_layers, K]`` (see :data:`COLUMNS`) of ring rows."""
        v, n, t = self.n_vars, len(rows), len(self.taps)
        # row: step, loss, 5 blocks of v per-variable values, t taps, v NaN/Inf counts
        cols = rows[:, 2 : 2 + 5 * v].astype(np.float64).reshape(n, 5, v)[:, :, self._perm]
        nonfinite = rows[:, 2 + 5 * v + t :].astype(np.float64)[:, self._perm]
        add, hi = np.add.reduceat, np.maximum.reduceat
        starts = self._starts
        out = np.empty((n, self.n_layers, K))
        if v:
            # l2_loss is half the sum of squares
            out[:, :, 0] = np.sqrt(2.0 * add(cols[:, 0], starts, axis=1))
            out[:, :, 1] = hi(np.maximum(cols[:, 1], -cols[:, 2]), starts, axis=1)
            out[:, :, 2] = np.sqrt(2.0 * add(cols[:, 3], starts, axis=1))
            out[:, :, 3] = np.sqrt(2.0 * add(cols[:, 4], starts, axis=1))
            out[:, :, 4] = add(nonfinite, starts, axis=1)
        out[:, :, 5] = -1.0
        if t:
            out[:, self._act_layers, 5] = rows[:, 2 + 5 * v : 2 + 5 * v + t]
        return out


def compile_train_function(model: Any, step_fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A train function for ``model`` running ``step_fn``, taking its batch from a ``tf.data``
    iterator inside the compiled call.

    Keras's train function (``model._make_function``) wraps each step's result in a
    ``tf.experimental.Optional`` and unwraps it with two more eager ops per step (~85 us here)
    so that running out of data is not an exception. Here the compiled step calls
    ``get_next()`` and returns the logs: at the end of the data it raises
    ``OutOfRangeError``, which Keras's TensorFlow epoch iterator turns into the end of the
    epoch. Anything else (``steps_per_execution > 1``, a distribution strategy, eager mode, a
    Python iterator) goes through Keras's own wrapper.
    """
    import tensorflow as tf

    keras_fn = model._make_function(step_fn)
    if model.steps_per_execution > 1 or model.run_eagerly or tf.distribute.has_strategy():
        return keras_fn
    if type(model.distribute_strategy).__name__ != "_DefaultDistributionStrategy":
        return keras_fn
    step = step_fn
    if model.jit_compile:
        step = tf.function(step_fn, jit_compile=True, autograph=False)

    @tf.function(reduce_retracing=True, autograph=False)
    def one_step(iterator: Any) -> Any:
        return step(iterator.get_next())

    def fn(iterator: Any) -> Any:
        if isinstance(iterator, tf.data.Iterator):
            return one_step(iterator)
        return keras_fn(iterator)

    return fn


def make_callback(flush: Callable[[str], None], on_epoch: Callable[[int, dict], None] | None = None) -> Any:
    """A Keras callback that drains the ring a few times a second (and at epoch/train ends).

    Its per-batch work is a clock read and a look at the loss Keras already converted to a
    Python float (the TensorFlow backend runs batch callbacks synchronously whatever they do).
    """
    keras = import_keras()

    class GradtuiCallback(keras.callbacks.Callback):
        """Drains gradtui's statistics ring; never touches the logs the user sees."""

        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.interval = 0.2
            #: drain after this many batches at the latest (the ring must not overflow)
            self.flush_every = 256
            self._last = 0.0
            self._batches = 0
            #: seconds spent inside ``fit`` (all fits so far): steps per second for a summary
            self.train_seconds = 0.0
            self._began = 0.0

        def on_train_begin(self, logs: dict | None = None) -> None:
            self._began = time.monotonic()

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
            self.train_seconds += time.monotonic() - self._began
            flush("end")

    return GradtuiCallback()
