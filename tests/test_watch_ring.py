"""The recorder's ring: no row is lost or miscounted, whenever the host drains it.

A step writes its row and the ring's count with one scatter; a drain reads one snapshot. These
tests hammer drains against a fast writer and compare every drained row with an independent
log of the step's own gradient norms.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from gradtui.recorder import Recorder
from gradtui.runlog import read_run


def tiny(seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((8,))
    h = keras.layers.Dense(16, activation="relu", name="hidden")(inp)
    out = keras.layers.Dense(3, name="out")(h)
    return keras.Model(inp, out)


def tape_step(model, opt):
    """A GradientTape step that also returns its own per-layer gradient norms (the log)."""
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        # per layer (kernel, bias): the norm of both
        return tf.stack([tf.sqrt(tf.add_n([tf.reduce_sum(g * g) for g in grads[i : i + 2]])) for i in (0, 2)])

    return step


def batches(n: int, size: int = 16):
    rng = np.random.default_rng(1)
    return [
        (rng.normal(size=(size, 8)).astype("float32"), rng.integers(0, 3, size).astype("int32"))
        for _ in range(n)
    ]


@pytest.mark.parametrize("capacity", [512, 16])
def test_drains_hammered_against_a_fast_writer_lose_and_miscount_nothing(capacity: int) -> None:
    """A thread drains in a tight loop while the training writes 400 rows. With room for them
    all nothing is lost; with 16 slots the ring may overflow between two drains, and then every
    row drained is still the right one, in order, and drained + lost is exactly what was
    written."""
    import keras

    model = tiny()
    opt = keras.optimizers.SGD(0.05)
    rec = Recorder(model, opt, capacity=capacity)
    step = tape_step(model, opt)
    data = batches(400)
    got: list = []
    done = threading.Event()

    def hammer() -> None:
        while not done.is_set():
            block = rec.drain()
            if len(block):
                got.append(block)

    logged = []
    drainer = threading.Thread(target=hammer)
    drainer.start()
    try:
        for xb, yb in data:
            logged.append(step(xb, yb).numpy())
    finally:
        done.set()
        drainer.join()
    got.append(rec.drain())  # what the writer wrote after the last hammering drain
    steps = np.concatenate([b.steps for b in got])
    norms = np.concatenate([b.stats[:, :, 0] for b in got])
    assert len(got) >= 2  # the drains did interleave with the writer
    assert rec.read_count == rec.written == len(data) and rec.pending() == 0
    assert len(steps) + rec.lost == len(data) and steps[-1] == len(data) - 1  # the last row kept
    assert (np.diff(steps) > 0).all()  # each row once, in order
    np.testing.assert_allclose(norms, np.array(logged)[steps], rtol=1e-5)  # each the right one
    if capacity >= len(data):
        assert rec.lost == 0 and steps.tolist() == list(range(len(data)))


def test_an_overflowing_ring_counts_exactly_the_rows_it_lost() -> None:
    import keras

    model = tiny()
    opt = keras.optimizers.SGD(0.05)
    rec = Recorder(model, opt, capacity=8)
    step = tape_step(model, opt)
    data = batches(30)
    for xb, yb in data[:5]:
        step(xb, yb)
    assert rec.drain().steps.tolist() == [0, 1, 2, 3, 4] and rec.lost == 0
    for xb, yb in data[5:25]:  # 20 rows into 8 slots: rows 5..16 overwritten
        step(xb, yb)
    assert rec.drain().steps.tolist() == list(range(17, 25)) and rec.lost == 12
    for xb, yb in data[25:]:
        step(xb, yb)
    assert rec.drain().steps.tolist() == list(range(25, 30)) and rec.lost == 12
    assert rec.drain().steps.tolist() == [] and rec.read_count == 30


@pytest.mark.parametrize("run", range(3))
def test_the_last_step_of_a_gradient_tape_loop_is_never_lost(tmp_path: Path, monkeypatch, run: int) -> None:
    """The README's loop, heavier steps and a drain racing every millisecond: every step is in
    ``stats.jsonl``, the last one included, and nothing is reported lost."""
    import keras

    import gradtui.monitor

    monkeypatch.setattr(gradtui.monitor, "WATCH_DRAIN_SECONDS", 0.001)
    model = tiny(run)
    opt = keras.optimizers.Adam(1e-3)
    step = tape_step(model, opt)
    data = batches(60, size=256)
    with gradtui.watch(model, out=tmp_path / "loop", optimizer=opt):
        logged = [step(xb, yb).numpy() for xb, yb in data]
    records = read_run(tmp_path / "loop").records
    summary = read_run(tmp_path / "loop").summary
    assert [r["step"] for r in records] == list(range(60))
    assert summary["records"] == 60 and summary["lost_records"] == 0
    recorded = np.array([[r["layers"][k]["grad_norm"] for k in ("hidden", "out")] for r in records])
    np.testing.assert_allclose(recorded, np.array(logged), rtol=1e-5)
