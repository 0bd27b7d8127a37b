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
from gradtui.preset import LayerSpec, Preset, Spec

SATURATING = ("sigmoid", "tanh")
RELU_FAMILY = ("relu", "leaky_relu", "prelu", "elu", "gelu", "swish")
#: this many saturating hidden layers without BatchNorm earn a pre-flight warning
DEEP_SATURATING = 6
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

    @property
    def has_weights(self) -> bool:
        """Whether the layer has trainable parameters (a row in the monitor)."""
        return self.trainable > 0

    @property
    def is_dense(self) -> bool:
        return self.type == "Dense"

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
        base = KERAS_BASE_NAMES[kind]
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


def plan(preset: Preset, input_shape: tuple[int, ...], num_classes: int | None = None) -> list[LayerInfo]:
    """The Keras layers a preset builds, with names, shapes and parameter counts.

    This is the single description of the model that :mod:`gradtui.build` turns into Keras
    layers, so names and counts here are exactly the Keras ones.
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
    if len(shape) > 1 and not any(s.type == "flatten" for _, s in expanded[: dense_positions[0]]):
        # an image goes through a Flatten before the first Dense, as anyone would write it
        layers.append(LayerInfo(namer("flatten"), "Flatten", None, (math.prod(shape),)))
        shape = (math.prod(shape),)

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

    for pos, (entry, spec) in enumerate(expanded):
        key = f"layers[{entry}]"
        if spec.type == "flatten":
            shape = (math.prod(shape),)
            layers.append(LayerInfo(namer("flatten"), "Flatten", entry, shape))
        elif spec.type == "dropout":
            layers.append(
                LayerInfo(namer("dropout"), "Dropout", entry, shape, keras_args={"rate": spec.rate})
            )
        elif spec.type == "batch_norm":
            layers.append(_bn_info(namer, entry, shape, spec))
        elif spec.type == "activation":
            act = spec.activation or Spec("linear")
            owner = next((x for x in reversed(layers) if x.is_dense), None)
            if owner is not None and owner.activation == "linear" and owner.activation_layer is None:
                owner.activation = act.name
                add_activation(entry, act, owner)
            else:
                activation_info(entry, act)
        else:  # dense
            if len(shape) != 1:
                raise PresetError(
                    f"a dense layer needs flat input, got shape {shape}; add a flatten layer",
                    key=key,
                )
            units = int(spec.units or 1)
            act = spec.activation or Spec("linear")
            fused = act.name in FUSABLE and not act.params and spec.batch_norm != "before"
            use_bias = spec.batch_norm != "before"
            fan_in = shape[0]
            params = fan_in * units + (units if use_bias else 0)
            info = LayerInfo(
                namer("dense"),
                "Dense",
                entry,
                (units,),
                params=params,
                trainable=params,
                activation=act.name,
                initializer=spec.initializer,
                bias_initializer=spec.bias_initializer,
                fan_in=fan_in,
                fan_out=units,
                batch_norm=spec.batch_norm,
                is_output=pos == last_dense,
                activation_spec=act,
                keras_args={"fused": fused, "use_bias": use_bias},
            )
            shape = (units,)
            layers.append(info)
            if fused:
                info.activation_layer = info.name
            if spec.batch_norm == "before":
                layers.append(_bn_info(namer, entry, shape, None))
                add_activation(entry, act, info)
            else:
                if not fused:
                    add_activation(entry, act, info)
                if spec.batch_norm == "after":
                    layers.append(_bn_info(namer, entry, shape, None))
    out = next(x for x in reversed(layers) if x.is_dense)
    if num_classes is not None and out.fan_out != num_classes:
        raise PresetError(
            f"the output layer has {out.fan_out} units but the data has {num_classes} classes; "
            f"set units = {num_classes}",
            key=f"layers[{out.entry}].units",
        )
    if out.activation not in ("softmax", "linear"):
        raise PresetError(
            f"the output layer's activation is {out.activation}; it must be softmax "
            "(or linear for logits) for a classifier",
            key=f"layers[{out.entry}].activation",
        )
    return layers


def _bn_info(namer: _Namer, entry: int | None, shape: tuple[int, ...], spec: LayerSpec | None) -> LayerInfo:
    n = shape[-1]
    args = {}
    if spec is not None:
        args = {"momentum": spec.momentum, "epsilon": spec.epsilon}
    return LayerInfo(
        namer("batch_norm"),
        "BatchNormalization",
        entry,
        shape,
        params=4 * n,
        trainable=2 * n,
        keras_args=args,
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


def preflight(layers: list[LayerInfo]) -> list[Advice]:
    """Advice from the initializer/activation pairing of each Dense block.

    Glorot (σ² = 1/fan_avg) fits none/tanh/logistic/softmax, He (σ² = 2/fan_in) the ReLU family,
    LeCun (σ² = 1/fan_in) SELU. A variance several times off the matched one is flagged too.
    Consecutive layers of one entry are reported together as ``dense..dense_11``.
    """
    groups: dict[tuple, list[LayerInfo]] = {}
    for info in layers:
        if not info.is_dense or info.initializer is None:
            continue
        problem = _pairing_problem(info)
        if problem is None:
            continue
        groups.setdefault((info.entry, problem), []).append(info)
    out = []
    for (entry, problem), infos in groups.items():
        names = [x.name for x in infos]
        out.append(Advice(layer_range(names), f"{layer_range(names)}: {problem}", entry))
    deep = [x for x in layers if x.is_dense and not x.is_output and x.activation in SATURATING]
    deep = [x for x in deep if x.batch_norm == "none"]
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
