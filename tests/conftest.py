"""Shared test set-up: TensorFlow quiet and on its Keras backend, small helpers."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def _no_exit_in_the_test_process(code: int = 0) -> None:  # pragma: no cover - a failure path
    raise AssertionError(
        f"os._exit({code}) in the test process: it would end the whole test session with that "
        "status (a CliRunner command that ended the process at once made CI pass with tests unrun)"
    )


# what the gradtui program may do in a process of its own (gradtui.tui.app.leave) must never end
# pytest's: a command run in-process by CliRunner raises instead
os._exit = _no_exit_in_the_test_process  # type: ignore[assignment]
