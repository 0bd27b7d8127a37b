"""The report's figure of a long run, read line by line (issue 23's pictures at scale).

``gradtui report`` reads the whole run into memory before drawing; this script streams
``stats.jsonl`` in blocks into :class:`gradtui.report.FigureData` (which holds only what the
figure shows) and draws the same figure, so that the picture of a 1,000,000-record run can be
looked at on a machine that cannot hold the run. It also prints the largest array the figure
holds (vertices of each line and band, cells of the heatmap).

Run: ``python benchmarks/scale_pictures.py RUN_DIR OUT.png``.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from gradtui.report import BLOCK, DPI, LINE_FIELDS, FigureData, make_figure  # noqa: E402
from gradtui.runlog import Run  # noqa: E402


def _num(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def stream(run_dir: Path) -> tuple[Run, FigureData]:
    """The run's summary and preset (no records), and its figure data read block by block."""
    summary = (
        json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    )
    stats = run_dir / "stats.jsonl"
    with open(stats, "rb") as fh:
        first = json.loads(fh.readline())
    names = list(first.get("layers", {}))
    with open(stats, "rb") as fh:  # the last whole line's step
        fh.seek(max(0, stats.stat().st_size - 1_000_000))
        last = json.loads(fh.read().splitlines()[-1])
    data = FigureData(names, float(first["step"]), float(last["step"]))
    keys = ("grad_norm", *LINE_FIELDS)
    block = max(64, BLOCK * 13 // max(13, len(names)))  # parsed records are large: ~1 kB a layer
    with open(stats, "rb") as fh:
        while True:
            lines = [line for _, line in zip(range(block), fh, strict=False)]
            if not lines:
                break
            recs = [json.loads(line) for line in lines]
            fields = {
                k: np.array([[_num(r["layers"].get(n, {}).get(k)) for n in names] for r in recs])
                for k in keys
            }
            data.add(
                np.array([r["step"] for r in recs], dtype=float),
                np.array([_num(r.get("loss")) for r in recs]),
                fields,
            )
    run = Run(path=run_dir, status=summary.get("status", "incomplete"), summary=summary)
    return run, data


def main() -> int:
    run_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    t0 = time.perf_counter()
    run, data = stream(run_dir)
    t1 = time.perf_counter()
    fig = make_figure(run, data)
    fig.savefig(out, dpi=DPI)
    t2 = time.perf_counter()
    most = 0
    for ax in fig.axes:
        for line in ax.get_lines():
            most = max(most, len(line.get_xdata()))
        for coll in ax.collections:
            arr = coll.get_array()
            if arr is not None:
                most = max(most, int(np.size(arr)))
            for path in coll.get_paths():
                most = max(most, len(path.vertices))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{run_dir.name}: {data.records:,} records read in {t1 - t0:.1f} s, drawn in {t2 - t1:.1f} s; "
        f"largest array drawn {most:,}; peak RSS {rss:.0f} MiB -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
