"""The fix forms of issue 12, applied to presets (what ``f`` does in the TUI): clipping for
exploding recurrent gradients, LSTM/GRU for a SimpleRNN, residual connections or BatchNorm for a
deep stack. See :func:`gradtui.preset.apply_fix`."""

from __future__ import annotations

import dataclasses

import pytest

from gradtui.data import input_spec
from gradtui.errors import PresetError
from gradtui.preset import Spec, apply_fix, load, loads
from gradtui.stack import plan


def planned(preset: object) -> list:
    return plan(preset, *input_spec(preset.data))  # type: ignore[attr-defined]


def test_clipnorm_for_exploding_recurrent_gradients() -> None:
    p = load("rnn-exploding")
    fixed = apply_fix(p, {"train": {"clipnorm": 1.0}})
    assert fixed.train.clipnorm == 1.0 and fixed.layers == p.layers
    assert fixed.source == p.source
    glob = p.replace(train=dataclasses.replace(p.train, global_clipnorm=5.0))
    assert apply_fix(glob, {"train": {"clipnorm": 1.0}}).train.global_clipnorm is None


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_a_simple_rnn_becomes_an_lstm_or_gru_keeping_what_applies(kind: str) -> None:
    p = load("rnn-pixels")
    fixed = apply_fix(p, {"entries": [0], "set": {"type": kind, "activation": "tanh"}})
    layer = fixed.layers[0]
    assert layer.type == kind and layer.units == 32 and layer.activation == Spec("tanh")
    assert fixed.layers[1:] == p.layers[1:]
    assert planned(fixed)[0].type == {"lstm": "LSTM", "gru": "GRU"}[kind]
    # the entry's own keys that the new type takes stay (a recurrent initializer, bidirectional)
    wild = apply_fix(load("rnn-exploding"), {"entries": [0], "set": {"type": kind}}).layers[0]
    assert wild.recurrent_initializer == Spec("random_normal", (("stddev", 0.3),))


def test_residual_for_a_deep_plain_stack() -> None:
    p = load("deep-plain")
    fixed = apply_fix(p, {"entries": [0], "set": {"residual": True}})
    assert fixed.layers[0].residual and fixed.layers[0].repeat == 24
    assert sum(1 for x in planned(fixed) if x.type == "Add") == 24
    assert loads(fixed.to_toml()) == fixed


def test_batch_norm_set_on_conv_and_dense_entries_skips_those_that_do_not_take_it() -> None:
    p = loads(
        '[data]\ndataset = "digits"\n'
        '[[layers]]\ntype = "conv1d"\nfilters = 4\nkernel_size = 3\nactivation = "sigmoid"\n'
        '[[layers]]\ntype = "lstm"\nunits = 8\n'
        '[[layers]]\ntype = "dense"\nunits = 8\nactivation = "sigmoid"\n'
        '[[layers]]\ntype = "dense"\nunits = 10\nactivation = "softmax"\n'
    )
    fixed = apply_fix(p, {"entries": [0, 1, 2], "set": {"batch_norm": "before", "residual": True}})
    assert [x.batch_norm for x in fixed.layers[:3]] == ["before", "none", "before"]
    assert [x.residual for x in fixed.layers[:3]] == [True, False, True]
    assert fixed.layers[1] == p.layers[1]
    planned(fixed)


def test_a_fix_that_does_not_fit_is_a_preset_error() -> None:
    p = load("rnn-pixels")
    with pytest.raises(PresetError):
        apply_fix(p, {"entries": [0], "set": {"type": "mamba"}})
    with pytest.raises(PresetError):
        apply_fix(p, {"entries": [0], "set": {"units": 0}})
