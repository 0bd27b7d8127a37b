"""The layer monitor's attention lines and the fixes of issue 22's diagnoses in words.

An attention query row's ``attn_logit_max`` and ``attn_entropy`` (SPEC section 3) are drawn as
two lines under it with a legend; rows without them, and steps where they were not measured
(NaN), add nothing. The records here are written by hand in the shape ``stats.jsonl`` has (no
TensorFlow runs): a run whose query row's largest logit grows from 3.6 to ~5e3 while its
entropy falls to 0, as issue 22 measured at lr 0.03.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from gradtui.tui.feed import Snapshot, snapshot_from_records
from gradtui.tui.widgets.layer_monitor import LayerMonitor, attention_legend, fit_name
from gradtui.tui.widgets.warnings_panel import describe_fix

from .conftest import opened

QUERY = "transformer/multi_head_attention/query"
LAYERS = ("embedding", QUERY, "transformer/multi_head_attention/key", "transformer/ffn_1", "dense")
SMALL, MEDIUM, LARGE = (80, 24), (120, 35), (150, 45)


def attention_records(steps: int = 60) -> list[dict[str, Any]]:
    """Records as ``stats.jsonl`` holds them; attention measured on even steps only."""
    out = []
    for step in range(steps):
        layers: dict[str, dict[str, float]] = {}
        for i, name in enumerate(LAYERS):
            layers[name] = {
                "grad_norm": 0.01 * (i + 1) * (1 + step % 3),
                "update_ratio": 1e-3,
                "nonfinite": 0,
            }
        if step % 2 == 0:
            layers[QUERY]["attn_logit_max"] = 3.6 * math.exp(step / 8)
            layers[QUERY]["attn_entropy"] = max(0.0, 3.5 - step / 15)
        else:
            layers[QUERY]["attn_logit_max"] = math.nan
        out.append({"step": step, "epoch": 0, "loss": 3.0 - step / 60, "layers": layers})
    return out


def attention_run() -> Snapshot:
    snap = snapshot_from_records(attention_records(), {"steps": 60, "epochs": 1, "status": "completed"})
    snap.name, snap.elapsed, snap.steps_per_epoch = "attention", 12.0, 60
    return snap


def test_the_feed_carries_the_measured_attention_statistics_only() -> None:
    rows = {r.name: r for r in attention_run().rows}
    query = rows[QUERY]
    assert query.attn_logit_max and all(math.isfinite(v) for v in query.attn_logit_max)  # NaN left out
    assert query.attn_logit_max[0] == pytest.approx(3.6) and query.attn_logit_max[-1] > 1e3
    assert query.attn_entropy[-1] == 0.0
    assert all(not r.attn_logit_max and not r.attn_entropy for n, r in rows.items() if n != QUERY)


async def test_attention_lines_under_the_query_row_at_80x24(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app("vanishing-sigmoid")
    async with opened(app, SMALL) as pilot:
        app.show_run(attention_run())
        app.action_tab("monitor")
        monitor = app.query_one(LayerMonitor)
        for _ in range(100):
            if monitor.rows and monitor.size.width:
                break
            await pilot.pause(0.02)
        await pilot.pause(0.05)
        lines = monitor.render_text().splitlines()
        width = monitor.scrollable_content_region.width
        at = next(i for i, line in enumerate(lines) if "…" in line and "query" in line)
        # the query row, then its two lines: label, a sparkline, the newest value
        assert lines[at + 1].lstrip().startswith("└ qk max") and lines[at + 1].rstrip().endswith("5069")
        assert lines[at + 2].lstrip().startswith("└ entropy") and lines[at + 2].rstrip().endswith(" 0")
        for line in lines[at + 1 : at + 3]:
            assert any(c in line for c in "▁▂▃▄▅▆▇█")
        # the rows after it are layers again: the key's row has no attention lines
        assert "key" in lines[at + 3] and "└" not in lines[at + 3]
        # the legend says what the lines are, on one log scale from the first to the largest logit
        legend = [line for line in lines if line.lstrip().startswith("└") and ":" in line]
        assert len(legend) == 2 and all(len(line.rstrip()) <= width for line in legend)
        assert "|q·k|/√d" in legend[0] and "4e+00" in legend[0] and "5e+03" in legend[0]
        assert "nats" in legend[1] and "3.5" in legend[1]
        # everything in view at 80x24, the sparkline as wide as without attention
        assert monitor.scrollable_content_region.height >= len(lines)
        assert monitor.spark_width >= 16


async def test_a_run_without_attention_statistics_draws_no_attention_line(make_app) -> None:  # type: ignore[no-untyped-def]
    records = attention_records()
    for r in records:
        r["layers"][QUERY].pop("attn_entropy", None)
        r["layers"][QUERY]["attn_logit_max"] = math.nan  # recorded as missing on every step
    snap = snapshot_from_records(records, {"steps": 60, "status": "completed"})
    app = make_app("vanishing-sigmoid")
    async with opened(app, SMALL) as pilot:
        app.show_run(snap)
        app.action_tab("monitor")
        await pilot.pause(0.1)
        text = app.query_one(LayerMonitor).render_text()
        assert "└" not in text and "qk max" not in text
        assert len(text.splitlines()) == len(LAYERS) + 2


def test_the_legend_shortens_instead_of_cutting() -> None:
    scale = (math.log10(3.6), math.log10(5069.0))
    wide = attention_legend(scale, 3.5, 100)
    assert wide == [
        "└ qk max: largest attention logit |q·k|/√d, one log scale 4e+00 … 5e+03",
        "└ entropy: attention entropy in nats (lowest head), scale 0 … 3.5",
    ]
    for width in (60, 40, 30, 12):
        assert all(len(line) <= width for line in attention_legend(scale, 3.5, width))
    assert attention_legend(None, None, 80) == []
    assert fit_name(QUERY, 10) == "…ion/query"
    assert fit_name("dense_12", 5) == "dense"


def test_issue_22_fixes_in_words() -> None:
    assert describe_fix({"entries": [1, 3], "set": {"qk_norm": True}}) == "layers[1,3]: qk_norm=true"
    assert describe_fix({"train": {"z_loss": 1e-4}}) == "z_loss=0.0001"
    assert describe_fix({"train": {"epsilon": 1e-8}}) == "epsilon=1e-08"
    assert (
        describe_fix({"train": {"learning_rate": 0.003, "warmup_steps": 100}})
        == "learning_rate=0.003, warmup_steps=100"
    )
    assert (
        describe_fix({"entries": [0], "set": {"activation": "relu", "initializer": {"name": "he_normal"}}})
        == "layers[0]: activation=relu, initializer=he_normal"
    )
    # read from a damaged run folder: described, never a crash
    assert describe_fix({"entries": 3, "set": "x", "train": [1]}) == "nothing to change"
    assert describe_fix(None) == "nothing to change"


def test_monitor_with_attention_snapshot_80x24(snap_compare, make_app) -> None:  # type: ignore[no-untyped-def]
    async def show(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.pause()  # the tabs settle on their initial tab first
        pilot.app.show_run(attention_run())
        pilot.app.action_tab("monitor")
        await pilot.pause()

    assert snap_compare(make_app("vanishing-sigmoid"), terminal_size=SMALL, run_before=show)
