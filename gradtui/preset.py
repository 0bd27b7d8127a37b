"""The preset: a layer stack, its data and its training, read from and written to TOML.

Everything a user can write in a preset file is validated here, before TensorFlow is imported,
so a mistake costs a fraction of a second and gives one line: the file, the key, what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradtui.errors import PresetError, did_you_mean, one_of

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LAYER_TYPES = (
    "dense",
    "conv1d",
    "conv2d",
    "max_pool",
    "avg_pool",
    "global_avg_pool",
    "simple_rnn",
    "lstm",
    "gru",
    "embedding",
    "transformer",
    "flatten",
    "batch_norm",
    "layer_norm",
    "activation",
    "dropout",
)
CONV_TYPES = ("conv1d", "conv2d")
POOL_TYPES = ("max_pool", "avg_pool")
RECURRENT_TYPES = ("simple_rnn", "lstm", "gru")
#: entries with a kernel of their own (what ``initializer`` and pre-flight advice are about)
WEIGHTED_TYPES = ("dense", *CONV_TYPES, *RECURRENT_TYPES)
#: entry types that take ``residual = true``
RESIDUAL_TYPES = ("dense", *CONV_TYPES)
PADDINGS = ("same", "valid")
ACTIVATIONS = (
    "linear",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "prelu",
    "elu",
    "selu",
    "softmax",
    "gelu",
    "swish",
)
#: parameters each activation accepts in its table form, with their defaults
ACTIVATION_PARAMS: dict[str, dict[str, float]] = {
    "leaky_relu": {"negative_slope": 0.2},
    "elu": {"alpha": 1.0},
}
#: initializer names and the parameters each accepts, with Keras's defaults
INITIALIZERS: dict[str, dict[str, Any]] = {
    "glorot_uniform": {},
    "glorot_normal": {},
    "he_uniform": {},
    "he_normal": {},
    "lecun_uniform": {},
    "lecun_normal": {},
    "variance_scaling": {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"},
    "random_normal": {"mean": 0.0, "stddev": 0.05},
    "random_uniform": {"minval": -0.05, "maxval": 0.05},
    "truncated_normal": {"mean": 0.0, "stddev": 0.05},
    "constant": {"value": 0.0},
    "zeros": {},
    "ones": {},
    "orthogonal": {"gain": 1.0},
}
VS_MODES = ("fan_in", "fan_out", "fan_avg")
VS_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "normal", "uniform")
BATCH_NORM = ("none", "before", "after")
#: where a transformer block puts its LayerNormalization: before each part, or after each residual
TRANSFORMER_NORMS = ("pre", "post")
#: a transformer's default heads, and its feed-forward width as a multiple of the model's width
TRANSFORMER_HEADS = 4
FFN_FACTOR = 4
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "nadam")
#: optimizers with an ``epsilon`` (Keras's adam family and rmsprop)
EPSILON_OPTIMIZERS = ("adam", "adamw", "rmsprop", "nadam")
SCHEDULES = ("constant", "cosine")
NAMED_DATASETS = (
    "digits",
    "fashion_mnist",
    "mnist",
    "spiral",
    "circles",
    "xor",
    "gaussian",
    "adding",
    "text",
)
#: the ``text`` data set's characters: 0 for any other, tab, newline, printable ASCII (SPEC section 2)
TEXT_VOCAB = 98
#: data sets whose target is a class at every position of the input (next-character prediction)
SEQUENCE_DATASETS = ("text",)
#: generated data sets whose target is a number (regression), not a class
REGRESSION_DATASETS = ("adding",)
LOSSES = ("sparse_categorical_crossentropy", "mse", "mae")
CLASS_LOSSES = ("sparse_categorical_crossentropy",)
REGRESSION_LOSSES = ("mse", "mae")
#: input shape and number of classes of each named data set, known without loading it
NAMED_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "digits": ((64,), 10),
    "mnist": ((28, 28), 10),
    "fashion_mnist": ((28, 28), 10),
    "spiral": ((2,), 2),
    "circles": ((2,), 2),
    "xor": ((2,), 2),
    "gaussian": ((2,), 2),
}
#: the image and sequence forms of the pixel data sets (SPEC section 2), and their pixel values
#: as tokens for an ``embedding`` first layer (digits' pixels are 0..16, MNIST's 0..255)
NAMED_FORMS: dict[str, dict[str, tuple[int, ...]]] = {
    "digits": {"image": (8, 8, 1), "sequence": (64, 1), "tokens": (64,)},
    "mnist": {"image": (28, 28, 1), "sequence": (784, 1), "tokens": (784,)},
    "fashion_mnist": {"image": (28, 28, 1), "sequence": (784, 1), "tokens": (784,)},
}
NAMED_VOCAB = {"digits": 17, "mnist": 256, "fashion_mnist": 256, "text": TEXT_VOCAB}
DATA_SUFFIXES = (".npz", ".csv")

TOP_KEYS = ("name", "description", "data", "layers", "train", "monitor")
DATA_KEYS = ("dataset", "validation_split", "samples", "noise", "length", "source")
TRAIN_KEYS = (
    "optimizer",
    "learning_rate",
    "momentum",
    "nesterov",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "epochs",
    "batch_size",
    "seed",
    "max_steps",
    "loss",
    "weight_decay",
    "epsilon",
    "warmup_steps",
    "schedule",
    "batch_norm_momentum",
    "z_loss",
)
_INIT_KEYS = ("activation", "initializer", "bias_initializer")
_CONV_KEYS = (
    "type",
    "filters",
    "kernel_size",
    "strides",
    "padding",
    *_INIT_KEYS,
    "batch_norm",
    "residual",
    "repeat",
)
_RECURRENT_KEYS = (
    "type",
    "units",
    "activation",
    "initializer",
    "recurrent_initializer",
    "bias_initializer",
    "return_sequences",
    "bidirectional",
    "repeat",
)
LAYER_KEYS: dict[str, tuple[str, ...]] = {
    "dense": (
        "type",
        "units",
        "activation",
        "initializer",
        "bias_initializer",
        "batch_norm",
        "residual",
        "repeat",
    ),
    "conv1d": _CONV_KEYS,
    "conv2d": _CONV_KEYS,
    "max_pool": ("type", "pool_size", "repeat"),
    "avg_pool": ("type", "pool_size", "repeat"),
    "global_avg_pool": ("type", "repeat"),
    "simple_rnn": _RECURRENT_KEYS,
    "lstm": _RECURRENT_KEYS,
    "gru": _RECURRENT_KEYS,
    "embedding": ("type", "input_dim", "output_dim", "positions", "repeat"),
    "transformer": (
        "type",
        "heads",
        "key_dim",
        "ffn_units",
        "norm",
        "qk_norm",
        "causal",
        "dropout",
        "activation",
        "repeat",
    ),
    "flatten": ("type", "repeat"),
    "batch_norm": ("type", "momentum", "epsilon", "repeat"),
    "layer_norm": ("type", "epsilon", "repeat"),
    "activation": ("type", "activation", "repeat"),
    "dropout": ("type", "rate", "repeat"),
}
ALL_LAYER_KEYS = tuple(sorted({k for keys in LAYER_KEYS.values() for k in keys}))


@dataclass(frozen=True)
class Thresholds:
    """Diagnosis thresholds, overridable in a preset's ``[monitor]`` table.

    Attributes:
        window: recorded steps a rule looks at (median) before it fires, so one noisy step
            does not raise a warning.
        vanishing_ratio: a lower Dense layer whose gradient norm is below this fraction of the
            top Dense layer's is vanishing (3 orders of magnitude by default).
        exploding_ratio: a lower Dense layer whose gradient norm is above this multiple of the
            top layer's is exploding.
        exploding_norm: any layer's gradient norm above this is exploding (cross-entropy
            gradients of a sane network are O(1)).
        exploding_loss: a loss above this is an avalanche (cross-entropy of a sane network
            starts near ln(classes) and stays O(1)).
        exploding_growth: a layer's gradient norm growing by this factor since its first
            records is exploding.
        weight_growth: a layer's weight norm growing by this factor since its first records is
            exploding (healthy training moves weights by tens of percent, not tenfold).
        saturation: fraction of a sigmoid/tanh layer's outputs on the flat ends of the curve
            (derivative below 8% of its maximum) above which the layer is saturated.
        dead: fraction of a ReLU layer's units that output 0 for a whole batch above which the
            layer has dying units.
        asymptote: a sigmoid/tanh layer whose mean output lies within this fraction of its
            range from one end (sigmoid: below 0.1 or above 0.9) has collapsed toward that
            asymptote (Glorot & Bengio 2010, Fig. 2), though few units are past the flat 8%.
        update_ratio_target: the typical ‖Δw‖/‖w‖ of a step that learns (~1e-3); a learning
            rate out of range is scaled by target / observed.
        update_ratio_high: a layer whose weights change by more than this fraction a step
            (two orders above the target: their own size in ~10 steps) has too large a step.
        update_ratio_low: a network whose median layer changes by less than this fraction a step
            (two orders below the target: 1% in a thousand steps) does not move.
        plateau_steps: steps the loss must stay at chance before ``not_learning`` is raised.
        chance_tol: how close (a fraction of ln(classes)) the mean loss over those steps must be
            to ln(classes), the loss of a uniform guess, to count as chance.
    """

    window: int = 3
    vanishing_ratio: float = 1e-3
    exploding_ratio: float = 1e3
    exploding_norm: float = 1e4
    exploding_loss: float = 1e3
    exploding_growth: float = 1e3
    weight_growth: float = 10.0
    saturation: float = 0.5
    dead: float = 0.5
    asymptote: float = 0.1
    update_ratio_target: float = 1e-3
    update_ratio_high: float = 0.1
    update_ratio_low: float = 1e-5
    plateau_steps: int = 200
    chance_tol: float = 0.05


THRESHOLD_KEYS = tuple(f.name for f in dataclasses.fields(Thresholds))
MONITOR_KEYS = ("every", "stop_on_nonfinite", *THRESHOLD_KEYS)


@dataclass(frozen=True)
class Spec:
    """A named function with parameters: an initializer or an activation."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    def param(self, key: str, default: Any = None) -> Any:
        """The value of one parameter, or ``default``."""
        return dict(self.params).get(key, default)

    def to_toml(self) -> str | dict[str, Any]:
        """The TOML form: a bare name, or a table when there are parameters."""
        if not self.params:
            return self.name
        return {"name": self.name, **dict(self.params)}

    def label(self) -> str:
        """A short human label, e.g. ``variance_scaling(scale=2, fan_avg, uniform)``."""
        if not self.params:
            return self.name
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params)
        return f"{self.name}({args})"


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


