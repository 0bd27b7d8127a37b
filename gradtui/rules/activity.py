"""What ``saturation`` and ``dead_units`` share: a hidden layer whose activation statistic is
above its threshold over a window."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from gradtui.diagnosis import Diagnosis
from gradtui.rules.base import COL, Found, Views
from gradtui.stack import layer_range

#: what explains units saturated or dead and gradients vanished: the weights were thrown out
#: (those kinds are raised only while nothing explodes)
EXPLOSION = ("exploding", "non_finite")

if TYPE_CHECKING:
    from gradtui.diagnose import Diagnoser


def act_rule(
    dx: Diagnoser,
    v: Views,
    key: str,
    kind: str,
    limit: float,
    advise: Callable[[Diagnoser, list[str]], tuple[str, dict[str, Any] | None]],
) -> Found:
    vals = v.med[:, :, COL[key]]
    with np.errstate(invalid="ignore"):
        over = dx.hidden & np.isfinite(vals) & (vals > limit)
    holds = v.full & over.any(1)

    def build(j: int) -> Diagnosis:
        idx = np.flatnonzero(over[j])
        names = [dx.names[i] for i in idx]
        worst = int(idx[np.argmax(vals[j, idx])])
        severity = "error" if vals[j, worst] > 0.9 else "warning"
        what = (
            "saturated (on the flat ends of the curve)"
            if kind == "saturation"
            else "dead (output 0 for the whole batch)"
        )
        # the layer the diagnosis is filed under (its header) first, then the worst one
        first = int(idx[0])
        message = f"{vals[j, first]:.0%} of {dx.names[first]}'s units are {what}"
        if len(names) > 1:
            message += f"; {len(names)} layers above {limit:.0%} ({layer_range(names)})"
            if worst != first:
                message += f", the most {dx.names[worst]} ({vals[j, worst]:.0%})"
        advice, fix = advise(dx, names)
        return Diagnosis(kind, names[0], int(v.steps[j]), severity, message, advice, names, fix)

    return holds, build
