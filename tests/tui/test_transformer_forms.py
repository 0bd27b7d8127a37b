"""The builder's forms for issue 22's keys, and the fixes of its diagnoses applied by ``f``.

A ``transformer`` entry (heads, key_dim, ffn_units, norm, qk_norm, causal, dropout, activation),
``embedding.positions`` and ``[train] z_loss`` are edited through the real app (Textual Pilot)
and read back from the validated preset. These tests need the preset loader to know those keys
(SPEC section 2); on a tree where it does not yet, they skip, and say why.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Label, Select, Switch

from gradtui import preset as preset_module
from gradtui.diagnosis import Diagnosis
from gradtui.tui.feed import Snapshot
from gradtui.tui.widgets.layer_form import LayerForm
from gradtui.tui.widgets.layer_table import LayerTable
from gradtui.tui.widgets.train_form import TrainForm
from gradtui.tui.widgets.warnings_panel import WarningsPanel

from .conftest import opened, write_preset

needs_transformer = pytest.mark.skipif(
    "transformer" not in preset_module.LAYER_KEYS or "z_loss" not in preset_module.TRAIN_KEYS,
    reason="the preset loader does not know the transformer entry / [train] z_loss yet (SPEC section 2)",
)

SMALL = (80, 24)
#: wide enough for every column of the layer table (BN holds the switches)
WIDE = (170, 45)

TEXT_STACK = """
name = "tiny-text"
[data]
dataset = "text"
length = 16

[[layers]]
type = "embedding"
input_dim = 98
output_dim = 32

[[layers]]
type = "dense"
units = 98
activation = "linear"

[train]
optimizer = "adamw"
learning_rate = 0.003
"""

TRANSFORMER_STACK = """
name = "tiny-transformer"
[data]
dataset = "text"
length = 16

[[layers]]
type = "embedding"
input_dim = 98
output_dim = 32
positions = true

[[layers]]
type = "transformer"
heads = 2
key_dim = 16
ffn_units = 64

[[layers]]
type = "dense"
units = 98
activation = "linear"

[train]
optimizer = "adamw"
learning_rate = 0.03
"""


async def settle(pilot, condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Let the form's change messages arrive (the machine may be busy)."""
    waited = 0.0
    while not condition() and waited < timeout:
        await pilot.pause(0.05)
        waited += 0.05


def shown(form: LayerForm, row: str) -> bool:
    return bool(form.query_one(f"#row-{row}").display)


