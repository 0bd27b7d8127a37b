"""Preset -> compiled ``keras.Model``, following :func:`gradtui.stack.plan` exactly."""

from __future__ import annotations

import math
import os
import sys
from typing import Any

from gradtui.preset import Preset, Spec
from gradtui.stack import LayerInfo, check_memory, plan


def quiet_tensorflow() -> None:
    """Force the TensorFlow backend and silence TF's C++ logging before the first import."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def _import_quietly() -> None:
    """Import TensorFlow with file descriptor 2 pointed at /dev/null.

    TensorFlow's absl logging writes lines such as "Could not find cuda drivers" straight to
    fd 2 before any Python setting applies; they would garble a Textual screen.
    """
    if "tensorflow" in sys.modules:
        return
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no fd 2 at all
        import tensorflow  # noqa: F401

        return
    try:
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_keras() -> Any:
    """Import Keras on the TensorFlow backend, quietly."""
    quiet_tensorflow()
    _import_quietly()
    import keras

    if keras.backend.backend() != "tensorflow":  # pragma: no cover - depends on the user's env
        raise RuntimeError(
            f"gradtui needs Keras's TensorFlow backend; KERAS_BACKEND is {keras.backend.backend()}"
        )
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return keras


def device_name() -> str:
    """``CPU`` or the name of the first GPU TensorFlow sees."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    try:
        details = tf.config.experimental.get_device_details(gpus[0])
        return str(details.get("device_name") or "GPU")
    except Exception:  # pragma: no cover - driver-dependent
        return "GPU"


def make_initializer(spec: Spec, seed: int | None) -> Any:
    """A Keras initializer for a validated :class:`Spec`."""
    keras = import_keras()
    init = keras.initializers
    params = dict(spec.params)
    if spec.name in ("zeros", "ones"):
        return init.get(spec.name)
    if spec.name == "constant":
        return init.Constant(params.get("value", 0.0))
    classes = {
        "glorot_uniform": init.GlorotUniform,
        "glorot_normal": init.GlorotNormal,
        "he_uniform": init.HeUniform,
        "he_normal": init.HeNormal,
        "lecun_uniform": init.LecunUniform,
        "lecun_normal": init.LecunNormal,
        "variance_scaling": init.VarianceScaling,
        "random_normal": init.RandomNormal,
        "random_uniform": init.RandomUniform,
        "truncated_normal": init.TruncatedNormal,
        "orthogonal": init.Orthogonal,
    }
    return classes[spec.name](seed=seed, **params)


def make_activation_layer(info: LayerInfo) -> Any:
    """The separate activation layer of a block (PReLU, LeakyReLU, ELU or Activation)."""
    keras = import_keras()
    act = info.activation_spec or Spec(info.activation)
    if info.type == "PReLU":
        return keras.layers.PReLU(name=info.name)
    if info.type == "LeakyReLU":
        return keras.layers.LeakyReLU(negative_slope=act.param("negative_slope", 0.2), name=info.name)
    if info.type == "ELU":
        return keras.layers.ELU(alpha=act.param("alpha", 1.0), name=info.name)
    return keras.layers.Activation(act.name, name=info.name)


def make_learning_rate(preset: Preset, total_steps: int | None = None) -> Any:
    """``[train] learning_rate`` as Keras takes it: a float, or a schedule when the preset asks
    for a warm-up or a cosine decay (Keras's ``CosineDecay``: a linear warm-up from 0 to the rate
    over ``warmup_steps``, then a cosine to 0 over the rest of ``total_steps``; ``alpha = 1``
    keeps the rate constant after the warm-up)."""
    t = preset.train
    if t.schedule == "constant" and not t.warmup_steps:
        return t.learning_rate
    keras = import_keras()
    cosine = t.schedule == "cosine"
    steps = max(1, (total_steps or 1) - t.warmup_steps) if cosine else 1
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if t.warmup_steps else t.learning_rate,
        decay_steps=steps,
        alpha=0.0 if cosine else 1.0,
        warmup_target=t.learning_rate if t.warmup_steps else None,
        warmup_steps=t.warmup_steps,
    )


