"""The screen stays responsive while a 100-layer stack trains.

Keys are answered while TensorFlow runs a 100-layer model in the worker thread: each key press
below is timed from the press until the app has processed it and repainted. The limits are
generous (the test machine is shared with other TensorFlow jobs); the measured figures are
printed (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import pytest

from gradtui.tui.app import GradtuiApp

from .conftest import SIZE, write_preset
from .test_training import wait_until

pytestmark = pytest.mark.slow

DEEP = """
name = "deep-100"
[data]
dataset = "digits"
[[layers]]
type = "dense"
units = 16
activation = "relu"
initializer = "he_normal"
repeat = 99
[[layers]]
type = "dense"
units = 10
activation = "softmax"
[train]
epochs = 1000  # long enough never to end during the measurement
batch_size = 32
"""


async def test_keys_answered_promptly_with_100_layers_training(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app: GradtuiApp = make_app(write_preset(tmp_path / "deep.toml", DEEP))
    handled: list[float] = []
    switch_tab = app.action_tab

    def timed_tab(tab: str) -> None:
        handled.append(time.monotonic())
        switch_tab(tab)

    app.action_tab = timed_tab  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t")
        await wait_until(pilot, lambda: app.current is not None and app.current.steps_done > 5, timeout=180)
        assert len(app.current.rows) == 100
        repaints_before = app.repaints
        steps_before = app.current.steps_done
        started = time.monotonic()
        # 1. the event loop keeps its pace: a 50 ms sleep is not delayed by the training
        lags = []
        for _ in range(40):
            t0 = time.monotonic()
            await asyncio.sleep(0.05)
            lags.append(time.monotonic() - t0 - 0.05)
        # 2. a key reaches its action promptly (tab switches, each a full repaint of the screen)
        latencies = []
        for key in ["1", "2", "3", "2"] * 3:
            count = len(handled)
            t0 = time.monotonic()
            app.simulate_key(key)
            while len(handled) == count:
                if time.monotonic() - t0 > 10:
                    raise AssertionError(f"key {key} not answered within 10 s")
                await asyncio.sleep(0.002)
            latencies.append(handled[-1] - t0)
            await asyncio.sleep(0.25)
        # 3. a key, its action and the repaint of the screen, until the app is idle again
        t0 = time.monotonic()
        await pilot.press("down")
        round_trip = time.monotonic() - t0
        span = time.monotonic() - started
        assert app.training, "the run ended before the measurement did"
        steps = app.current.steps_done - steps_before
        repaint_rate = (app.repaints - repaints_before) / span
        await pilot.press("t")
        await wait_until(pilot, lambda: not app.training, timeout=60)
    print(
        f"100 layers training: loop lag median {statistics.median(lags) * 1000:.0f} ms, "
        f"worst {max(lags) * 1000:.0f} ms; key to action median "
        f"{statistics.median(latencies) * 1000:.0f} ms, worst {max(latencies) * 1000:.0f} ms; "
        f"key to idle screen {round_trip * 1000:.0f} ms; {steps} steps and "
        f"{repaint_rate:.1f} repaints/s in the {span:.1f} s measured"
    )
    assert statistics.median(lags) < 0.2 and max(lags) < 2.0
    assert statistics.median(latencies) < 0.3 and max(latencies) < 2.0
    assert round_trip < 10.0
    assert steps > 0  # training went on while the screen answered
    assert repaint_rate <= 5.5  # bounded by REPAINT_HZ
