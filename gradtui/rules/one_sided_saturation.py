"""``one_sided_saturation``: a sigmoid/tanh layer's outputs collapsed toward one asymptote."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gradtui.diagnosis import Diagnosis
from gradtui.rules.activity import EXPLOSION
from gradtui.rules.advice import (
    describe,
    layer_groups,
    make_fix,
    recurrent_advice,
    recurrent_rows,
)
from gradtui.rules.base import COL, Found, Rule, Views, finite
from gradtui.stack import layer_range

if TYPE_CHECKING:
    from gradtui.diagnose import Diagnoser


def check(dx: Diagnoser, v: Views) -> Found:
    """Outputs collapsed toward one asymptote (Glorot & Bengio 2010, Fig. 2): a sigmoid
    layer whose mean output sits in the last ``asymptote`` fraction of its range."""
    lo, hi = dx.ranges[:, 0], dx.ranges[:, 1]
    with np.errstate(invalid="ignore"):
        pos = (v.med[:, :, COL["act_mean"]] - lo) / (hi - lo)  # 0 at the low end, 1 at the high
        a = dx.t.asymptote
        over = dx.hidden & np.isfinite(pos) & ((pos < a) | (pos > 1 - a))
    holds = v.full & over.any(1)

    def build(j: int) -> Diagnosis:
        idx = np.flatnonzero(over[j])
        worst = int(idx[np.argmax(np.abs(pos[j, idx] - 0.5))])
        names = [dx.names[i] for i in idx]
        mean = v.med[j, :, COL["act_mean"]]
        side = lo[worst] if pos[j, worst] < 0.5 else hi[worst]
        act = dx.infos[dx.names[worst]].activation if dx.names[worst] in dx.infos else "?"
        message = f"{dx.names[worst]}'s outputs collapsed toward {side:g} ({act}: mean {mean[worst]:.2g}"
        if dx.first_med is not None and finite(float(dx.first_med[worst, COL["act_mean"]])):
            message += f", {dx.first_med[worst, COL['act_mean']]:.2g} at the start"
        message += ")"
        others = [i for i in np.flatnonzero(dx.hidden & np.isfinite(pos[j])) if i not in set(idx.tolist())]
        if others:
            message += (
                f"; the other hidden layers' means are {np.nanmin(mean[others]):.2g}.."
                f"{np.nanmax(mean[others]):.2g}"
            )
        if len(names) > 1:
            message += f"; {len(names)} layers at one end ({layer_range(names)})"
        advice, fix = one_sided_advice(dx, names, side)
        return Diagnosis(
            "one_sided_saturation",
            dx.names[worst],
            int(v.steps[j]),
            "warning",
            message,
            advice,
            names,
            fix,
        )

    return holds, build


def one_sided_advice(dx: Diagnoser, names: list[str], side: float) -> tuple[str, dict[str, Any] | None]:
    if recurrent_rows(dx, names):
        return recurrent_advice(dx, recurrent_rows(dx, names), "saturation")
    groups = layer_groups(dx, names)
    if not groups:
        return "use tanh (centred on 0) or relu with he_normal, or batch_norm = 'before'", None
    g_names, info = groups[0]
    why = (
        "sigmoid's outputs are not centred on 0, and the layers above learn to push this one "
        "to an end (Glorot & Bengio 2010)"
        if info.activation in ("sigmoid", "hard_sigmoid")
        else f"its outputs sit near {side:g}, where the derivative is small"
    )
    advice = (
        f"{describe(dx, g_names, info)}: {why}; add batch_norm = 'before' to keep the "
        "pre-activations centred, or use tanh with glorot_uniform, or relu with he_normal"
    )
    return advice, make_fix(dx, names, {"batch_norm": "before"}, None)


RULE = Rule("one_sided_saturation", check, explained_by=EXPLOSION)
