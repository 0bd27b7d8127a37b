"""A drain's arrays (``probe.Records``) feed stats.jsonl, the history and the diagnoser in bulk.

Each bulk path must give exactly what the record-by-record path gives with the records
``Records.to_records`` builds: the same bytes in stats.jsonl, the same series, the same
diagnoses at the same steps. No TensorFlow: the arrays are generated.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from test_diagnose import STACK, layers_for

from gradtui.diagnose import Diagnoser
from gradtui.history import History, Series
from gradtui.probe import K, Records, Tracked
from gradtui.runlog import RunDir, dumps_record, read_run
from gradtui.stack import plan

NAMES = ["dense", "dense_1", "dense_2", "dense_3", "dense_4"]


def tracked(kinds: list[str | None]) -> list[Tracked]:
    return [
        Tracked(n, "x", kind, n if kind else None, [2 * i, 2 * i + 1], True, i == len(NAMES) - 1)
        for i, (n, kind) in enumerate(zip(NAMES, kinds, strict=True))
    ]


def block(rng: np.random.Generator, start: int, n: int, layers: list[Tracked], epoch: int = 0) -> Records:
    """n rows of plausible statistics (update smaller than the weights; taps in [0, 1])."""
    stats = np.empty((n, len(layers), K))
    stats[:, :, 0] = 10 ** rng.uniform(-8, 2, (n, len(layers)))
    stats[:, :, 1] = stats[:, :, 0] / rng.uniform(2, 20, (n, len(layers)))
    stats[:, :, 2] = rng.uniform(0.5, 20, (n, len(layers)))
    stats[:, :, 3] = stats[:, :, 2] * 10 ** rng.uniform(-6, -1, (n, len(layers)))
    stats[:, :, 4] = 0.0
    tapped = np.array([t.act_kind is not None for t in layers])
    stats[:, :, 5] = np.where(tapped, rng.uniform(0, 1, (n, len(layers))), -1.0)
    stats[:, :, 6] = np.where(tapped, rng.uniform(0, 1, (n, len(layers))), math.nan)
    stats[:, :, 7] = math.nan  # no recurrent layers here
    steps = np.arange(start, start + n, dtype=np.int64)
    return Records(steps, rng.uniform(0.1, 3, n), stats, epoch, layers)


def same_as_records(got: list[dict], want: list[dict]) -> None:
    """Parsed stats.jsonl lines are the records: same keys in the same order, integers as
    integers, floats as floats within the 9 significant digits written, NaN/Inf as strings."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert list(g) == list(w) and list(g["layers"]) == list(w["layers"])
        pairs = [(g[k], w[k]) for k in ("step", "epoch", "loss")]
        for name, entry in w["layers"].items():
            assert list(g["layers"][name]) == list(entry)
            pairs += [(g["layers"][name][k], v) for k, v in entry.items()]
        for a, b in pairs:
            assert type(a) is type(b) or isinstance(a, str), (a, b)
            if isinstance(a, str):
                assert not math.isfinite(b) and dumps_record({"x": b}) == f'{{"x":"{a}"}}'
            else:
                assert a == pytest.approx(b, rel=5e-9, abs=0), (a, b)


def test_jsonl_from_the_template_is_what_json_writes_for_the_records(tmp_path) -> None:
    """Including NaN/Inf rows (written as strings), zeros (written as floats), zero weights and a
    layer name with % and "."""
    rng = np.random.default_rng(0)
    layers = tracked(["saturation", "dead", None, "saturation", None])
    layers[2].name = 'odd%d"name'
    b = block(rng, 7, 12, layers, epoch=3)
    b.stats[2, 1, 0] = math.nan  # a NaN gradient norm ...
    b.stats[2, 1, 4] = 5  # ... from 5 NaN gradients
    b.losses[4] = math.inf
    b.stats[5, 3, 2] = 0.0  # zero weights: update_ratio is 0 (no update) or inf
    b.stats[5, 3, 3] = 0.0
    b.stats[6, 4, 2] = 0.0
    b.stats[7, 0, :2] = 0.0  # a layer with no gradient at all
    b.losses[8] = 3.0
    b.losses[9] = 130269484.4  # %.9g would print these as integers
    b.losses[10] = 1.0000000001
    b.losses[11] = 1e20
    b.stats[3, 2, 0] = 99999999.97
    text = b.to_jsonl()
    records = [json.loads(line) for line in text.splitlines()]
    same_as_records(records, b.to_records())
    assert [r["step"] for r in records] == list(range(7, 19))
    assert {r["epoch"] for r in records} == {3}
    first = records[0]["layers"]
    assert list(first) == [t.name for t in layers]
    assert list(first["dense"]) == [
        "grad_norm",
        "grad_max",
        "weight_norm",
        "update_ratio",
        "nonfinite",
        "saturation",
        "act_mean",
    ]
    assert list(first["dense_1"])[-2:] == ["dead", "act_mean"] and "saturation" not in first["dense_1"]
    assert first["dense"]["update_ratio"] == pytest.approx(b.stats[0, 0, 3] / b.stats[0, 0, 2])
    assert records[2]["layers"]["dense_1"] == {
        **records[2]["layers"]["dense_1"],
        "grad_norm": "nan",
        "nonfinite": 5,
    }
    assert records[4]["loss"] == "inf"
    assert records[5]["layers"]["dense_3"]["update_ratio"] == 0.0
    assert records[6]["layers"]["dense_4"]["update_ratio"] == "inf"
    assert isinstance(records[7]["layers"]["dense"]["grad_norm"], float) and records[8]["loss"] == 3.0
    assert [records[i]["loss"] for i in (9, 10, 11)] == pytest.approx([130269484.4, 1.0, 1e20], rel=1e-9)
    run = RunDir(tmp_path / "run")
    run.append_lines(text)
    run.close()
    back = read_run(tmp_path / "run").records
    assert math.isnan(back[2]["layers"]["dense_1"]["grad_norm"]) and back[4]["loss"] == math.inf


