"""What the report draws (issue 21): zero gradients are a colour of their own (white is "not
recorded"), a log line breaks at zeros instead of crossing them, an empty panel says why, and an
unknown loss says so instead of drawing an empty axis."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.colors import to_rgba  # noqa: E402

from gradtui.report import ZERO_COLOUR, make_figure  # noqa: E402
from gradtui.runlog import read_run  # noqa: E402


def write(path: Path, rows: list[dict[str, dict[str, float]]], loss: float | None) -> Path:
    path.mkdir()
    lines = [json.dumps({"step": s, "loss": loss, "layers": layers}) for s, layers in enumerate(rows)]
    (path / "stats.jsonl").write_text("\n".join(lines) + "\n")
    return path


def texts(fig) -> list[str]:  # type: ignore[no-untyped-def]
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_zero_gradients_are_coloured_and_log_lines_break_at_zeros(tmp_path: Path) -> None:
    rows = [
        {
            "dead": {"grad_norm": 0.0 if s >= 2 else 1e-3, "update_ratio": 0.0 if s in (2, 3) else 1e-3},
            "top": {"grad_norm": 0.5, "update_ratio": 1e-3},
        }
        for s in range(6)
    ]
    fig = make_figure(read_run(write(tmp_path / "run", rows, 2.0)))
    heat = fig.axes[0]
    zero = to_rgba(ZERO_COLOUR)
    assert any(
        tuple(c.cmap(0)) == zero and c.get_array().count() == 4
        for c in heat.collections
        if hasattr(c, "cmap")
    )  # the four zero cells, in their own colour
    upd = next(ax for ax in fig.axes if ax.get_title(loc="left").startswith("update ratio"))
    (line, _) = upd.get_lines()
    y = line.get_ydata()
    assert math.isnan(y[2]) and math.isnan(y[3]) and y[4] == 1e-3  # broken, not drawn across
    assert "gaps: exactly 0 (no point on a log scale)" in texts(fig)


def test_an_unknown_loss_and_empty_panels_say_why(tmp_path: Path) -> None:
    rows = [{"a": {"grad_norm": 1.0, "update_ratio": 0.0}, "b": {"grad_norm": 1.0, "update_ratio": 0.0}}] * 4
    fig = make_figure(read_run(write(tmp_path / "run", rows, None)))
    said = texts(fig)
    assert "loss not recorded: the training step computed it out of gradtui's sight" in said
    assert "every update ratio is exactly 0 (no weight moved)" in said
    assert "no layer records saturation" in said and "no layer records dead" in said
