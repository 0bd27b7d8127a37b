"""The bounded, downsampling history: fixed size, faithful means, the newest value kept."""

from __future__ import annotations

import math
import tracemalloc

from gradtui.history import History, Series, sparkline


def reference(values: list[float], size: int) -> tuple[list[float], list[int], int]:
    """What a downsampling series must keep, computed the slow obvious way."""
    kept: list[float] = []
    steps: list[int] = []
    stride, acc, acc_step = 1, [], 0
    for step, v in enumerate(values):
        if not acc:
            acc_step = step
        acc.append(v)
        if len(acc) < stride:
            continue
        kept.append(sum(acc) / len(acc))
        steps.append(acc_step)
        acc = []
        if len(kept) >= size:
            kept = [(kept[i] + kept[i + 1]) / 2 for i in range(0, len(kept), 2)]
            steps = steps[::2]
            stride *= 2
    partial = [sum(acc) / len(acc)] if acc else []
    return kept + partial, steps, stride


def test_a_series_stays_within_its_size_and_averages_faithfully() -> None:
    values = [math.sin(i / 7.0) + i / 100 for i in range(5000)]
    s = Series(16)
    for step, v in enumerate(values):
        s.add(step, v)
        assert len(s.points()) <= 16 + 1
    points, steps, stride = reference(values, 16)
    assert s.points() == points
    assert s.steps == steps and s.stride == stride
    assert s.count == 5000 and s.last == values[-1]


def test_a_series_keeps_the_newest_raw_value_and_the_partial_bucket() -> None:
    s = Series(4)
    assert math.isnan(s.last) and s.points() == [] and not s._acc
    for step in range(9):
        s.add(step, float(step))
    assert s.last == 8.0
    assert s.stride == 4 and s._acc  # 8 is alone in the newest bucket
    assert s.points()[-1] == 8.0


def test_history_is_bounded_by_size_not_by_steps() -> None:
    def record(step: int) -> dict:
        layers = {
            f"dense_{i}": {"grad_norm": 1e-3 * (i + 1), "weight_norm": 1.0, "dead": 0.1} for i in range(4)
        }
        return {"step": step, "epoch": 0, "loss": 2.3, "layers": layers}

    def footprint(n: int) -> int:
        tracemalloc.start()
        h = History(64)
        h.extend(record(i) for i in range(n))
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert h.last_step == n - 1 and h.series("dense_0", "grad_norm").count == n
        return size

    small, large = footprint(1_000), footprint(50_000)
    assert large < small * 1.5


def test_latest_series_and_sparkline() -> None:
    h = History(8)
    h.add({"step": 0, "loss": 2.0, "layers": {"a": {"grad_norm": 1.0}}})
    h.add({"step": 1, "loss": float("nan"), "layers": {"a": {"grad_norm": 0.0, "dead": 0.5}}})
    assert h.latest("a") == {"grad_norm": 0.0, "dead": 0.5}
    assert h.series("a", "missing") is None and h.series("b", "grad_norm") is None
    assert h.loss.points()[0] == 2.0 and math.isnan(h.loss.last)
    assert sparkline([1.0, 10.0, 0.0, float("nan")], 4) == "▁█ !"


def test_a_recurrent_layer_gets_a_monitor_row_for_its_recurrent_kernel() -> None:
    """The monitor draws a recurrent layer's input kernel and recurrent kernel as two rows."""
    import numpy as np

    from gradtui.feed import RECURRENT_MARK, snapshot_from_history
    from gradtui.probe import COLUMNS, Records, Tracked

    rows = [
        Tracked("rnn", "tanh", None, None, [0, 1, 2], False, False, type="SimpleRNN", recurrent=[1]),
        Tracked("out", "linear", None, None, [3, 4], True, True, type="Dense"),
    ]
    stats = np.full((4, 2, len(COLUMNS)), 0.5)
    stats[:, :, COLUMNS.index("act")] = -1.0
    stats[:, 0, COLUMNS.index("recurrent_grad_norm")] = [1e-3, 2e-3, 3e-3, 4e-3]
    stats[:, 1, COLUMNS.index("recurrent_grad_norm")] = np.nan
    history = History(64)
    history.add_block(Records(np.arange(4), np.ones(4), stats, 0, rows))
    snap = snapshot_from_history(history)
    assert [r.name for r in snap.rows] == ["rnn", f"{RECURRENT_MARK}rnn", "out"]
    assert snap.rows[1].grad == [1e-3, 2e-3, 3e-3, 4e-3] and snap.rows[1].grad_norm == 4e-3
