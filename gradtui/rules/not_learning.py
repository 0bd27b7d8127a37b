"""``not_learning``: the loss stays at chance, ln(classes), for ``plateau_steps`` steps."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from gradtui.diagnosis import Diagnosis
from gradtui.rules.advice import (
    lr_advice,
)
from gradtui.rules.base import COL, Found, Rule, Views

if TYPE_CHECKING:
    from gradtui.diagnose import Diagnoser


def check(dx: Diagnoser, v: Views) -> Found:
    """The loss at chance (ln of the classes) for ``plateau_steps`` steps, and not below it
    lately: a loss that falls toward chance from above has learned only to be unsure."""
    if dx.classes is None:
        return np.zeros(len(v), bool), lambda j: None  # type: ignore[return-value]
    t = dx.t
    chance = math.log(dx.classes)
    with np.errstate(invalid="ignore"):
        holds = (
            v.full
            & np.isfinite(v.plateau)
            & (np.abs(v.plateau - chance) < t.chance_tol * chance)
            & (v.recent > chance * (1 - t.chance_tol / 2))
        )

    def build(j: int) -> Diagnosis:
        d = dx.depth
        ur = v.med[j, d, COL["update_ratio"]]
        ur = ur[np.isfinite(ur)]
        span = int(t.plateau_steps)
        message = (
            f"the loss has stayed at chance for {span} steps (mean {v.plateau[j]:.3g}; "
            f"ln({dx.classes}) = {chance:.3g})"
        )
        fix = None
        if len(ur):
            typical = float(np.median(ur))
            message += f"; update ratios {ur.min():.1g}..{ur.max():.1g} (median {typical:.1g})"
            if 0 < typical < t.update_ratio_target / 10:
                advice, fix = lr_advice(dx, t.update_ratio_target / typical, "small")
                return Diagnosis(
                    "not_learning",
                    None,
                    int(v.steps[j]),
                    "warning",
                    message,
                    f"the weights hardly move: {advice}",
                    [],
                    fix,
                )
        advice = (
            "the weights move but the loss does not: check that the labels belong to the inputs "
            "(shuffled or constant labels teach nothing) and that the inputs are scaled; then try "
            "optimizer = 'adam' with learning_rate = 0.001"
        )
        return Diagnosis("not_learning", None, int(v.steps[j]), "warning", message, advice, [], fix)

    return holds, build


RULE = Rule("not_learning", check, explained_by=("*",))
