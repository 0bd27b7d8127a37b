"""Real short trainings in the app: monitor and warnings, stop, quit, errors, apply-fix and again.

Each test trains a small model with TensorFlow in the app's thread worker (digits, at most 60
steps), so the whole file takes tens of seconds; timing limits are generous because the test
machine is shared.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gradtui.runlog import read_run
from gradtui.session import Session
from gradtui.tui.app import GradtuiApp
from gradtui.tui.widgets.compare_view import CompareView
from gradtui.tui.widgets.layer_monitor import LayerMonitor
from gradtui.tui.widgets.warnings_panel import WarningsPanel

from .conftest import SIZE, short_preset

pytestmark = pytest.mark.slow


async def wait_until(pilot, condition, timeout: float = 120.0) -> float:  # type: ignore[no-untyped-def]
    """Let the app run until ``condition()`` holds; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not reached within {timeout} s")
        await pilot.pause(0.05)
    return time.monotonic() - start


def only_run(root: Path) -> Path:
    runs = sorted(p for p in root.iterdir() if p.is_dir())
    assert runs, f"no run directory under {root}"
    return runs[-1]


async def test_training_reaches_monitor_and_warnings_then_fix_and_train_again(
    make_app, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    preset = short_preset(tmp_path / "vanish.toml", name="vanish")
    app: GradtuiApp = make_app(preset)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t")
        # (once seen false in CI: say what the app knew, to find out why next time)
        assert app.training, (app.focused, app.last_error, [str(e) for e in app.errors], app.last_summary)
        await wait_until(pilot, lambda: app.current is not None and app.current.rows)
        assert app.query_one("TabbedContent").active == "monitor"
        rows = app.query_one(LayerMonitor).rows
        assert [r.name for r in rows][:2] == ["dense", "dense_1"] and rows[-1].name == "dense_12"
        await wait_until(pilot, lambda: not app.training)
        assert app.current.status == "completed"
        warnings = app.query_one(WarningsPanel)
        kinds = [d.kind for d in warnings.diagnoses]
        assert "vanishing" in kinds
        text = app.query_one(LayerMonitor).render_text()
        assert "dense_12" in text and "e-0" in text
        first = read_run(only_run(tmp_path / "runs"))
        assert first.status == "completed" and first.records
        assert any(d["kind"] == "vanishing" for d in first.summary["diagnoses"])

        # apply the vanishing fix with the key, then train again
        assert warnings.selected is not None and warnings.selected.kind == "vanishing"
        await pilot.press("f")
        layer = app.preset.layers[0]
        assert (layer.activation_name, layer.initializer.name) == ("relu", "he_normal")
        assert app.dirty
        await pilot.press("t")
        await wait_until(pilot, lambda: not app.training and len(app.runs) == 1)
        assert app.current.status == "completed"
        assert "vanishing" not in {d.kind for d in app.current.diagnoses}
        compare = app.query_one(CompareView)
        assert compare.before is app.runs[0] and compare.after is app.current
        await pilot.press("3")
        text = str(compare.render())
        assert "A (previous)" in text and "vanishing" in text and "no diagnoses" in text
        runs = sorted((tmp_path / "runs").iterdir())
        assert len(runs) == 2
        second = json.loads((runs[1] / "summary.json").read_text())
        assert second["status"] == "completed"
        # the lower layers learn again: their gradient norm rose by orders of magnitude
        before = {r.name: r.grad_norm for r in app.runs[0].rows}
        after = {r.name: r.grad_norm for r in app.current.rows}
        assert after["dense"] / before["dense"] > 100


async def test_stop_during_training(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    preset = short_preset(tmp_path / "long.toml", repeat=3, epochs=200, max_steps=None)
    app = make_app(preset)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t")
        await wait_until(pilot, lambda: app.current is not None and app.current.steps_done > 3)
        await pilot.press("p")
        assert app.session is not None and app.session.paused
        await pilot.press("p")
        assert not app.session.paused
        await pilot.press("t")  # stop
        took = await wait_until(pilot, lambda: not app.training, timeout=60)
        assert app.current.status == "stopped"
        assert app.preset.train.epochs == 200  # the stack is untouched
        assert app.is_running
    run = read_run(only_run(tmp_path / "runs"))
    assert run.status == "stopped"
    print(f"stop took {took:.2f} s")


async def test_quit_during_training(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    preset = short_preset(tmp_path / "long.toml", repeat=3, epochs=200, max_steps=None)
    app = make_app(preset)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t")
        await wait_until(pilot, lambda: app.current is not None and app.current.steps_done > 3)
        session = app.session
        assert session is not None
        pressed = time.monotonic()
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running, timeout=10)
    left = time.monotonic() - pressed
    print(f"q during training: the app closed {left:.2f} s after the key")
    assert left < 4.0  # 1.2 s grace by design; generous for a shared machine
    assert session._stop.is_set()
    # the stopped training finishes its run directory in its thread
    deadline = time.monotonic() + 60
    while session.summary is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert read_run(only_run(tmp_path / "runs")).status == "stopped"


def test_quit_while_tensorflow_imports_does_not_wait_for_it(make_app, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``q`` in the first seconds, while TensorFlow is still being imported, returns at once.
    The import is not a Textual thread worker: those run in asyncio's default executor, which
    ``asyncio.run`` joins as ``App.run`` returns, so a ``q`` then took 5-7 s to reach the shell.
    (``App.run`` here, not ``run_test``: the wait is in ``asyncio.run``'s shutdown.)"""
    import gradtui.tui.app as app_module

    def slow_import() -> str:  # an import that takes its time (longer than the bound below, by far)
        time.sleep(20.0)
        return "CPU"

    monkeypatch.setattr(app_module, "_load_keras", slow_import)
    app = make_app(load_keras=True)
    pressed: list[float] = []

    async def press_q(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.pause(0.5)  # the import has begun
        assert not app.keras_ready
        pressed.append(time.monotonic())
        await pilot.press("q")

    app.run(headless=True, size=SIZE, auto_pilot=press_q)
    left = time.monotonic() - pressed[0]
    print(f"q during the import: App.run returned {left:.2f} s after the key")
    # waiting for the import would take ~19.5 s; a busy machine takes a few seconds to tear
    # the app down (2.7 s measured at load 9 on 2 cores, 0.3 s idle)
    assert left < 8.0


async def test_bad_data_file_fails_inside_the_app(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"this is not a zip archive")
    preset = short_preset(tmp_path / "bad-data.toml", dataset=str(broken))
    app = make_app(preset)
    async with app.run_test(size=SIZE) as pilot:
        # the builder already says why the stack cannot be built
        assert "cannot build" in str(app.query_one("#advice").render())
        before = app.preset
        await pilot.press("t")
        await wait_until(pilot, lambda: not app.training, timeout=60)
        assert app.last_error and "broken.npz" in app.last_error
        assert app.query_one("RunStatus").state == "failed"
        warnings = app.query_one(WarningsPanel)
        assert any("training failed" in str(x) for x in warnings.extra)
        assert app.preset == before and app.is_running
        await pilot.press("1")  # the app still answers
        assert app.query_one("TabbedContent").active == "builder"
    run = read_run(only_run(tmp_path / "runs"))
    assert run.status == "failed" and "broken.npz" in run.summary["error"]


async def test_exception_in_the_worker_is_shown(make_app, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def explode(self: Session) -> dict:
        raise RuntimeError("simulated Keras failure")

    monkeypatch.setattr(Session, "run", explode)
    app = make_app("vanishing-sigmoid")
    async with app.run_test(size=SIZE) as pilot:
        before = app.preset
        await pilot.press("t")
        await wait_until(pilot, lambda: not app.training, timeout=30)
        assert app.last_error == "RuntimeError: simulated Keras failure"
        assert app.last_trace and "explode" in app.last_trace
        assert app.preset == before and app.is_running
        assert "simulated Keras failure" in str(app.query_one("RunStatus").render())
    run = read_run(only_run(tmp_path / "runs"))
    assert run.status == "failed"


async def test_nan_during_training_keeps_the_app_usable(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app("exploding-relu")
    async with app.run_test(size=SIZE) as pilot:
        from gradtui.tui import edit

        train = {**app.preset.to_dict()["train"], "max_steps": 200}
        app.set_preset(edit.set_training(app.preset, {}, train, 1))
        await pilot.press("t")
        await wait_until(pilot, lambda: not app.training, timeout=120)
        kinds = {d.kind for d in app.current.diagnoses}
        assert kinds & {"exploding", "non_finite"}
        assert app.current.status in ("stopped", "completed")
        await pilot.press("2")
        assert app.is_running
