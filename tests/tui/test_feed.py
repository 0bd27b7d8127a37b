"""The data path to the screen, without Textual running: snapshots, stale-message replacement,
the shared log scale, the stack edits."""

from __future__ import annotations

import math

import pytest

from gradtui.diagnose import Diagnosis
from gradtui.errors import PresetError
from gradtui.history import History
from gradtui.preset import load
from gradtui.tui import edit
from gradtui.tui.feed import snapshot_from_history
from gradtui.tui.messages import StatsUpdated, TrainingEnded, TrainingStatus
from gradtui.tui.render import BLOCKS, braille_chart, log_range, log_sparkline
from gradtui.tui.trainer import TuiListener


def _record(step: int, low: float, high: float) -> dict:
    return {
        "step": step,
        "epoch": 0,
        "loss": 2.3,
        "layers": {
            "dense": {"grad_norm": low, "update_ratio": 1e-9, "nonfinite": 0, "saturation": 0.1},
            "dense_1": {"grad_norm": high, "update_ratio": 1e-3, "nonfinite": 0},
        },
    }


def test_a_newer_snapshot_replaces_a_stale_one_and_nothing_else() -> None:
    history = History()
    history.add(_record(0, 1e-8, 1.0))
    a = StatsUpdated(snapshot_from_history(history))
    b = StatsUpdated(snapshot_from_history(history))
    assert b.can_replace(a)
    assert not b.can_replace(TrainingEnded({}, None))
    assert not TrainingEnded({}, None).can_replace(a)
    assert TrainingStatus("x").can_replace(TrainingStatus("y"))


def test_listener_snapshots_carry_every_diagnosis_so_far() -> None:
    posted: list = []
    listener = TuiListener(posted.append, clock=lambda: 10.0)
    history = History()
    d1 = Diagnosis("vanishing", "dense", 2, "error", "m", "a")
    d2 = Diagnosis("saturation", "dense", 5, "warning", "m", "a")
    history.add(_record(0, 1e-8, 1.0))
    listener.on_records([], [d1], history)
    history.add(_record(1, 1e-8, 1.0))
    listener.on_records([], [d2], history)
    listener.on_epoch(0, {"loss": 2.0, "accuracy": 0.5})
    snaps = [m.snapshot for m in posted if isinstance(m, StatsUpdated)]
    assert [d.kind for d in snaps[-1].diagnoses] == ["vanishing", "saturation"]
    assert snaps[-1].epoch_logs[-1]["_step"] == 2.0
    # a snapshot is a copy: later records do not change what was posted
    history.add(_record(2, 1e-8, 1.0))
    assert len(snaps[0].rows[0].grad) == 1


def test_shared_log_scale_draws_small_gradients_low() -> None:
    low, high = [1e-8] * 5, [1.0] * 5
    scale = log_range([low, high])
    assert scale == (-8.0, 0.0)
    assert log_sparkline(low, 5, scale).plain == BLOCKS[0] * 5
    assert log_sparkline(high, 5, scale).plain == BLOCKS[-1] * 5
    assert log_sparkline([math.nan, 0.0], 4, scale).plain == "  !·"


def test_braille_chart_has_the_size_asked() -> None:
    lines = braille_chart([([(0, 0), (10, 1)], "red")], 20, 4)
    assert len(lines) == 4 and all(len(line.plain) == 20 for line in lines)
    assert lines[0].plain.strip() and lines[-1].plain.strip()


def test_edits_validate_like_a_preset_file() -> None:
    preset = load("vanishing-sigmoid")
    added = edit.insert_layer(preset, 1)
    assert [s.activation_name for s in added.layers] == ["sigmoid", "relu", "softmax"]
    moved = edit.move_layer(added, 1, -1)
    assert [s.activation_name for s in moved.layers] == ["relu", "sigmoid", "softmax"]
    assert edit.delete_layer(edit.duplicate_layer(preset, 0), 0) == preset
    with pytest.raises(PresetError, match="units"):
        edit.replace_layer(preset, 0, {"type": "dense", "units": -1})
    clipped = edit.set_training(preset, {}, {"optimizer": "sgd", "clipnorm": 1.0}, 2)
    assert clipped.train.clipnorm == 1.0 and clipped.monitor.every == 2
    unclipped = edit.set_training(clipped, {}, {"optimizer": "sgd"}, 1)
    assert unclipped.train.clipnorm is None
