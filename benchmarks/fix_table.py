"""Validation before and after one ``gradtui fix``, for every bundled failure preset and the
scenarios of issue 21 (benchmarks/scenarios/*.toml).

Each case: ``gradtui run CASE`` -> ``gradtui fix`` (the same code path:
:func:`gradtui.remedy.apply_remedy` on the run's summary) -> ``gradtui run`` the fixed preset,
both with the same ``--max-steps``. Prints a Markdown table: the open diagnoses and the
validation metric (accuracy; ``val_loss`` for the adding task, whose target variance is 1/6)
before and after, and what the fix changed.

Usage::

    PYTHONPATH=. python benchmarks/fix_table.py [--max-steps N] [--out DIR] [CASE...]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAILURES = [
    "vanishing-sigmoid",
    "exploding-relu",
    "clipvalue",
    "saturated-tanh",
    "dying-relu",
    "deep-plain",
    "conv-sigmoid",
    "conv-dead-relu",
    "rnn-pixels",
    "rnn-exploding",
]
SCENARIOS = sorted(str(p) for p in (ROOT / "benchmarks" / "scenarios").glob("*.toml"))


def _metric(summary: dict) -> str:
    final = summary.get("final", {})
    if "val_accuracy" in final:
        return f"acc {final['val_accuracy']:.3f}"
    loss = final.get("val_loss", final.get("loss"))
    if loss is None:
        return "-"
    return f"loss {loss:.3g}" if math.isfinite(loss) else f"loss {loss}"


def _open(summary: dict) -> str:
    kinds = [d["kind"] for d in summary.get("diagnoses", []) if d.get("cleared_step") is None]
    cleared = [d["kind"] for d in summary.get("diagnoses", []) if d.get("cleared_step") is not None]
    out = ", ".join(dict.fromkeys(kinds)) or "none"
    if cleared:
        out += f" (cleared: {', '.join(dict.fromkeys(cleared))})"
    return out


def main() -> int:
    """Run the table; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", nargs="*", help="presets or .toml files (default: all)")
    ap.add_argument("--max-steps", type=int, default=None, help="steps of each run (default: the preset's)")
    ap.add_argument("--out", default="runs/fix-table", help="folder for the run directories")
    args = ap.parse_args()

    from gradtui.diagnosis import Diagnosis
    from gradtui.preset import load
    from gradtui.remedy import apply_remedy
    from gradtui.session import Session

    cases = args.cases or FAILURES + SCENARIOS
    root = Path(args.out)
    print(f"max_steps: {args.max_steps or 'the preset default'}", file=sys.stderr)
    rows = []
    for case in cases:
        name = Path(case).stem
        t0 = time.monotonic()
        preset = load(case).with_overrides(max_steps=args.max_steps)
        before = Session(preset, root / name / "before", overwrite=True).run()
        remedy = apply_remedy(preset, [Diagnosis.from_dict(d) for d in before["diagnoses"]])
        if remedy.changes:
            after = Session(remedy.preset, root / name / "after", overwrite=True).run()
            changes = "; ".join(remedy.changes)
        else:
            after, changes = None, "(no automatic fix)"
        rows.append(
            (
                name,
                _open(before),
                _metric(before),
                changes,
                _open(after) if after else "-",
                _metric(after) if after else "-",
            )
        )
        print(f"{name}: {time.monotonic() - t0:.0f} s; {rows[-1]}", file=sys.stderr, flush=True)
    print("| case | diagnoses before | val before | one `gradtui fix` | diagnoses after | val after |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