@needs_transformer
async def test_a_transformer_entry_made_in_the_form_has_the_spec_keys(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(write_preset(tmp_path / "text.toml", TEXT_STACK))
    async with opened(app, WIDE) as pilot:
        form = app.query_one(LayerForm)
        # the embedding: its positions switch, off, and no transformer field
        assert shown(form, "positions") and not shown(form, "heads")
        form.query_one("#f-positions", Switch).value = True
        await settle(pilot, lambda: app.preset.layers[0].positions)
        assert app.preset.layers[0].positions is True
        assert form.query_one("#row-positions .switch-state", Label).content == "on"
        await pilot.press("a")  # a new (dense) entry 1, before the output layer
        await settle(pilot, lambda: len(app.preset.layers) == 3 and form.index == 1)
        form.query_one("#f-type", Select).value = "transformer"
        await settle(pilot, lambda: app.preset.layers[1].type == "transformer")
        # only the transformer's fields, its activation the feed-forward one (gelu)
        for row in ("heads", "key-dim", "ffn-units", "norm", "qk-norm", "causal", "dropout", "activation"):
            assert shown(form, row), row
        for row in ("units", "init", "bn", "positions", "act-param"):
            assert not shown(form, row), row
        assert form.query_one("#row-activation Label", Label).content == "ffn activation"
        assert form.query_one("#f-activation", Select).value == "gelu"
        # causal left to the data set (text: causal), and said so
        assert form.query_one("#f-causal", Switch).value is True
        assert str(form.query_one("#row-causal .switch-state", Label).content) == "on (auto)"
        form.query_one("#f-heads", Input).value = "2"
        form.query_one("#f-key-dim", Input).value = "16"
        form.query_one("#f-ffn-units", Input).value = "64"
        form.query_one("#f-norm", Select).value = "post"
        form.query_one("#f-dropout", Input).value = "0.1"
        form.query_one("#f-qk-norm", Switch).value = True
        await settle(pilot, lambda: app.preset.layers[1].qk_norm and app.preset.layers[1].dropout == 0.1)
        entry = app.preset.layers[1]
        assert (entry.heads, entry.key_dim, entry.ffn_units, entry.norm, entry.qk_norm, entry.dropout) == (
            2,
            16,
            64,
            "post",
            True,
            0.1,
        )
        assert entry.causal is None  # not turned: the key stays out, the data set decides
        table = app.preset.to_dict()["layers"][1]
        assert set(table) == {
            "type",
            "heads",
            "key_dim",
            "ffn_units",
            "norm",
            "qk_norm",
            "dropout",
            "activation",
            "repeat",
        }
        assert form.error == ""
        layer_table = app.query_one(LayerTable)
        assert layer_table.get_cell("1", "units") == "2h×16 ffn64"
        assert layer_table.get_cell("1", "BN") == "post qk"
        assert layer_table.get_cell("0", "BN") == "pos"
        # qk_norm off again, causal turned off: both written
        form.query_one("#f-qk-norm", Switch).value = False
        form.query_one("#f-causal", Switch).value = False
        await settle(pilot, lambda: app.preset.layers[1].causal is False)
        assert app.preset.layers[1].qk_norm is False
        assert layer_table.get_cell("1", "BN") == "post noncausal"
        # key_dim emptied: back to the loader's default (width / heads), not an error
        form.query_one("#f-key-dim", Input).value = ""
        await settle(pilot, lambda: app.preset.layers[1].key_dim is None)
        assert app.preset.layers[1].key_dim is None and form.error == ""
        assert layer_table.get_cell("1", "units") == "2h ffn64"
        # a value the loader refuses: its one-line message in the form, the stack unchanged
        form.query_one("#f-heads", Input).value = "0"
        await settle(pilot, lambda: form.error != "")
        assert "heads" in form.error and app.preset.layers[1].heads == 2


@needs_transformer
async def test_a_transformer_entry_is_shown_in_the_form(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(
        write_preset(tmp_path / "t.toml", TRANSFORMER_STACK.replace("heads = 2", "heads = 2\nqk_norm = true"))
    )
    async with opened(app, SMALL) as pilot:
        app.query_one(LayerTable).move_cursor(row=1)
        form = app.query_one(LayerForm)
        await settle(pilot, lambda: form.index == 1)
        assert form.query_one("#f-heads", Input).value == "2"
        assert form.query_one("#f-key-dim", Input).value == "16"
        assert form.query_one("#f-ffn-units", Input).value == "64"
        assert form.query_one("#f-norm", Select).value == "pre"
        assert form.query_one("#f-qk-norm", Switch).value is True
        assert form.query_one("#row-qk-norm .switch-state", Label).content == "on"


@needs_transformer
async def test_z_loss_in_the_train_form(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(write_preset(tmp_path / "t.toml", TRANSFORMER_STACK))
    async with opened(app) as pilot:
        form = app.query_one(TrainForm)
        assert form.query_one("#row-z_loss").display
        # the text data set's own fields: its context length and source file
        assert form.query_one("#row-length").display and form.query_one("#row-source").display
        assert form.query_one("#t-length", Input).value == "16"
        assert not form.query_one("#row-loss").display
        form.query_one("#t-z_loss", Input).value = "1e-4"
        await settle(pilot, lambda: app.preset.train.z_loss == 1e-4)
        assert app.preset.train.z_loss == 1e-4 and form.error == ""
        assert app.preset.data.length == 16 and app.preset.data.source is None
        form.query_one("#t-z_loss", Input).value = ""
        await settle(pilot, lambda: app.preset.train.z_loss is None)
        assert app.preset.train.z_loss is None
        form.query_one("#t-length", Input).value = "32"
        await settle(pilot, lambda: app.preset.data.length == 32)
        assert app.preset.data.length == 32
    # z_loss acts on logits: no field for a softmax output layer, until the layer is made linear
    app = make_app(write_preset(tmp_path / "s.toml", TRANSFORMER_STACK.replace('"linear"', '"softmax"')))
    async with opened(app) as pilot:
        form = app.query_one(TrainForm)
        assert not form.query_one("#row-z_loss").display
        app.query_one(LayerTable).move_cursor(row=2)
        layer_form = app.query_one(LayerForm)
        await settle(pilot, lambda: layer_form.index == 2)
        layer_form.query_one("#f-activation", Select).value = "linear"
        await settle(pilot, lambda: form.query_one("#row-z_loss").display)
        assert form.query_one("#row-z_loss").display
        form.query_one("#t-z_loss", Input).value = "1e-4"
        await settle(pilot, lambda: app.preset.train.z_loss == 1e-4)
        assert app.preset.train.z_loss == 1e-4 and form.error == ""
        # back to softmax: the loader's one-line message in the layer form, the stack unchanged
        layer_form.query_one("#f-activation", Select).value = "softmax"
        await settle(pilot, lambda: layer_form.error != "")
        assert "z_loss" in layer_form.error and app.preset.layers[2].activation_name == "linear"


@needs_transformer
async def test_f_turns_qk_norm_on_and_the_form_shows_it(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(write_preset(tmp_path / "t.toml", TRANSFORMER_STACK))
    growth = Diagnosis(
        "attention_logit_growth",
        "transformer/multi_head_attention/query",
        40,
        "error",
        "the largest attention logit grew from 3.6 to 2.2e4",
        "turn on qk_norm (LayerNorm on queries and keys)",
        ["transformer/multi_head_attention/query"],
        {"entries": [1], "set": {"qk_norm": True}},
    )
    async with opened(app, WIDE) as pilot:
        app.trained_preset = app.preset
        app.show_run(Snapshot(name="t", step=40, total_steps=41, status="completed", diagnoses=[growth]))
        app.action_tab("monitor")
        await settle(pilot, lambda: bool(app.query_one(WarningsPanel).diagnoses))
        hint = app.query_one(WarningsPanel).get_option_at_index(0).prompt
        assert "[f] layers[1]: qk_norm=true" in str(hint)
        await pilot.press("f")
        await settle(pilot, lambda: app.preset.layers[1].qk_norm)
        assert app.preset.layers[1].qk_norm is True
        form = app.query_one(LayerForm)
        await settle(pilot, lambda: form.index == 1)
        # the form shows the entry the fix changed, its switch on
        assert form.index == 1
        assert form.query_one("#f-qk-norm", Switch).value is True
        assert app.query_one(LayerTable).get_cell("1", "BN") == "pre qk"
        # the output-logit fix: z_loss in [train], in the training form's field
        app.trained_preset = app.preset
        divergence = Diagnosis(
            "output_logit_divergence",
            "dense",
            50,
            "warning",
            "m",
            "a",
            ["dense"],
            {"train": {"z_loss": 1e-4}},
        )
        assert app.apply_diagnosis(divergence)
        await settle(pilot, lambda: app.query_one(TrainForm).query_one("#t-z_loss", Input).value != "")
        assert app.preset.train.z_loss == 1e-4
        assert app.query_one(TrainForm).query_one("#t-z_loss", Input).value == "0.0001"


@needs_transformer
@pytest.mark.parametrize("size", [SMALL, (120, 35), (150, 45)], ids=["80x24", "120x35", "150x45"])
def test_builder_transformer_snapshot(snap_compare, make_app, tmp_path: Path, size) -> None:  # type: ignore[no-untyped-def]
    """The transformer entry highlighted: its row's summary, the form with its switches."""
    stack = TRANSFORMER_STACK.replace("heads = 2", "heads = 2\nqk_norm = true")

    async def highlight(pilot) -> None:  # type: ignore[no-untyped-def]
        from .conftest import forms_mounted

        await forms_mounted(pilot)
        pilot.app.query_one(LayerTable).move_cursor(row=1)
        form = pilot.app.query_one(LayerForm)
        await settle(pilot, lambda: form.index == 1)
        await pilot.pause()

    app = make_app(write_preset(tmp_path / "tiny-transformer.toml", stack))
    assert snap_compare(app, terminal_size=size, run_before=highlight)