#: an int, or one int per spatial axis (``kernel_size = [3, 3]``)
Size = int | tuple[int, ...]


def _size_toml(value: Size) -> int | list[int]:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class LayerSpec:
    """One ``[[layers]]`` entry; ``repeat`` copies stand for as many identical layers.

    Only the fields that apply to the entry's ``type`` are meaningful (see ``LAYER_KEYS``):
    ``units`` for dense and recurrent entries, ``filters``/``kernel_size``/``strides``/``padding``
    for convolutions, ``pool_size`` for pools, ``input_dim``/``output_dim`` for an embedding.
    """

    type: str = "dense"
    units: int | None = None
    activation: Spec | None = None
    initializer: Spec = Spec("glorot_uniform")
    bias_initializer: Spec = Spec("zeros")
    batch_norm: str = "none"
    repeat: int = 1
    rate: float | None = None
    momentum: float | None = None
    epsilon: float | None = None
    residual: bool = False
    filters: int | None = None
    kernel_size: Size | None = None
    strides: Size = 1
    padding: str = "same"
    pool_size: Size = 2
    recurrent_initializer: Spec = Spec("orthogonal")
    return_sequences: bool = False
    bidirectional: bool = False
    input_dim: int | None = None
    output_dim: int | None = None
    #: embedding: add a learned position embedding
    positions: bool = False
    #: transformer: attention heads; key_dim ``None`` is the model's width / heads, ffn_units
    #: ``None`` 4x the width (both known once the input is)
    heads: int = TRANSFORMER_HEADS
    key_dim: int | None = None
    ffn_units: int | None = None
    norm: str = "pre"
    qk_norm: bool = False
    #: ``None``: causal for a target at every position (``text``), not otherwise
    causal: bool | None = None
    dropout: float = 0.0

    def to_toml(self) -> dict[str, Any]:
        """The TOML table of this entry, every key that applies to its type written out.

        ``residual`` is written only when true, so a plain dense entry reads as it always did.
        """
        out: dict[str, Any] = {"type": self.type}
        act = (self.activation or Spec("linear")).to_toml()
        if self.type == "dense":
            out["units"] = self.units
            out["activation"] = act
            out["initializer"] = self.initializer.to_toml()
            out["bias_initializer"] = self.bias_initializer.to_toml()
            out["batch_norm"] = self.batch_norm
        elif self.type in CONV_TYPES:
            out["filters"] = self.filters
            out["kernel_size"] = _size_toml(self.kernel_size or 1)
            out["strides"] = _size_toml(self.strides)
            out["padding"] = self.padding
            out["activation"] = act
            out["initializer"] = self.initializer.to_toml()
            out["bias_initializer"] = self.bias_initializer.to_toml()
            out["batch_norm"] = self.batch_norm
        elif self.type in RECURRENT_TYPES:
            out["units"] = self.units
            out["activation"] = act
            out["initializer"] = self.initializer.to_toml()
            out["recurrent_initializer"] = self.recurrent_initializer.to_toml()
            out["bias_initializer"] = self.bias_initializer.to_toml()
            out["return_sequences"] = self.return_sequences
            out["bidirectional"] = self.bidirectional
        elif self.type in POOL_TYPES:
            out["pool_size"] = _size_toml(self.pool_size)
        elif self.type == "embedding":
            out["input_dim"] = self.input_dim
            out["output_dim"] = self.output_dim
            if self.positions:
                out["positions"] = True
        elif self.type == "transformer":
            out["heads"] = self.heads
            if self.key_dim is not None:
                out["key_dim"] = self.key_dim
            if self.ffn_units is not None:
                out["ffn_units"] = self.ffn_units
            out["norm"] = self.norm
            out["qk_norm"] = self.qk_norm
            if self.causal is not None:
                out["causal"] = self.causal
            out["dropout"] = self.dropout
            out["activation"] = (self.activation or Spec("gelu")).to_toml()
        elif self.type == "activation":
            out["activation"] = act
        elif self.type == "dropout":
            out["rate"] = self.rate
        elif self.type == "batch_norm":
            out["momentum"] = self.momentum
            out["epsilon"] = self.epsilon
        elif self.type == "layer_norm":
            out["epsilon"] = self.epsilon
        if self.residual:
            out["residual"] = True
        out["repeat"] = self.repeat
        return out

    @property
    def activation_name(self) -> str:
        """The activation's name (``linear`` when there is none)."""
        return self.activation.name if self.activation else "linear"


