"""The builder: preset -> plan (pure) -> Keras model, counts, variances, advice, memory."""

from __future__ import annotations

import math

import pytest

from gradtui.errors import ModelTooLargeError, PresetError
from gradtui.preset import Spec, load, loads
from gradtui.stack import check_memory, init_variance, param_counts, plan, preflight


def test_fmnist_batchnorm_plan_matches_the_keras_summary() -> None:
    layers = plan(load("fmnist-batchnorm"), (28, 28), 10)
    assert [(x.name, x.type, x.params) for x in layers] == [
        ("flatten", "Flatten", 0),
        ("batch_normalization", "BatchNormalization", 3136),
        ("dense", "Dense", 235500),
        ("batch_normalization_1", "BatchNormalization", 1200),
        ("dense_1", "Dense", 30100),
        ("batch_normalization_2", "BatchNormalization", 400),
        ("dense_2", "Dense", 1010),
    ]
    assert param_counts(layers) == {"total": 271346, "trainable": 268978, "non_trainable": 2368}


def test_repeat_names_layers_like_keras() -> None:
    layers = plan(load("vanishing-sigmoid"), (64,), 10)
    names = [x.name for x in layers]
    assert names == ["dense"] + [f"dense_{i}" for i in range(1, 13)]
    assert layers[-1].is_output and not layers[0].is_output
    assert layers[0].fan_in == 64 and layers[0].fan_out == 64


@pytest.mark.parametrize(
    ("spec", "fan_in", "fan_out", "expected"),
    [
        (Spec("glorot_uniform"), 64, 32, 1 / 48),
        (Spec("he_normal"), 64, 32, 2 / 64),
        (Spec("lecun_normal"), 50, 10, 1 / 50),
        (
            Spec("variance_scaling", (("scale", 2.0), ("mode", "fan_avg"), ("distribution", "uniform"))),
            64,
            32,
            2 / 48,
        ),
        (Spec("random_normal", (("stddev", 1.0),)), 64, 64, 1.0),
        (Spec("random_uniform", (("minval", -1.0), ("maxval", 1.0))), 8, 8, 4 / 12),
        (Spec("zeros"), 8, 8, 0.0),
    ],
)
def test_initializer_variance(spec: Spec, fan_in: int, fan_out: int, expected: float) -> None:
    assert init_variance(spec, fan_in, fan_out) == pytest.approx(expected)


def test_batch_norm_before_and_after_and_parametrised_activations() -> None:
    p = loads(
        """
[[layers]]
type = "dense"
units = 8
activation = { name = "leaky_relu", negative_slope = 0.1 }
initializer = "he_normal"
batch_norm = "before"
[[layers]]
type = "dense"
units = 8
activation = "prelu"
batch_norm = "after"
[[layers]]
type = "dense"
units = 3
activation = "softmax"
"""
    )
    layers = plan(p, (4,), 3)
    assert [x.type for x in layers] == [
        "Dense",
        "BatchNormalization",
        "LeakyReLU",
        "Dense",
        "PReLU",
        "BatchNormalization",
        "Dense",
    ]
    assert layers[0].params == 4 * 8  # no bias when BatchNorm follows
    assert layers[0].activation_layer == "leaky_re_lu"
    assert layers[3].activation_layer == "p_re_lu" and layers[4].params == 8


def test_images_get_an_implied_flatten() -> None:
    p = loads('[[layers]]\ntype = "dense"\nunits = 10\nactivation = "softmax"\n')
    layers = plan(p, (28, 28), 10)
    assert layers[0].type == "Flatten" and layers[0].entry is None and layers[1].fan_in == 784


def test_output_layer_must_match_classes_and_be_a_classifier() -> None:
    p = loads('[[layers]]\ntype = "dense"\nunits = 12\nactivation = "softmax"\n')
    with pytest.raises(
        PresetError, match=r"layers\[0\].units: the output layer has 12 units but the data has 10"
    ):
        plan(p, (64,), 10)
    p = loads('[[layers]]\ntype = "dense"\nunits = 10\nactivation = "sigmoid"\n')
    with pytest.raises(PresetError, match="must be softmax"):
        plan(p, (64,), 10)


def test_preflight_flags_mismatched_pairs_and_deep_sigmoid_stacks() -> None:
    advice = {a.layer: a.message for a in preflight(plan(load("exploding-relu"), (64,), 10))}
    assert "dense..dense_9" in advice
    assert "32x the σ² = 2/fan_in" in advice["dense..dense_9"] and "he_normal" in advice["dense..dense_9"]
    deep = preflight(plan(load("vanishing-sigmoid"), (64,), 10))
    assert any("12 sigmoid layers without BatchNorm" in a.message for a in deep)
    for healthy in ("he-relu", "selu-lecun", "batchnorm-sigmoid", "elu", "leaky-relu"):
        assert preflight(plan(load(healthy), (64,), 10)) == [], healthy
    selu = loads(
        '[[layers]]\nunits = 8\nactivation = "selu"\ninitializer = "he_normal"\n'
        '[[layers]]\nunits = 10\nactivation = "softmax"\n'
    )
    assert "lecun_normal" in preflight(plan(selu, (64,), 10))[0].message


def test_a_model_too_large_is_refused_before_building() -> None:
    p = loads('[[layers]]\nunits = 200000\nrepeat = 3\n[[layers]]\nunits = 10\nactivation = "softmax"\n')
    layers = plan(p, (64,), 10)
    with pytest.raises(
        ModelTooLargeError,
        match=r"layers\[0\].units: the model needs an estimated [0-9.]+ [GT]B .*more than the",
    ):
        check_memory(p, layers)
    assert check_memory(load("he-relu"), plan(load("he-relu"), (64,), 10)) < 10**8


def test_keras_model_matches_the_plan() -> None:
    from gradtui.build import build, keras_param_counts

    preset = load("batchnorm-sigmoid")
    model, layers = build(preset, (64,), 10)
    assert [layer.name for layer in model.layers] == [x.name for x in layers]
    assert keras_param_counts(model) == param_counts(layers)
    opt = model.optimizer
    assert type(opt).__name__ == "SGD" and math.isclose(float(opt.learning_rate.numpy()), 0.01, rel_tol=1e-6)


def test_optimizer_clipping_goes_through_keras_arguments() -> None:
    from gradtui.build import make_optimizer

    opt = make_optimizer(load("clipnorm"))
    assert opt.clipnorm == 1.0 and opt.clipvalue is None
    opt = make_optimizer(load("clipvalue"))
    assert opt.clipvalue == 1.0
    adam = make_optimizer(
        loads(
            '[[layers]]\nunits = 10\nactivation="softmax"\n[train]\noptimizer = "adam"\n'
            "global_clipnorm = 2.0\nlearning_rate = 0.001\n"
        )
    )
    assert type(adam).__name__ == "Adam" and adam.global_clipnorm == 2.0


def test_same_seed_same_weights() -> None:
    import numpy as np

    from gradtui.build import build

    a, _ = build(load("he-relu"), (64,), 10, compile=False)
    b, _ = build(load("he-relu"), (64,), 10, compile=False)
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a.weights, b.weights, strict=True))