def make_optimizer(preset: Preset, total_steps: int | None = None) -> Any:
    """The Keras optimizer of ``[train]``, clipping through its own arguments; ``total_steps``
    (the run's optimizer steps) sizes a cosine schedule."""
    keras = import_keras()
    t = preset.train
    kwargs: dict[str, Any] = {"learning_rate": make_learning_rate(preset, total_steps)}
    for key in ("clipnorm", "clipvalue", "global_clipnorm", "weight_decay", "epsilon"):
        value = getattr(t, key)
        if value is not None:
            kwargs[key] = value
    if t.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=t.momentum, nesterov=t.nesterov, **kwargs)
    if t.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(momentum=t.momentum, **kwargs)
    if t.optimizer == "adam":
        return keras.optimizers.Adam(**kwargs)
    if t.optimizer == "adamw":
        return keras.optimizers.AdamW(**kwargs)
    return keras.optimizers.Nadam(**kwargs)


def model_name(preset: Preset) -> str:
    """The model's name for Keras and TensorFlow, made from the preset's name.

    ``fit`` opens a TensorFlow root scope with it, which must match
    ``^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$``: accents are folded (``résumé`` -> ``resume``), other
    characters become ``_``, and a leading ``_`` or ``-`` (a file stem ``_draft``) goes. The
    preset keeps its name as written for everything shown; ``check`` builds with this name too,
    so what ``check`` accepts, ``run`` trains.
    """
    import unicodedata

    folded = unicodedata.normalize("NFKD", preset.name).encode("ascii", "ignore").decode("ascii")
    safe = "".join(c if c.isalnum() or c in "_-." else "_" for c in folded).lstrip("_-")
    return safe or "model"


def make_layer(info: LayerInfo, seed: int) -> Any:
    """The Keras layer a planned :class:`LayerInfo` stands for, named as planned."""
    keras = import_keras()
    L = keras.layers

    def inits() -> dict[str, Any]:
        assert info.initializer is not None and info.bias_initializer is not None
        return {
            "kernel_initializer": make_initializer(info.initializer, seed),
            "bias_initializer": make_initializer(info.bias_initializer, seed + 500),
        }

    args = info.keras_args
    if info.type == "Dense":
        fused = args.get("fused", True)
        return L.Dense(
            info.fan_out,
            activation=info.activation if fused else None,
            use_bias=args.get("use_bias", True),
            name=info.name,
            **inits(),
        )
    if info.type in ("Conv1D", "Conv2D"):
        cls = L.Conv1D if info.type == "Conv1D" else L.Conv2D
        return cls(
            info.output_shape[-1],
            args["kernel_size"],
            strides=args["strides"],
            padding=args["padding"],
            activation=info.activation if args.get("fused", True) else None,
            use_bias=args.get("use_bias", True),
            name=info.name,
            **inits(),
        )
    if info.is_recurrent:
        cls = {"simple_rnn": L.SimpleRNN, "lstm": L.LSTM, "gru": L.GRU}[info.kind]
        assert info.recurrent_initializer is not None
        rnn = cls(
            args["units"],
            activation=info.activation,
            return_sequences=args["return_sequences"],
            recurrent_initializer=make_initializer(info.recurrent_initializer, seed + 250),
            name=None if info.inner else info.name,
            **inits(),
        )
        return L.Bidirectional(rnn, name=info.name) if info.inner else rnn
    if info.type == "BatchNormalization":
        bn_args = {k: v for k, v in args.items() if v is not None}
        return L.BatchNormalization(name=info.name, **bn_args)
    if info.type == "LayerNormalization":
        return L.LayerNormalization(epsilon=args.get("epsilon") or 1e-3, name=info.name)
    if info.type == "Flatten":
        return L.Flatten(name=info.name)
    if info.type == "Dropout":
        return L.Dropout(args["rate"], seed=seed, name=info.name)
    if info.type == "Embedding":
        return L.Embedding(
            args["input_dim"],
            args["output_dim"],
            embeddings_initializer=keras.initializers.RandomUniform(-0.05, 0.05, seed=seed),
            name=info.name,
        )
    if info.type.startswith(("MaxPooling", "AveragePooling", "GlobalAveragePooling")):
        cls = getattr(L, info.type)
        if "pool_size" in args:
            return cls(pool_size=args["pool_size"], name=info.name)
        return cls(name=info.name)
    if info.type == "Add":
        return L.Add(name=info.name)
    if info.type == "TransformerBlock":
        from gradtui.blocks import TransformerBlock

        return TransformerBlock(**args, name=info.name)
    if info.type == "PositionEmbedding":
        from gradtui.blocks import PositionEmbedding

        return PositionEmbedding(args["length"], name=info.name)
    return make_activation_layer(info)


