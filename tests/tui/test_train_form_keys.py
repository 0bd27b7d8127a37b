"""The training form edits issue 22's ``[train]`` keys: epsilon (shown for the optimizers that
have one), weight decay, warm-up steps and the schedule."""

from __future__ import annotations

from textual.widgets import Input, Select

from gradtui.tui.widgets.train_form import TrainForm

from .conftest import SIZE


async def settle(pilot, condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Let the form's change messages arrive (the machine may be busy)."""
    waited = 0.0
    while not condition() and waited < timeout:
        await pilot.pause(0.05)
        waited += 0.05


async def test_adamw_epsilon_warmup_and_cosine_from_the_form(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("he-relu")  # sgd
    async with app.run_test(size=SIZE) as pilot:
        while not app.query("TrainForm #t-schedule"):
            await pilot.pause(0.05)
        await pilot.pause()
        form = app.query_one(TrainForm)
        assert not form.query_one("#row-epsilon").display  # sgd has no epsilon
        form.query_one("#t-optimizer", Select).value = "adamw"
        await settle(pilot, lambda: app.preset.train.optimizer == "adamw")
        assert form.query_one("#row-epsilon").display
        form.query_one("#t-epsilon", Input).value = "1e-10"
        form.query_one("#t-weight_decay", Input).value = "0.0001"
        form.query_one("#t-warmup_steps", Input).value = "20"
        form.query_one("#t-schedule", Select).value = "cosine"
        await settle(pilot, lambda: app.preset.train.schedule == "cosine")
        t = app.preset.train
        assert (t.optimizer, t.epsilon, t.weight_decay, t.warmup_steps, t.schedule) == (
            "adamw",
            1e-10,
            1e-4,
            20,
            "cosine",
        )
        assert form.error == ""
        # back to sgd: its epsilon goes with it, no error left to clear by hand
        form.query_one("#t-optimizer", Select).value = "sgd"
        await settle(pilot, lambda: app.preset.train.optimizer == "sgd" or form.error)
        assert app.preset.train.optimizer == "sgd", form.error
        assert app.preset.train.epsilon is None
        assert app.preset.train.weight_decay == 1e-4 and form.error == ""
