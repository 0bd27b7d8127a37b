"""``gradtui tui PRESET --headless --train`` and the boundaries between the TUI and the core."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import gradtui

from .conftest import short_preset

CORE = sorted(p.stem for p in Path(gradtui.__file__).parent.glob("*.py") if p.stem not in ("__main__",))


@pytest.mark.slow
def test_headless_train_writes_the_run_directory(tmp_path: Path) -> None:
    preset = short_preset(tmp_path / "h.toml", name="headless", repeat=3, max_steps=20)
    proc = subprocess.run(
        [sys.executable, "-m", "gradtui", "tui", preset, "--headless", "--train"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env={**_env(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 20
    assert (runs[0] / "stats.jsonl").read_text().count("\n") == 20
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_headless_train_fails_with_exit_1_on_bad_data(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    preset = short_preset(tmp_path / "h.toml", dataset=str(bad), repeat=2)
    proc = subprocess.run(
        [sys.executable, "-m", "gradtui", "tui", preset, "--headless", "--train"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env=_env(tmp_path),
    )
    assert proc.returncode == 1
    assert "bad.npz" in proc.stderr and "Traceback" not in proc.stderr
    summary = json.loads(next((tmp_path / "runs").iterdir()).joinpath("summary.json").read_text())
    assert summary["status"] == "failed"


def _env(tmp_path: Path) -> dict[str, str]:
    import os

    return {**os.environ, "GRADTUI_STATE_DIR": str(tmp_path / "state")}


def test_headless_without_train_opens_and_closes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gradtui", "tui", "vanishing-sigmoid", "--headless"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("module", CORE)
def test_core_never_imports_textual(module: str) -> None:
    code = f"import sys, gradtui.{module}; assert 'textual' not in sys.modules, '{module}'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_tui_does_not_import_tensorflow_at_start() -> None:
    code = (
        "import sys, gradtui.tui.app as a; a.create_app('vanishing-sigmoid');"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