def test_a_record_without_layers_is_still_json() -> None:
    b = Records(np.arange(2), np.array([1.5, math.nan]), np.zeros((2, 0, K)), 0, [])
    assert [json.loads(line) for line in b.to_jsonl().splitlines()] == [
        {"step": 0, "epoch": 0, "loss": 1.5, "layers": {}},
        {"step": 1, "epoch": 0, "loss": "nan", "layers": {}},
    ]


@pytest.mark.parametrize("size", [4, 16, 256])
def test_series_extend_equals_adding_point_by_point(size: int) -> None:
    rng = random.Random(size)
    one, bulk = Series(size), Series(size)
    step = 0
    for _ in range(200):
        n = rng.randrange(0, 60)
        values = [rng.uniform(-5, 5) if rng.random() > 0.02 else math.inf for _ in range(n)]
        steps = list(range(step, step + n))
        step += n
        for s, v in zip(steps, values, strict=True):
            one.add(s, v)
        bulk.extend(steps, values)
        assert (bulk.steps, bulk.points(), bulk.stride, bulk.count) == (
            one.steps,
            one.points(),
            one.stride,
            one.count,
        )
        assert bulk.last == one.last or (math.isnan(bulk.last) and math.isnan(one.last))


def test_history_from_blocks_equals_history_from_records() -> None:
    rng = np.random.default_rng(1)
    layers = tracked(["saturation", "saturation", "dead", None, None])
    by_block, by_record = History(16), History(16)
    step = 0
    for epoch in range(40):
        b = block(rng, step, int(rng.integers(0, 30)), layers, epoch)
        step += len(b)
        by_block.add_block(b)
        by_record.extend(b.to_records())
    assert step > 16 * 16  # the series have downsampled several times
    assert by_block.last_step == by_record.last_step and by_block.last_epoch == by_record.last_epoch
    assert by_block.loss.points() == by_record.loss.points()
    assert by_block.layers.keys() == by_record.layers.keys()
    for name, series in by_record.layers.items():
        assert series.keys() == by_block.layers[name].keys()
        for key, s in series.items():
            got = by_block.layers[name][key]
            assert (got.steps, got.points(), got.stride, got.last) == (s.steps, s.points(), s.stride, s.last)


@pytest.mark.parametrize("seed", range(8))
def test_diagnoses_from_blocks_equal_diagnoses_from_records(seed: int) -> None:
    """Vanishing, exploding, NaN, saturation and dead units arrive at random steps; fed as arrays
    in drains of random sizes, the diagnoser finds what it finds from the records."""
    rng = np.random.default_rng(seed)
    act = ["sigmoid", "relu", "tanh"][seed % 3]
    _, infos = layers_for(act, '"glorot_uniform"')
    kind = "dead" if act == "relu" else "saturation"
    layers = tracked([kind, kind, kind, kind, None])
    assert [t.name for t in layers] == [i.name for i in infos if i.is_dense]
    b = block(rng, 0, 160, layers)
    onset = rng.integers(0, 120, 5)
    b.stats[onset[0] :, 0, 0] *= 1e-7  # the first layer's gradient vanishes
    b.stats[onset[1] :, 1, 0] *= 1e5  # one layer's gradient explodes
    b.stats[onset[2] :, 2, 5] = 0.99  # saturated / dead
    if seed % 2:
        b.stats[onset[3], 3, 0] = math.nan
        b.stats[onset[3], 3, 4] = 3
        b.losses[onset[3]] = math.nan
    from_records = Diagnoser(infos)
    from_records.feed_all(b.to_records())
    from_blocks = Diagnoser(infos)
    i = 0
    while i < len(b):
        n = int(rng.integers(1, 40))
        part = slice(i, i + n)
        from_blocks.feed_block(Records(b.steps[part], b.losses[part], b.stats[part], 0, layers))
        i += n
    assert from_records.diagnoses, "the scenario must raise something"
    assert [d.to_dict() for d in from_blocks.diagnoses] == [d.to_dict() for d in from_records.diagnoses]


def test_a_diagnoser_started_on_other_names_maps_the_block_by_name() -> None:
    """Layers the block has in another order (or lacks) are matched by name."""
    _, infos = layers_for("sigmoid", '"glorot_uniform"')
    layers = tracked(["saturation", None, None, None, None])
    rng = np.random.default_rng(2)
    b = block(rng, 0, 30, layers)
    b.stats[:, 0, 0] *= 1e-7
    reordered = Diagnoser(infos)
    reordered.feed_block(Records(b.steps, b.losses, b.stats[:, ::-1], 0, layers[::-1]))
    in_order = Diagnoser(infos)
    in_order.feed_block(b)
    assert "vanishing" in [x.kind for x in in_order.diagnoses]
    assert [x.to_dict() for x in reordered.diagnoses] == [x.to_dict() for x in in_order.diagnoses]


def test_stack_fixture_still_matches() -> None:
    """The names this file assumes are the ones plan() gives the shared test stack."""
    from gradtui.preset import loads

    assert [
        i.name for i in plan(loads(STACK.format(act="relu", init='"he_normal"')), (64,), 10) if i.is_dense
    ] == NAMES
