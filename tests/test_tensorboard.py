"""TensorBoard event files (SPEC section 5), read back with TensorBoard's own reader."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gradtui.cli import app
from gradtui.diagnosis import Diagnosis
from gradtui.tensorboard import TensorBoardSink

runner = CliRunner()
DATA = Path(__file__).parent / "tui" / "data"


def load(logdir: Path):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    (run,) = mux.Runs()
    return mux, run


class FakeRecords:
    """What a session listener receives (gradtui.probe.Records' reading interface)."""

    def __init__(self, steps, names, fields):
        self.steps = np.array(steps)
        self.losses = np.linspace(2.0, 1.0, len(steps))
        self.names = names
        self._fields = fields

    def field(self, key):
        return self._fields.get(key, np.full((len(self.steps), len(self.names)), math.nan))


def test_sink_writes_per_layer_scalars_text_and_histograms(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path / "tb")
    grads = np.array([[1e-8, 0.5], [2e-8, 0.4], [3e-8, 0.3]])
    recs = FakeRecords(
        [0, 1, 2],
        ["dense", "block/dense_1"],
        {
            "grad_norm": grads,
            "update_ratio": grads / 100,
            "saturation": np.array([[0.9, math.nan]] * 3),
            "dead": np.array([[math.nan, 0.1]] * 3),
        },
    )
    d = Diagnosis("vanishing", "dense", 1, "error", "gradient norm of dense is tiny", "use he_normal")
    sink.on_records(recs, [d], None)
    sink.on_epoch(0, {"loss": 1.5, "accuracy": 0.4})
    sink.add_histograms(2, {"dense": np.random.default_rng(0).normal(size=(8, 4))}, {"dense": np.ones(5)})
    sink.on_end({"diagnoses": [d.to_dict()]})
    mux, run = load(tmp_path / "tb")
    tags = mux.Runs()[run]
    assert [e.value for e in mux.Scalars(run, "gradtui/dense/grad_norm")] == pytest.approx([1e-8, 2e-8, 3e-8])
    assert [e.step for e in mux.Scalars(run, "gradtui/block/dense_1/update_ratio")] == [0, 1, 2]
    assert "gradtui/dense/saturation" in tags["scalars"] and "gradtui/dense/dead" not in tags["scalars"]
    assert "gradtui/block/dense_1/dead" in tags["scalars"]
    assert [e.value for e in mux.Scalars(run, "loss")] == pytest.approx([2.0, 1.5, 1.0])
    assert mux.Scalars(run, "epoch/accuracy")[0].step == 2
    text = mux.Tensors(run, "gradtui/diagnoses")
    assert len(text) == 1 and b"use he_normal" in text[0].tensor_proto.string_val[0]
    assert {"gradtui/dense/gradients", "gradtui/dense/weights"} <= set(tags["tensors"])
    hist = mux.Tensors(run, "gradtui/dense/gradients")[0]
    counts = np.frombuffer(hist.tensor_proto.tensor_content, dtype=np.float64).reshape(-1, 3)[:, 2]
    assert hist.step == 2 and counts.sum() == 32


def test_export_writes_a_run_directory_and_refuses_a_non_run(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["export", str(DATA / "run-vanishing"), "--tensorboard", str(tmp_path / "tb")]
    )
    assert result.exit_code == 0, result.output
    mux, run = load(tmp_path / "tb")
    records = [json.loads(line) for line in (DATA / "run-vanishing" / "stats.jsonl").read_text().splitlines()]
    got = mux.Scalars(run, "gradtui/dense_12/grad_norm")
    assert [e.step for e in got] == [r["step"] for r in records]
    assert got[-1].value == pytest.approx(records[-1]["layers"]["dense_12"]["grad_norm"])
    assert mux.Scalars(run, "final/val_accuracy")[0].value == pytest.approx(0.0944444, rel=1e-5)
    assert b"vanishing" in mux.Tensors(run, "gradtui/diagnoses")[0].tensor_proto.string_val[0]
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["export", str(tmp_path / "empty"), "--tensorboard", str(tmp_path / "tb2")])
    assert result.exit_code == 2 and "not a run directory" in result.stderr