#: the form the data takes for each first layer (SPEC section 2): ``flat`` as stored, ``image``
#: (height, width, channels), ``sequence`` (steps, features), ``tokens`` (integer steps)
FIRST_LAYER_FORMS = {
    "conv2d": "image",
    "conv1d": "sequence",
    "simple_rnn": "sequence",
    "lstm": "sequence",
    "gru": "sequence",
    "embedding": "tokens",
    "transformer": "sequence",
    "dense": "flat",
    "flatten": "flat",
}


def data_form(layers: tuple[LayerSpec, ...] | list[LayerSpec]) -> str:
    """The form the first shape-taking layer asks of the data (``flat`` by default).

    Layers that keep any shape (dropout, normalization, activation, pools) are looked past.
    """
    for spec in layers:
        if spec.type in FIRST_LAYER_FORMS:
            return FIRST_LAYER_FORMS[spec.type]
    return "flat"


@dataclass(frozen=True)
class DataSpec:
    """The ``[data]`` table.

    ``form`` is not a key: it is derived from the first layer (:func:`data_form`) when the
    preset is validated, so loading the data needs nothing but this table.
    """

    dataset: str = "digits"
    validation_split: float = 0.1
    samples: int = 1000
    noise: float = 0.1
    length: int = 50
    #: ``text``: a ``.txt`` file to read instead of the standard library's ``.py`` files
    source: str | None = None
    form: str = field(default="flat", compare=False, repr=False)

    @property
    def regression(self) -> bool:
        """Whether the target is a number (the generated ``adding`` task) rather than a class."""
        return self.dataset in REGRESSION_DATASETS


def named_input(data: DataSpec) -> tuple[tuple[int, ...], int] | None:
    """Input shape and number of classes of a named data set in its form, without loading it.

    A regression task has one output (``1``); ``None`` for a data file.
    """
    if data.dataset == "adding":
        return (data.length, 2), 1
    if data.dataset == "text":
        return (data.length,), TEXT_VOCAB
    if data.dataset not in NAMED_SHAPES:
        return None
    shape, classes = NAMED_SHAPES[data.dataset]
    return NAMED_FORMS.get(data.dataset, {}).get(data.form, shape), classes


@dataclass(frozen=True)
class TrainSpec:
    """The ``[train]`` table."""

    optimizer: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False
    clipnorm: float | None = None
    clipvalue: float | None = None
    global_clipnorm: float | None = None
    epochs: int = 5
    batch_size: int = 32
    seed: int = 0
    max_steps: int | None = None
    #: ``None``: the task's default (:attr:`Preset.loss`)
    loss: str | None = None
    #: decoupled weight decay (``None``: the optimizer's default, 0.004 for adamw, none for others)
    weight_decay: float | None = None
    #: the adam family's and rmsprop's epsilon (``None``: Keras's default, 1e-7)
    epsilon: float | None = None
    #: steps of linear warm-up of the learning rate from 0
    warmup_steps: int = 0
    #: ``constant``, or ``cosine``: decay to 0 over the run's steps after the warm-up
    schedule: str = "constant"
    #: momentum of the BatchNormalization a dense/conv entry's ``batch_norm`` builds; ``None``:
    #: Keras's 0.99, whose moving statistics lag a run of a few hundred steps (``bn_statistics``)
    batch_norm_momentum: float | None = None
    #: coefficient of the z-loss, ``z_loss * mean(logsumexp(logits)^2)`` added to the loss
    #: (PaLM); needs an output layer of logits (``activation = "linear"``). ``None``: none
    z_loss: float | None = None


