"""Fixtures for the TUI tests: an app factory writing into a temporary folder, stable snapshots."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from gradtui.tui.app import GradtuiApp, create_app
from gradtui.tui.widgets.layer_form import LayerForm

DATA = Path(__file__).parent / "data"
SIZE = (150, 45)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests in a fresh event loop (the project has no asyncio plugin)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


@pytest.fixture(autouse=True)
def _quiet_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the unsaved-stack file and run directories of every test in its own folder."""
    monkeypatch.setenv("GRADTUI_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., GradtuiApp]:
    """``make_app(preset, **kwargs)``: the app from the CLI's factory, runs under ``tmp_path``.

    TensorFlow is not imported at start (``load_keras=False``) unless asked: a training
    imports it in its own thread anyway, and snapshot tests must not depend on it.
    """

    def factory(preset: str | None = "vanishing-sigmoid", **kwargs: object) -> GradtuiApp:
        kwargs.setdefault("runs_root", tmp_path / "runs")
        kwargs.setdefault("state", tmp_path / "state")
        kwargs.setdefault("load_keras", False)
        return create_app(preset, **kwargs)  # type: ignore[arg-type]

    return factory


def write_preset(path: Path, text: str) -> str:
    """Write a preset file and return its path as the CLI would take it."""
    path.write_text(text, encoding="utf-8")
    return str(path)


SHORT = """
name = "{name}"
description = "test stack"

[data]
dataset = "{dataset}"

[[layers]]
type = "dense"
units = {units}
activation = "{activation}"
initializer = "{initializer}"
repeat = {repeat}

[[layers]]
type = "dense"
units = 10
activation = "softmax"

[train]
optimizer = "sgd"
learning_rate = 0.01
epochs = {epochs}
batch_size = 32
{max_steps}
"""


def short_preset(
    path: Path,
    *,
    name: str = "short",
    dataset: str = "digits",
    units: int = 32,
    activation: str = "sigmoid",
    initializer: str = "glorot_uniform",
    repeat: int = 12,
    epochs: int = 1,
    max_steps: int | None = 60,
) -> str:
    """A small preset file for a real training."""
    text = SHORT.format(
        name=name,
        dataset=dataset,
        units=units,
        activation=activation,
        initializer=initializer,
        repeat=repeat,
        epochs=epochs,
        max_steps=f"max_steps = {max_steps}" if max_steps else "",
    )
    return write_preset(path, text)


async def forms_mounted(pilot: Pilot) -> None:
    """Wait for the builder's forms: they are mounted just after the first paint."""
    for _ in range(300):
        if pilot.app.query(LayerForm):
            await pilot.pause()
            return
        await pilot.pause(0.01)
    raise AssertionError("the builder's forms were not mounted within 3 s of the first paint")


@contextlib.asynccontextmanager
async def opened(app: GradtuiApp, size: tuple[int, int] = SIZE) -> AsyncIterator[Pilot]:
    """``app.run_test`` once the whole builder is there (a test that types into a form at once
    would find no form yet)."""
    async with app.run_test(size=size) as pilot:
        await forms_mounted(pilot)
        yield pilot
