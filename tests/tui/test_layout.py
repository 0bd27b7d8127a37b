"""The screens at 80x24 (a default terminal) and 120x35: what matters first always shows.

At 80x24 the monitor shows every layer's status mark, name, sparkline and latest gradient norm,
and the warning's text and advice whole; the builder's table keeps its main columns whole
instead of cutting every one. The numeric columns with their headers, the whole scale header,
the loss chart, params and σ² join as the terminal grows. Fed from the recorded vanishing run,
so no TensorFlow runs here.
"""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from gradtui.diagnosis import Diagnosis
from gradtui.tui.widgets.layer_monitor import LayerMonitor, scale_label
from gradtui.tui.widgets.layer_table import LayerTable, fit_columns
from gradtui.tui.widgets.loss_chart import LossChart
from gradtui.tui.widgets.warnings_panel import WarningsPanel, describe

from .conftest import forms_mounted, opened
from .test_snapshots import recorded

SMALL = (80, 24)
MEDIUM = (120, 35)


async def show_monitor(pilot: Pilot) -> None:
    await pilot.pause()  # the tabs settle on their initial tab first
    pilot.app.show_run(recorded("run-vanishing"))
    pilot.app.action_tab("monitor")
    await pilot.pause()


async def settled(pilot: Pilot) -> None:
    """The monitor shown and laid out at the terminal's width (its classes follow a resize)."""
    await show_monitor(pilot)
    for _ in range(50):
        monitor = pilot.app.query_one(LayerMonitor)
        if monitor.size.width and monitor.rows:
            break
        await pilot.pause(0.02)
    await pilot.pause(0.05)


@pytest.mark.parametrize("size", [SMALL, MEDIUM], ids=["80x24", "120x35"])
def test_monitor_snapshot(snap_compare, make_app, size) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app("vanishing-sigmoid"), terminal_size=size, run_before=show_monitor)


@pytest.mark.parametrize("size", [SMALL, MEDIUM], ids=["80x24", "120x35"])
def test_builder_snapshot(snap_compare, make_app, size) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(make_app("vanishing-sigmoid"), terminal_size=size, run_before=forms_mounted)


async def test_monitor_at_80x24_shows_what_matters_first(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app, SMALL) as pilot:
        await settled(pilot)
        monitor = app.query_one(LayerMonitor)
        # every layer in view, each with its mark, name, a real sparkline and its latest norm
        assert monitor.scrollable_content_region.height >= len(monitor.rows) + 2
        assert monitor.spark_width >= 16
        for i, row in enumerate(monitor.rows):
            line = monitor.line_text(i + 2).plain
            assert line[0] in "●▲✖" and row.name in line
            assert any(c in line for c in "▁▂▃▄▅▆▇█")
            assert line.rstrip().endswith(
                f"{row.grad_norm:.1e}" if row.grad_norm < 1e-3 else f"{row.grad_norm:.4g}"
            )
        header = monitor.line_text(0).plain
        assert header.rstrip().endswith("grad") and "3e-08" in header and "1e+00" in header
        # the chart gives its place to the warnings, which show their text and advice whole
        assert not app.query_one(LossChart).display
        warnings = app.query_one(WarningsPanel)
        assert warnings.diagnoses and warnings.size.width >= 30
        assert warnings.virtual_size.height <= warnings.scrollable_content_region.height
        assert warnings.scrollable_content_region.height >= 9


async def test_monitor_at_120x35_adds_columns_with_headers(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app, MEDIUM) as pilot:
        await settled(pilot)
        monitor = app.query_one(LayerMonitor)
        cols = monitor.columns
        assert cols.upd and cols.bar and cols.spark_w >= 16
        header = monitor.line_text(0).plain
        for name in ("layer", "grad", "upd/w", "sat/dead"):
            assert name in header
        # the scale header ends inside the sparkline's column: never cut (``1e+0``)
        label = header[2 + cols.name_w + 1 : 2 + cols.name_w + 1 + cols.spark_w].strip()
        assert label.endswith("1e+00") and "3e-08" in label
        first = monitor.line_text(2).plain
        # right-aligned under their headers
        assert first.index("1.3e-11") + len("1.3e-11") == header.index("upd/w") + len("upd/w")
        assert first.index("3.9e-08") + len("3.9e-08") == header.index(" grad ") + len(" grad")
        assert app.query_one(LossChart).display


def test_scale_label_shortens_instead_of_cutting() -> None:
    scale = (-7.5, 0.0)
    assert scale_label(scale, 60).strip() == "grad norm, one log scale 3e-08 … 1e+00"
    assert scale_label(scale, 16).strip() == "log 3e-08…1e+00"
    assert scale_label(scale, 11).strip() == "3e-08…1e+00"
    assert scale_label(scale, 10).strip() == "grad norm"
    assert len(scale_label(scale, 23)) == 23


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (SMALL, {"#", "type", "units", "activation", "initializer"}),
        (MEDIUM, {"#", "type", "units", "activation", "initializer", "repeat", "params", "σ²"}),
        (
            (150, 45),
            {"#", "type", "units", "activation", "initializer", "repeat", "params", "σ²", "BN", "output"},
        ),
    ],
)
async def test_builder_table_drops_columns_instead_of_cutting_them(make_app, size, expected) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app, size) as pilot:
        table = app.query_one(LayerTable)
        # the forms column takes its width for the terminal's size, then the table its columns
        for _ in range(100):
            await pilot.pause(0.02)
            keys = {str(c.key.value) for c in table.columns.values()}
            if keys == expected:
                break
        assert keys == expected
        # every shown column whole: the table needs no horizontal scrolling
        assert table.virtual_size.width <= table.scrollable_content_region.width
        cells = [str(table.get_cell_at((r, c))) for r in range(table.row_count) for c in range(len(keys))]
        assert "sigmoid" in cells and "softmax" in cells and "glorot_uniform" in cells


def test_fit_columns_keeps_the_core_and_shortens_headers() -> None:
    cells = [["0", "dense", "64", "sigmoid", "glorot_uniform", "", "×12", "49,920", "0.0156", "64"]]
    narrow = fit_columns(40, cells)
    assert [c for c, _ in narrow] == ["#", "type", "units", "activation", "initializer"]
    assert dict(narrow)["activation"] == "act"
    wide = fit_columns(200, cells)
    assert [c for c, _ in wide] == [
        "#",
        "type",
        "units",
        "activation",
        "initializer",
        "BN",
        "repeat",
        "params",
        "σ²",
        "output",
    ]
    assert dict(wide)["activation"] == "activation"


def test_cleared_diagnosis_says_so_in_the_warnings() -> None:
    d = Diagnosis("dead_units", "dense_3", 12, "warning", "62% dead", "use leaky_relu", cleared_step=52)
    assert "cleared @ step 52" in describe(d).plain
    d.cleared_step = None
    assert "cleared" not in describe(d).plain


async def test_warnings_panel_shows_cleared(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app, SMALL) as pilot:
        snap = recorded("run-vanishing")
        snap.diagnoses = [
            *snap.diagnoses,
            Diagnosis("dead_units", "dense_3", 12, "warning", "62% dead", "use leaky_relu", cleared_step=52),
        ]
        app.show_run(snap)
        app.action_tab("monitor")
        await pilot.pause()
        panel = app.query_one(WarningsPanel)
        texts = [str(panel.get_option_at_index(i).prompt) for i in range(panel.option_count)]
        assert any("cleared @ step 52" in t for t in texts)
