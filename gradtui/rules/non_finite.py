"""``non_finite``: NaN or Inf in the loss, the gradients or the weights."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gradtui.diagnosis import Diagnosis
from gradtui.rules.advice import (
    depth_names,
    explode_advice,
)
from gradtui.rules.base import COL, Found, Rule, Views
from gradtui.stack import layer_range

if TYPE_CHECKING:
    from gradtui.diagnose import Diagnoser


def check(dx: Diagnoser, v: Views) -> Found:
    s = v.last
    bad_mask = (s[:, :, COL["nonfinite"]] > 0) | ~np.isfinite(s[:, :, COL["weight_norm"]])
    holds = bad_mask.any(1) | ~np.isfinite(v.losses)

    def build(j: int) -> Diagnosis:
        step, loss = int(v.steps[j]), float(v.losses[j])
        bad = [dx.names[i] for i in np.flatnonzero(bad_mask[j])]
        first = bad[0] if bad else None
        where = f"gradients or weights of {first}" if first else "the loss"
        message = f"NaN/Inf in {where} at step {step} (loss {loss:.4g})"
        if len(bad) > 1:
            message += f"; {len(bad)} layers affected ({layer_range(bad)})"
        advice, fix = explode_advice(dx, bad or depth_names(dx), nonfinite=True)
        return Diagnosis("non_finite", first, step, "error", message, advice, bad, fix)

    return holds, build


RULE = Rule("non_finite", check)
