"""The builder with conv, recurrent and residual entries: type-specific forms, shapes and
parameters per row, pre-flight advice about them (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Select

from gradtui.tui.widgets.advice_panel import AdvicePanel
from gradtui.tui.widgets.layer_form import LayerForm
from gradtui.tui.widgets.layer_table import LayerTable

from .conftest import opened

#: the rows of the form each type shows (besides type and repeat)
ROWS = {
    "dense": {"units", "activation", "init", "bias", "bn", "residual"},
    "conv2d": {"filters", "kernel", "strides", "padding", "activation", "init", "bias", "bn", "residual"},
    "lstm": {"units", "activation", "init", "bias", "rinit", "rinit-param", "return-seq", "bidir"},
    "max_pool": {"pool"},
    "global_avg_pool": set(),
    "embedding": {"input-dim", "output-dim"},
    "layer_norm": {"bn-epsilon"},
}
ALL_ROWS = set().union(*ROWS.values()) | {"rate", "bn-momentum"}

#: wide enough for every column of the builder table (the narrower sizes are tests/tui/test_layout.py's)
WIDE = (170, 45)


def shown_rows(form: LayerForm) -> set[str]:
    return {r for r in ALL_ROWS if form.query_one(f"#row-{r}").display}


async def test_each_type_shows_the_keys_it_takes(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("conv-relu-bn")
    async with opened(app, WIDE) as pilot:
        form = app.query_one(LayerForm)
        for kind, rows in ROWS.items():
            form.query_one("#f-type", Select).value = kind
            await pilot.pause()
            assert shown_rows(form) == rows, kind


async def test_conv_entry_edits_filters_kernel_strides_and_residual(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("conv-relu-bn")
    async with opened(app, WIDE) as pilot:
        form = app.query_one(LayerForm)
        assert form.query_one("#f-filters", Input).value == "8"
        assert form.query_one("#f-kernel", Input).value == "3"
        form.query_one("#f-kernel", Input).value = "3, 5"
        form.query_one("#f-strides", Input).value = "2"
        form.query_one("#f-residual", Select).value = "true"
        await pilot.pause()
        layer = app.preset.layers[0]
        assert (layer.kernel_size, layer.strides, layer.residual) == ((3, 5), 2, True)
        assert layer.batch_norm == "before" and layer.initializer.name == "he_normal"
        table = app.query_one(LayerTable)
        assert table.get_cell("0", "units") == "8 3x5"
        assert table.get_cell("0", "output") == "1x1x8"  # 8 repeats of strides 2: 8 -> 4 -> 2 -> 1 -> 1...
        assert "res" in str(table.get_cell("0", "BN"))
        # an edit the shapes refuse shows the plan's error in the panel, not a crash
        form.query_one("#f-padding", Select).value = "valid"
        await pilot.pause()
        assert app.preset.layers[0].padding == "valid"
        assert "use padding = 'same'" in str(app.query_one(AdvicePanel).content)


async def test_turning_a_dense_entry_into_recurrent_and_back(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("rnn-exploding")
    async with opened(app, WIDE) as pilot:
        form = app.query_one(LayerForm)
        assert form.query_one("#f-rinit", Select).value == "random_normal"
        assert form.query_one("#f-rinit-param", Input).value == "0.3"
        form.query_one("#f-type", Select).value = "lstm"
        await pilot.pause()
        layer = app.preset.layers[0]
        assert layer.type == "lstm" and layer.units == 32
        assert dict(layer.recurrent_initializer.params) == {"stddev": 0.3}
        form.query_one("#f-bidir", Select).value = "true"
        form.query_one("#f-rinit", Select).value = "orthogonal"
        await pilot.pause()
        layer = app.preset.layers[0]
        assert layer.bidirectional and layer.recurrent_initializer.name == "orthogonal"
        table = app.query_one(LayerTable)
        assert table.get_cell("0", "type") == "lstm" and "bi" in str(table.get_cell("0", "BN"))
        # 2 directions x 4 gates x (32 x (2 + 32) + 32)
        assert table.get_cell("0", "params") == f"{2 * 4 * (32 * 34 + 32):,}"
        assert table.get_cell("0", "output") == "64"  # two directions of 32, the last step only
        # a dense entry made conv2d gets filters and a kernel to start from
        await pilot.press("i")
        form.query_one("#f-type", Select).value = "conv1d"
        await pilot.pause()
        assert app.preset.layers[0].type == "conv1d" and app.preset.layers[0].filters == 16


async def test_preflight_names_recurrent_clipping_and_deep_plain_stacks(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("rnn-exploding")
    async with opened(app, WIDE) as pilot:
        panel = app.query_one(AdvicePanel)
        assert "without gradient clipping" in str(panel.content)
        assert "a number (regression)" in str(panel.content)
        app.query_one("#t-clipping", Select).value = "norm"
        await pilot.pause()
        app.query_one("#t-clip", Input).value = "1.0"
        await pilot.pause()
        assert app.preset.train.clipnorm == 1.0
        assert "without gradient clipping" not in str(panel.content)
    app = make_app("deep-plain")
    async with opened(app, WIDE) as pilot:
        panel = app.query_one(AdvicePanel)
        assert "residual = true" in str(panel.content)
        form = app.query_one(LayerForm)
        form.query_one("#f-residual", Select).value = "true"
        await pilot.pause()
        assert app.preset.layers[0].residual
        assert "residual = true" not in str(panel.content)


async def test_f_applies_the_issue_12_fix_forms_to_the_stack(make_app) -> None:  # type: ignore[no-untyped-def]
    from gradtui.diagnosis import Diagnosis

    app = make_app("rnn-pixels")
    async with opened(app, WIDE) as pilot:
        app.trained_preset = app.preset
        lstm = {"entries": [0], "set": {"type": "lstm", "activation": "tanh"}}
        assert app.apply_diagnosis(
            Diagnosis("vanishing", "simple_rnn", 3, "error", "m", "a", ["simple_rnn"], lstm)
        )
        await pilot.pause()
        assert app.preset.layers[0].type == "lstm"
        await pilot.pause()
        assert app.query_one(LayerTable).get_cell("0", "type") == "lstm"
        assert app.query_one(LayerForm).query_one("#f-type", Select).value == "lstm"
        app.trained_preset = app.preset
        clip = {"train": {"clipnorm": 1.0}}
        assert app.apply_diagnosis(Diagnosis("exploding", "lstm", 3, "error", "m", "a", ["lstm"], clip))
        assert app.preset.train.clipnorm == 1.0
    app = make_app("deep-plain")
    async with opened(app, WIDE) as pilot:
        app.trained_preset = app.preset
        residual = {"entries": [0], "set": {"residual": True}}
        assert app.apply_diagnosis(Diagnosis("vanishing", "dense", 3, "error", "m", "a", ["dense"], residual))
        await pilot.pause()
        assert app.preset.layers[0].residual
        assert "res" in str(app.query_one(LayerTable).get_cell("0", "BN"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["deep-residual", "rnn-clipnorm", "conv-relu-bn"])
async def test_new_stacks_train_in_the_app(make_app, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    """A residual, a recurrent regression and a conv stack train in the TUI and reach the monitor."""
    import time

    from gradtui.preset import load
    from gradtui.tui.widgets.layer_monitor import LayerMonitor

    path = tmp_path / f"{name}.toml"
    path.write_text(load(name).with_overrides(max_steps=20).to_toml())
    app = make_app(str(path))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("t")
        start = time.monotonic()
        while app.training or app.current is None:
            assert time.monotonic() - start < 120, "training did not finish"
            await pilot.pause(0.05)
        assert app.current.status == "completed", app.current
        names = [r.name for r in app.query_one(LayerMonitor).rows]
        assert names and all(not n.startswith("add") for n in names), names


async def test_the_adding_task_shows_its_length_and_loss(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("rnn-clipnorm")
    async with opened(app) as pilot:
        assert app.query_one("#row-length").display and app.query_one("#row-loss").display
        assert app.query_one("#t-length", Input).value == "50"
        app.query_one("#t-length", Input).value = "20"
        await pilot.pause()
        app.query_one("#t-loss", Select).value = "mae"
        await pilot.pause()
        assert app.preset.data.length == 20 and app.preset.loss == "mae"
        assert app.query_one(LayerTable).get_cell_at((0, 7)) == f"{32 * (2 + 32) + 32:,}"
    app = make_app("conv-relu-bn")
    async with opened(app):
        assert not app.query_one("#row-length").display and not app.query_one("#row-loss").display
