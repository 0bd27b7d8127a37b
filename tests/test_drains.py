"""A watched fit reads the ring once after its last batch (issue 23): the epoch's end drains,
the end of the fit and the summary do not read an empty ring again; nothing is missed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import gradtui
from gradtui.runlog import read_run


def test_a_fit_drains_once_after_its_last_batch_and_records_every_step(tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3, name="out")]
    )
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).random((96, 4)).astype("float32")
    y = np.arange(96) % 3
    monitor = gradtui.watch(model, out=tmp_path / "run")
    monitor.callback.interval = 1e9  # no drain during the epoch: only its end's
    rec = monitor.instrument
    reads: list[int] = []
    drain = rec.drain
    rec.drain = lambda epoch=0: reads.append(rec.written - rec.read_count) or drain(epoch)
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert reads == [3, 3]  # one drain an epoch, each with rows to read; none at the fit's end
    monitor.close()
    run = read_run(tmp_path / "run")
    assert [r["step"] for r in run.records] == list(range(6)) and rec.lost == 0
    assert all("logz_mean" in r["layers"]["out"] for r in run.records)
