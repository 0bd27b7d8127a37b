"""``learning_rate``: update ratios ‖Δw‖/‖w‖ far from ~1e-3, a step too large or too small."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from gradtui.diagnosis import Diagnosis
from gradtui.rules.advice import (
    lr_advice,
)
from gradtui.rules.base import COL, Found, Rule, Views, nanmedian
from gradtui.stack import layer_range

#: the optimizers that divide each gradient by its running RMS: their first steps move every
#: weight by about the learning rate, however small its gradient
ADAPTIVE = ("adam", "adamw", "nadam", "adamax", "rmsprop", "adagrad", "adadelta", "lamb", "lion")
#: steps before their update ratio can say the learning rate is too large: twice the first
#: moment's memory 1/(1 - beta_1) = 10 steps (a healthy embedding under Adam lr 0.003 is above
#: 0.1 until step 9, then ~0.05)
ADAPTIVE_SETTLE = 20

if TYPE_CHECKING:
    from gradtui.diagnose import Diagnoser


def check(dx: Diagnoser, v: Views) -> Found:
    """The update ratio ‖Δw‖/‖w‖ far from ~1e-3: a layer that moves by a tenth of its
    weights a step (too large), or a network whose typical layer moves by less than 1e-5
    (too small: a thousand steps change the weights by 1%)."""
    t, d = dx.t, dx.depth
    ur = v.med[:, d, COL["update_ratio"]]
    fin = np.isfinite(ur)
    with np.errstate(invalid="ignore"):
        high = fin & (ur > t.update_ratio_high)
        typical = nanmedian(np.where(fin, ur, math.nan).T)
        low = np.isfinite(typical) & (typical < t.update_ratio_low)
    if dx.optimizer_name in ADAPTIVE and dx.step0 is not None:
        # Adam's first updates are ~learning_rate per element whatever the gradient (m/sqrt(v)
        # is ±1 on the first step), so a large early ratio on small weights (an embedding
        # initialized at ±0.05) says nothing about the learning rate: judged once the first
        # moment averages over its ~1/(1 - beta_1) steps, twice over
        high &= (v.steps - dx.step0 >= ADAPTIVE_SETTLE)[:, None]
    holds = v.full & (high.any(1) | low)

    def build(j: int) -> Diagnosis:
        target = t.update_ratio_target
        if high[j].any():
            affected = d[high[j]]
            observed = float(np.max(ur[j, high[j]]))
            too = "large"
            message = (
                f"update ratio ‖Δw‖/‖w‖ of {dx.names[affected[0]]} is {ur[j, high[j]][0]:.2g} a step "
                f"(above {t.update_ratio_high:g}; ~{target:g} is typical): the step is too large"
            )
        else:
            with np.errstate(invalid="ignore"):
                affected = d[fin[j] & (ur[j] < t.update_ratio_low)]
            observed = float(typical[j])
            too = "small"
            message = (
                f"update ratio ‖Δw‖/‖w‖ is {observed:.2g} a step (median of {len(d)} layers; below "
                f"{t.update_ratio_low:g}, ~{target:g} is typical): the weights do not move"
            )
        names = [dx.names[i] for i in affected]
        if len(names) > 1:
            message += f"; {len(names)} layers ({layer_range(names)})"
        factor = target / observed if observed > 0 else math.inf
        advice, fix = lr_advice(dx, factor, too)
        return Diagnosis(
            "learning_rate",
            names[0] if names else None,
            int(v.steps[j]),
            "warning",
            message,
            advice,
            names,
            fix,
        )

    return holds, build


RULE = Rule("learning_rate", check, explained_by=("exploding", "non_finite", "vanishing", "dead_units"))
