"""The layer stack as plain data: Keras layer names, shapes, parameters, initializer variance,
and the pre-flight advice that pairs an initializer with its activation.

Pure Python, no TensorFlow: the CLI's ``check``, the TUI's builder table and the diagnoses all
read it, and it is what lets a model too large for memory be refused before anything is built.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from gradtui.errors import ModelTooLargeError, PresetError
from gradtui.preset import (
    FFN_FACTOR,
    FIRST_LAYER_FORMS,
    NAMED_VOCAB,
    POOL_TYPES,
    RECURRENT_TYPES,
    SEQUENCE_DATASETS,
    LayerSpec,
    Preset,
    Spec,
    TrainSpec,
)

SATURATING = ("sigmoid", "tanh")
RELU_FAMILY = ("relu", "leaky_relu", "prelu", "elu", "gelu", "swish")
#: this many saturating hidden layers without BatchNorm earn a pre-flight warning
DEEP_SATURATING = 6
#: this many hidden dense/conv layers with neither residual connections nor normalization
#: earn a pre-flight warning: plain stacks of 20 and more layers train worse than shallower ones
#: whatever their activation (He et al. 2016), while 12 ReLU layers with He init train well here
DEEP_PLAIN = 16
#: a SimpleRNN over this many steps earns a pre-flight warning (its gradient through time
#: shrinks or grows geometrically with the number of steps)
LONG_SEQUENCE = 30
#: Keras classes of the recurrent types, and the number of gates each kernel holds
RECURRENT_CLASSES = {"simple_rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
RECURRENT_GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}
#: activations that Keras's Dense takes by name; others get a layer of their own
FUSABLE = (
    "linear",
    "sigmoid",
    "tanh",
    "relu",
    "selu",
    "softmax",
    "gelu",
    "swish",
    "elu",
    "leaky_relu",
)
#: the Keras class of each kind of separate activation layer
ACTIVATION_CLASSES = {"prelu": "PReLU", "leaky_relu": "LeakyReLU", "elu": "ELU", "activation": "Activation"}
KERAS_BASE_NAMES = {
    "dense": "dense",
    "batch_norm": "batch_normalization",
    "activation": "activation",
    "flatten": "flatten",
    "dropout": "dropout",
    "leaky_relu": "leaky_re_lu",
    "prelu": "p_re_lu",
    "elu": "elu",
    "conv1d": "conv1d",
    "conv2d": "conv2d",
    "MaxPooling1D": "max_pooling1d",
    "MaxPooling2D": "max_pooling2d",
    "AveragePooling1D": "average_pooling1d",
    "AveragePooling2D": "average_pooling2d",
    "GlobalAveragePooling1D": "global_average_pooling1d",
    "GlobalAveragePooling2D": "global_average_pooling2d",
    "simple_rnn": "simple_rnn",
    "lstm": "lstm",
    "gru": "gru",
    "bidirectional": "bidirectional",
    "embedding": "embedding",
    "position_embedding": "position_embedding",
    "transformer": "transformer_block",
    "layer_norm": "layer_normalization",
    "add": "add",
}


@dataclass
class LayerInfo:
    """One Keras layer of the model a preset builds.

    Attributes:
        name: the Keras layer name (``dense``, ``dense_1``, ...).
        type: the Keras class name.
        entry: index of the ``[[layers]]`` entry it comes from (``None`` for an implied layer).
        output_shape: shape without the batch axis.
        params: parameter count; ``trainable`` of them are trained.
        activation: for a Dense layer, the activation its block applies (after any BatchNorm).
        activation_layer: name of the layer whose output is that activation (for statistics).
        initializer: the kernel initializer of a Dense layer.
        fan_in, fan_out: of a Dense kernel.
        batch_norm: ``none``, ``before`` or ``after`` for a Dense block.
        is_output: the last Dense layer (the classifier).
        kind: the ``[[layers]]`` type it comes from (``conv2d``, ``lstm``...), ``""`` if implied.
        role: ``projection`` for the linear projection on a residual skip, ``add`` for the
            ``Add`` that closes a residual block, ``""`` otherwise.
        residual_start: the first layer of a residual block (its input is the skip's input).
        inner: the wrapped class of a ``Bidirectional`` layer (``LSTM``...).
        recurrent_initializer: the recurrent kernel's initializer of a recurrent layer.
        part_of: for a layer inside a block gradtui builds (a transformer block's attention
            projections, feed-forward Dense layers and LayerNormalizations), the block's name;
            its ``name`` is then its path (``transformer_block/multi_head_attention/query``),
            the key of its row, and the block (built as one Keras layer) counts no parameters
            itself. ``""`` for a layer of the model itself.
    """

    name: str
    type: str
    entry: int | None
    output_shape: tuple[int, ...]
    params: int = 0
    trainable: int = 0
    activation: str = "linear"
    activation_layer: str | None = None
    initializer: Spec | None = None
    bias_initializer: Spec | None = None
    fan_in: int = 0
    fan_out: int = 0
    batch_norm: str = "none"
    is_output: bool = False
    activation_spec: Spec | None = None
    keras_args: dict = field(default_factory=dict)
    kind: str = ""
    role: str = ""
    residual_start: bool = False
    inner: str | None = None
    recurrent_initializer: Spec | None = None
    part_of: str = ""

    @property
    def has_weights(self) -> bool:
        """Whether the layer has trainable parameters (a row in the monitor)."""
        return self.trainable > 0

    @property
    def is_dense(self) -> bool:
        """A Dense layer of the stack (not the projection on a residual skip)."""
        return self.type == "Dense" and self.role != "projection"

    @property
    def is_conv(self) -> bool:
        """A convolution of the stack (not the projection on a residual skip)."""
        return self.type in ("Conv1D", "Conv2D") and self.role != "projection"

    @property
    def is_recurrent(self) -> bool:
        """A SimpleRNN, LSTM or GRU, bidirectional or not."""
        return self.kind in RECURRENT_TYPES

    @property
    def is_weighted(self) -> bool:
        """A dense, conv or recurrent layer of the stack: one with a kernel it was given."""
        return self.is_dense or self.is_conv or self.is_recurrent

    @property
    def variance(self) -> float | None:
        """The kernel initializer's weight variance σ², or ``None`` when unknown."""
        if self.initializer is None:
            return None
        return init_variance(self.initializer, self.fan_in, self.fan_out)


def init_variance(spec: Spec, fan_in: int, fan_out: int) -> float | None:
    """σ² of the weights an initializer draws for a kernel of this fan-in and fan-out."""
    fan_avg = (fan_in + fan_out) / 2
    name = spec.name
    if name.startswith("glorot_"):
        return 1.0 / fan_avg
    if name.startswith("he_"):
        return 2.0 / fan_in
    if name.startswith("lecun_"):
        return 1.0 / fan_in
    if name == "variance_scaling":
        mode = spec.param("mode", "fan_in")
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": fan_avg}[mode]
        return spec.param("scale", 1.0) / max(fan, 1)
    if name == "random_normal":
        return spec.param("stddev", 0.05) ** 2
    if name == "truncated_normal":
        # a normal truncated at 2 stddev keeps about 77% of the variance
        return 0.7737 * spec.param("stddev", 0.05) ** 2
    if name == "random_uniform":
        return (spec.param("maxval", 0.05) - spec.param("minval", -0.05)) ** 2 / 12
    if name in ("zeros", "ones", "constant"):
        return 0.0
    if name == "orthogonal":
        return spec.param("gain", 1.0) ** 2 / max(fan_in, fan_out, 1)
    return None


def matched_init(activation: str) -> tuple[str, str, float]:
    """The initializer family that fits an activation: (name, rule, variance factor on fan)."""
    if activation == "selu":
        return "lecun_normal", "σ² = 1/fan_in", 1.0
    if activation in RELU_FAMILY:
        return "he_normal", "σ² = 2/fan_in", 2.0
    return "glorot_uniform", "σ² = 1/fan_avg", 1.0


def matched_variance(activation: str, fan_in: int, fan_out: int) -> float:
    """σ² of the initializer that fits the activation, for this layer's fans."""
    name, _, factor = matched_init(activation)
    if name.startswith("glorot"):
        return factor / ((fan_in + fan_out) / 2)
    return factor / fan_in


def layer_range(names: list[str]) -> str:
    """``dense..dense_11`` for several consecutive layers, the name for one."""
    if not names:
        return ""
    return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"


# --------------------------------------------------------------------------- planning


class _Namer:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, kind: str) -> str:
        base = KERAS_BASE_NAMES.get(kind, kind)
        n = self.counts.get(base, 0)
        self.counts[base] = n + 1
        return base if n == 0 else f"{base}_{n}"


