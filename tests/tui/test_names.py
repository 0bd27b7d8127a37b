"""Names read from a run folder are text in the TUI (issue 19): layer names, diagnoses and the
run's name holding terminal escapes and Rich markup reach the screen escaped, and crash nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gradtui.tui.app import open_app
from gradtui.tui.widgets.layer_monitor import LayerMonitor
from gradtui.tui.widgets.run_status import RunStatus
from gradtui.tui.widgets.warnings_panel import WarningsPanel, describe

from .conftest import SIZE

EVIL_NAME = "evil\x1b]0;pwned\x07[/][bold]x"


async def test_tui_monitor_and_warnings_show_names_from_a_run_as_text(tmp_path: Path) -> None:
    """``gradtui open`` on a run whose layer names, diagnoses and summary hold escapes and markup:
    the app runs (no MarkupError), and the monitor and warnings show the text escaped."""
    layer = "a[/]\x1b[2J"
    run = tmp_path / "evil-run"
    run.mkdir()
    stats = {"grad_norm": 0.5, "grad_max": 1.0, "weight_norm": 1.0, "update_ratio": 1e-3, "nonfinite": 0}
    (run / "stats.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "epoch": 0, "loss": 2.0, "layers": {layer: stats, "[link=x]b": stats}})
            + "\n"
            for s in range(3)
        )
    )
    diagnosis = {
        "kind": "vanishing",
        "layer": layer,
        "step": 1,
        "severity": "error",
        "message": "[/] \x1b]0;pwned\x07",
        "advice": "[bold]x\x1b[31m",
    }
    (run / "summary.json").write_text(
        json.dumps(
            {
                "name": EVIL_NAME,
                "status": "completed",
                "steps": 3,
                "epochs": 1,
                "device": "CPU",
                "final": {"loss": 2.0},
                "diagnoses": [diagnosis],
                "error": None,
            }
        )
    )
    app = open_app(run, state=tmp_path / "state")
    async with app.run_test(size=SIZE) as pilot:
        deadline = time.monotonic() + 60  # generous: a loaded CI machine reads slowly
        while time.monotonic() < deadline:
            if not app.reading and app.query_one("TabbedContent").active == "monitor":
                break
            await pilot.pause(0.05)
        assert not app.reading
        await pilot.pause(0.2)
        shown = app.query_one(LayerMonitor).render_text()
        assert "a[/]\\x1b[2J" in shown and "\x1b" not in shown
        warning = describe(app.query_one(WarningsPanel).diagnoses[0]).plain
        assert "a[/]\\x1b[2J" in warning and "[/] \\x1b]0;pwned\\x07" in warning and "\x1b" not in warning
        status = str(app.query_one(RunStatus).render())
        assert "\x1b" not in status
        await pilot.press("q")
