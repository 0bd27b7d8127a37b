"""The rules as parts (issue 22): the registry, the roles of rows, and the transformer-era
kinds (attention_logit_growth, output_logit_divergence, adam_epsilon) on synthetic records. No
TensorFlow, no training: tests/test_rules_models.py trains the real models."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import gradtui.rules
from gradtui import roles
from gradtui.diagnose import Diagnoser, diagnose
from gradtui.diagnosis import KINDS
from gradtui.preset import TrainSpec
from gradtui.rules import RULES
from gradtui.rules.adam_epsilon import smaller_epsilon
from gradtui.stack import LayerInfo


def test_every_kind_judged_on_the_rows_is_one_registered_module() -> None:
    kinds = [r.kind for r in RULES]
    assert len(kinds) == len(set(kinds))
    # bn_statistics is judged on a validation batch (Diagnoser.judge_modes), not on the rows
    assert set(kinds) == set(KINDS) - {"bn_statistics"}
    modules = {m.name for m in pkgutil.iter_modules(gradtui.rules.__path__)}
    for kind in kinds:
        assert kind in modules, kind
        assert importlib.import_module(f"gradtui.rules.{kind}").RULE.kind == kind
    for rule in RULES:
        assert all(k == "*" or k in KINDS for k in rule.explained_by), rule


def transformer_infos() -> list[LayerInfo]:
    """The rows of a small transformer: embedding, one attention layer, its norm, a
    feed-forward Dense and the output logits."""

    def info(name: str, type_: str, entry: int, n: int, **kw) -> LayerInfo:
        return LayerInfo(name, type_, entry, (64, 32), params=n, trainable=n, **kw)

    return [
        info("embedding", "Embedding", 0, 64 * 32),
        info("block/mha/query", "EinsumDense", 1, 32 * 32 + 32),
        info("block/mha/key", "EinsumDense", 1, 32 * 32 + 32),
        info("block/mha/value", "EinsumDense", 1, 32 * 32 + 32),
        info("block/mha/attention_output", "EinsumDense", 1, 32 * 32 + 32),
        info("block/layer_norm", "LayerNormalization", 1, 64),
        info("block/ffn", "Dense", 1, 32 * 64 + 64, activation="gelu", fan_in=32, fan_out=64),
        info("out", "Dense", 2, 32 * 64 + 64, activation="linear", fan_in=32, fan_out=64, is_output=True),
    ]


NAMES = [x.name for x in transformer_infos()]


def trec(step: int, loss: float = 3.0, **cols: dict[str, float]) -> dict:
    """A record of the transformer's rows: healthy gradients and update ratios, with the
    given columns (``cols[column][row]``) on top."""
    layers = {n: {"grad_norm": 0.1, "weight_norm": 5.0, "update_ratio": 1e-3, "nonfinite": 0} for n in NAMES}
    for column, by_row in cols.items():
        for row, value in by_row.items():
            layers[row][column] = value
    return {"step": step, "epoch": 0, "loss": loss, "layers": layers}


def test_roles_of_a_transformer_recurrent_and_residual_stack() -> None:
    got = {x.name: roles.role(x) for x in transformer_infos()}
    assert got == {
        "embedding": roles.EMBEDDING,
        "block/mha/query": roles.QUERY,
        "block/mha/key": roles.KEY,
        "block/mha/value": roles.VALUE,
        "block/mha/attention_output": roles.ATTENTION_OUTPUT,
        "block/layer_norm": roles.NORMALIZATION,
        "block/ffn": roles.HIDDEN,
        "out": roles.OUTPUT,
    }
    lstm = LayerInfo("bidirectional/forward_lstm", "LSTM", 0, (8,), trainable=10)
    proj = LayerInfo("dense_3", "Dense", 1, (8,), trainable=10, role="projection")
    conv = LayerInfo("conv2d", "Conv2D", 0, (8, 8, 4), trainable=10)
    prelu = LayerInfo("p_re_lu", "PReLU", 0, (8,), trainable=8)
    assert [roles.role(x) for x in (lstm, proj, conv, prelu)] == [
        roles.RECURRENT,
        roles.PROJECTION,
        roles.HIDDEN,
        roles.ACTIVATION,
    ]
    # a Dense named "key" outside an attention layer is still read by its key and type
    assert roles.role_of("mha/key", None) == roles.KEY and roles.role_of("dense_9", None) == roles.HIDDEN


def test_a_fading_attention_projection_or_embedding_is_not_vanishing() -> None:
    """The key's gradient 1e-5 of the output's (a saturated softmax) and the embedding's: no
    ``vanishing``, no relu/he_normal advice; the same fading on the feed-forward Dense is."""
    fading = {"block/mha/key": 1e-6, "block/mha/query": 1e-6, "embedding": 1e-6}
    found = diagnose([trec(s, grad_norm=fading) for s in range(6)], transformer_infos())
    assert [d.kind for d in found] == []
    found = diagnose(
        [trec(s, grad_norm={**fading, "block/ffn": 1e-6}) for s in range(6)], transformer_infos()
    )
    assert [d.kind for d in found] == ["vanishing"]
    assert found[0].layers == ["block/ffn"] and "block/ffn use gelu" in found[0].advice


def test_exploding_on_an_embedding_gets_no_activation_or_initializer_advice() -> None:
    found = diagnose(
        [trec(s, grad_norm={"embedding": 1e6}) for s in range(3)], transformer_infos(), train=TrainSpec()
    )
    d = next(x for x in found if x.kind == "exploding")
    assert d.layer == "embedding"
    assert "relu" not in d.advice and "he_normal" not in d.advice and "initializer" not in str(d.fix)


LOGITS = [3.6, 4.0, 5.0, 8.0, 20.0, 60.0, 200.0, 900.0, 4000.0, 2.2e4]


def test_attention_logits_growing_without_bound_are_attention_logit_growth() -> None:
    d = Diagnoser(transformer_infos(), train=TrainSpec(optimizer="adamw", learning_rate=0.03))
    found = [x for s, v in enumerate(LOGITS) for x in d.feed(trec(s, attn_logit_max={"block/mha/query": v}))]
    assert [x.kind for x in found] == ["attention_logit_growth"]
    g = found[0]
    assert g.layer == "block/mha/query" and g.step == 7  # window median 200 > 100, and 200/4 > 10
    assert "block/mha is 200" in g.message and "(4 at the start)" in g.message
    assert g.fix == {"entries": [1], "set": {"qk_norm": True}}
    assert "qk_norm = true" in g.advice and g.severity == "error"


def test_attention_logits_of_a_healthy_run_raise_nothing() -> None:
    healthy = [3.6, 6.0, 9.0, 12.0, 15.0, 18.0, 16.0, 17.0, 14.0, 18.0] * 5
    found = diagnose(
        [trec(s, attn_logit_max={"block/mha/query": v}) for s, v in enumerate(healthy)], transformer_infos()
    )
    assert found == []
    # a layer that starts large and stays there has not grown: no alarm either
    flat = diagnose(
        [trec(s, attn_logit_max={"block/mha/query": 150.0}) for s in range(20)], transformer_infos()
    )
    assert flat == []


def test_attention_entropy_collapsing_to_one_key_is_attention_logit_growth() -> None:
    entropy = [3.0, 2.9, 2.5, 1.0, 0.2, 0.01, 0.005, 0.004]
    found = diagnose(
        [trec(s, attn_entropy={"block/mha/query": e}) for s, e in enumerate(entropy)], transformer_infos()
    )
    assert [x.kind for x in found] == ["attention_logit_growth"]
    assert "collapsed to one key" in found[0].message and found[0].step == 6


def test_with_qk_norm_on_the_fix_lowers_the_learning_rate_with_a_warmup() -> None:
    infos = transformer_infos()
    infos[1].keras_args = {"qk_norm": True}
    d = Diagnoser(infos, train=TrainSpec(optimizer="adamw", learning_rate=0.03))
    found = [x for s, v in enumerate(LOGITS) for x in d.feed(trec(s, attn_logit_max={"block/mha/query": v}))]
    assert found[0].fix == {"train": {"learning_rate": 0.003, "warmup_steps": 200}}


def test_a_query_norm_row_beside_the_query_means_qk_norm_is_on() -> None:
    infos = transformer_infos()
    infos.insert(2, LayerInfo("block/mha/query_norm", "LayerNormalization", 1, (64, 4, 8), trainable=16))
    d = Diagnoser(infos, train=TrainSpec(optimizer="adamw", learning_rate=0.03))
    recs = [trec(s, attn_logit_max={"block/mha/query": v}) for s, v in enumerate(LOGITS)]
    for r in recs:
        r["layers"]["block/mha/query_norm"] = {"grad_norm": 0.1, "weight_norm": 1.0, "nonfinite": 0}
    d.feed_all(recs)
    assert d.diagnoses[0].fix == {"train": {"learning_rate": 0.003, "warmup_steps": 200}}


def test_a_watched_model_is_advised_qk_norm_in_keras_terms() -> None:
    infos = [replace_entry(x) for x in transformer_infos()]
    d = Diagnoser(infos, keras_terms=True)
    found = [x for s, v in enumerate(LOGITS) for x in d.feed(trec(s, attn_logit_max={"block/mha/query": v}))]
    assert "LayerNormalization" in found[0].advice and "[train]" not in found[0].advice
    assert found[0].fix is None


def replace_entry(info: LayerInfo) -> LayerInfo:
    info.entry = None
    return info


def test_log_z_drifting_far_from_zero_is_output_logit_divergence() -> None:
    drift = [4.2, 4.5, 6.0, 9.0, 14.0, 19.0, 25.0, 31.0, 40.0]
    d = Diagnoser(transformer_infos(), train=TrainSpec(optimizer="adam"))
    found = [x for s, z in enumerate(drift) for x in d.feed(trec(s, logz_mean={"out": z}))]
    assert [x.kind for x in found] == ["output_logit_divergence"]
    o = found[0]
    assert o.layer == "out" and o.step == 7 and "log Z of out is 25" in o.message
    assert o.fix == {"train": {"z_loss": 1e-4}} and "z_loss = 0.0001" in o.advice
    # negative drift too; and a healthy classifier's log Z (ln 64 ≈ 4.2, then a few nats) is quiet
    neg = diagnose([trec(s, logz_mean={"out": -30.0}) for s in range(4)], transformer_infos())
    assert [x.kind for x in neg] == ["output_logit_divergence"]
    ok = diagnose([trec(s, logz_mean={"out": 4.2 + s / 10}) for s in range(60)], transformer_infos())
    assert ok == []


@pytest.mark.parametrize(
    ("train", "fires"),
    [
        (TrainSpec(optimizer="adam"), True),  # Keras's epsilon 1e-7
        (TrainSpec(optimizer="adamw", epsilon=1e-12), False),
        (TrainSpec(optimizer="rmsprop"), True),
        (TrainSpec(optimizer="sgd"), False),  # no epsilon: nothing to swallow the gradient
    ],
)
def test_a_gradient_rms_at_the_optimizers_epsilon_is_adam_epsilon(train: TrainSpec, fires: bool) -> None:
    """The feed-forward Dense (2112 weights) with ‖g‖ = 2e-6: an RMS of 4.4e-8 per weight, for
    the 100 steps it must last."""
    found = diagnose(
        [trec(s, grad_norm={"block/ffn": 2e-6}) for s in range(110)], transformer_infos(), train=train
    )
    eps = [x for x in found if x.kind == "adam_epsilon"]
    assert bool(eps) == fires, found
    if fires:
        e = eps[0]
        assert e.layers == ["block/ffn"] and e.step == 100 and "4.4e-08 per weight" in e.message
        assert e.fix == {"train": {"epsilon": 1e-9}} and "epsilon = 1e-09" in e.advice


def test_adam_epsilon_reads_a_watched_optimizers_own_epsilon() -> None:
    class Adam:  # what the diagnoser reads of a Keras optimizer: its class name and epsilon
        epsilon = 1e-3

    slow = [trec(s, grad_norm={"block/ffn": 1e-2}) for s in range(110)]  # RMS 2.2e-4
    d = Diagnoser(transformer_infos(), keras_terms=True, optimizer=Adam())
    d.feed_all(slow)
    e = next(x for x in d.diagnoses if x.kind == "adam_epsilon")
    assert e.fix == {"train": {"epsilon": 1e-5}} and "epsilon=1e-05 on the optimizer" in e.advice
    assert diagnose(slow, transformer_infos(), train=TrainSpec(optimizer="adam")) == []


def test_adam_epsilon_leaves_embeddings_and_zero_gradients_alone() -> None:
    quiet = {"embedding": 1e-7, "block/ffn": 0.0}
    found = diagnose(
        [trec(s, grad_norm=quiet) for s in range(110)], transformer_infos(), train=TrainSpec(optimizer="adam")
    )
    assert "adam_epsilon" not in [x.kind for x in found]


def test_a_gradient_below_epsilon_for_a_while_at_the_start_is_not_adam_epsilon() -> None:
    """Attention still uniform at the start passes its queries little gradient (measured on
    transformer-qk-norm: below 1e-7 per weight from step 4 to 44); a break restarts the count;
    fed in blocks or one by one, the same."""
    norms = [2e-6] * 60 + [1e-2] * 5 + [2e-6] * 99 + [2e-6] * 20
    recs = [trec(s, grad_norm={"block/ffn": g}) for s, g in enumerate(norms)]
    found = diagnose(recs, transformer_infos(), train=TrainSpec(optimizer="adam"))
    eps = [(x.step, x.cleared_step) for x in found if x.kind == "adam_epsilon"]
    # below again from the step the window median falls back (66): 100 steps later
    assert eps == [(166, None)], eps
    d = Diagnoser(transformer_infos(), train=TrainSpec(optimizer="adam"))
    for i in range(0, len(recs), 7):
        d.feed_all(recs[i : i + 7])
    assert [(x.step, x.cleared_step) for x in d.diagnoses if x.kind == "adam_epsilon"] == eps


def test_smaller_epsilon_is_a_power_of_ten_ten_times_below() -> None:
    assert (
        smaller_epsilon(4.4e-8) == 1e-9 and smaller_epsilon(1e-7) == 1e-8 and smaller_epsilon(1e-30) == 1e-16
    )


def ur_records(values: list[float], row: str = "embedding") -> list[dict]:
    return [trec(s, update_ratio={row: v}) for s, v in enumerate(values)]


def test_adams_first_large_updates_on_an_embedding_are_not_a_learning_rate() -> None:
    """Measured on Embedding + Dense, Adam lr 0.003 (tests/test_rules_models.py): 0.15 at the
    first steps, ~0.05 from step 10. Under SGD the same ratios are a step too large."""
    early = [0.15] * 10 + [0.05] * 20
    adam = diagnose(
        ur_records(early), transformer_infos(), train=TrainSpec(optimizer="adam", learning_rate=0.003)
    )
    assert adam == []
    sgd = diagnose(
        ur_records(early), transformer_infos(), train=TrainSpec(optimizer="sgd", learning_rate=0.003)
    )
    assert [(x.kind, x.step, x.cleared_step) for x in sgd] == [("learning_rate", 2, 11)]
    # a ratio that stays large after Adam's first steps still is
    high = diagnose(
        ur_records([0.5] * 30, "block/ffn"),
        transformer_infos(),
        train=TrainSpec(optimizer="adam", learning_rate=0.1),
    )
    assert [(x.kind, x.step) for x in high] == [("learning_rate", 20)]


def test_every_kind_has_a_row_in_the_readme_and_a_module_docstring() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Diagnoses", 1)[1].split("\n## ", 1)[0]
    for kind in KINDS:
        assert re.search(rf"^\| `{kind}` \|", section, re.M), kind
        assert (importlib.import_module(f"gradtui.rules.{kind}").__doc__ or "").startswith(f"``{kind}``"), (
            kind
        )


@pytest.mark.parametrize(("optimizer", "exploding"), [("adam", False), ("sgd", True)])
def test_weights_moved_at_adams_pace_are_not_exploding(optimizer: str, exploding: bool) -> None:
    """transformer-qk-norm at lr 0.03 (issue 22): the embedding's weight norm grew 3.25 -> 32.7
    in 14 steps under Adam, each element moved ~lr a step from a +-0.05 start; under SGD such
    growth is an explosion. Here: 3.25 -> 50 in 40 steps, within lr x sqrt(2048) x steps."""
    lr = 0.03
    records = []
    for step in range(41):
        w = 3.25 + (50 - 3.25) * step / 40  # lr x sqrt(2048) = 1.36 a step
        records.append(trec(step, weight_norm={"embedding": w}))
    train = TrainSpec(optimizer=optimizer, learning_rate=lr)
    got = {d.kind for d in diagnose(records, transformer_infos(), train=train)}
    assert ("exploding" in got) is exploding