def _activation_layer_kind(act: Spec) -> str:
    if act.name == "prelu":
        return "prelu"
    if act.name == "leaky_relu":
        return "leaky_relu"
    if act.name == "elu" and act.params:
        return "elu"
    return "activation"


def _sizes(value: int | tuple[int, ...] | None, rank: int) -> tuple[int, ...]:
    if value is None:
        return (1,) * rank
    return tuple(value) if isinstance(value, tuple) else (int(value),) * rank


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + (",)" if len(shape) == 1 else ")")


def _first_shape_type(preset: Preset) -> str | None:
    return next((s.type for s in preset.layers if s.type in FIRST_LAYER_FORMS), None)


def plan(preset: Preset, input_shape: tuple[int, ...], num_classes: int | None = None) -> list[LayerInfo]:
    """The Keras layers a preset builds, with names, shapes and parameter counts.

    This is the single description of the model that :mod:`gradtui.build` turns into Keras
    layers, so names and counts here are exactly the Keras ones. An input a layer cannot take
    (a recurrent layer on flat data, a pool that shrinks a side below 1, a convolution of the
    wrong rank) is a :class:`PresetError` naming the entry, before TensorFlow loads.
    """
    namer = _Namer()
    layers: list[LayerInfo] = []
    shape = tuple(input_shape)
    expanded = preset.expanded()
    dense_positions = [i for i, (_, s) in enumerate(expanded) if s.type == "dense"]
    last_dense = dense_positions[-1]
    if expanded[-1][1].type != "dense":
        raise PresetError(
            "the last layer must be the dense output layer (units = number of classes)",
            key=f"layers[{len(preset.layers) - 1}].type",
        )
    if len(shape) > 1 and _first_shape_type(preset) in ("dense", None):
        # an image goes through a Flatten before the first Dense, as anyone would write it
        layers.append(LayerInfo(namer("flatten"), "Flatten", None, (math.prod(shape),)))
        shape = (math.prod(shape),)
    last_recurrent: list[int] = []  # the entry of the last recurrent layer seen

    def entry_error(entry: int, kind: str, message: str) -> PresetError:
        return PresetError(message, key=f"layers[{entry}] ({kind})")

    def activation_info(entry: int, act: Spec) -> LayerInfo:
        kind = _activation_layer_kind(act)
        n = math.prod(shape) if kind == "prelu" else 0  # PReLU learns one slope per unit
        info = LayerInfo(
            namer(kind), ACTIVATION_CLASSES[kind], entry, shape, params=n, trainable=n, activation=act.name
        )
        info.activation_spec = act
        layers.append(info)
        return info

    def add_activation(entry: int, act: Spec, owner: LayerInfo) -> None:
        owner.activation_layer = activation_info(entry, act).name

    def spatial(entry: int, spec: LayerSpec, what: str) -> int:
        """The number of spatial axes of the current shape (1: sequence, 2: image)."""
        if len(shape) in (2, 3):
            return len(shape) - 1
        raise entry_error(
            entry,
            spec.type,
            f"{what} takes a sequence (steps, channels) or an image (height, width, channels), "
            f"but its input has shape {_shape_text(shape)}",
        )

    for pos, (entry, spec) in enumerate(expanded):
        key = f"layers[{entry}]"
        kind = spec.type
        if kind == "flatten":
            shape = (math.prod(shape),)
            layers.append(LayerInfo(namer("flatten"), "Flatten", entry, shape, kind=kind))
        elif kind == "dropout":
            layers.append(
                LayerInfo(
                    namer("dropout"), "Dropout", entry, shape, keras_args={"rate": spec.rate}, kind=kind
                )
            )
        elif kind == "batch_norm":
            layers.append(_bn_info(namer, entry, shape, spec, preset.train.batch_norm_momentum))
        elif kind == "layer_norm":
            n = 2 * shape[-1]
            layers.append(
                LayerInfo(
                    namer("layer_norm"),
                    "LayerNormalization",
                    entry,
                    shape,
                    params=n,
                    trainable=n,
                    keras_args={"epsilon": spec.epsilon},
                    kind=kind,
                )
            )
        elif kind == "activation":
            act = spec.activation or Spec("linear")
            owner = None
            for x in reversed(layers):
                if x.part_of:
                    continue
                if x.role == "block":
                    break  # an activation after a transformer block acts on the block's output
                if x.is_dense or x.is_conv:
                    owner = x
                    break
            if owner is not None and owner.activation == "linear" and owner.activation_layer is None:
                owner.activation = act.name
                add_activation(entry, act, owner)
            else:
                activation_info(entry, act)
        elif kind in POOL_TYPES:
            rank = spatial(entry, spec, "a pool")
            pool = _sizes(spec.pool_size, rank)
            if len(pool) != rank:
                raise entry_error(
                    entry,
                    kind,
                    f"pool_size {list(pool)} has {len(pool)} value(s) but its input {_shape_text(shape)} "
                    f"has {rank} spatial axes; give an integer or {rank} values",
                )
            out = tuple(n // p for n, p in zip(shape[:-1], pool, strict=True))
            if min(out) < 1:
                raise entry_error(
                    entry,
                    kind,
                    f"pool_size {spec.pool_size if isinstance(spec.pool_size, int) else list(pool)} "
                    f"shrinks a side of its input {_shape_text(shape)} below 1; use a smaller "
                    "pool_size or fewer pools",
                )
            shape = (*out, shape[-1])
            cls = ("MaxPooling" if kind == "max_pool" else "AveragePooling") + f"{rank}D"
            layers.append(LayerInfo(namer(cls), cls, entry, shape, keras_args={"pool_size": pool}, kind=kind))
        elif kind == "global_avg_pool":
            rank = spatial(entry, spec, "global_avg_pool")
            shape = (shape[-1],)
            cls = f"GlobalAveragePooling{rank}D"
            layers.append(LayerInfo(namer(cls), cls, entry, shape, kind=kind))
        elif kind == "transformer":
            if len(shape) != 2:
                hint = (
                    "begin the stack with an embedding (it turns the tokens into vectors)"
                    if len(shape) == 1
                    else "add a global_avg_pool or flatten after the convolutions, or read the data "
                    "as a sequence"
                )
                raise entry_error(
                    entry,
                    kind,
                    f"a transformer needs a sequence (steps, features), but its input has shape "
                    f"{_shape_text(shape)}; {hint}",
                )
            causal = spec.causal if spec.causal is not None else preset.data.dataset in SEQUENCE_DATASETS
            layers.extend(_transformer_infos(namer("transformer"), entry, shape, spec, causal))
        elif kind == "embedding":
            if pos != 0 or len(shape) != 1:
                raise entry_error(
                    entry,
                    kind,
                    "an embedding reads the data's integer tokens, so it must be the first layer "
                    f"(its input here has shape {_shape_text(shape)})",
                )
            vocab = NAMED_VOCAB.get(preset.data.dataset)
            if vocab is not None and (spec.input_dim or 0) < vocab:
                raise PresetError(
                    f"{spec.input_dim} is fewer than the {vocab} "
                    f"{'characters' if preset.data.dataset == 'text' else 'pixel values'} of "
                    f"{preset.data.dataset} (its tokens); set input_dim = {vocab} or more",
                    key=f"{key}.input_dim",
                )
            n = int(spec.input_dim or 1) * int(spec.output_dim or 1)
            shape = (shape[0], int(spec.output_dim or 1))
            layers.append(
                LayerInfo(
                    namer("embedding"),
                    "Embedding",
                    entry,
                    shape,
                    params=n,
                    trainable=n,
                    keras_args={"input_dim": spec.input_dim, "output_dim": spec.output_dim},
                    kind=kind,
                )
            )
            if spec.positions:
                n = math.prod(shape)
                layers.append(
                    LayerInfo(
                        namer("position_embedding"),
                        "PositionEmbedding",
                        entry,
                        shape,
                        params=n,
                        trainable=n,
                        keras_args={"length": shape[0]},
                        kind=kind,
                        role="positions",
                    )
                )
        elif kind in RECURRENT_TYPES:
            if len(shape) != 2:
                if len(shape) == 1 and last_recurrent:
                    hint = f"set return_sequences = true on layers[{last_recurrent[-1]}] before it"
                elif len(shape) == 1:
                    hint = (
                        "the data is flat here; recurrent layers read digits, mnist or fashion_mnist "
                        "pixel by pixel, adding, or a data file of shape (samples, steps, features)"
                    )
                else:
                    hint = "add a global_avg_pool or flatten first, or use conv1d for sequences"
                raise entry_error(
                    entry,
                    kind,
                    f"a recurrent layer needs a sequence (steps, features), but its input has shape "
                    f"{_shape_text(shape)}; {hint}",
                )
            steps, features = shape
            units = int(spec.units or 1)
            gates = RECURRENT_GATES[kind]
            bias = 2 * units if kind == "gru" else units  # Keras's GRU (reset_after) has two biases
            per = gates * (units * (features + units) + bias)
            dirs = 2 if spec.bidirectional else 1
            width = units * dirs
            shape = (steps, width) if spec.return_sequences else (width,)
            cls = RECURRENT_CLASSES[kind]
            act = spec.activation or Spec("tanh")
            info = LayerInfo(
                namer("bidirectional" if spec.bidirectional else kind),
                "Bidirectional" if spec.bidirectional else cls,
                entry,
                shape,
                params=per * dirs,
                trainable=per * dirs,
                activation=act.name,
                initializer=spec.initializer,
                bias_initializer=spec.bias_initializer,
                fan_in=features,
                fan_out=gates * units,
                activation_spec=act,
                keras_args={"units": units, "return_sequences": spec.return_sequences, "steps": steps},
                kind=kind,
                inner=cls if spec.bidirectional else None,
                recurrent_initializer=spec.recurrent_initializer,
            )
            layers.append(info)
            last_recurrent.append(entry)
        else:  # dense, conv1d, conv2d
            in_shape = shape
            start = len(layers)
            act = spec.activation or Spec("linear")
            fused = act.name in FUSABLE and not act.params and spec.batch_norm != "before"
            use_bias = spec.batch_norm != "before"
            if kind == "dense":
                # flat input, or for a target at every position (text) a sequence (steps,
                # features): Keras's Dense then acts on every step
                if len(shape) != 1 and not (len(shape) == 2 and preset.data.dataset in SEQUENCE_DATASETS):
                    raise entry_error(
                        entry,
                        kind,
                        f"a dense layer needs flat input, but its input has shape {_shape_text(shape)}; "
                        "add a flatten or global_avg_pool layer before it",
                    )
                units = int(spec.units or 1)
                fan_in, fan_out = shape[-1], units
                params = fan_in * units + (units if use_bias else 0)
                out_shape: tuple[int, ...] = (*shape[:-1], units)
                cls, args = "Dense", {}
            else:
                rank = 1 if kind == "conv1d" else 2
                if len(shape) != rank + 1:
                    want = (
                        "a sequence (steps, channels)" if rank == 1 else "an image (height, width, channels)"
                    )
                    raise entry_error(
                        entry,
                        kind,
                        f"{kind} needs {want}, but its input has shape {_shape_text(shape)}",
                    )
                kernel = _sizes(spec.kernel_size, rank)
                strides = _sizes(spec.strides, rank)
                sides = []
                for n, k, st in zip(shape[:-1], kernel, strides, strict=True):
                    if spec.padding == "same":
                        sides.append(-(-n // st))
                    elif n < k:
                        raise entry_error(
                            entry,
                            kind,
                            f"kernel_size {list(kernel)} is larger than its input {_shape_text(shape)} "
                            "with padding = 'valid'; use padding = 'same' or a smaller kernel_size",
                        )
                    else:
                        sides.append((n - k) // st + 1)
                filters = int(spec.filters or 1)
                receptive = math.prod(kernel)
                fan_in, fan_out = receptive * shape[-1], receptive * filters
                params = fan_in * filters + (filters if use_bias else 0)
                out_shape = (*sides, filters)
                cls = f"Conv{rank}D"
                args = {"kernel_size": kernel, "strides": strides, "padding": spec.padding}
            info = LayerInfo(
                namer(kind),
                cls,
                entry,
                out_shape,
                params=params,
                trainable=params,
                activation=act.name,
                initializer=spec.initializer,
                bias_initializer=spec.bias_initializer,
                fan_in=fan_in,
                fan_out=fan_out,
                batch_norm=spec.batch_norm,
                is_output=pos == last_dense,
                activation_spec=act,
                keras_args={"fused": fused, "use_bias": use_bias, **args},
                kind=kind,
            )
            shape = out_shape
            layers.append(info)
            if fused:
                info.activation_layer = info.name
            if spec.batch_norm == "before":
                layers.append(_bn_info(namer, entry, shape, None, preset.train.batch_norm_momentum))
                add_activation(entry, act, info)
            else:
                if not fused:
                    add_activation(entry, act, info)
                if spec.batch_norm == "after":
                    layers.append(_bn_info(namer, entry, shape, None, preset.train.batch_norm_momentum))
            if spec.residual:
                layers[start].residual_start = True
                if shape != in_shape:
                    layers.append(_projection(namer, entry, kind, in_shape, shape, info))
                layers.append(LayerInfo(namer("add"), "Add", entry, shape, kind=kind, role="add"))
    _check_output(preset, layers, num_classes)
    return layers


#: the role of each part of a transformer block (``LayerInfo.role``), by its name in the block
TRANSFORMER_ROLES = {
    "attention_norm": "norm",
    "multi_head_attention/query": "attention_query",
    "multi_head_attention/key": "attention_key",
    "multi_head_attention/value": "attention_value",
    "multi_head_attention/attention_output": "attention_output",
    "multi_head_attention/query_norm": "qk_norm",
    "multi_head_attention/key_norm": "qk_norm",
    "ffn_norm": "norm",
    "ffn_dense": "ffn",
    "ffn_output": "ffn_output",
}


def _transformer_infos(
    name: str, entry: int, shape: tuple[int, ...], spec: LayerSpec, causal: bool
) -> list[LayerInfo]:
    """A transformer block: the block itself (one Keras layer, :class:`gradtui.blocks.TransformerBlock`)
    and a :class:`LayerInfo` per layer inside it that owns weights, named by its path, in the
    order of the block's rows (see :data:`TRANSFORMER_ROLES`)."""
    width = shape[-1]
    heads = spec.heads
    key_dim = spec.key_dim or max(1, width // heads)
    ffn = spec.ffn_units or FFN_FACTOR * width
    act = spec.activation or Spec("gelu")
    inner = heads * key_dim
    block = LayerInfo(
        name,
        "TransformerBlock",
        entry,
        shape,
        activation=act.name,
        activation_spec=act,
        keras_args={
            "heads": heads,
            "key_dim": key_dim,
            "ffn_units": ffn,
            "norm": spec.norm,
            "qk_norm": spec.qk_norm,
            "causal": causal,
            "dropout": spec.dropout,
            "activation": act.name,
        },
        kind="transformer",
        role="block",
    )
    glorot, zeros = Spec("glorot_uniform"), Spec("zeros")

    def part(sub: str, cls: str, out: tuple[int, ...], params: int, **kw: object) -> LayerInfo:
        return LayerInfo(
            f"{name}/{sub}",
            cls,
            entry,
            out,
            params=params,
            trainable=params,
            kind="transformer",
            role=TRANSFORMER_ROLES[sub],
            part_of=name,
            **kw,  # type: ignore[arg-type]
        )

    def norm(sub: str) -> LayerInfo:
        return part(sub, "LayerNormalization", shape, 2 * width)

    def projection(sub: str, fan_in: int, fan_out: int, out: tuple[int, ...]) -> LayerInfo:
        return part(
            sub,
            "EinsumDense",
            out,
            fan_in * fan_out + fan_out,
            initializer=glorot,
            bias_initializer=zeros,
            fan_in=fan_in,
            fan_out=fan_out,
        )

    heads_shape = (shape[0], heads, key_dim)
    attention = [
        projection("multi_head_attention/query", width, inner, heads_shape),
        projection("multi_head_attention/key", width, inner, heads_shape),
        projection("multi_head_attention/value", width, inner, heads_shape),
        projection("multi_head_attention/attention_output", inner, width, shape),
    ]
    if spec.qk_norm:
        for sub in ("multi_head_attention/query_norm", "multi_head_attention/key_norm"):
            attention.append(part(sub, "LayerNormalization", heads_shape, 2 * key_dim))
    ffn_dense = part(
        "ffn_dense",
        "Dense",
        (shape[0], ffn),
        width * ffn + ffn,
        activation=act.name,
        activation_spec=act,
        activation_layer=f"{name}/ffn_dense",
        initializer=glorot,
        bias_initializer=zeros,
        fan_in=width,
        fan_out=ffn,
    )
    ffn_output = part(
        "ffn_output",
        "Dense",
        shape,
        ffn * width + width,
        initializer=glorot,
        bias_initializer=zeros,
        fan_in=ffn,
        fan_out=width,
    )
    if spec.norm == "pre":
        parts = [norm("attention_norm"), *attention, norm("ffn_norm"), ffn_dense, ffn_output]
    else:
        parts = [*attention, norm("attention_norm"), ffn_dense, ffn_output, norm("ffn_norm")]
    return [block, *parts]


def _projection(
    namer: _Namer,
    entry: int,
    kind: str,
    in_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    main: LayerInfo,
) -> LayerInfo:
    """The linear projection that brings a residual block's input to its output's shape: a
    Dense without activation, or a 1x1 convolution with the block's strides."""
    c_in, c_out = in_shape[-1], out_shape[-1]
    if kind == "dense":
        cls, args = "Dense", {}
    else:
        rank = len(in_shape) - 1
        strides = main.keras_args["strides"]
        sides = tuple(-(-n // st) for n, st in zip(in_shape[:-1], strides, strict=True))
        if sides != out_shape[:-1]:
            raise PresetError(
                f"residual = true needs the block to keep its input's size {_shape_text(in_shape[:-1])} "
                f"up to its strides, but padding = 'valid' makes it {_shape_text(out_shape[:-1])}; "
                "use padding = 'same'",
                key=f"layers[{entry}] ({kind})",
            )
        cls = f"Conv{rank}D"
        args = {"kernel_size": (1,) * rank, "strides": strides, "padding": "same"}
    params = c_in * c_out + c_out
    return LayerInfo(
        namer(kind),
        cls,
        entry,
        out_shape,
        params=params,
        trainable=params,
        initializer=Spec("glorot_uniform"),
        bias_initializer=Spec("zeros"),
        fan_in=c_in,
        fan_out=c_out,
        keras_args={"fused": True, "use_bias": True, **args},
        kind=kind,
        role="projection",
    )


def _check_output(preset: Preset, layers: list[LayerInfo], num_classes: int | None) -> None:
    out = next(x for x in reversed(layers) if x.is_dense)
    key = f"layers[{out.entry}]"
    per_position = preset.data.dataset in SEQUENCE_DATASETS
    final = layers[-1].output_shape
    if per_position and len(final) != 2:
        raise PresetError(
            f"{preset.data.dataset} has a target at every position, but the model's output has shape "
            f"{_shape_text(final)}; keep the sequence to the end (return_sequences = true on recurrent "
            "layers, no flatten or pooling)",
            key=key,
        )
    if preset.data.regression:
        if out.fan_out != 1:
            raise PresetError(
                f"{preset.data.dataset} is a regression task with one target; set units = 1",
                key=f"{key}.units",
            )
        if out.activation != "linear":
            raise PresetError(
                f"the output layer's activation is {out.activation}; the output of a regression task "
                "must be linear",
                key=f"{key}.activation",
            )
        return
    if num_classes is not None and out.fan_out != num_classes:
        raise PresetError(
            f"the output layer has {out.fan_out} units but the data has {num_classes} classes; "
            f"set units = {num_classes}",
            key=f"{key}.units",
        )
    if out.activation not in ("softmax", "linear"):
        raise PresetError(
            f"the output layer's activation is {out.activation}; it must be softmax "
            "(or linear for logits) for a classifier",
            key=f"{key}.activation",
        )


def _bn_info(
    namer: _Namer,
    entry: int | None,
    shape: tuple[int, ...],
    spec: LayerSpec | None,
    momentum: float | None = None,
) -> LayerInfo:
    """A BatchNormalization: an explicit ``batch_norm`` entry's (``spec``), or one a dense/conv
    entry's ``batch_norm`` key builds; ``[train] batch_norm_momentum`` (``momentum``), when set,
    is the momentum of every one (``None``: the entry's own, or Keras's 0.99)."""
    n = shape[-1]
    args: dict[str, object] = {"momentum": momentum} if momentum is not None else {}
    if spec is not None:
        args = {"momentum": spec.momentum if momentum is None else momentum, "epsilon": spec.epsilon}
    return LayerInfo(
        namer("batch_norm"),
        "BatchNormalization",
        entry,
        shape,
        params=4 * n,
        trainable=2 * n,
        keras_args=args,
        kind="batch_norm",
    )


def param_counts(layers: list[LayerInfo]) -> dict[str, int]:
    """``{"total", "trainable", "non_trainable"}`` over the planned layers."""
    total = sum(x.params for x in layers)
    trainable = sum(x.trainable for x in layers)
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}


# --------------------------------------------------------------------------- memory


def available_memory() -> int:
    """Bytes of memory available to a new allocation (``MemAvailable`` on Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 8 * 1024**3


def estimate_memory(preset: Preset, layers: list[LayerInfo]) -> int:
    """Bytes training will need: weights, gradients, optimizer slots, snapshot, activations."""
    slots = {"sgd": 1 if preset.train.momentum else 0, "adam": 2, "nadam": 2, "rmsprop": 1}
    slots_n = slots.get(preset.train.optimizer, 2) + (
        1 if preset.train.momentum and preset.train.optimizer == "rmsprop" else 0
    )
    params = sum(x.params for x in layers)
    acts = sum(math.prod(x.output_shape) for x in layers)
    # a transformer block's attention scores: heads x steps x steps per example
    acts += sum(
        x.keras_args["heads"] * x.output_shape[0] ** 2 for x in layers if x.type == "TransformerBlock"
    )
    # weights + gradients + optimizer slots + the update snapshot, float32
    weights = 4 * params * (3 + slots_n)
    # forward activations kept for the backward pass, and their gradients
    activations = 4 * preset.train.batch_size * acts * 3
    return weights + activations


def human_bytes(n: float) -> str:
    """``1.2 GB`` style."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def check_memory(preset: Preset, layers: list[LayerInfo], available: int | None = None) -> int:
    """Refuse a model that will not fit in memory, before anything is allocated."""
    need = estimate_memory(preset, layers)
    have = available_memory() if available is None else available
    if need > 0.8 * have:
        biggest = max(
            (x for x in layers if x.entry is not None),
            key=lambda x: x.params + math.prod(x.output_shape),
        )
        params = sum(x.params for x in layers)
        raise ModelTooLargeError(
            f"the model needs an estimated {human_bytes(need)} to train ({params:,} parameters, "
            f"batch {preset.train.batch_size}), more than the {human_bytes(have)} of memory available; "
            "use fewer units or layers, or a smaller batch_size",
            key=f"layers[{biggest.entry}].units" if biggest.is_dense else f"layers[{biggest.entry}]",
        )
    return need


# --------------------------------------------------------------------------- advice


@dataclass
class Advice:
    """One piece of pre-flight advice about a range of layers."""

    layer: str
    message: str
    entry: int | None = None

    def to_dict(self) -> dict[str, str]:
        return {"layer": self.layer, "message": self.message}


def preflight(layers: list[LayerInfo], train: TrainSpec | None = None) -> list[Advice]:
    """Pre-flight advice about the planned layers (and the training, when given).

    - The initializer/activation pairing of each dense, conv or recurrent layer: Glorot
      (σ² = 1/fan_avg) fits none/tanh/logistic/softmax, He (σ² = 2/fan_in) the ReLU family,
      LeCun (σ² = 1/fan_in) SELU; a variance several times off the matched one is flagged too.
    - A deep saturating stack without BatchNorm, and a deep plain stack (:data:`DEEP_PLAIN`
      dense/conv layers) with neither residual connections nor normalization.
    - Recurrent layers trained without gradient clipping (``train`` given), and a SimpleRNN over
      a long sequence.

    Consecutive layers of one entry are reported together as ``dense..dense_11``.
    """
    groups: dict[tuple, list[LayerInfo]] = {}
    for info in layers:
        if not info.is_weighted or info.initializer is None or info.part_of:
            continue  # a transformer block's layers are initialized as transformers are
        problem = _pairing_problem(info)
        if problem is None:
            continue
        groups.setdefault((info.entry, problem), []).append(info)
    out = []
    for (entry, problem), infos in groups.items():
        names = [x.name for x in infos]
        out.append(Advice(layer_range(names), f"{layer_range(names)}: {problem}", entry))
    hidden = [x for x in layers if (x.is_dense or x.is_conv) and not x.is_output and not x.part_of]
    deep = [x for x in hidden if x.activation in SATURATING and x.batch_norm == "none"]
    if len(deep) >= DEEP_SATURATING:
        names = [x.name for x in deep]
        acts = "/".join(sorted({x.activation for x in deep}))
        out.append(
            Advice(
                layer_range(names),
                f"{layer_range(names)}: {len(deep)} {acts} layers without BatchNorm; each can shrink "
                "the gradient up to 4x (sigmoid' <= 0.25), so the lower ones may stop learning; use "
                "relu with he_normal, or batch_norm = 'before'",
                deep[0].entry,
            )
        )
    else:
        normalized = any(x.type in ("BatchNormalization", "LayerNormalization") for x in layers)
        residual = any(x.role == "add" for x in layers)
        if len(hidden) >= DEEP_PLAIN and not normalized and not residual:
            names = [x.name for x in hidden]
            out.append(
                Advice(
                    layer_range(names),
                    f"{layer_range(names)}: {len(hidden)} stacked layers with neither residual "
                    "connections nor normalization; the gradient must pass through every one of them, "
                    "so a plain stack this deep trains slowly or stalls; set residual = true, or "
                    "batch_norm = 'before'",
                    hidden[0].entry,
                )
            )
    recurrent = [x for x in layers if x.is_recurrent]
    clipped = train is not None and bool(train.clipnorm or train.clipvalue or train.global_clipnorm)
    if recurrent and train is not None and not clipped:
        names = [x.name for x in recurrent]
        out.append(
            Advice(
                layer_range(names),
                f"{layer_range(names)}: recurrent layers without gradient clipping; the gradient through "
                "time is a product over the steps and can explode (Pascanu et al. 2013); set "
                "clipnorm = 1.0 in [train]",
                recurrent[0].entry,
            )
        )
    for x in recurrent:
        steps = x.keras_args.get("steps", 0)
        if x.kind == "simple_rnn" and steps >= LONG_SEQUENCE:
            out.append(
                Advice(
                    x.name,
                    f"{x.name}: a SimpleRNN over {steps} steps; its gradient through time shrinks or grows "
                    "geometrically with the steps, so long dependencies are lost; use lstm or gru",
                    x.entry,
                )
            )
    return out


def _pairing_problem(info: LayerInfo) -> str | None:
    act = info.activation
    init = info.initializer
    assert init is not None
    var = info.variance
    good_name, rule, _ = matched_init(act)
    good_var = matched_variance(act, info.fan_in, info.fan_out)
    bn = info.batch_norm == "before"
    if var is not None and var == 0.0 and not info.is_output:
        return (
            f"{init.label()} starts every weight at the same value, so all units learn the same "
            f"thing; use {good_name} ({rule})"
        )
    if var is not None and good_var > 0 and not bn:
        ratio = var / good_var
        if ratio > 4 or ratio < 0.25:
            direction = "explode" if ratio > 1 else "vanish"
            return (
                f"{act} with {init.label()} has σ² = {var:.3g}, {ratio:.3g}x the {rule} "
                f"({good_var:.3g}) that {act} needs: signals will {direction} layer by layer; "
                f"use {good_name}"
            )
    family = init.name.split("_")[0]
    if init.name == "variance_scaling" or family not in ("glorot", "he", "lecun"):
        return None
    if act == "selu" and family != "lecun":
        return f"selu self-normalizes only with LeCun init; use lecun_normal ({rule}) instead of {init.name}"
    if act in RELU_FAMILY and family == "glorot" and not bn and not info.is_output:
        return f"{act} with {init.name}: He init ({rule}) fits the ReLU family; use he_normal"
    if act in SATURATING and family == "he" and not bn:
        return f"{act} with {init.name}: Glorot init ({rule}) fits {act}; use glorot_uniform"
    return None
