"""Faults during training lose nothing: NaN, Ctrl-C, SIGKILL, a Keras error.

These train real (small) models: the NaN and Keras-error cases in this process, Ctrl-C and
SIGKILL in a real ``gradtui run`` subprocess signalled once its first records are on disk.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradtui.cli import app
from gradtui.preset import load
from gradtui.runlog import read_run

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def _lines(path: Path) -> list[dict]:
    """Every line of stats.jsonl, parsed: fails if any line is not whole JSON."""
    raw = (path / "stats.jsonl").read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "stats.jsonl ends in a torn line"
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]


def _assert_every_step_on_disk(records: list[dict], summary: dict | None = None) -> None:
    """With ``every = 1`` the recorded steps are 0, 1, 2, ... with no gap, and the summary agrees."""
    steps = [r["step"] for r in records]
    assert steps == list(range(len(steps))), steps[:20]
    if summary is not None:
        assert summary["records"] == len(records)
        assert summary.get("lost_records", 0) == 0
        assert summary["steps"] >= len(records)


# --------------------------------------------------------------------------- NaN / Inf


def test_nan_stops_training_and_is_diagnosed(tmp_path: Path) -> None:
    """exploding-relu reaches NaN: training stops, ``non_finite`` names the step and first layer."""
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "run",
            "exploding-relu",
            "--out",
            str(out),
            "--max-steps",
            "200",
            "--quiet",
            "--fail-on",
            "non_finite",
        ],
    )
    assert result.exit_code == 3, result.stderr  # --fail-on non_finite matched
    run = read_run(out)
    assert run.status == "stopped"
    summary = run.summary
    assert summary["steps"] < 200 and summary["error"] is None
    records = run.records
    _assert_every_step_on_disk(records, summary)
    # the first record with a NaN/Inf anywhere, and the first layer (in model order) holding one
    first = next(
        r
        for r in records
        if not math.isfinite(r["loss"]) or any(s.get("nonfinite", 0) for s in r["layers"].values())
    )
    bad_layers = [name for name, s in first["layers"].items() if s.get("nonfinite", 0)]
    found = [d for d in summary["diagnoses"] if d["kind"] == "non_finite"]
    assert len(found) == 1
    assert found[0]["step"] == first["step"]
    assert found[0]["layer"] == (bad_layers[0] if bad_layers else None)
    assert found[0]["advice"]
    # training stopped at once: nothing was recorded after the NaN step
    assert records[-1]["step"] == first["step"]
    assert load(str(out / "preset.toml")) == load("exploding-relu").with_overrides(max_steps=200)


# --------------------------------------------------------------------------- a Keras error


def test_keras_error_leaves_status_failed_with_the_message(tmp_path: Path) -> None:
    """A training that TensorFlow refuses mid-run (a label the model has no unit for): status
    ``failed``, the message that says why, and a complete run directory."""
    from gradtui.session import Session, prepare

    preset = load("he-relu").with_overrides(max_steps=20)
    prepared = prepare(preset)
    prepared.data.y_train[:] = 99  # past the validator, as a corrupted array would be
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("from an older run")
    summary = Session(preset, out, prepared=prepared, overwrite=True).run()
    assert summary["status"] == "failed"
    assert "InvalidArgumentError" in summary["error"] and "label value of 99" in summary["error"]
    assert "\n" not in summary["error"]
    run = read_run(out)
    assert run.status == "failed" and run.summary["error"] == summary["error"]
    assert load(str(out / "preset.toml")) == preset
    assert "InvalidArgumentError" in (out / "traceback.txt").read_text()  # the whole story, kept
    _lines(out)


# --------------------------------------------------------------------------- Ctrl-C and SIGKILL


def _start_run(out: Path) -> subprocess.Popen[bytes]:
    """``gradtui run`` in a real process with SIGINT at its default (a background job of a
    non-interactive shell would otherwise start with it ignored)."""
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-m", "gradtui", "run", "he-relu", "--out", str(out), "--epochs", "500", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_records(proc: subprocess.Popen[bytes], out: Path, n: int = 5, timeout: float = 180) -> None:
    """Wait until ``stats.jsonl`` holds ``n`` lines (the run is training, not starting up)."""
    stats = out / "stats.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"gradtui run ended early ({proc.returncode}): {err.decode()[-2000:]}")
        if stats.exists() and stats.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no records within the timeout")


@pytest.mark.parametrize("presses", [1, 3])
def test_ctrl_c_writes_interrupted_run(tmp_path: Path, presses: int) -> None:
    """Ctrl-C (once, or impatiently three times): exit 130, status ``interrupted``, every recorded
    step on disk, a preset that loads, one line on stderr and no traceback."""
    out = tmp_path / "run"
    proc = _start_run(out)
    try:
        _wait_for_records(proc, out)
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = err.decode()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr and str(out) in stderr
    run = read_run(out)
    assert run.status == "interrupted"
    records = _lines(out)
    assert len(records) >= 5
    _assert_every_step_on_disk(records, run.summary)
    assert load(str(out / "preset.toml")) == load("he-relu").with_overrides(epochs=500)


def test_sigkill_leaves_whole_lines_and_an_incomplete_run(tmp_path: Path) -> None:
    """SIGKILL mid-run: stats.jsonl holds only whole lines, preset.toml loads, the run reads back
    as ``incomplete``."""
    out = tmp_path / "run"
    proc = _start_run(out)
    try:
        _wait_for_records(proc, out)
        time.sleep(0.3)  # let it be mid-write of more records
        proc.kill()
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    records = _lines(out)
    assert len(records) >= 5
    _assert_every_step_on_disk(records)
    assert not (out / "summary.json").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    run = read_run(out)
    assert run.status == "incomplete"
    assert [r["step"] for r in run.records] == [r["step"] for r in records]
    assert load(str(out / "preset.toml")) == load("he-relu").with_overrides(epochs=500)


def test_a_ctrl_c_during_a_drain_waits_for_its_records_to_be_written() -> None:
    """Ctrl-C landing between the ring's drain and the write of its lines lost a counted
    record (summary 52 records, stats.jsonl 51, under load): the drain defers it."""
    from gradtui.monitor import interrupts_deferred

    written = []
    # Python's own handler, whatever an earlier test left (an in-process CLI's SIG_IGN)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal is handled here, between bytecodes
            written.append("lines")
        assert written == ["lines"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
