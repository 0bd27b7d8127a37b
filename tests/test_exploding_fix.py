"""The exploding fix changes exactly the layers its advice names (issue 11): no TensorFlow."""

from __future__ import annotations

import math

import pytest

from gradtui.diagnose import diagnose
from gradtui.preset import Spec, TrainSpec, apply_fix, load
from gradtui.stack import layer_range, plan


def records(names: list[str], norms: list[float], loss: float, steps: int = 3) -> list[dict]:
    return [
        {
            "step": s,
            "epoch": 0,
            "loss": loss,
            "layers": {
                n: {
                    "grad_norm": g,
                    "grad_max": g / 4,
                    "weight_norm": 1.0,
                    "update_ratio": 1e-3,
                    "nonfinite": 0,
                }
                for n, g in zip(names, norms, strict=True)
            },
        }
        for s in range(steps)
    ]


def fixed_layers(preset, layers, fix) -> list[str]:
    """The Dense layers whose settings a fix changes, found by applying it and comparing."""
    after = apply_fix(preset, fix)
    changed = {i for i, (a, b) in enumerate(zip(preset.layers, after.layers, strict=True)) if a != b}
    return [x.name for x in layers if x.is_dense and x.entry in changed]


@pytest.mark.parametrize(
    ("why", "norms", "loss"),
    [
        ("a loss avalanche flags every Dense layer, the softmax output too", [1.0] * 11, 3.5e7),
        ("huge gradient norms in the lower layers only", [2e7] * 4 + [10.0] * 7, 2.3),
    ],
)
def test_exploding_relu_fix_changes_exactly_what_its_advice_names(
    why: str, norms: list[float], loss: float
) -> None:
    preset = load("exploding-relu")
    layers = plan(preset, (64,), 10)
    names = [x.name for x in layers if x.has_weights]
    (e,) = [
        d for d in diagnose(records(names, norms, loss), layers, train=preset.train) if d.kind == "exploding"
    ]
    changed = fixed_layers(preset, layers, e.fix)
    assert changed, e.fix
    assert e.advice.startswith(f"{layer_range(changed)} use relu with random_normal"), (e.advice, changed)
    assert "dense_10" not in changed  # the softmax output layer keeps its initializer
    after = apply_fix(preset, e.fix)
    assert after.layers[-1] == preset.layers[-1]
    assert after.layers[0].initializer == Spec("he_normal")
    # "and clipnorm" only where the fix sets it too
    assert ("and clipnorm" in e.advice) == bool(e.fix.get("train", {}).get("clipnorm"))


def test_non_finite_fix_also_clips_as_its_advice_says() -> None:
    preset = load("exploding-relu")
    layers = plan(preset, (64,), 10)
    names = [x.name for x in layers if x.has_weights]
    recs = records(names, [2e7] * 11, 3.5e7, steps=1)
    recs.append({**records(names, [math.nan] * 11, math.nan, steps=1)[0], "step": 1})
    (n,) = [d for d in diagnose(recs, layers, train=TrainSpec()) if d.kind == "non_finite"]
    assert "and clipnorm = 1.0" in n.advice and n.fix["train"] == {"clipnorm": 1.0}
    changed = fixed_layers(preset, layers, n.fix)
    assert n.advice.startswith(f"{layer_range(changed)} use relu") and "dense_10" not in changed
