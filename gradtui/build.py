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


def make_optimizer(preset: Preset) -> Any:
    """The Keras optimizer of ``[train]``, clipping through its own arguments."""
    keras = import_keras()
    t = preset.train
    kwargs: dict[str, Any] = {"learning_rate": t.learning_rate}
    for key in ("clipnorm", "clipvalue", "global_clipnorm"):
        value = getattr(t, key)
        if value is not None:
            kwargs[key] = value
    if t.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=t.momentum, nesterov=t.nesterov, **kwargs)
    if t.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(momentum=t.momentum, **kwargs)
    if t.optimizer == "adam":
        return keras.optimizers.Adam(**kwargs)
    return keras.optimizers.Nadam(**kwargs)


def model_name(preset: Preset) -> str:
    """A Keras-safe model name from the preset's name."""
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in preset.name)
    return safe or "model"


def build(
    preset: Preset,
    input_shape: tuple[int, ...],
    num_classes: int | None = None,
    *,
    compile: bool = True,
) -> tuple[Any, list[LayerInfo]]:
    """Build (and compile) the Keras model of a preset; refuse it first if it cannot fit.

    Returns the model and the :class:`LayerInfo` of each of its layers.
    """
    layers = plan(preset, input_shape, num_classes)
    check_memory(preset, layers)
    keras = import_keras()
    keras.utils.set_random_seed(preset.train.seed)
    seed = preset.train.seed
    built = [keras.Input(shape=tuple(input_shape), name="input")]
    for i, info in enumerate(layers):
        layer_seed = seed * 1000 + i
        if info.type == "Dense":
            fused = info.keras_args.get("fused", True)
            assert info.initializer is not None and info.bias_initializer is not None
            built.append(
                keras.layers.Dense(
                    info.fan_out,
                    activation=info.activation if fused else None,
                    use_bias=info.keras_args.get("use_bias", True),
                    kernel_initializer=make_initializer(info.initializer, layer_seed),
                    bias_initializer=make_initializer(info.bias_initializer, layer_seed + 500),
                    name=info.name,
                )
            )
        elif info.type == "BatchNormalization":
            args = {k: v for k, v in info.keras_args.items() if v is not None}
            built.append(keras.layers.BatchNormalization(name=info.name, **args))
        elif info.type == "Flatten":
            built.append(keras.layers.Flatten(name=info.name))
        elif info.type == "Dropout":
            built.append(keras.layers.Dropout(info.keras_args["rate"], seed=layer_seed, name=info.name))
        else:
            built.append(make_activation_layer(info))
    model = keras.Sequential(built, name=model_name(preset))
    if compile:
        out = next(x for x in reversed(layers) if x.is_dense)
        model.compile(
            optimizer=make_optimizer(preset),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=out.activation == "linear"),
            metrics=["accuracy"],
        )
    return model, layers


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
