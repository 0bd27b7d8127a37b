"""``open --follow`` on a ``gradtui.watch`` run goes on after the first ``fit``'s summary while
the watch stays attached and its process lives (issue 21: it stopped at the first summary.json,
and a second ``fit`` of the same watch continues the run)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from gradtui.source import RunSource


def line(step: int) -> str:
    layers = {"dense": {"grad_norm": 0.1, "weight_norm": 1.0, "update_ratio": 1e-3}}
    return json.dumps({"step": step, "loss": 1.0, "layers": layers}) + "\n"


def summary(steps: int, **extra: object) -> str:
    return json.dumps({"name": "w", "status": "completed", "steps": steps, "diagnoses": [], **extra})


def follow(run: Path) -> tuple[RunSource, threading.Thread, list]:
    source = RunSource(run, follow=True, interval=0.02)
    ended: list = []
    thread = threading.Thread(target=lambda: ended.append(source.run(lambda e: None)), daemon=True)
    thread.start()
    return source, thread, ended


def test_a_watch_between_two_fits_is_followed_to_its_close(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "stats.jsonl").write_text(line(0) + line(1))
    me = {"host": socket.gethostname(), "pid": os.getpid()}
    (run / "summary.json").write_text(summary(2, watching=True, writer=me))  # the first fit ended
    source, thread, ended = follow(run)
    thread.join(0.5)
    assert thread.is_alive()  # still following: the watch is attached
    with (run / "stats.jsonl").open("a") as f:
        f.write(line(2) + line(3))  # the second fit
    (run / "summary.json").write_text(summary(4))  # close(): no "watching"
    thread.join(10)
    assert not thread.is_alive() and ended
    assert source.reader.count == 4  # fed to the history, not kept: memory bounded
    assert source.history.loss.steps == [0, 1, 2, 3]


def test_a_watching_summary_whose_process_is_gone_ends_the_following(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = {"host": socket.gethostname(), "pid": int(done.stdout)}
    run = tmp_path / "run"
    run.mkdir()
    (run / "stats.jsonl").write_text(line(0))
    (run / "summary.json").write_text(summary(1, watching=True, writer=dead))
    _, thread, ended = follow(run)
    thread.join(10)
    assert not thread.is_alive() and ended


def test_watch_says_watching_after_a_fit_and_not_after_close(tmp_path: Path) -> None:
    import keras

    import gradtui

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((8, 4), "float32"), np.zeros((8, 2), "float32")
    monitor = gradtui.watch(model, out=tmp_path / "w")
    model.fit(x, y, epochs=1, verbose=0)
    first = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert first["watching"] is True and first["writer"]["pid"] == os.getpid()
    monitor.close()
    last = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert "watching" not in last and "writer" not in last


def test_live_diagnoses_survive_unknown_losses_and_damaged_fields(tmp_path: Path) -> None:
    """Found by the damaged-run property test: a record with "loss": null stopped the reading
    (float(None) in the live diagnoser); a field the reader left out must not read as NaN."""
    run = tmp_path / "run"
    run.mkdir()
    rows = []
    for step in range(6):
        layers = {
            "low": {"grad_norm": 1e-9, "weight_norm": 1.0, "nonfinite": 0},
            "top": {"grad_norm": 1.0, "weight_norm": "garbage" if step == 1 else 1.0, "nonfinite": 0},
        }
        rows.append(json.dumps({"step": step, "loss": None, "layers": layers}))
    (run / "stats.jsonl").write_text("\n".join(rows) + "\n")
    source = RunSource(run)
    ended = source.run(lambda e: None)
    assert ended.trace is None, ended.error
    kinds = [d.kind for d in ended.snapshot.diagnoses]
    assert kinds == ["vanishing"], kinds  # no false non_finite from the garbage field or the null loss