@dataclass(frozen=True)
class MonitorSpec:
    """The ``[monitor]`` table: how often statistics are recorded and what counts as a problem."""

    every: int = 1
    stop_on_nonfinite: bool = True
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass(frozen=True)
class Preset:
    """A complete, validated preset."""

    name: str
    description: str = ""
    data: DataSpec = field(default_factory=DataSpec)
    layers: tuple[LayerSpec, ...] = ()
    train: TrainSpec = field(default_factory=TrainSpec)
    monitor: MonitorSpec = field(default_factory=MonitorSpec)
    #: the file it was read from, named in errors found later (not part of the preset's value)
    source: str | None = field(default=None, compare=False, repr=False)

    @property
    def loss(self) -> str:
        """The training loss: ``[train] loss``, else the task's default (SPEC section 2)."""
        if self.train.loss:
            return self.train.loss
        return "mse" if self.data.regression else "sparse_categorical_crossentropy"

    def expanded(self) -> list[tuple[int, LayerSpec]]:
        """Each layer entry repeated ``repeat`` times, with the index of its entry."""
        return [(i, spec) for i, spec in enumerate(self.layers) for _ in range(spec.repeat)]

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved preset as TOML-ready data (every default written out)."""
        train = {k: v for k, v in dataclasses.asdict(self.train).items() if v is not None}
        monitor: dict[str, Any] = {
            "every": self.monitor.every,
            "stop_on_nonfinite": self.monitor.stop_on_nonfinite,
            **dataclasses.asdict(self.monitor.thresholds),
        }
        return {
            "name": self.name,
            "description": self.description,
            "data": {k: v for k, v in dataclasses.asdict(self.data).items() if k != "form" and v is not None},
            "layers": [layer.to_toml() for layer in self.layers],
            "train": train,
            "monitor": monitor,
        }

    def to_toml(self) -> str:
        """The preset as TOML text that :func:`loads` reads back into an equal preset."""
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    def replace(self, **changes: Any) -> Preset:
        """A copy with top-level fields replaced."""
        return dataclasses.replace(self, **changes)

    def with_overrides(
        self,
        *,
        epochs: int | None = None,
        seed: int | None = None,
        dataset: str | None = None,
        max_steps: int | None = None,
        every: int | None = None,
    ) -> Preset:
        """A copy with command-line overrides applied (``None`` leaves a value as it is)."""
        train = self.train
        if epochs is not None:
            train = dataclasses.replace(train, epochs=epochs)
        if seed is not None:
            train = dataclasses.replace(train, seed=seed)
        if max_steps is not None:
            train = dataclasses.replace(train, max_steps=max_steps)
        if dataset is not None and dataset.lower().endswith(DATA_SUFFIXES):
            # read from where the command runs, and stored absolute so that the run directory's
            # preset.toml loads from any folder (a relative path would be read from the run's)
            dataset = os.path.abspath(os.path.expanduser(dataset))
        data = self.data if dataset is None else dataclasses.replace(self.data, dataset=dataset)
        monitor = self.monitor
        if every is not None:
            monitor = dataclasses.replace(monitor, every=every)
        # Re-validate through the same path a file takes, so an override gets the same errors.
        try:
            checked = from_dict(
                dataclasses.replace(self, train=train, data=data, monitor=monitor).to_dict(),
                source="command line",
            )
        except PresetError as exc:
            if dataset is not None and exc.key == "data.dataset":
                raise PresetError(exc.detail, key="--dataset") from None
            raise
        return dataclasses.replace(checked, source=self.source)

    def with_output_units(self, units: int) -> Preset:
        """A copy whose output layer (the last entry, a Dense) has ``units`` units.

        For data given on the command line whose number of classes differs from the one the
        preset was written for. A last entry with ``repeat > 1`` keeps its other copies as they
        were; only the final layer changes. Returns ``self`` when nothing changes.
        """
        last = self.layers[-1]
        if last.type != "dense" or last.units == units:
            return self
        out = dataclasses.replace(last, units=units, repeat=1)
        head = self.layers[:-1] + (
            (dataclasses.replace(last, repeat=last.repeat - 1),) if last.repeat > 1 else ()
        )
        return dataclasses.replace(self, layers=(*head, out))


# --------------------------------------------------------------------------- loading


def presets_dir() -> Path:
    """The folder of bundled presets (``presets/`` in a checkout, packaged in a wheel)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "presets", here.parent / "presets"):
        if candidate.is_dir():
            return candidate
    return here.parent / "presets"


def bundled_presets() -> dict[str, Path]:
    """Bundled preset names mapped to their files, sorted by name."""
    folder = presets_dir()
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def bundled_descriptions() -> list[tuple[str, str]]:
    """``(name, description)`` of each bundled preset; an invalid one says why instead."""
    rows = []
    for name, path in bundled_presets().items():
        try:
            desc = load(str(path)).description
        except PresetError as exc:
            desc = f"(invalid: {exc.detail})"
        rows.append((name, desc))
    return rows