def test_sink_cost_per_recorded_step_is_small(tmp_path: Path) -> None:
    """The scalars of one recorded step of a 13-layer network (the vanishing preset)."""
    sink = TensorBoardSink(tmp_path / "tb")
    n, layers = 400, 13
    rng = np.random.default_rng(0)
    fields = {k: rng.random((n, layers)) for k in ("grad_norm", "update_ratio", "saturation")}
    recs = FakeRecords(list(range(n)), [f"dense_{i}" for i in range(layers)], fields)
    t0 = time.perf_counter()
    for i in range(0, n, 20):  # drains of 20 rows, as the engine flushes a few times a second
        sub = FakeRecords(list(range(i, i + 20)), recs.names, {k: v[i : i + 20] for k, v in fields.items()})
        sink.on_records(sub, [], None)
    per_row = (time.perf_counter() - t0) / n
    sink.close()
    assert per_row < 2e-3, per_row  # generous: measured ~0.1 ms here


@pytest.mark.slow
def test_run_with_tensorboard_writes_event_files_while_training(tmp_path: Path) -> None:
    out, tb = tmp_path / "run", tmp_path / "tb"
    result = runner.invoke(
        app, ["run", "he-relu", "--max-steps", "12", "--out", str(out), "--quiet", "--tensorboard", str(tb)]
    )
    assert result.exit_code == 0, result.output
    mux, run = load(tb)
    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    layer = next(iter(stats[0]["layers"]))
    got = mux.Scalars(run, f"gradtui/{layer}/grad_norm")
    assert [e.step for e in got] == [r["step"] for r in stats]
    assert got[0].value == pytest.approx(stats[0]["layers"][layer]["grad_norm"], rel=1e-6)
    assert f"gradtui/{layer}/dead" in mux.Runs()[run]["scalars"]
    assert "epoch/loss" in mux.Runs()[run]["scalars"]
    # histograms of the raw gradients and of the weights, once an epoch (here: at step 0)
    tensors = mux.Runs()[run]["tensors"]
    assert f"gradtui/{layer}/gradients" in tensors and f"gradtui/{layer}/weights" in tensors
    assert [e.step for e in mux.Tensors(run, f"gradtui/{layer}/gradients")] == [0]


def tiny_model():
    """A compiled 8-4-2 Dense model and 64 samples of data (same seed every time)."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)]
    )
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(64, 8)).astype("float32"), rng.integers(0, 2, 64)


def test_watch_with_tensorboard_writes_scalars_and_histograms(tmp_path: Path) -> None:
    import gradtui

    model, x, y = tiny_model()
    gradtui.watch(model, out=tmp_path / "run", tensorboard=tmp_path / "tb")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    mux, run = load(tmp_path / "tb")
    layer = model.layers[0].name
    assert [e.step for e in mux.Scalars(run, f"gradtui/{layer}/grad_norm")] == list(range(8))
    steps = [e.step for e in mux.Tensors(run, f"gradtui/{layer}/gradients")]
    assert steps == [0, 4]  # the first step of each epoch
    hist = mux.Tensors(run, f"gradtui/{layer}/gradients")[0]
    assert hist.tensor_proto.tensor_shape.dim[0].size > 1


@pytest.mark.slow
def test_histograms_can_be_turned_off_from_watch_and_the_cli(tmp_path: Path) -> None:
    import gradtui

    model, x, y = tiny_model()
    monitor = gradtui.watch(model, out=tmp_path / "run", tensorboard=tmp_path / "tb", histograms=False)
    assert monitor.instrument.histograms is False  # the step keeps no copy of the gradients
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    mux, run = load(tmp_path / "tb")
    layer = model.layers[0].name
    assert [e.step for e in mux.Scalars(run, f"gradtui/{layer}/grad_norm")] == list(range(8))
    assert not [t for t in mux.Runs()[run]["tensors"] if t.endswith(("/gradients", "/weights"))]

    out, tb = tmp_path / "cli-run", tmp_path / "cli-tb"
    args = ["run", "he-relu", "--max-steps", "6", "--out", str(out), "-q", "--tensorboard", str(tb)]
    result = runner.invoke(app, [*args, "--no-histograms"])
    assert result.exit_code == 0, result.output
    mux, run = load(tb)
    assert any(t.endswith("/grad_norm") for t in mux.Runs()[run]["scalars"])
    assert not [t for t in mux.Runs()[run]["tensors"] if t.endswith(("/gradients", "/weights"))]