def build(
    preset: Preset,
    input_shape: tuple[int, ...],
    num_classes: int | None = None,
    *,
    compile: bool = True,
    total_steps: int | None = None,
) -> tuple[Any, list[LayerInfo]]:
    """Build (and compile) the Keras model of a preset; refuse it first if it cannot fit.

    A stack without residual blocks is a ``Sequential`` model; with them, a functional model in
    which each block's input is kept for its ``Add`` (through its projection, when planned).

    Returns the model and the :class:`LayerInfo` of each of its layers (with the layers inside
    a block it builds, ``LayerInfo.part_of``, which the block makes itself).
    """
    layers = plan(preset, input_shape, num_classes)
    check_memory(preset, layers)
    keras = import_keras()
    keras.utils.set_random_seed(preset.train.seed)
    seed = preset.train.seed
    own = [info for info in layers if not info.part_of]
    built = [make_layer(info, seed * 1000 + i) for i, info in enumerate(own)]
    if any(info.role == "add" for info in own):
        inputs = keras.Input(shape=tuple(input_shape), name="input")
        x = skip = inputs
        for info, layer in zip(own, built, strict=True):
            if info.residual_start:
                skip = x
            if info.role == "projection":
                skip = layer(skip)
            elif info.role == "add":
                x = layer([x, skip])
            else:
                x = layer(x)
        model = keras.Model(inputs, x, name=model_name(preset))
    else:
        model = keras.Sequential(
            [keras.Input(shape=tuple(input_shape), name="input"), *built], name=model_name(preset)
        )
    if compile:
        model.compile(optimizer=make_optimizer(preset, total_steps), **loss_and_metrics(preset, layers))
    return model, layers


def loss_and_metrics(preset: Preset, layers: list[LayerInfo]) -> dict[str, Any]:
    """``loss`` and ``metrics`` for ``compile``: accuracy only for a classifier (SPEC section 2)."""
    keras = import_keras()
    if preset.loss == "mse":
        return {"loss": keras.losses.MeanSquaredError(), "metrics": []}
    if preset.loss == "mae":
        return {"loss": keras.losses.MeanAbsoluteError(), "metrics": []}
    out = next(x for x in reversed(layers) if x.is_dense)
    if preset.train.z_loss:
        from gradtui.blocks import ZLossCrossentropy

        # the preset's validation made sure the output layer is linear: its outputs are logits
        return {"loss": ZLossCrossentropy(preset.train.z_loss), "metrics": ["accuracy"]}
    return {
        "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=out.activation == "linear"),
        "metrics": ["accuracy"],
    }


def keras_param_counts(model: Any) -> dict[str, int]:
    """``{"total", "trainable", "non_trainable"}`` as ``model.summary()`` counts them."""
    # counted from shapes: reading the weights' values would copy them all
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    non_trainable = sum(math.prod(w.shape) for w in model.non_trainable_weights)
    return {
        "total": trainable + non_trainable,
        "trainable": trainable,
        "non_trainable": non_trainable,
    }
