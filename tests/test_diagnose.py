"""Every diagnosis rule on synthetic statistics: no TensorFlow, no training."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from gradtui.diagnose import Diagnoser, diagnose
from gradtui.preset import Preset, Spec, Thresholds, TrainSpec, apply_fix, loads
from gradtui.stack import plan

STACK = """
[[layers]]
type = "dense"
units = 64
activation = "{act}"
initializer = {init}
repeat = 4

[[layers]]
type = "dense"
units = 10
activation = "softmax"
"""


def layers_for(act: str = "sigmoid", init: str = '"glorot_uniform"'):
    preset = loads(STACK.format(act=act, init=init))
    return preset, plan(preset, (64,), 10)


def record(
    step: int,
    norms: list[float],
    *,
    loss: float = 2.3,
    act: dict | None = None,
    weight: float = 1.0,
    nonfinite: list[int] | None = None,
) -> dict:
    """One stats.jsonl record for dense..dense_4 with the given gradient norms."""
    names = ["dense", "dense_1", "dense_2", "dense_3", "dense_4"]
    layers = {}
    for i, (name, g) in enumerate(zip(names, norms, strict=True)):
        entry = {
            "grad_norm": g,
            "grad_max": g / 4,
            "weight_norm": weight,
            "update_ratio": 1e-3,
            "nonfinite": (nonfinite or [0] * 5)[i],
        }
        if act and name in act:
            entry.update(act[name])
        layers[name] = entry
    return {"step": step, "epoch": 0, "loss": loss, "layers": layers}


HEALTHY = [0.5, 0.6, 0.55, 0.7, 0.8]


def test_healthy_statistics_raise_nothing() -> None:
    _, layers = layers_for("relu", '"he_normal"')
    assert diagnose([record(s, HEALTHY) for s in range(20)], layers) == []


def test_vanishing_is_flagged_after_window_records_with_stack_advice() -> None:
    _, layers = layers_for()
    d = Diagnoser(layers)
    recs = [record(s, [4e-8, 1e-6, 1e-4, 1e-2, 0.5]) for s in range(3)]
    assert d.feed(recs[0]) == [] and d.feed(recs[1]) == []
    found = d.feed(recs[2])
    assert [x.kind for x in found] == ["vanishing"]
    v = found[0]
    assert v.layer == "dense" and v.step == 2 and v.severity == "error"
    assert "8e-08 x that of dense_4" in v.message
    assert v.layers == ["dense", "dense_1", "dense_2"]
    assert v.advice.startswith("dense..dense_2 use sigmoid with glorot_uniform: use relu with he_normal")
    assert v.fix == {"entries": [0], "set": {"activation": "relu", "initializer": "he_normal"}}


def test_vanishing_severity_warning_between_thresholds() -> None:
    _, layers = layers_for()
    (v,) = diagnose([record(s, [1e-4, 1e-3, 0.1, 0.3, 0.5]) for s in range(3)], layers)
    assert v.kind == "vanishing" and v.severity == "warning" and v.layers == ["dense"]


def test_one_noisy_step_does_not_fire() -> None:
    _, layers = layers_for()
    recs = [record(s, HEALTHY) for s in range(10)]
    recs[5] = record(5, [1e-9, 0.6, 0.55, 0.7, 0.8])
    assert diagnose(recs, layers) == []


def test_exploding_by_huge_norm_names_the_too_wide_initializer() -> None:
    _, layers = layers_for("relu", '{ name = "random_normal", stddev = 1.0 }')
    (e,) = diagnose([record(s, [2e7, 1e7, 1e6, 1e5, 1e3], loss=3e7) for s in range(3)], layers)
    assert e.kind == "exploding" and e.layer == "dense"
    assert "above 1e+04" in e.message
    assert "random_normal(stddev=1)" in e.advice and "he_normal" in e.advice
    assert e.fix["set"] == {"initializer": "he_normal"}


def test_exploding_by_ratio_and_by_loss_and_by_growth() -> None:
    _, layers = layers_for("relu", '"he_normal"')
    (r,) = diagnose([record(s, [50.0, 5.0, 1.0, 0.1, 0.01]) for s in range(3)], layers)
    assert r.kind == "exploding" and "x that of dense_4" in r.message
    (loss,) = diagnose([record(s, HEALTHY, loss=5e3) for s in range(3)], layers)
    assert loss.kind == "exploding" and "avalanche" in loss.message
    growing = [record(s, [0.5 * 10 ** (s / 2)] + HEALTHY[1:]) for s in range(12)]
    kinds = [(d.kind, d.layer) for d in diagnose(growing, layers)]
    assert ("exploding", "dense") in kinds
    weights = [record(s, HEALTHY, weight=2.0**s) for s in range(8)]
    (w,) = diagnose(weights, layers)
    assert w.kind == "exploding" and "weight norm of" in w.message


def test_exploding_with_clipping_on_suggests_a_lower_learning_rate() -> None:
    _, layers = layers_for("relu", '"he_normal"')
    d = Diagnoser(layers, train=TrainSpec(clipnorm=1.0, learning_rate=0.1))
    d.feed_all([record(s, HEALTHY, loss=5e3) for s in range(3)])
    (e,) = d.diagnoses
    assert "already clipped" in e.advice and e.fix == {"train": {"learning_rate": 0.01}}


def test_non_finite_fires_at_once_with_first_layer_and_step() -> None:
    _, layers = layers_for("relu", '"he_normal"')
    d = Diagnoser(layers)
    assert d.feed(record(0, HEALTHY)) == []
    (n,) = d.feed(record(1, [math.nan, 0.6, math.inf, 0.7, 0.8], loss=math.nan, nonfinite=[0, 0, 3, 9, 0]))
    assert n.kind == "non_finite" and n.layer == "dense_2" and n.step == 1 and n.severity == "error"
    assert n.layers == ["dense_2", "dense_3"]
    assert "clipnorm = 1.0" in n.advice or "he_normal" in n.advice


def test_non_finite_loss_alone_has_no_layer() -> None:
    _, layers = layers_for("relu", '"he_normal"')
    (n,) = diagnose([record(0, HEALTHY, loss=math.inf)], layers)
    assert n.kind == "non_finite" and n.layer is None and "the loss" in n.message


def test_saturation_of_hidden_layers_only() -> None:
    _, layers = layers_for("tanh", '{ name = "random_normal", stddev = 2.0 }')
    act = {name: {"saturation": 0.95} for name in ("dense", "dense_1", "dense_2", "dense_3")}
    act["dense_4"] = {"saturation": 1.0}  # the output layer never counts
    (s,) = diagnose([record(i, HEALTHY, act=act) for i in range(3)], layers)
    assert s.kind == "saturation" and s.severity == "error"
    assert s.layers == ["dense", "dense_1", "dense_2", "dense_3"]
    assert "95%" in s.message and "glorot_uniform" in s.advice
    assert s.fix["set"] == {"initializer": "glorot_uniform"}
    low = {name: {"saturation": 0.3} for name in ("dense", "dense_1")}
    assert diagnose([record(i, HEALTHY, act=low) for i in range(3)], layers) == []


def test_dead_units_advice_is_leaky_relu() -> None:
    _, layers = layers_for("relu", '"he_normal"')
    act = {"dense_1": {"dead": 0.75}}
    (d,) = diagnose([record(i, HEALTHY, act=act) for i in range(3)], layers)
    assert d.kind == "dead_units" and d.layer == "dense_1" and d.severity == "warning"
    assert "leaky_relu" in d.advice
    assert d.fix["set"]["activation"] == {"name": "leaky_relu", "negative_slope": 0.2}


def test_the_dead_units_message_begins_with_the_layer_of_its_header() -> None:
    """Issue 21: the header named the first dead layer, the message the worst one."""
    _, layers = layers_for("relu", '"he_normal"')
    act = {"dense_1": {"dead": 0.6}, "dense_2": {"dead": 0.95}}
    (d,) = diagnose([record(i, HEALTHY, act=act) for i in range(3)], layers)
    assert d.layer == "dense_1" and d.message.startswith("60% of dense_1's units are dead")
    assert "the most dense_2 (95%)" in d.message


def test_each_kind_is_reported_once() -> None:
    _, layers = layers_for()
    recs = [record(s, [4e-8, 1e-6, 1e-4, 1e-2, 0.5]) for s in range(30)]
    assert [d.kind for d in diagnose(recs, layers)] == ["vanishing"]


@pytest.mark.parametrize(
    ("field", "value", "norms", "fires"),
    [
        ("vanishing_ratio", 1e-9, [4e-8, 1e-6, 1e-4, 1e-2, 0.5], False),
        ("exploding_norm", 1e9, [2e7, 2e7, 2e7, 2e7, 2e7], False),
        ("window", 1, [4e-8, 1e-6, 1e-4, 1e-2, 0.5], True),
    ],
)
def test_thresholds_are_overridable(field: str, value: float, norms: list[float], fires: bool) -> None:
    _, layers = layers_for()
    t = Thresholds(**{field: value})
    d = Diagnoser(layers, t)
    found = d.feed(record(0, norms))
    if field == "window":
        assert [x.kind for x in found] == ["vanishing"]
    else:
        d.feed_all([record(s, norms) for s in range(1, 5)])
        assert (len(d.diagnoses) > 0) == fires


def test_monitor_table_overrides_thresholds_in_a_preset() -> None:
    p = loads(
        STACK.format(act="sigmoid", init='"glorot_uniform"')
        + "\n[monitor]\nvanishing_ratio = 1e-9\nwindow = 5\n"
    )
    assert p.monitor.thresholds.vanishing_ratio == 1e-9 and p.monitor.thresholds.window == 5


def test_fix_applies_to_the_preset() -> None:
    preset, layers = layers_for()
    (v,) = diagnose([record(s, [4e-8, 1e-6, 1e-4, 1e-2, 0.5]) for s in range(3)], layers)
    fixed = apply_fix(preset, v.fix)
    assert isinstance(fixed, Preset)
    assert fixed.layers[0].activation == Spec("relu") and fixed.layers[0].initializer == Spec("he_normal")
    assert fixed.layers[1] == preset.layers[1]
    clipped = apply_fix(preset, {"train": {"clipnorm": 1.0}})
    assert clipped.train.clipnorm == 1.0


def test_nan_right_after_huge_gradients_also_reports_exploding() -> None:
    _, layers = layers_for("relu", '{ name = "random_normal", stddev = 1.0 }')
    d = Diagnoser(layers)
    d.feed(record(0, [2e7, 1e7, 1e6, 1e5, 1e3], loss=3e7))
    found = d.feed(record(1, [math.nan] * 5, loss=math.nan, nonfinite=[5, 5, 5, 5, 5]))
    assert [x.kind for x in found] == ["non_finite", "exploding"]
    assert found[1].step == 0 and found[1].layer == "dense"


@pytest.mark.parametrize("seed", range(12))
def test_batched_feeding_finds_the_same_diagnoses_at_the_same_steps(seed: int) -> None:
    """feed_all's fast path (rules checked for a whole drain at once) equals record by record."""
    import random

    rng = random.Random(seed)
    _, layers = layers_for(rng.choice(["sigmoid", "relu", "tanh"]), '"glorot_uniform"')
    recs = []
    onset = {k: rng.randrange(0, 120) for k in ("vanish", "explode", "sat", "dead", "nan", "grow")}
    chosen = set(rng.sample(sorted(onset), rng.randrange(0, 4)))
    for s in range(150):
        norms = [rng.uniform(0.3, 1.0) for _ in range(5)]
        loss, weight, nonfinite = rng.uniform(1, 3), 1.0, None
        if "vanish" in chosen and s >= onset["vanish"]:
            norms[0] *= 10 ** rng.uniform(-6, -2)
        if "explode" in chosen and s >= onset["explode"] and rng.random() < 0.7:
            norms[1] *= 10 ** rng.uniform(3, 6)
        if "grow" in chosen and s >= onset["grow"]:
            weight = 1.0 + (s - onset["grow"])
        if "nan" in chosen and s == onset["nan"]:
            norms[2], loss, nonfinite = math.nan, math.nan, [0, 0, 4, 0, 0]
        act = {}
        if "sat" in chosen and s >= onset["sat"]:
            act["dense_1"] = {"saturation": rng.uniform(0.3, 1.0)}
        if "dead" in chosen and s >= onset["dead"]:
            act["dense_2"] = {"dead": rng.uniform(0.3, 1.0)}
        recs.append(record(s, norms, loss=loss, weight=weight, act=act, nonfinite=nonfinite))
    one = Diagnoser(layers)
    for r in recs:
        one.feed(r)
    batched = Diagnoser(layers)
    i = 0
    while i < len(recs):
        n = rng.randrange(1, 40)
        batched.feed_all(recs[i : i + n])
        i += n
    assert [d.to_dict() for d in batched.diagnoses] == [d.to_dict() for d in one.diagnoses]