def resolve(name_or_path: str) -> Path:
    """The file of a bundled preset's name or a path to a ``.toml`` file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or os.sep in name_or_path or path.exists():
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "no such preset file"
            raise PresetError(
                f"{what}; give a .toml preset file or a bundled preset's name (`gradtui presets`)",
                file=str(path),
            )
        return path
    bundled = bundled_presets()
    if name_or_path in bundled:
        return bundled[name_or_path]
    raise PresetError(
        f"'{name_or_path}' is not a bundled preset{did_you_mean(name_or_path, bundled)}; "
        f"`gradtui presets` lists them, or give a path to a .toml file",
        key="PRESET",
    )


def load(name_or_path: str) -> Preset:
    """Load and validate a bundled preset by name or a preset file by path."""
    path = resolve(name_or_path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PresetError(f"cannot read it: {exc.strerror or exc}", file=str(path)) from None
    preset = loads(raw, source=str(path), default_name=path.stem)
    dataset = preset.data.dataset
    if dataset.lower().endswith(DATA_SUFFIXES) and not os.path.isabs(os.path.expanduser(dataset)):
        # A data file named in a preset is found next to the preset, wherever gradtui runs
        # from; made absolute so the run directory's copy of the preset finds it too.
        resolved = os.path.abspath(path.parent / dataset)
        preset = dataclasses.replace(preset, data=dataclasses.replace(preset.data, dataset=resolved))
    text = preset.data.source
    if text is not None and not os.path.isabs(os.path.expanduser(text)):
        resolved = os.path.abspath(path.parent / text)  # likewise for the text file
        preset = dataclasses.replace(preset, data=dataclasses.replace(preset.data, source=resolved))
    return preset


_TOML_POSITION = re.compile(r"\s*\(at (line \d+, column \d+|end of document)\)\s*$")


def loads(text: str | bytes, *, source: str = "<preset>", default_name: str = "preset") -> Preset:
    """Parse and validate preset TOML text."""
    if isinstance(text, bytes):
        if b"\x00" in text:
            raise PresetError("not a TOML text file (it holds binary data)", file=source)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise PresetError("not UTF-8 text; a preset is a TOML file", file=source) from None
    if not text.strip():
        raise PresetError("the file is empty; a preset needs at least [[layers]]", file=source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib ends its message with the position: make that the key of the one line
        text_msg = str(exc)
        found = _TOML_POSITION.search(text_msg)
        where = found.group(1) if found else None
        what = _TOML_POSITION.sub("", text_msg) if found else text_msg
        raise PresetError(
            f"not valid TOML: {what}; write key = value lines, [tables] and [[layers]] (https://toml.io)",
            file=source,
            key=where,
        ) from None
    return from_dict(data, source=source, default_name=default_name)


def from_dict(data: dict[str, Any], *, source: str = "<preset>", default_name: str = "preset") -> Preset:
    """Validate TOML-shaped data into a :class:`Preset`."""
    v = _Validator(source)
    if not isinstance(data, dict):
        raise PresetError("a preset is a TOML table", file=source)
    v.unknown_keys(data, TOP_KEYS, "")
    name = v.string(data, "name", default_name, "")
    if not name.strip():
        raise PresetError(
            "must not be empty; give the preset a name, or leave name out to use the file's name",
            file=source,
            key="name",
        )
    description = v.string(data, "description", "", "")

    data_tbl = v.table(data, "data")
    v.unknown_keys(data_tbl, DATA_KEYS, "data.")
    dataset = v.string(data_tbl, "dataset", "digits", "data.")
    if dataset not in NAMED_DATASETS and not dataset.lower().endswith(DATA_SUFFIXES):
        raise PresetError(
            f"'{dataset}' is neither a known data set nor a .npz/.csv file; allowed: "
            f"{one_of(NAMED_DATASETS)}, or a path to .npz/.csv{did_you_mean(dataset, NAMED_DATASETS)}",
            file=source,
            key="data.dataset",
        )
    data_spec = DataSpec(
        dataset=dataset,
        validation_split=v.number(data_tbl, "validation_split", 0.1, "data.", lo=0.0, hi=0.9),
        samples=v.integer(data_tbl, "samples", 1000, "data.", lo=16, hi=10_000_000),
        noise=v.number(data_tbl, "noise", 0.1, "data.", lo=0.0, hi=100.0),
        length=v.integer(data_tbl, "length", 64 if dataset == "text" else 50, "data.", lo=2, hi=100_000),
        source=v.optional_string(data_tbl, "source", "data.") if dataset == "text" else None,
    )
    if "source" in data_tbl and dataset != "text":
        raise PresetError(
            f"source names the text file of dataset = 'text', not of {dataset}; remove it",
            file=source,
            key="data.source",
        )
    if data_spec.source is not None and not data_spec.source.lower().endswith(".txt"):
        raise PresetError(
            f"'{data_spec.source}' is not a .txt file; give a UTF-8 text file, or leave source out "
            "for the standard library's .py files",
            file=source,
            key="data.source",
        )

    layers_raw = data.get("layers")
    if layers_raw is None:
        raise PresetError("missing; a preset needs at least one [[layers]] entry", file=source, key="layers")
    if not isinstance(layers_raw, list) or not all(isinstance(x, dict) for x in layers_raw):
        raise PresetError("must be an array of tables ([[layers]])", file=source, key="layers")
    if not layers_raw:
        raise PresetError("is empty; a preset needs at least one [[layers]] entry", file=source, key="layers")
    layers = tuple(v.layer(entry, i) for i, entry in enumerate(layers_raw))
    if not any(layer.type == "dense" for layer in layers):
        raise PresetError("needs at least one dense layer", file=source, key="layers")
    data_spec = dataclasses.replace(data_spec, form=data_form(layers))
    total = sum(layer.repeat for layer in layers)
    if total > 10_000:
        raise PresetError(f"{total} layers in all; at most 10000 are allowed", file=source, key="layers")

    train_tbl = v.table(data, "train")
    v.unknown_keys(train_tbl, TRAIN_KEYS, "train.")
    optimizer = v.choice(train_tbl, "optimizer", "sgd", OPTIMIZERS, "train.")
    momentum = v.number(train_tbl, "momentum", 0.0, "train.", lo=0.0, hi=0.9999)
    if momentum and optimizer not in ("sgd", "rmsprop"):
        raise PresetError(
            f"momentum applies to sgd and rmsprop, not {optimizer}; remove it or set optimizer = 'sgd'",
            file=source,
            key="train.momentum",
        )
    nesterov = v.boolean(train_tbl, "nesterov", False, "train.")
    clipnorm = v.optional_number(train_tbl, "clipnorm", "train.")
    global_clipnorm = v.optional_number(train_tbl, "global_clipnorm", "train.")
    if clipnorm is not None and global_clipnorm is not None:
        raise PresetError(
            "clipnorm and global_clipnorm cannot both be set (Keras allows one); keep one of them",
            file=source,
            key="train.global_clipnorm",
        )
    epsilon = v.optional_number(train_tbl, "epsilon", "train.")
    if epsilon is not None and optimizer not in EPSILON_OPTIMIZERS:
        raise PresetError(
            f"epsilon applies to {', '.join(EPSILON_OPTIMIZERS)}, not {optimizer}; remove it or change the optimizer",
            file=source,
            key="train.epsilon",
        )
    weight_decay = v.optional_number(train_tbl, "weight_decay", "train.")
    train = TrainSpec(
        optimizer=optimizer,
        weight_decay=weight_decay,
        epsilon=epsilon,
        warmup_steps=v.integer(train_tbl, "warmup_steps", 0, "train.", lo=0, hi=10_000_000),
        schedule=v.choice(train_tbl, "schedule", "constant", SCHEDULES, "train."),
        learning_rate=v.number(train_tbl, "learning_rate", 0.01, "train.", lo=0.0, hi=1e3, lo_open=True),
        momentum=momentum,
        nesterov=nesterov,
        clipnorm=clipnorm,
        clipvalue=v.optional_number(train_tbl, "clipvalue", "train."),
        global_clipnorm=global_clipnorm,
        epochs=v.integer(train_tbl, "epochs", 5, "train.", lo=1, hi=100_000),
        batch_size=v.integer(train_tbl, "batch_size", 32, "train.", lo=1, hi=1_000_000),
        seed=v.integer(train_tbl, "seed", 0, "train.", lo=0, hi=2**31 - 1),
        max_steps=v.optional_integer(train_tbl, "max_steps", "train.", lo=1),
        loss=v.loss(train_tbl, data_spec),
        batch_norm_momentum=(
            v.number(train_tbl, "batch_norm_momentum", 0.99, "train.", lo=0.0, hi=0.9999)
            if "batch_norm_momentum" in train_tbl
            else None
        ),
        z_loss=v.number(train_tbl, "z_loss", 0.0, "train.", lo=0.0, hi=1.0)
        if "z_loss" in train_tbl
        else None,
    )
    if train.z_loss:
        _check_z_loss(train.z_loss, layers, data_spec, source)

    mon_tbl = v.table(data, "monitor")
    v.unknown_keys(mon_tbl, MONITOR_KEYS, "monitor.")
    defaults = Thresholds()
    thresholds = Thresholds(
        window=v.integer(mon_tbl, "window", defaults.window, "monitor.", lo=1, hi=1000),
        plateau_steps=v.integer(
            mon_tbl, "plateau_steps", defaults.plateau_steps, "monitor.", lo=1, hi=10_000_000
        ),
        **{
            k: v.number(mon_tbl, k, getattr(defaults, k), "monitor.", lo=0.0, hi=1e30, lo_open=True)
            for k in THRESHOLD_KEYS
            if k not in ("window", "plateau_steps", "saturation", "dead")
        },
        saturation=v.number(mon_tbl, "saturation", defaults.saturation, "monitor.", lo=0.0, hi=1.0),
        dead=v.number(mon_tbl, "dead", defaults.dead, "monitor.", lo=0.0, hi=1.0),
    )
    monitor = MonitorSpec(
        every=v.integer(mon_tbl, "every", 1, "monitor.", lo=1, hi=1_000_000),
        stop_on_nonfinite=v.boolean(mon_tbl, "stop_on_nonfinite", True, "monitor."),
        thresholds=thresholds,
    )
    return Preset(
        name=name,
        description=description,
        data=data_spec,
        layers=layers,
        train=train,
        monitor=monitor,
        source=source,
    )


def _check_z_loss(z_loss: float, layers: tuple[LayerSpec, ...], data: DataSpec, source: str) -> None:
    """``[train] z_loss`` acts on the output layer's logits: a classifier whose last layer is
    linear (its loss then reads logits)."""
    if data.regression:
        raise PresetError(
            f"z_loss acts on a classifier's logits, but {data.dataset} is a regression task; remove it",
            file=source,
            key="train.z_loss",
        )
    last = layers[-1]
    if last.activation_name != "linear":
        raise PresetError(
            f"z_loss = {z_loss:g} needs the output layer's logits, but its activation is "
            f"{last.activation_name}; set layers[{len(layers) - 1}].activation = 'linear' "
            "(the loss then reads logits)",
            file=source,
            key="train.z_loss",
        )


_TYPE_NAMES = {
    str: "a string",
    bool: "true or false",
    int: "an integer",
    float: "a number",
    dict: "a table",
    list: "an array",
}


def _type_name(value: Any) -> str:
    for t, n in _TYPE_NAMES.items():
        if type(value) is t:
            return n
    return type(value).__name__


class _Validator:
    """Reads typed values out of TOML tables, raising :class:`PresetError` with the key's path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> PresetError:
        return PresetError(message, file=self.source, key=key)

    def unknown_keys(self, table: dict[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(
                    prefix + key,
                    f"unknown key{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}",
                )

    def table(self, data: dict[str, Any], key: str) -> dict[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table ([{key}]), not {_type_name(value)}")
        return value

    def string(self, table: dict[str, Any], key: str, default: str, prefix: str) -> str:
        value = table.get(key, default)
        if not isinstance(value, str):
            raise self.fail(prefix + key, f"must be a string, not {_type_name(value)}")
        return value

    def optional_string(self, table: dict[str, Any], key: str, prefix: str) -> str | None:
        if key not in table:
            return None
        return self.string(table, key, "", prefix)

    def boolean(self, table: dict[str, Any], key: str, default: bool, prefix: str) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(prefix + key, f"must be true or false, not {_type_name(value)}")
        return value

    def choice(
        self, table: dict[str, Any], key: str, default: str, choices: tuple[str, ...], prefix: str
    ) -> str:
        value = self.string(table, key, default, prefix)
        if value not in choices:
            raise self.fail(
                prefix + key,
                f"'{value}' is not allowed{did_you_mean(value, choices)}; {one_of(choices)}",
            )
        return value

    def number(
        self,
        table: dict[str, Any],
        key: str,
        default: float,
        prefix: str,
        *,
        lo: float,
        hi: float,
        lo_open: bool = False,
    ) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(prefix + key, f"must be a number, not {_type_name(value)}")
        try:
            value = float(value)
        except OverflowError:  # a TOML integer has no size limit; a float has
            value = math.inf if value > 0 else -math.inf
        if not math.isfinite(value) or value < lo or value > hi or (lo_open and value == lo):
            low = f"> {lo:g}" if lo_open else f">= {lo:g}"
            raise self.fail(prefix + key, f"{value:g} is out of range; must be {low} and <= {hi:g}")
        return value

    def optional_number(self, table: dict[str, Any], key: str, prefix: str) -> float | None:
        if key not in table:
            return None
        return self.number(table, key, 0.0, prefix, lo=0.0, hi=1e30, lo_open=True)

    def integer(self, table: dict[str, Any], key: str, default: int, prefix: str, *, lo: int, hi: int) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(prefix + key, f"must be an integer, not {_type_name(value)}")
        if value < lo or value > hi:
            raise self.fail(prefix + key, f"{value} is out of range; must be between {lo} and {hi}")
        return value

    def optional_integer(
        self, table: dict[str, Any], key: str, prefix: str, *, lo: int, hi: int = 2**62
    ) -> int | None:
        if key not in table:
            return None
        return self.integer(table, key, lo, prefix, lo=lo, hi=hi)

    # ---- layers

    def layer(self, entry: dict[str, Any], index: int) -> LayerSpec:
        prefix = f"layers[{index}]."
        kind = self.choice(entry, "type", "dense", LAYER_TYPES, prefix)
        allowed = LAYER_KEYS[kind]
        for key in entry:
            if key not in allowed:
                hint = did_you_mean(key, ALL_LAYER_KEYS)
                if key in ALL_LAYER_KEYS:
                    msg = f"does not apply to a {kind} layer; allowed: {', '.join(allowed)}"
                else:
                    msg = f"unknown key{hint}; allowed for {kind}: {', '.join(allowed)}"
                raise self.fail(prefix + key, msg)
        repeat = self.integer(entry, "repeat", 1, prefix, lo=1, hi=10_000)
        residual = False
        if kind in RESIDUAL_TYPES:
            residual = self.boolean(entry, "residual", False, prefix)
        if kind == "dense":
            return LayerSpec(
                type=kind,
                units=self.required_integer(entry, "units", prefix, kind, hi=10**9),
                **self.kernel(entry, prefix),
                batch_norm=self.choice(entry, "batch_norm", "none", BATCH_NORM, prefix),
                residual=residual,
                repeat=repeat,
            )
        if kind in CONV_TYPES:
            rank = 1 if kind == "conv1d" else 2
            if "kernel_size" not in entry:
                raise self.fail(
                    prefix + "kernel_size",
                    f"missing; a {kind} layer needs kernel_size (an integer, or a list of {rank})",
                )
            return LayerSpec(
                type=kind,
                filters=self.required_integer(entry, "filters", prefix, kind, hi=10**6),
                kernel_size=self.size(entry, "kernel_size", 3, prefix, rank),
                strides=self.size(entry, "strides", 1, prefix, rank),
                padding=self.choice(entry, "padding", "same", PADDINGS, prefix),
                **self.kernel(entry, prefix),
                batch_norm=self.choice(entry, "batch_norm", "none", BATCH_NORM, prefix),
                residual=residual,
                repeat=repeat,
            )
        if kind in RECURRENT_TYPES:
            return LayerSpec(
                type=kind,
                units=self.required_integer(entry, "units", prefix, kind, hi=10**6),
                **self.kernel(entry, prefix, recurrent=True),
                recurrent_initializer=self.initializer(
                    entry.get("recurrent_initializer", "orthogonal"), prefix + "recurrent_initializer"
                ),
                return_sequences=self.boolean(entry, "return_sequences", False, prefix),
                bidirectional=self.boolean(entry, "bidirectional", False, prefix),
                repeat=repeat,
            )
        if kind in POOL_TYPES:
            return LayerSpec(type=kind, pool_size=self.size(entry, "pool_size", 2, prefix, 2), repeat=repeat)
        if kind == "embedding":
            return LayerSpec(
                type=kind,
                input_dim=self.required_integer(entry, "input_dim", prefix, kind, hi=10**7),
                output_dim=self.required_integer(entry, "output_dim", prefix, kind, hi=10**6),
                positions=self.boolean(entry, "positions", False, prefix),
                repeat=repeat,
            )
        if kind == "transformer":
            return LayerSpec(
                type=kind,
                heads=self.integer(entry, "heads", TRANSFORMER_HEADS, prefix, lo=1, hi=4096),
                key_dim=self.optional_integer(entry, "key_dim", prefix, lo=1, hi=10**5),
                ffn_units=self.optional_integer(entry, "ffn_units", prefix, lo=1, hi=10**6),
                norm=self.choice(entry, "norm", "pre", TRANSFORMER_NORMS, prefix),
                qk_norm=self.boolean(entry, "qk_norm", False, prefix),
                causal=self.boolean(entry, "causal", False, prefix) if "causal" in entry else None,
                dropout=self.number(entry, "dropout", 0.0, prefix, lo=0.0, hi=0.99),
                activation=self.ffn_activation(entry.get("activation", "gelu"), prefix + "activation"),
                repeat=repeat,
            )
        if kind == "activation":
            if "activation" not in entry:
                raise self.fail(prefix + "activation", f"missing; {one_of(ACTIVATIONS)}")
            return LayerSpec(
                type=kind,
                activation=self.activation(entry["activation"], prefix + "activation"),
                repeat=repeat,
            )
        if kind == "dropout":
            return LayerSpec(
                type=kind,
                rate=self.number(entry, "rate", 0.2, prefix, lo=0.0, hi=0.99),
                repeat=repeat,
            )
        if kind == "batch_norm":
            return LayerSpec(
                type=kind,
                momentum=self.number(entry, "momentum", 0.99, prefix, lo=0.0, hi=1.0),
                epsilon=self.number(entry, "epsilon", 1e-3, prefix, lo=0.0, hi=1.0, lo_open=True),
                repeat=repeat,
            )
        if kind == "layer_norm":
            return LayerSpec(
                type=kind,
                epsilon=self.number(entry, "epsilon", 1e-3, prefix, lo=0.0, hi=1.0, lo_open=True),
                repeat=repeat,
            )
        return LayerSpec(type=kind, repeat=repeat)

    def kernel(self, entry: dict[str, Any], prefix: str, *, recurrent: bool = False) -> dict[str, Spec]:
        """``activation``, ``initializer`` and ``bias_initializer`` of a dense, conv or recurrent
        entry, with their defaults (a recurrent layer's activation is tanh, inside its cell)."""
        if recurrent:
            activation = self.recurrent_activation(entry.get("activation", "tanh"), prefix + "activation")
        else:
            activation = self.activation(entry.get("activation", "linear"), prefix + "activation")
        return {
            "activation": activation,
            "initializer": self.initializer(
                entry.get("initializer", "glorot_uniform"), prefix + "initializer"
            ),
            "bias_initializer": self.initializer(
                entry.get("bias_initializer", "zeros"), prefix + "bias_initializer"
            ),
        }

    def required_integer(self, entry: dict[str, Any], key: str, prefix: str, kind: str, *, hi: int) -> int:
        """A key an entry cannot do without (``units``, ``filters``): missing names the key."""
        if key not in entry:
            article = "an" if kind[0] in "aeiou" else "a"
            raise self.fail(prefix + key, f"missing; {article} {kind} layer needs {key} (an integer >= 1)")
        return self.integer(entry, key, 1, prefix, lo=1, hi=hi)

    def size(self, entry: dict[str, Any], key: str, default: int, prefix: str, rank: int) -> Size:
        """``kernel_size``, ``strides`` or ``pool_size``: an integer, or a list of ``rank`` integers
        (a pool's list may have 1 or 2; the input decides which)."""
        value = entry.get(key, default)
        if isinstance(value, list):
            ok = len(value) == rank or (key == "pool_size" and 1 <= len(value) <= rank)
            if not ok or not all(isinstance(x, int) and not isinstance(x, bool) for x in value):
                want = "1 or 2" if key == "pool_size" else str(rank)
                raise self.fail(
                    prefix + key, f"must be an integer or a list of {want} integers, not {value!r}"
                )
            if any(x < 1 or x > 10_000 for x in value):
                raise self.fail(prefix + key, f"{value} is out of range; each must be between 1 and 10000")
            return tuple(value)
        return self.integer(entry, key, default, prefix, lo=1, hi=10_000)

    def ffn_activation(self, value: Any, key: str) -> Spec:
        """A transformer's feed-forward activation: a plain name its Dense applies."""
        spec = self.activation(value, key)
        if spec.params or spec.name in ("prelu", "softmax"):
            allowed = tuple(a for a in ACTIVATIONS if a not in ("prelu", "softmax"))
            raise self.fail(
                key,
                f"'{spec.label()}' cannot be a transformer's feed-forward activation; give a plain "
                f"name, {one_of(allowed)}",
            )
        return spec

    def recurrent_activation(self, value: Any, key: str) -> Spec:
        """A recurrent layer's activation: a plain name its cell applies at every step."""
        spec = self.activation(value, key)
        if spec.params or spec.name in ("prelu", "softmax"):
            allowed = tuple(a for a in ACTIVATIONS if a not in ("prelu", "softmax"))
            raise self.fail(
                key,
                f"'{spec.label()}' cannot run inside a recurrent cell; give a plain name, {one_of(allowed)}",
            )
        return spec

    def loss(self, table: dict[str, Any], data: DataSpec) -> str | None:
        """``[train] loss``: it must fit the task (classes or a regression target)."""
        if "loss" not in table:
            return None
        value = self.choice(table, "loss", "", LOSSES, "train.")
        fits = REGRESSION_LOSSES if data.regression else CLASS_LOSSES
        if value not in fits:
            task = f"{data.dataset} is a regression task" if data.regression else "the data has classes"
            raise self.fail("train.loss", f"'{value}' does not fit: {task}; {one_of(fits)}")
        return value

    def _named(
        self, value: Any, key: str, choices: dict[str, dict[str, Any]], what: str
    ) -> tuple[str, dict[str, Any]]:
        if isinstance(value, str):
            name, params = value, {}
        elif isinstance(value, dict):
            if "name" not in value:
                raise self.fail(key + ".name", f"missing; the {what} table needs a name")
            name = value["name"]
            if not isinstance(name, str):
                raise self.fail(key + ".name", f"must be a string, not {_type_name(name)}")
            params = {k: v for k, v in value.items() if k != "name"}
        else:
            raise self.fail(key, f"must be a name or a table with a name, not {_type_name(value)}")
        if name not in choices:
            raise self.fail(
                key,
                f"'{name}' is not a known {what}{did_you_mean(name, choices)}; {one_of(choices)}",
            )
        allowed = choices[name]
        for p in params:
            if p not in allowed:
                ok = ", ".join(allowed) if allowed else "none"
                raise self.fail(
                    f"{key}.{p}",
                    f"{name} takes no parameter '{p}'{did_you_mean(p, allowed)}; allowed: {ok}",
                )
        return name, params

    def activation(self, value: Any, key: str) -> Spec:
        choices = {a: ACTIVATION_PARAMS.get(a, {}) for a in ACTIVATIONS}
        name, params = self._named(value, key, choices, "activation")
        checked = []
        for p in ACTIVATION_PARAMS.get(name, {}):
            if p in params:
                checked.append((p, self.number(params, p, 0.0, key + ".", lo=0.0, hi=100.0)))
        return Spec(name, tuple(checked))

    def initializer(self, value: Any, key: str) -> Spec:
        name, params = self._named(value, key, INITIALIZERS, "initializer")
        prefix = key + "."
        checked: list[tuple[str, Any]] = []
        for p in INITIALIZERS[name]:
            if p not in params:
                continue
            if p == "mode":
                checked.append((p, self.choice(params, p, "fan_in", VS_MODES, prefix)))
            elif p == "distribution":
                checked.append((p, self.choice(params, p, "truncated_normal", VS_DISTRIBUTIONS, prefix)))
            elif p in ("stddev", "scale", "gain"):
                checked.append((p, self.number(params, p, 1.0, prefix, lo=0.0, hi=1e6, lo_open=True)))
            else:
                checked.append((p, self.number(params, p, 0.0, prefix, lo=-1e6, hi=1e6)))
        spec = Spec(name, tuple(checked))
        if name == "random_uniform" and spec.param("minval", -0.05) >= spec.param("maxval", 0.05):
            raise self.fail(
                prefix + "maxval",
                f"{spec.param('maxval', 0.05):g} is not above minval {spec.param('minval', -0.05):g}; "
                "maxval must be greater than minval",
            )
        return spec


def apply_fix(preset: Preset, fix: dict[str, Any] | None) -> Preset:
    """A copy of the preset with a diagnosis's ``fix`` applied (what ``f`` does in the TUI).

    A fix is a dict with any of:

    - ``entries``: indices of ``[[layers]]`` entries, and ``set``: keys of those entries to
      change, in their TOML form. A key is set on each named entry whose type takes it (see
      ``LAYER_KEYS``) and left out on the others, so one fix can name dense, conv and recurrent
      entries together. Forms of issue 12:

      - ``{"set": {"type": "lstm"}}`` (or ``"gru"``): a SimpleRNN becomes an LSTM/GRU. A changed
        ``type`` keeps the entry's keys that the new type takes (units, initializers,
        ``return_sequences``, ``bidirectional``...) and drops the others; name any key to reset
        beside it (``{"type": "lstm", "activation": "tanh"}``).
      - ``{"set": {"residual": True}}``: skip connections on deep dense/conv entries.
      - ``{"set": {"batch_norm": "before"}}``: BatchNorm in dense/conv entries.
      - ``{"set": {"qk_norm": True}}``: LayerNorm on the queries and keys of transformer
        entries (``attention_logit_growth``).
    - ``train``: keys of ``[train]`` to change, e.g. ``{"clipnorm": 1.0}`` for exploding
      (recurrent) gradients; ``clipnorm`` replaces a ``global_clipnorm`` (Keras takes one);
      ``{"z_loss": 1e-4}`` (``output_logit_divergence``), ``{"epsilon": 1e-10}``
      (``adam_epsilon``).

    The result is validated like a preset file: a fix that does not fit raises
    :class:`PresetError`.
    """
    if not fix:
        return preset
    data = preset.to_dict()
    changes = dict(fix.get("set", {}))
    for i in fix.get("entries", []):
        if not (0 <= i < len(data["layers"])) or not changes:
            continue
        table = data["layers"][i]
        kind = changes.get("type", table["type"])
        if kind not in LAYER_KEYS:
            raise PresetError(
                f"the fix names layer type '{kind}'; {one_of(LAYER_TYPES)}", key=f"layers[{i}].type"
            )
        allowed = LAYER_KEYS[kind]
        table = {k: v for k, v in table.items() if k in allowed}
        table.update({k: v for k, v in changes.items() if k in allowed})
        data["layers"][i] = table
    train_set = dict(fix.get("train", {}))
    if "clipnorm" in train_set:
        data["train"].pop("global_clipnorm", None)
    data["train"].update(train_set)
    return dataclasses.replace(from_dict(data, source="fix", default_name=preset.name), source=preset.source)
