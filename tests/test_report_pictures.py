"""What the report draws (issue 21): zero gradients are a colour of their own (white is "not
recorded"), a log line breaks at zeros instead of crossing them, an empty panel says why, and an
unknown loss says so instead of drawing an empty axis."""

from __future__ import annotations

import io
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


# --- runs of any length (issue 23): what the figure holds is bounded by its pixels


def _long_run(path: Path, n: int) -> Path:
    """``n`` records of two layers: a slow trend with noise, a one-step loss spike at 31,337,
    a NaN loss at 50,000, a NaN gradient of ``top`` at 70,001, ``low``'s gradient exactly 0
    from 80,000 on."""
    import numpy as np

    rng = np.random.default_rng(0)
    loss = 2.0 * np.exp(-np.arange(n) / n) * (1 + rng.normal(0, 0.05, n))
    loss[31_337] = 40.0
    lines = []
    for s in range(n):
        low = 0.0 if s >= 80_000 else 1e-6 * (1 + (s % 7) / 10)
        top = "NaN" if s == 70_001 else f"{0.5 + (s % 11) / 100:.4g}"
        lv = "NaN" if s == 50_000 else f"{loss[s]:.6g}"
        lines.append(
            f'{{"step":{s},"loss":{lv},"layers":{{"low":{{"grad_norm":{low:.4g},"update_ratio":1e-5,'
            f'"saturation":{(s % 100) / 400:.3g}}},"top":{{"grad_norm":{top},"update_ratio":2e-3}}}}}}'
        )
    path.mkdir()
    (path / "stats.jsonl").write_text("\n".join(lines) + "\n")
    (path / "summary.json").write_text(json.dumps({"name": "long", "status": "completed", "steps": n}))
    return path


def test_a_100k_step_run_is_drawn_with_bounded_arrays_and_keeps_its_extremes(tmp_path: Path) -> None:
    import numpy as np
    from matplotlib.collections import PolyCollection, QuadMesh

    from gradtui.report import HEAT_BUCKETS, LINE_BUCKETS

    run = read_run(_long_run(tmp_path / "run", 100_000))
    fig = make_figure(run)
    for ax in fig.axes:
        for line in ax.get_lines():
            assert len(line.get_xdata()) <= LINE_BUCKETS
        for coll in ax.collections:
            if isinstance(coll, QuadMesh):
                assert coll.get_array().size <= HEAT_BUCKETS * 2
            if isinstance(coll, PolyCollection):
                assert all(len(p.vertices) <= 2 * LINE_BUCKETS + 5 for p in coll.get_paths())
            if coll.get_offsets() is not None:
                assert len(coll.get_offsets()) <= HEAT_BUCKETS * 2
    heat, loss_ax = (
        fig.axes[0],
        next(a for a in fig.axes if a.get_title(loc="left") == "loss per recorded step"),
    )
    # the loss: a band whose top is the one-step spike, a mean line, the NaN marked where it was
    (band,) = [c for c in loss_ax.collections if isinstance(c, PolyCollection)]
    assert band.get_paths()[0].vertices[:, 1].max() == 40.0
    labels = [line.get_label() for line in loss_ax.get_lines()]
    assert any(label.startswith("mean of up to") for label in labels)
    (nan_mark,) = [line for line in loss_ax.get_lines() if line.get_label() == "loss NaN/Inf"]
    (x,) = nan_mark.get_xdata()
    assert abs(x - 50_000) < 100_000 / LINE_BUCKETS
    # the heatmap: largest of each span; the NaN gradient marked; low's zeros in their own colour
    (cross,) = [c for c in heat.collections if c.get_label() == "NaN/Inf"]
    ((cx, cy),) = cross.get_offsets()
    assert abs(cx - 70_001) < 100_000 / HEAT_BUCKETS and cy == 1.5
    zero = to_rgba(ZERO_COLOUR)
    (zeros,) = [c for c in heat.collections if hasattr(c, "cmap") and tuple(c.cmap(0)) == zero]
    spans = zeros.get_array().count()
    assert abs(spans - HEAT_BUCKETS * 0.2) <= 2  # the last fifth of the steps, layer low
    top = next(c for c in heat.collections if isinstance(c, QuadMesh) and c.norm.vmax)
    assert math.isclose(top.norm.vmax, 0.6, rel_tol=1e-3)  # 0.5 + 10/100: the largest top norm
    png = io.BytesIO()
    fig.savefig(png, format="png")
    assert png.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite(band.get_paths()[0].vertices).all()


def test_200_layer_names_are_thinned_to_what_fits_without_overlapping(tmp_path: Path) -> None:
    import numpy as np

    from gradtui.report import HEAT_BUCKETS, LINE_FIELDS, FigureData
    from gradtui.runlog import Run

    names = ["dense"] + [f"dense_{i}" for i in range(1, 200)]
    data = FigureData(names, 0.0, 29_999.0)
    rng = np.random.default_rng(0)
    for lo in range(0, 30_000, 5_000):  # fed in blocks, as a reader streams a run
        steps = np.arange(lo, lo + 5_000, dtype=float)
        depth = 10.0 ** np.linspace(-8, 0, 200)
        fields = {"grad_norm": depth * rng.lognormal(0, 0.2, (5_000, 200))}
        fields.update({k: np.full((5_000, 200), np.nan) for k in LINE_FIELDS})
        data.add(steps, 2.0 - steps / 30_000, fields)
    fig = make_figure(Run(path=tmp_path, status="completed", summary={"name": "deep"}), data)
    fig.canvas.draw()
    heat = fig.axes[0]
    assert heat.collections[0].get_array().size <= HEAT_BUCKETS * 200
    ticks = [t for t in heat.get_yticklabels() if t.get_text()]
    said = [t.get_text() for t in ticks]
    assert said[0] == "dense" and said[-1] == "dense_199" and len(said) < 200
    boxes = sorted((t.get_window_extent().y0, t.get_window_extent().y1) for t in ticks)
    assert all(b[0] >= a[1] for a, b in zip(boxes, boxes[1:], strict=False))  # no two overlap
    height_pt = heat.get_window_extent().height * 72 / fig.dpi
    assert len(said) <= height_pt / ticks[0].get_fontsize()
    assert f"{len(said)} of 200 layers named" == heat.get_ylabel()
