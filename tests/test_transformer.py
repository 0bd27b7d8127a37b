"""The builder's transformers (issue 22): the ``transformer`` entry, ``embedding.positions``,
``[train] z_loss``, their preset errors, the transformer presets and the three fixes.

Models here are tiny (width 8-16, a few steps): what is checked is structure and exact
arithmetic, not training quality (benchmarks/transformer_table.md measures that)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gradtui.cli import app
from gradtui.diagnosis import Diagnosis
from gradtui.errors import PresetError
from gradtui.preset import apply_fix, load, loads
from gradtui.remedy import PRIORITY, apply_remedy
from gradtui.stack import param_counts, plan, preflight

runner = CliRunner()

TINY = """
name = "tiny-lm"
[data]
dataset = "text"
samples = 64
length = 8
[[layers]]
type = "embedding"
input_dim = 98
output_dim = 16
positions = true
[[layers]]
type = "transformer"
heads = 2
ffn_units = 32
{block}
[[layers]]
type = "layer_norm"
[[layers]]
type = "dense"
units = 98
activation = "{out}"
[train]
optimizer = "adamw"
learning_rate = 0.01
batch_size = 16
epochs = 1
{train}
"""


def tiny(block: str = "", out: str = "linear", train: str = ""):  # type: ignore[no-untyped-def]
    return loads(TINY.format(block=block, out=out, train=train))


def built(preset):  # type: ignore[no-untyped-def]
    from gradtui.build import build

    return build(preset, (8,), 98)


def test_the_entry_plans_a_block_whose_rows_are_the_models_rows() -> None:
    """Plan and model agree: names (the row keys), order, parameter counts; roles are set."""
    from gradtui.build import keras_param_counts
    from gradtui.rows import rows_of

    preset = tiny("repeat = 2")
    model, layers = built(preset)
    assert [type(x).__name__ for x in model.layers] == [
        "Embedding",
        "PositionEmbedding",
        "TransformerBlock",
        "TransformerBlock",
        "LayerNormalization",
        "Dense",
    ]
    assert [r.name for r in rows_of(model)] == [x.name for x in layers if x.has_weights]
    assert param_counts(layers) == keras_param_counts(model)
    block = [x for x in layers if x.part_of == "transformer_block_1"]
    assert [x.name.split("/", 1)[1] for x in block] == [
        "attention_norm",
        "multi_head_attention/query",
        "multi_head_attention/key",
        "multi_head_attention/value",
        "multi_head_attention/attention_output",
        "ffn_norm",
        "ffn_dense",
        "ffn_output",
    ]
    assert [x.role for x in block][1:5] == [
        "attention_query",
        "attention_key",
        "attention_value",
        "attention_output",
    ]
    assert all(x.entry == 1 for x in block)
    attention = model.layers[2].attention
    assert (attention.num_heads, attention.key_dim) == (2, 8)  # key_dim: width / heads
    assert model.layers[2].ffn_dense.units == 32 and model.layers[2].ffn_dense.activation.__name__ == "gelu"
    assert tuple(model(np.zeros((1, 8), "int32")).shape) == (1, 8, 98)
    assert preflight(layers, preset.train) == []  # no ReLU/He advice on a transformer's layers


def test_qk_norm_and_post_norm_change_the_rows() -> None:
    from gradtui.rows import rows_of

    model, layers = built(tiny('qk_norm = true\nnorm = "post"'))
    names = [r.name for r in rows_of(model)]
    assert names == [x.name for x in layers if x.has_weights]
    block = [n.split("/", 1)[1] for n in names if n.startswith("transformer_block/")]
    assert block == [
        "multi_head_attention/query",
        "multi_head_attention/key",
        "multi_head_attention/value",
        "multi_head_attention/attention_output",
        "multi_head_attention/query_norm",
        "multi_head_attention/key_norm",
        "attention_norm",
        "ffn_dense",
        "ffn_output",
        "ffn_norm",
    ]
    assert type(model.layers[2].attention).__name__ == "QKNormAttention"


@pytest.mark.parametrize("causal", [True, False])
def test_causal_output_at_t_ignores_later_tokens(causal: bool) -> None:
    """Changing the tokens after position t leaves the outputs up to t unchanged when causal
    (the default for text), and changes them when not."""
    block = "" if causal else "causal = false"
    model, _ = built(tiny(block))
    rng = np.random.default_rng(0)
    x = rng.integers(3, 98, size=(2, 8))
    later = x.copy()
    later[:, 5:] = rng.integers(3, 98, size=(2, 3))
    a, b = model(x, training=False).numpy(), model(later, training=False).numpy()
    assert not np.allclose(a[:, 5:], b[:, 5:])
    if causal:
        np.testing.assert_allclose(a[:, :5], b[:, :5], rtol=1e-5, atol=1e-5)
    else:
        assert not np.allclose(a[:, :5], b[:, :5], atol=1e-5)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_the_layer_computes_its_output_from_the_probes_logits(qk_norm: bool) -> None:
    """softmax(attention_logits) (causal) times the values, projected, IS the layer's output:
    the logits of a QKNormAttention are those of the normalized queries and keys."""
    import keras
    from keras import ops

    from gradtui.blocks import QKNormAttention, attention_logits

    cls = QKNormAttention if qk_norm else keras.layers.MultiHeadAttention
    layer = cls(2, 4)
    x = keras.random.normal((3, 5, 8), seed=1)
    out = layer(x, x, use_causal_mask=True)
    logits = attention_logits(layer, x)
    mask = np.tril(np.ones((5, 5), bool))
    probs = ops.softmax(ops.where(mask, logits, -1e9), axis=-1)
    mixed = ops.einsum("bnts,bsnh->btnh", probs, layer.value_dense(x))
    np.testing.assert_allclose(layer.output_dense(mixed).numpy(), out.numpy(), rtol=1e-4, atol=1e-5)


def test_qk_norm_bounds_the_logits_whatever_the_projections() -> None:
    """With projections 100x too large, plain attention's logits grow 1e4-fold; qk-normalized
    ones stay at most sqrt(key_dim) (unit-variance vectors of key_dim elements, gamma = 1)."""
    import keras
    from keras import ops

    from gradtui.blocks import QKNormAttention, attention_logits

    x = keras.random.normal((2, 6, 16), seed=2)
    largest = {}
    for cls in (keras.layers.MultiHeadAttention, QKNormAttention):
        keras.utils.set_random_seed(3)
        layer = cls(2, 8)
        layer(x, x)
        before = float(ops.max(ops.abs(attention_logits(layer, x))))
        for dense in (layer.query_dense, layer.key_dense):
            dense.kernel.assign(dense.kernel * 100.0)
        largest[cls.__name__] = (before, float(ops.max(ops.abs(attention_logits(layer, x)))))
    plain, normed = largest["MultiHeadAttention"], largest["QKNormAttention"]
    assert plain[1] > 5e3 * plain[0]
    assert normed[1] <= math.sqrt(8) + 1e-3


def test_z_loss_adds_its_term_to_the_loss() -> None:
    """loss with z_loss = c is the cross-entropy + c * mean(logsumexp(logits)^2), exactly."""
    from keras import ops

    c = 0.05
    plain_model, _ = built(tiny())
    z_model, _ = built(tiny(train=f"z_loss = {c}"))
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 98, size=(4, 8)), rng.integers(0, 98, size=(4, 8))
    logits = z_model(x)
    np.testing.assert_allclose(plain_model(x).numpy(), logits.numpy())  # same seed, same weights
    ce = float(plain_model.compute_loss(x=x, y=y, y_pred=logits))
    total = float(z_model.compute_loss(x=x, y=y, y_pred=logits))
    expected = ce + c * float(ops.mean(ops.square(ops.logsumexp(logits, axis=-1))))
    assert total > ce
    assert total == pytest.approx(expected, rel=1e-5)


def test_z_loss_needs_logits() -> None:
    with pytest.raises(PresetError) as err:
        tiny(out="softmax", train="z_loss = 1e-4")
    assert err.value.key == "train.z_loss"
    assert "activation = 'linear'" in err.value.detail


def test_a_transformer_on_tokens_asks_for_an_embedding() -> None:
    preset = loads(
        TINY.format(block="", out="linear", train="").replace(
            'type = "embedding"\ninput_dim = 98\noutput_dim = 16\npositions = true', 'type = "dropout"'
        )
    )
    with pytest.raises(PresetError) as err:
        plan(preset, (8,), 98)
    assert err.value.key == "layers[1] (transformer)"
    assert "embedding" in err.value.detail


@pytest.mark.parametrize(
    ("change", "key", "allowed"),
    [
        (("heads = 2", "heads = 'two'"), "layers[1].heads", "must be an integer"),
        (("heads = 2", "head = 2"), "layers[1].head", "did you mean 'heads'"),
        (("ffn_units = 32", 'norm = "pr"'), "layers[1].norm", "did you mean 'pre'"),
        (("ffn_units = 32", "qk_norm = 1"), "layers[1].qk_norm", "must be true or false"),
        (("ffn_units = 32", "causal = 'yes'"), "layers[1].causal", "must be true or false"),
        (("ffn_units = 32", "dropout = 1.5"), "layers[1].dropout", "out of range"),
        (("ffn_units = 32", 'activation = "softmax"'), "layers[1].activation", "cannot be a transformer"),
        (("positions = true", "positions = 1"), "layers[0].positions", "must be true or false"),
        (("positions = true", "position = true"), "layers[0].position", "did you mean 'positions'"),
        (("epochs = 1", "epochs = 1\nz_loss = 'small'"), "train.z_loss", "must be a number"),
        (("epochs = 1", "epochs = 1\nz_los = 1e-4"), "train.z_los", "did you mean 'z_loss'"),
    ],
)
def test_bad_transformer_keys_exit_2_in_one_line(
    change: tuple[str, str], key: str, allowed: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY.format(block="", out="linear", train="").replace(*change))
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(path) in lines[0] and f": {key}: " in lines[0] and allowed in lines[0], lines[0]


PRESETS = ["transformer-logit-growth", "transformer-qk-norm", "adam-epsilon"]


@pytest.mark.parametrize("name", PRESETS)
def test_the_presets_load_and_round_trip(name: str) -> None:
    """Each transformer preset loads, survives its own preset.toml and plans its 2 blocks."""
    preset = load(name)
    assert loads(preset.to_toml()) == preset
    layers = plan(preset, (64,), 98)
    assert [x.name for x in layers if x.role == "block"] == ["transformer_block", "transformer_block_1"]
    assert preset.data.dataset == "text" and layers[-1].activation == "linear"


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_the_presets_train(name: str, tmp_path: Path) -> None:
    """Each transformer preset trains through ``gradtui run`` (2 steps) and records its rows."""
    import json

    result = runner.invoke(app, ["run", name, "--out", str(tmp_path / "run"), "--max-steps", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert math.isfinite(summary["final"]["loss"])
    rows = json.loads((tmp_path / "run" / "stats.jsonl").read_text().splitlines()[0])["layers"]
    assert "transformer_block/multi_head_attention/query" in rows
    assert ("transformer_block/multi_head_attention/query_norm" in rows) == (
        name != "transformer-logit-growth"
    )


def test_the_three_fixes_apply() -> None:
    """qk_norm on the transformer entries only, z_loss and epsilon in [train]; through
    apply_remedy as gradtui fix applies them."""
    preset = tiny("repeat = 2", train="")
    fixed = apply_fix(preset, {"entries": [1, 3], "set": {"qk_norm": True}})
    assert fixed.layers[1].qk_norm and fixed.layers[1].repeat == 2
    assert fixed.layers[3] == preset.layers[3]  # a dense entry does not take qk_norm
    assert apply_fix(preset, {"train": {"z_loss": 1e-4}}).train.z_loss == 1e-4
    assert apply_fix(preset, {"train": {"epsilon": 1e-10}}).train.epsilon == 1e-10
    for kind in ("attention_logit_growth", "output_logit_divergence", "adam_epsilon"):
        assert kind in PRIORITY
    diagnoses = [
        Diagnosis("adam_epsilon", "dense", 5, "warning", "m", "a", fix={"train": {"epsilon": 1e-10}}),
        Diagnosis(
            "output_logit_divergence", "dense", 5, "warning", "m", "a", fix={"train": {"z_loss": 1e-4}}
        ),
        Diagnosis(
            "attention_logit_growth",
            "transformer_block/multi_head_attention/query",
            5,
            "warning",
            "m",
            "a",
            fix={"entries": [1], "set": {"qk_norm": True}},
        ),
    ]
    remedy = apply_remedy(preset, diagnoses)
    assert remedy.preset.layers[1].qk_norm
    assert (remedy.preset.train.z_loss, remedy.preset.train.epsilon) == (1e-4, 1e-10)
    assert remedy.changes == [
        "layers[1] (transformer).qk_norm: false -> true (attention_logit_growth)",
        "train.epsilon: (unset) -> 1e-10 (adam_epsilon)",
        "train.z_loss: (unset) -> 0.0001 (output_logit_divergence)",
    ]


def test_the_memory_check_counts_the_attention_scores() -> None:
    """A long context is refused before anything is built: heads x steps² scores per example."""
    from gradtui.errors import ModelTooLargeError
    from gradtui.stack import check_memory, estimate_memory

    preset = tiny()
    short = estimate_memory(preset, plan(preset, (8,), 98))
    long = loads(TINY.format(block="", out="linear", train="").replace("length = 8", "length = 8192"))
    layers = plan(long, (8192,), 98)
    assert estimate_memory(long, layers) > 4 * 16 * 2 * 8192**2  # float32, batch 16, 2 heads
    assert short < 10**8
    with pytest.raises(ModelTooLargeError):
        check_memory(long, layers, available=8 * 1024**3)