# --------------------------------------------------------------------------- issue 14


def test_a_condition_that_stops_holding_gets_cleared_step_and_stays() -> None:
    _, layers = layers_for()
    bad = [1e-3, 0.6, 0.55, 0.7, 2.0]  # dense at 5e-4 x the top; 500x less than healthy
    recs = [record(s, bad) for s in range(5)] + [record(s, HEALTHY) for s in range(5, 12)]
    d = Diagnoser(layers)
    d.feed_all(recs)
    (v,) = d.diagnoses
    # the window median is healthy again once 2 of its 3 records are: at step 6
    assert v.kind == "vanishing" and v.step == 2 and v.cleared_step == 6
    assert v.to_dict()["cleared_step"] == 6
    # it comes back: the same entry, cleared_step reset, not reported as new
    assert d.feed_all([record(s, bad) for s in range(12, 16)]) == []
    assert d.diagnoses == [v] and v.cleared_step is None and "cleared_step" not in v.to_dict()


def test_cleared_step_is_the_same_record_by_record_and_in_blocks() -> None:
    _, layers = layers_for()
    bad = [1e-3, 0.6, 0.55, 0.7, 2.0]  # dense at 5e-4 x the top; 500x less than healthy
    recs = [record(s, bad if (s // 7) % 2 == 0 else HEALTHY) for s in range(40)]
    one = Diagnoser(layers)
    for r in recs:
        one.feed(r)
    block = Diagnoser(layers)
    block.feed_all(recs[:13])
    block.feed_all(recs[13:])
    assert [x.to_dict() for x in one.diagnoses] == [x.to_dict() for x in block.diagnoses]
    assert one.diagnoses[0].cleared_step is not None  # steps 35..39 are healthy


def test_nothing_clears_after_non_finite() -> None:
    _, layers = layers_for()
    bad = [4e-8, 1e-6, 1e-4, 1e-2, 0.5]
    recs = [record(s, bad) for s in range(4)]
    recs.append(record(4, bad, loss=math.nan))
    recs += [record(s, HEALTHY) for s in range(5, 10)]
    kinds = {x.kind: x for x in diagnose(recs, layers)}
    assert kinds["vanishing"].cleared_step is None and kinds["non_finite"].cleared_step is None


def test_one_sided_saturation_names_the_layer_and_the_side() -> None:
    _, layers = layers_for()
    act = {n: {"act_mean": 0.5} for n in ("dense", "dense_1", "dense_2")}
    act["dense_3"] = {"act_mean": 0.04, "saturation": 0.2}  # not past the flat 8%: saturation misses it
    (d,) = diagnose([record(i, HEALTHY, act=act) for i in range(3)], layers)
    assert d.kind == "one_sided_saturation" and d.layer == "dense_3" and d.layers == ["dense_3"]
    assert "toward 0 (sigmoid: mean 0.04" in d.message and "0.5..0.5" in d.message
    assert "Glorot" in d.advice and d.fix == {"entries": [0], "set": {"batch_norm": "before"}}
    _, tanh = layers_for("tanh")
    high = {"dense_1": {"act_mean": 0.93}}
    (t,) = diagnose([record(i, HEALTHY, act=high) for i in range(3)], tanh)
    assert t.layer == "dense_1" and "toward 1 (tanh" in t.message
    middle = {"dense_1": {"act_mean": 0.3}}
    assert diagnose([record(i, HEALTHY, act=middle) for i in range(3)], layers) == []


def ratios(value: float, top: float | None = None) -> dict:
    out = {n: {"update_ratio": value} for n in ("dense", "dense_1", "dense_2", "dense_3")}
    out["dense_4"] = {"update_ratio": value if top is None else top}
    return out


def test_learning_rate_too_small_scales_it_to_the_target_ratio() -> None:
    _, layers = layers_for("relu", '"he_normal"')
    d = Diagnoser(layers, train=TrainSpec(learning_rate=1e-5))
    d.feed_all([record(s, HEALTHY, act=ratios(1e-6)) for s in range(3)])
    (lr,) = d.diagnoses
    assert (
        lr.kind == "learning_rate"
        and "do not move" in lr.message
        and lr.layers == ["dense", "dense_1", "dense_2", "dense_3", "dense_4"]
    )
    assert lr.fix == {"train": {"learning_rate": 0.01}} and "to 0.01" in lr.advice


def test_learning_rate_too_large_names_the_layers_that_jump() -> None:
    _, layers = layers_for("relu", '"he_normal"')
    d = Diagnoser(layers, train=TrainSpec(learning_rate=1.0))
    d.feed_all([record(s, HEALTHY, act=ratios(1e-3, top=0.5)) for s in range(3)])
    (lr,) = d.diagnoses
    assert lr.layer == "dense_4" and "too large" in lr.message
    assert lr.fix == {"train": {"learning_rate": 0.002}}
    # one layer that does not move while the others do is not the learning rate's fault
    quiet = ratios(1e-3)
    quiet["dense"] = {"update_ratio": 1e-8}
    assert diagnose([record(s, HEALTHY, act=quiet) for s in range(3)], layers) == []
    # dead units do not move: that is the dead_units diagnosis, not the learning rate
    dead = ratios(0.0)
    dead["dense_1"]["dead"] = 0.9
    assert [x.kind for x in diagnose([record(s, HEALTHY, act=dead) for s in range(3)], layers)] == [
        "dead_units"
    ]


def test_not_learning_needs_the_plateau_and_nothing_else_raised() -> None:
    _, layers = layers_for("relu", '"he_normal"')
    chance = math.log(10)
    flat = [record(s, HEALTHY, loss=chance + 0.01 * (-1) ** s) for s in range(260)]
    found = diagnose(flat, layers)
    assert [x.kind for x in found] == ["not_learning"]
    assert found[0].step == 200 and found[0].layer is None and "ln(10) = 2.3" in found[0].message
    learning = [record(s, HEALTHY, loss=chance - s / 400) for s in range(260)]
    assert diagnose(learning, layers) == []
    vanishing = [record(s, [4e-8, 1e-6, 1e-4, 1e-2, 0.5], loss=chance) for s in range(260)]
    assert [x.kind for x in diagnose(vanishing, layers)] == ["vanishing"]


def infos(*types: str) -> list:
    """LayerInfo rows of the given Keras types, the last one the Dense output layer."""
    from gradtui.stack import LayerInfo

    out = []
    for i, t in enumerate(types):
        out.append(
            LayerInfo(f"l{i}", t, i, (8,), params=10, trainable=10, activation="relu", fan_in=8, fan_out=8)
        )
    out[-1].is_output = True
    return out


def rec(step: int, norms: dict[str, float]) -> dict:
    return {
        "step": step,
        "loss": 2.3,
        "layers": {n: {"grad_norm": g, "weight_norm": 1.0, "nonfinite": 0} for n, g in norms.items()},
    }


def test_depth_spans_every_weighted_layer_but_not_normalization() -> None:
    layers = infos("Conv2D", "BatchNormalization", "LSTM", "Embedding", "LayerNormalization", "Dense")
    norms = {"l0": 1e-7, "l1": 1e-9, "l2": 0.5, "l3": 0.5, "l4": 1e-9, "l5": 0.5}
    (v,) = diagnose([rec(s, norms) for s in range(3)], layers)
    assert v.kind == "vanishing" and v.layers == ["l0"]  # conv counts, the norms' tiny ones do not
    big = {"l0": 0.5, "l1": 0.5, "l2": 5e6, "l3": 0.5, "l4": 0.5, "l5": 0.5}
    (e,) = diagnose([rec(s, big) for s in range(3)], layers, train=TrainSpec())
    assert e.kind == "exploding" and e.layer == "l2"
    assert "explodes through time" in e.advice and e.fix == {"train": {"clipnorm": 1.0}}


def test_a_block_is_read_by_column_name() -> None:
    """feed_block reads Records.field by name: a drain with extra columns (e.g. act_mean or
    recurrent_grad_norm) or without them gives the same diagnoses as its records."""

    class Block:
        def __init__(self, recs: list[dict]) -> None:
            self.recs = recs
            self.names = list(recs[0]["layers"])
            self.steps = [r["step"] for r in recs]
            self.losses = [r["loss"] for r in recs]

        def __len__(self) -> int:
            return len(self.recs)

        def field(self, key: str):
            import numpy as np

            if key not in ("grad_norm", "weight_norm", "nonfinite", "update_ratio", "act_mean"):
                raise KeyError(key)
            return np.array([[r["layers"][n].get(key, math.nan) for n in self.names] for r in self.recs])

    _, layers = layers_for()
    act = {"dense_3": {"act_mean": 0.04}}
    recs = [record(s, HEALTHY, act=act) for s in range(5)]
    from_block = Diagnoser(layers)
    from_block.feed_block(Block(recs))
    assert [x.to_dict() for x in from_block.diagnoses] == [x.to_dict() for x in diagnose(recs, layers)]
    assert [x.kind for x in from_block.diagnoses] == ["one_sided_saturation"]


# --------------------------------------------------------------------------- one-step catastrophe


def _rnn_record(step: int, rnn: dict, loss: float = 4.0) -> dict:
    dense = {"grad_norm": 20.0, "weight_norm": 1.3, "update_ratio": 0.8, "nonfinite": 0}
    return {"step": step, "epoch": 0, "loss": loss, "layers": {"simple_rnn": rnn, "dense": dense}}


def _rnn_layers():
    preset = loads(
        '[data]\ndataset = "adding"\n[[layers]]\ntype = "simple_rnn"\nunits = 32\n'
        'recurrent_initializer = { name = "random_normal", stddev = 0.5 }\n'
        '[[layers]]\ntype = "dense"\nunits = 1\n[train]\nloss = "mse"\n'
    )
    return plan(preset, (50, 2), None)


def test_one_step_that_throws_the_weights_out_is_exploding_not_vanishing() -> None:
    """Measured on benchmarks/scenarios/rnn-wild.toml: step 0's gradient 1.7e5 moved the
    SimpleRNN by its own size (weights 16 -> 9263); from step 1 on it is saturated with a
    gradient of ~0. The median window hides step 0; the first step alone is exploding, and what
    follows from it (saturation, vanishing, the learning rate) is not raised beside it."""
    thrown = {"grad_norm": 1.7e5, "weight_norm": 9263.0, "update_ratio": 0.99998, "nonfinite": 0}
    stuck = {"grad_norm": 0.0, "weight_norm": 9263.0, "update_ratio": 0.0, "nonfinite": 0, "saturation": 1.0}
    recs = [_rnn_record(0, {**thrown, "saturation": 0.45}, 1.7)] + [
        _rnn_record(s, stuck) for s in range(1, 30)
    ]
    d = Diagnoser(_rnn_layers(), initial_weights={"simple_rnn": 16.3, "dense": 1.0})
    found = d.feed(recs[0])
    assert [x.kind for x in found] == ["exploding"] and found[0].step == 0
    assert "by its own size" in found[0].message and "16.3 -> 9.26e+03" in found[0].message
    d.feed_all(recs[1:])
    assert [(x.kind, x.cleared_step) for x in d.diagnoses] == [("exploding", None)]
    # without the initial norms (a user's records only) the huge gradient of that step suffices
    assert [x.kind for x in diagnose(recs, _rnn_layers())][:1] == ["exploding"]


def test_a_zero_initialized_layer_moving_by_its_size_once_is_not_exploding() -> None:
    """A layer that starts at 0 moves by ‖Δw‖/‖w‖ = 1 on its first step, harmlessly."""
    first = {"grad_norm": 0.5, "weight_norm": 0.01, "update_ratio": 1.0, "nonfinite": 0, "saturation": 0.1}
    later = {"grad_norm": 0.5, "weight_norm": 0.011, "update_ratio": 1e-3, "nonfinite": 0, "saturation": 0.1}
    recs = [_rnn_record(0, first, 0.3)] + [_rnn_record(s, later, 0.3) for s in range(1, 10)]
    d = Diagnoser(_rnn_layers(), initial_weights={"simple_rnn": 0.0, "dense": 1.0})
    d.feed_all(recs)
    assert "exploding" not in [x.kind for x in d.diagnoses]


def test_a_recurrent_layer_gets_recurrent_remedies() -> None:
    """Saturated, vanishing or exploding, a SimpleRNN whose recurrent kernel has a gain above 1
    (N(0, 0.5²) on 32 units: ~2.8) is told about its recurrent kernel, never relu, he_normal or
    batch_norm (which change the cell and, applied, sent the loss to inf)."""
    layers = _rnn_layers()
    sat = {"grad_norm": 1e-6, "weight_norm": 16.0, "update_ratio": 1e-3, "nonfinite": 0, "saturation": 0.99}
    recs = [_rnn_record(s, sat, 0.2) for s in range(5)]
    found = {x.kind: x for x in diagnose(recs, layers, train=TrainSpec())}
    assert {"saturation", "vanishing"} <= found.keys(), found
    for d in found.values():
        if d.layer != "simple_rnn":
            continue
        assert "recurrent_initializer = 'orthogonal'" in d.advice and "2.8" in d.advice, d.advice
        assert not any(w in d.advice for w in ("relu", "he_normal", "batch_norm")), d.advice
        assert d.fix == {
            "entries": [0],
            "set": {"recurrent_initializer": "orthogonal"},
            "train": {"clipnorm": 1.0},
        }
    # an orthogonal kernel already: a SimpleRNN's remedy is its cell, an LSTM's clipping
    ortho = [replace(x, recurrent_initializer=Spec("orthogonal")) for x in layers]
    (v,) = [x for x in diagnose(recs, ortho, train=TrainSpec()) if x.kind == "saturation"]
    assert "use lstm or gru" in v.advice and v.fix["set"]["type"] == "lstm"
    lstm = [replace(x, type="LSTM") if x.name == "simple_rnn" else x for x in ortho]
    (v,) = [x for x in diagnose(recs, lstm, train=TrainSpec()) if x.kind == "saturation"]
    assert v.fix == {"train": {"clipnorm": 1.0}} and "relu" not in v.advice


def test_bn_statistics_raises_on_a_mode_gap_names_the_layers_and_clears() -> None:
    """One validation batch scored with BatchNorm's moving statistics and with its own: a gap
    of 0.57 in accuracy (batchnorm-sigmoid, measured) is bn_statistics; the fix is momentum 0.9."""
    preset = loads(
        STACK.format(act="sigmoid", init='"glorot_uniform"').replace(
            "repeat = 4", 'batch_norm = "before"\nrepeat = 4'
        )
    )
    layers = plan(preset, (64,), 10)
    d = Diagnoser(layers, train=preset.train)
    assert d.judge_modes(50, 0.80, 0.85, metric="accuracy") == []  # a small gap is noise
    (found,) = d.judge_modes(100, 0.37, 0.94, metric="accuracy")
    bn = [x.name for x in layers if x.type == "BatchNormalization"]
    assert found.kind == "bn_statistics" and found.layers == bn and len(bn) == 4
    assert "0.37 in inference mode, 0.94" in found.message and "momentum 0.99" in found.message
    assert found.fix == {"train": {"batch_norm_momentum": 0.9}}
    assert "batch_norm_momentum = 0.9" in found.advice
    assert apply_fix(preset, found.fix).train.batch_norm_momentum == 0.9
    assert d.judge_modes(150, 0.9, 0.92, metric="accuracy") == [] and found.cleared_step == 150
    # a regression compares losses; a stack without BatchNorm is never judged
    r = Diagnoser(layers, train=preset.train)
    assert [x.kind for x in r.judge_modes(9, 0.5, 0.1, metric="loss")] == ["bn_statistics"]
    _, plain_layers = layers_for()
    assert Diagnoser(plain_layers).judge_modes(9, 0.1, 0.9, metric="accuracy") == []


def test_dead_layers_with_no_gradient_are_dead_units_not_vanishing() -> None:
    """conv-dead-relu, measured: every hidden layer 100% dead with a gradient of exactly 0. That
    is the dead units' doing (their fix cures it); a lower layer that is alive and still gets a
    tiny gradient (deep-plain) is vanishing."""
    _, layers = layers_for("relu", '"he_normal"')
    dead = {n: {"dead": 1.0} for n in ("dense", "dense_1", "dense_2", "dense_3")}
    found = diagnose([record(s, [0.0, 0.0, 0.0, 0.0, 0.2], act=dead) for s in range(5)], layers)
    assert [d.kind for d in found] == ["dead_units"]
    top_dead = {"dense_3": {"dead": 0.7}, "dense": {"dead": 0.1}}
    found = diagnose([record(s, [1e-9, 1e-7, 1e-5, 1e-3, 0.2], act=top_dead) for s in range(5)], layers)
    assert [d.kind for d in found] == ["vanishing", "dead_units"]
    assert found[0].layers == ["dense", "dense_1", "dense_2"]


@pytest.mark.parametrize(
    ("preset_advice", "keras_advice"),
    [
        (
            "dense..dense_6 use sigmoid with glorot_uniform: use relu with he_normal, or batch_norm = 'before'",
            "dense..dense_6 use activation='sigmoid' with kernel_initializer='glorot_uniform': "
            "use activation='relu' with "
            "kernel_initializer='he_normal', or a BatchNormalization layer between each layer and its activation",
        ),
        ("set clipnorm = 1.0 in [train]", "pass clipnorm=1.0 to the optimizer"),
        (
            "set batch_norm_momentum = 0.9 in [train]",
            "set momentum=0.9 on each BatchNormalization layer",
        ),
        (
            "recurrent_initializer = 'orthogonal' (gain 1), and clipnorm = 1.0",
            "recurrent_initializer='orthogonal' (gain 1), and clipnorm=1.0 on the optimizer",
        ),
        (
            "add residual = true (each block keeps a path)",
            "add skip connections (keras.layers.Add of each block's input and output) (each block keeps a path)",
        ),
    ],
)
def test_advice_for_a_watch_user_is_in_keras_terms(preset_advice: str, keras_advice: str) -> None:
    from gradtui.diagnosis import keras_terms

    assert keras_terms(preset_advice) == keras_advice


def test_a_diagnoser_without_a_preset_advises_in_keras_terms() -> None:
    from gradtui.diagnose import Diagnoser

    _, layers = layers_for()
    recs = [record(i, [1e-7, 1e-5, 1e-3, 1e-1, 1.0]) for i in range(3)]
    preset_d = Diagnoser(layers)
    keras_d = Diagnoser(layers, keras_terms=True)
    for r in recs:
        preset_d.feed(r)
        keras_d.feed(r)
    (p,) = [d for d in preset_d.diagnoses if d.kind == "vanishing"]
    (k,) = [d for d in keras_d.diagnoses if d.kind == "vanishing"]
    assert "batch_norm = 'before'" in p.advice
    assert " = " not in k.advice and "[train]" not in k.advice and "BatchNormalization" in k.advice
