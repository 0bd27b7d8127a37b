"""Which rows a model's statistics have: one per innermost layer that owns trainable weights.

A row's key is the layer's path in the model joined with ``/`` (a top-level layer's key is its
name), whatever the nesting: a ``Bidirectional`` LSTM gives two rows (``bidirectional/forward_lstm``
and ``.../backward_lstm``), a transformer block one per attention projection, feed-forward Dense
and LayerNormalization. Recurrent layers are rows of their own (their cell's weights are theirs),
with the recurrent kernel apart from the input kernel and bias.

Each row may get an activation tap: the output of the layer whose function it passes through,
the row's own (``Dense(activation="relu")``, a convolution, a ``SimpleRNN``) or the next
activation layer before the next weighted layer (``Dense -> BatchNormalization -> Activation``).
A sigmoid/tanh output is watched for ``saturation``, a ReLU output for ``dead`` units (channels
for a convolution). Functions that do not output a hard zero (leaky ReLU, ELU, SELU, GELU) do not
die, so they get no ``dead`` statistic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradtui.keras_compat import attention_layers, attention_query, sublayers
from gradtui.stack import SATURATING, LayerInfo

#: layers that only apply a function (their output is the activation of the row before them)
ACTIVATION_LAYERS = ("Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax")
#: normalization layers: rows of their own, but not a depth point for vanishing/exploding
NORMALIZATION = ("BatchNormalization", "LayerNormalization", "GroupNormalization", "RMSNormalization")
#: recurrent layers whose output is their activation (LSTM/GRU outputs are gated mixtures)
PLAIN_RECURRENT = ("SimpleRNN",)
#: functions whose units die: they output exactly 0 for every negative input
DYING = ("relu", "relu6")


@dataclass
class Tracked:
    """One row: a layer with trainable weights, as the recorder records it.

    Attributes:
        name: the row's key, the layer's path in the model.
        activation: the function its output passes through (``linear`` when none).
        act_kind: ``saturation``, ``dead`` or ``None`` (no activation statistic).
        act_layer: the path of the layer whose output is tapped for that statistic.
        variables: indices into ``model.trainable_weights``.
        is_dense: a ``Dense`` layer.
        is_output: the last weighted layer of the model (no activation statistic).
        type: the Keras class name.
        recurrent: the indices (a subset of ``variables``) of recurrent kernels.
        layer: the Keras layer object.
        act_source: the Keras layer whose output is tapped.
        channels_first: the tapped output has its channels on axis 1.
        attention: the ``MultiHeadAttention`` whose query projection this row is (it carries
            that layer's ``attn_logit_max`` and ``attn_entropy``), else ``None``.
        logits: the output layer of a model that outputs logits (it carries ``logz_mean``).
    """

    name: str
    activation: str
    act_kind: str | None
    act_layer: str | None
    variables: list[int]
    is_dense: bool
    is_output: bool
    type: str = ""
    recurrent: list[int] = field(default_factory=list)
    layer: Any = field(default=None, repr=False, compare=False)
    act_source: Any = field(default=None, repr=False, compare=False)
    channels_first: bool = False
    attention: Any = field(default=None, repr=False, compare=False)
    logits: bool = False


def activation_name(layer: Any) -> str:
    """The name of the function a Keras layer applies last (``linear`` when it has none)."""
    cls = type(layer).__name__
    named = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "PReLU": "prelu", "ELU": "elu", "Softmax": "softmax"}
    if cls in named:
        if cls == "ReLU" and float(getattr(layer, "negative_slope", 0.0) or 0.0) != 0.0:
            return "leaky_relu"
        return named[cls]
    act = getattr(layer, "activation", None)
    if act is None:
        return "linear"
    name = getattr(act, "__name__", None) or type(act).__name__
    return {"silu": "swish"}.get(name, name)


def _kind(activation: str) -> str | None:
    if activation in SATURATING:
        return "saturation"
    if activation in DYING:
        return "dead"
    return None


def leaf_layers(model: Any) -> list[tuple[str, Any, list[Any]]]:
    """``(path, layer, weights)`` of every innermost layer owning trainable weights, and of every
    weightless activation layer, in the model's order (input first).

    A layer is innermost when it has no sublayers, or is recurrent (a cell is its detail). A
    composite layer that also owns weights of its own gets a row for those.
    """
    out: list[tuple[str, Any, list[Any]]] = []
    seen: set[int] = set()

    def walk(layer: Any, prefix: str) -> None:
        for sub in sublayers(layer):
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            path = f"{prefix}/{sub.name}" if prefix else sub.name
            subs = sublayers(sub)
            recurrent = hasattr(sub, "cell") and not hasattr(sub, "forward_layer")
            if not subs or recurrent:
                weights = list(sub.trainable_weights)
                if weights or type(sub).__name__ in ACTIVATION_LAYERS:
                    out.append((path, sub, weights))
                continue
            inner = {id(w) for s in subs for w in s.trainable_weights}
            own = [w for w in sub.trainable_weights if id(w) not in inner]
            if own:
                out.append((path, sub, own))
            walk(sub, path)

    walk(model, "")
    return out


def rows_of(model: Any) -> list[Tracked]:
    """The rows of a built Keras model, in its order (input first)."""
    index = {id(w): i for i, w in enumerate(model.trainable_weights)}
    rows: list[Tracked] = []
    pending: Tracked | None = None  # a linear weighted row an activation layer may belong to
    for path, layer, weights in leaf_layers(model):
        cls = type(layer).__name__
        if cls in ACTIVATION_LAYERS and pending is not None:
            act = activation_name(layer)
            if pending.activation == "linear":
                pending.activation = act
                pending.act_kind = _kind(act)
                if pending.act_kind:
                    pending.act_layer, pending.act_source = path, layer
            pending = None
        ids = [index[id(w)] for w in weights if id(w) in index]
        if not ids:
            continue
        act = activation_name(layer)
        recurrent = [index[id(w)] for w in weights if id(w) in index and "recurrent" in w.path.split("/")[-1]]
        row = Tracked(
            name=path,
            activation=act,
            act_kind=None,
            act_layer=None,
            variables=ids,
            is_dense=cls == "Dense",
            is_output=False,
            type=cls,
            recurrent=recurrent,
            layer=layer,
            channels_first=getattr(layer, "data_format", None) == "channels_first",
        )
        is_recurrent = hasattr(layer, "cell")
        if (not is_recurrent or cls in PLAIN_RECURRENT) and cls not in ACTIVATION_LAYERS:
            row.act_kind = _kind(act)
            if row.act_kind:
                row.act_layer, row.act_source = path, layer
        rows.append(row)
        if cls in NORMALIZATION:
            continue  # Dense -> BatchNormalization -> Activation: the activation is the Dense's
        pending = row if act == "linear" and not is_recurrent else None
    depth = [r for r in rows if r.type not in NORMALIZATION]
    if depth:
        out = depth[-1]
        out.is_output = True
        out.act_kind = out.act_layer = out.act_source = None
        out.logits = outputs_logits(model, out)
    by_layer = {id(r.layer): r for r in rows}
    for mha in attention_layers(model):
        row = by_layer.get(id(attention_query(mha)))
        if row is not None:
            row.attention = mha
    return rows


def outputs_logits(model: Any, row: Tracked) -> bool:
    """Whether the output row gives logits over its last axis: a linear ``Dense`` (or
    ``EinsumDense``) of more than one unit, unless the model was compiled with a loss that is
    not a classification's (a regression's linear output is no logits)."""
    if row.activation != "linear" or row.type not in ("Dense", "EinsumDense"):
        return False
    try:
        units = row.layer.output.shape[-1]
    except Exception:
        units = getattr(row.layer, "units", None)
    if units is None or int(units) < 2:
        return False
    loss = getattr(model, "loss", None)
    losses = (
        list(loss.values()) if isinstance(loss, dict) else loss if isinstance(loss, (list, tuple)) else [loss]
    )
    losses = [x for x in losses if x is not None]
    if not losses:
        return True  # a custom training loop: a linear multi-unit output is read as logits
    for x in losses:
        name = (
            x if isinstance(x, str) else getattr(x, "name", None) or getattr(x, "__name__", type(x).__name__)
        )
        if any(k in str(name).lower().replace("_", "") for k in ("crossentropy", "kldivergence", "kld")):
            return True
        if getattr(x, "from_logits", False):
            return True
    return False


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def describe(model: Any, rows: list[Tracked] | None = None) -> list[LayerInfo]:
    """:class:`LayerInfo` for each row of any Keras model (what the diagnoser and advice read)."""
    from gradtui.preset import Spec

    rows = rows if rows is not None else rows_of(model)
    infos: list[LayerInfo] = []
    for r in rows:
        layer = r.layer
        weights = [model.trainable_weights[i] for i in r.variables]
        trainable = sum(int(np.prod(w.shape)) for w in weights)
        try:
            shape = tuple(int(d) if d is not None else -1 for d in layer.output.shape[1:])
        except Exception:
            shape = ()
        info = LayerInfo(r.name, r.type, None, shape, params=trainable, trainable=trainable)
        info.activation = r.activation
        info.activation_layer = r.act_layer
        info.is_output = r.is_output
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and len(kernel.shape) >= 1:
            kshape = tuple(int(d) for d in kernel.shape)
            info.fan_in = int(np.prod(kshape[:-1])) if len(kshape) > 1 else kshape[0]
            info.fan_out = kshape[-1]
            init = getattr(layer, "kernel_initializer", None)
            if init is not None:
                info.initializer = Spec(_snake(type(init).__name__))
        infos.append(info)
    # Dense -> BatchNormalization (-> activation) is "before"; an activated Dense -> BN "after"
    for row, a, b in zip(rows, infos, infos[1:], strict=False):
        if b.type == "BatchNormalization" and a.type != "BatchNormalization":
            a.batch_norm = "after" if row.act_layer == a.name else "before"
    return infos
