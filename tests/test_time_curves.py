"""A recurrent layer's gradient through time reaches the monitor's data: the history keeps each
layer's newest curve, whether it is fed live (the recorder's arrays) or from ``stats.jsonl``
(``gradtui open``, ``--follow``), and the snapshots carry it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradtui.feed import snapshot_from_history, snapshot_from_records, snapshot_from_run
from gradtui.history import TIME_EVERY, History, TimeCurve
from gradtui.runlog import read_run
from gradtui.source import Ended, RunSource

DATA = Path(__file__).parent / "tui" / "data"


def record(step: int, time_grads: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``stats.jsonl`` record of a SimpleRNN under a Dense layer."""
    out: dict[str, Any] = {
        "step": step,
        "epoch": 0,
        "loss": 2.3,
        "layers": {
            "rnn": {"grad_norm": 0.01, "recurrent_grad_norm": 0.02},
            "dense": {"grad_norm": 0.3},
        },
    }
    if time_grads is not None:
        out["time_grads"] = time_grads
    return out


def test_the_history_keeps_each_layers_newest_curve() -> None:
    history = History()
    history.add(record(0, {"rnn": {"t": [0, 2, 4], "grad_norm": [1e-6, 1e-4, 1e-2]}}))
    history.add(record(1))  # not measured at this step: the curve stays
    assert history.time["rnn"] == TimeCurve("rnn", 0, (0, 2, 4), (1e-6, 1e-4, 1e-2))
    # NaN and Inf come as strings in stats.jsonl
    history.add(record(10, {"rnn": {"t": [0, 2, 4], "grad_norm": ["nan", 0.5, "inf"]}}))
    curve = history.time["rnn"]
    assert curve.step == 10 and math.isnan(curve.first) and curve.last == math.inf
    assert math.isnan(curve.ratio)
    assert list(history.time) == ["rnn"]


def test_a_curves_first_last_and_ratio() -> None:
    curve = TimeCurve("rnn", 20, (0, 8, 16), (2e-5, 1e-3, 0.1))
    assert (curve.first, curve.last) == (2e-5, 0.1)
    assert curve.ratio == pytest.approx(2e-4)
    assert TimeCurve("rnn", 0, (0, 8), (0.0, 0.1)).ratio == 0.0  # underflowed at t = 0
    assert math.isnan(TimeCurve("rnn", 0, (0, 8), (0.0, 0.0)).ratio)


def test_snapshots_carry_the_curves_and_whether_the_model_is_recurrent() -> None:
    records = [record(0, {"rnn": {"t": [0, 2], "grad_norm": [1e-3, 1e-1]}}), record(1)]
    snap = snapshot_from_records(records, {"steps": 2})
    assert snap.recurrent
    assert [(c.layer, c.step, c.grad_norm) for c in snap.time_curves] == [("rnn", 0, (1e-3, 1e-1))]
    # before the first curve: recurrent (its recurrent kernel's row), no curve yet
    early = snapshot_from_records([record(0)], {"steps": 1})
    assert early.recurrent and early.time_curves == []
    # a model without recurrent layers
    plain = snapshot_from_run(DATA / "run-vanishing")
    assert not plain.recurrent and plain.time_curves == []


def test_the_layers_a_live_training_starts_with_tell_it_is_recurrent() -> None:
    from gradtui.stack import LayerInfo

    layers = [LayerInfo("rnn", "SimpleRNN", 0, (8,), kind="simple_rnn"), LayerInfo("dense", "Dense", 1, (1,))]
    assert snapshot_from_history(History(), layers=layers).recurrent
    assert not snapshot_from_history(History(), layers=layers[1:]).recurrent


def test_live_and_recorded_runs_give_the_same_curve(tmp_path: Path) -> None:
    """A real (tiny) SimpleRNN training: the live monitor's history, the history read back from
    its ``stats.jsonl`` and a :class:`RunSource` on the run directory hold the same newest curve."""
    import keras

    import gradtui
    from gradtui.recorder import TIME_EVERY as RECORDER_EVERY

    assert TIME_EVERY == RECORDER_EVERY
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (192, 24, 2)).astype("float32")
    y = rng.normal(size=(192, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    inp = keras.Input((24, 2))
    h = keras.layers.SimpleRNN(8, name="rnn")(inp)
    model = keras.Model(inp, keras.layers.Dense(1, name="out")(h))
    model.compile(optimizer="sgd", loss="mse")
    monitor = gradtui.watch(model, out=tmp_path / "rnn")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # 12 steps: measured at 0 and 10
    monitor.close()

    live = monitor.history.time["rnn"]
    assert live.step == 10 and len(live.t) == len(live.grad_norm) == 24
    assert live.t[:3] == (0, 1, 2)
    assert all(v >= 0 for v in live.grad_norm) and live.last > 0

    read = History()
    read.extend(read_run(tmp_path / "rnn").records)
    again = read.time["rnn"]
    assert (again.step, again.t) == (live.step, live.t)
    assert again.grad_norm == pytest.approx(live.grad_norm, rel=1e-8)

    events: list[Any] = []
    ended = RunSource(tmp_path / "rnn").run(events.append)
    assert isinstance(ended, Ended) and ended.snapshot is not None
    (shown,) = ended.snapshot.time_curves
    assert (shown.layer, shown.step) == ("rnn", 10)
    assert shown.grad_norm == pytest.approx(live.grad_norm, rel=1e-8)
    assert snapshot_from_history(monitor.history).time_curves == [live]


def test_the_report_draws_each_recurrent_layers_curves_over_training() -> None:
    from gradtui.report import make_figure

    fig = make_figure(read_run(DATA / "run-rnn"))  # rnn-pixels: measured at steps 0, 20 and 40
    (ax,) = [a for a in fig.axes if a.get_title(loc="left").startswith("simple_rnn")]
    assert ax.get_title(loc="left") == "simple_rnn: first/last 0 at step 40; 0 before t=36"
    assert [line.get_label() for line in ax.get_lines()] == ["step 0", "step 20", "step 40"]
    assert ax.get_yscale() == "log" and ax.get_xlim() == (0.0, 62.0)
    assert [p.get_label() for p in ax.patches] == ["0 (underflow)"]  # nothing reaches t < 36
    newest = ax.get_lines()[-1]
    assert newest.get_linewidth() > ax.get_lines()[0].get_linewidth()
    assert max(newest.get_xdata()) == 62 and min(newest.get_xdata()) == 36
    # a long diagnosis is wrapped instead of widening the figure
    texts = [t.get_text() for a in fig.axes for t in a.texts]
    assert any("first time step" in t for t in texts) and max(len(t) for t in texts) <= 124
    # a model without recurrent layers has no such plot
    plain = make_figure(read_run(DATA / "run-vanishing"))
    assert not any("first/last" in a.get_title(loc="left") for a in plain.axes)
