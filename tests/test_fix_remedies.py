"""The remedies, trained for real (issue 21): a one-step catastrophe is ``exploding``, a
recurrent layer gets a recurrent remedy, and one ``gradtui fix`` cures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradtui.preset import load
from gradtui.remedy import apply_remedy
from gradtui.runlog import read_run
from gradtui.session import Session

pytestmark = pytest.mark.slow

SCENARIOS = Path(__file__).resolve().parent.parent / "benchmarks" / "scenarios"


def test_the_weight_growth_reference_is_the_weights_before_any_update(tmp_path: Path) -> None:
    """stats.jsonl records each step's weights after its update; the monitor takes each
    layer's norm before the first one, so a first step that throws the weights out is seen."""
    import keras

    import gradtui

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.SGD(1e4), loss="mse")
    before = {
        layer.name: float(np.sqrt(sum(np.sum(np.square(w.numpy())) for w in layer.trainable_weights)))
        for layer in model.layers
    }
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32") * 10
    monitor = gradtui.watch(model, out=tmp_path / "run")
    model.fit(x, x[:, :1] * 100, epochs=1, batch_size=32, verbose=0)
    monitor.close()
    got = monitor.diagnoser.initial_weights
    assert got.keys() == before.keys()
    assert all(abs(got[k] - before[k]) < 1e-6 * before[k] for k in before), (got, before)
    first = read_run(tmp_path / "run").records[0]["layers"]
    name = model.layers[0].name
    assert first[name]["weight_norm"] > 10 * before[name]  # the record holds the weights after
    exploding = [d for d in monitor.diagnoses if d.kind == "exploding"]
    assert exploding and exploding[0].step == 0, [d.to_dict() for d in monitor.diagnoses]


def test_rnn_thrown_out_in_one_step_is_exploding_at_step_0(tmp_path: Path) -> None:
    """A SimpleRNN with its recurrent kernel N(0, 0.5²) on the adding task: the gradient at
    step 0 throws the weights out, and gradtui says exploding at step 0 (not vanishing or
    saturation, which follow from it)."""
    summary = Session(
        load(str(SCENARIOS / "rnn-wild.toml")).with_overrides(max_steps=12), tmp_path / "r"
    ).run()
    kinds = [(d["kind"], d["step"]) for d in summary["diagnoses"]]
    assert kinds[0] == ("exploding", 0), kinds
    assert not {k for k, _ in kinds} & {"vanishing", "saturation"}, kinds
    # the remedy is recurrent (orthogonal recurrent kernel, clipping), and it does not make the
    # training worse: the loss stays near the variance of the target (1/6) instead of 1e24
    fix = apply_remedy(load(str(SCENARIOS / "rnn-wild.toml")), _diagnoses(summary))
    layer = fix.preset.layers[0]
    assert layer.recurrent_initializer.name == "orthogonal" and layer.activation_name == "tanh"
    assert fix.preset.train.clipnorm == 1.0 and layer.type == "simple_rnn"
    after = Session(fix.preset.with_overrides(max_steps=60), tmp_path / "fixed").run()
    assert after["final"]["val_loss"] < 0.3 < summary["final"]["val_loss"], (summary["final"], after["final"])
    assert not {d["kind"] for d in after["diagnoses"]} & {"exploding", "non_finite"}, after["diagnoses"]


def _diagnoses(summary: dict) -> list:
    from gradtui.diagnosis import Diagnosis

    return [Diagnosis.from_dict(d) for d in summary["diagnoses"]]


def test_lagging_batchnorm_statistics_are_diagnosed_and_fixed_by_momentum(tmp_path: Path) -> None:
    """batchnorm-sigmoid with Keras's momentum 0.99 (measured at its default length: training
    accuracy 0.87, validation 0.10): at the first epoch's end the validation batch scores far
    worse with the moving statistics than with its own; the fix sets batch_norm_momentum 0.9,
    which every BatchNormalization of the rebuilt stack takes."""
    preset = load(str(SCENARIOS / "bn-lag-sigmoid.toml")).with_overrides(max_steps=55)
    session = Session(preset, tmp_path / "r")
    summary = session.run()
    (bn,) = [d for d in summary["diagnoses"] if d["kind"] == "bn_statistics"]
    assert bn["step"] == 50 and len(bn["layers"]) == 12 and "batch_normalization" in bn["layers"][0]
    assert "inference mode" in bn["message"] and bn["fix"] == {"train": {"batch_norm_momentum": 0.9}}
    fixed = apply_remedy(preset, _diagnoses(summary))
    assert fixed.changes == ["train.batch_norm_momentum: (unset) -> 0.9 (bn_statistics)"]
    from gradtui.build import build

    model, _ = build(fixed.preset, (64,), 10)
    moms = [x.momentum for x in model.layers if type(x).__name__ == "BatchNormalization"]
    assert moms == [0.9] * 12
    # the check changed nothing the training owns: scoring again leaves the moving statistics
    monitor = session.monitor
    stats = [v.numpy().copy() for v in monitor.model.non_trainable_variables]
    monitor._judge_modes()
    assert all(
        np.array_equal(a, v.numpy())
        for a, v in zip(stats, monitor.model.non_trainable_variables, strict=True)
    )


def _fixed_run(name: str, tmp_path: Path, steps: int, fixed_steps: int) -> tuple[dict, dict, list[str]]:
    """Train ``name`` briefly, apply one remedy of its diagnoses, train the fixed stack."""
    preset = load(name)
    before = Session(preset.with_overrides(max_steps=steps), tmp_path / "before").run()
    remedy = apply_remedy(preset, _diagnoses(before))
    after = Session(remedy.preset.with_overrides(max_steps=fixed_steps), tmp_path / "after").run()
    return before, after, remedy.changes


def test_one_fix_cures_conv_sigmoid_by_weighing_the_whole_stack(tmp_path: Path) -> None:
    """Relu + he_normal alone on 8 narrow convolutions left dead channels at chance (issue 21);
    the fix adds BatchNorm before each activation (momentum 0.9), as conv-relu-bn does."""
    before, after, changes = _fixed_run("conv-sigmoid", tmp_path, 10, 150)
    assert "vanishing" in {d["kind"] for d in before["diagnoses"]}
    assert any(".batch_norm: 'none' -> 'before'" in c for c in changes), changes
    assert any(".activation: 'sigmoid' -> 'relu'" in c for c in changes), changes
    assert not {d["kind"] for d in after["diagnoses"]} & {"vanishing", "dead_units", "not_learning"}, after
    assert after["final"]["val_accuracy"] > 0.5, after["final"]


def test_one_fix_cures_conv_dead_relu_at_its_cause(tmp_path: Path) -> None:
    """Biases of -3 kill every channel; the gradient below them is 0, which is the dead units'
    doing: the fix is theirs (zero biases, leaky_relu), not BatchNorm (not_learning at 0.27)."""
    before, after, changes = _fixed_run("conv-dead-relu", tmp_path, 10, 150)
    assert [d["kind"] for d in before["diagnoses"]] == ["dead_units"], before["diagnoses"]
    assert "bias_initializer constant(value=-3" in before["diagnoses"][0]["advice"]
    assert any(".bias_initializer: " in c and "-> 'zeros'" in c for c in changes), changes
    assert not {d["kind"] for d in after["diagnoses"]} & {"vanishing", "dead_units", "not_learning"}, after
    # it learns (measured: 0.41 after 150 steps, 0.88 at the preset's 255; dead: 0.08)
    assert after["final"]["val_accuracy"] > 0.3, after["final"]
