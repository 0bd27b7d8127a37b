"""Start-up stays light: the CLI and the headless core never pull in TensorFlow or Textual."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras", "textual")


def modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


@pytest.mark.parametrize("module", ["gradtui", "gradtui.cli"])
def test_entry_points_import_nothing_heavy(module: str) -> None:
    loaded = modules_after(f"import {module}")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


@pytest.mark.parametrize(
    "module",
    [
        "gradtui.preset",
        "gradtui.stack",
        "gradtui.diagnose",
        "gradtui.diagnosis",
        "gradtui.runlog",
        "gradtui.history",
        "gradtui.data",
        "gradtui.session",
        "gradtui.view",
        "gradtui.build",
        "gradtui.probe",
        "gradtui.monitor",
        "gradtui.feed",
        "gradtui.source",
        "gradtui.compare",
        "gradtui.report",
        "gradtui.tensorboard",
    ],
)
def test_the_headless_core_never_imports_textual(module: str) -> None:
    loaded = modules_after(f"import {module}")
    assert "textual" not in loaded


def test_help_and_presets_run_without_tensorflow() -> None:
    code = (
        "import sys\nfrom gradtui.cli import app\n"
        "for args in (['--help'], ['presets'], ['run', '--help']):\n"
        "    try:\n        app(args)\n    except SystemExit as e:\n        assert e.code in (0, None), e.code\n"
    )
    loaded = modules_after(code)
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}


def test_the_tui_module_imports_neither_numpy_nor_tensorflow() -> None:
    """The first screen needs neither: numpy (~0.12 s here) and TensorFlow load after it."""
    loaded = modules_after("import gradtui.tui.app")
    assert not {m for m in loaded if m.split(".")[0] in ("numpy", "tensorflow", "keras")}
