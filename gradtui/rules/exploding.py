"""``exploding``: gradient or weight norms that grow without bound, a loss that avalanches, or
one step that throws a layer's weights out."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from gradtui.diagnosis import Diagnosis
from gradtui.rules.advice import (
    explode_advice,
)
from gradtui.rules.base import COL, Found, Rule, Views

#: a single step whose update is this fraction of the layer's weights after it (‖Δw‖/‖w‖; 1 when
#: the step threw the weights far from where they were) is a one-step catastrophe, when the
#: gradient was huge or the weights grew ``weight_growth`` times from their initial norm
ONE_STEP_RATIO = 0.5

if TYPE_CHECKING:
    from gradtui.diagnose import Diagnoser


def check(dx: Diagnoser, v: Views) -> Found:
    t, d = dx.t, dx.depth
    g = v.med[:, d, COL["grad_norm"]]  # n x D
    fin = np.isfinite(g)
    huge = fin & (g > t.exploding_norm)
    top = g[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = g[:, :-1] / top[:, None]
        top_ok = (np.isfinite(top) & (top > 0))[:, None]
        by_ratio = fin[:, :-1] & top_ok & (ratio > t.exploding_ratio)
        by_loss = np.isfinite(v.loss_med) & (v.loss_med > t.exploding_loss)
        g_grew = w_grew = np.zeros_like(fin)
        w_init = dx.w_init[d]
        w0 = w_ref(dx, d)
        if dx.first_med is not None:
            g0 = dx.first_med[d, COL["grad_norm"]]
            w1 = v.med[:, d, COL["weight_norm"]]
            g_grew = np.isfinite(g0) & (g0 > 0) & fin & (g / g0 > t.exploding_growth)
            w_grew = np.isfinite(w0) & (w0 > 1e-6) & np.isfinite(w1) & (w1 / w0 > t.weight_growth)
            g_grew &= v.grown[:, None]
            # where the weights before the first update are known, ``thrown`` judges them
            w_grew &= v.grown[:, None] & ~(np.isfinite(w_init) & (w_init > 1e-6))
        # one step is enough (no window): a step that moved a layer by its own size, with a
        # huge gradient or weights thrown far from their initial norm (a zero-initialized
        # layer also moves by its own size on its first step, harmlessly)
        ur1 = v.last[:, d, COL["update_ratio"]]
        g1 = v.last[:, d, COL["grad_norm"]]
        w_last = v.last[:, d, COL["weight_norm"]]
        thrown = (
            np.isfinite(w_init) & (w_init > 1e-6) & np.isfinite(w_last) & (w_last / w_init > t.weight_growth)
        )
        one_step = (
            np.isfinite(ur1) & (ur1 > ONE_STEP_RATIO) & ((np.isfinite(g1) & (g1 > t.exploding_norm)) | thrown)
        )
    # an adaptive optimizer moves each weight by about its learning rate a step whatever the
    # gradient (m / sqrt(v)): weights that grew no faster than that pace since the start were
    # moved by the step size (``learning_rate``'s to judge), not thrown by a gradient
    paced = adam_paced(dx, d, v)
    w_grew &= ~paced
    thrown &= ~paced
    one_step &= ~(paced & ~(np.isfinite(g1) & (g1 > t.exploding_norm)))
    # weights thrown far from their initial norm hold at every row, as the weights stay there
    w_grew = w_grew | thrown
    holds = (
        (v.full & (huge.any(1) | by_ratio.any(1) | by_loss | g_grew.any(1))) | w_grew.any(1) | one_step.any(1)
    )

    def build(j: int) -> Diagnosis:
        affected: np.ndarray = d[:0]
        if one_step[j].any() and not (v.full[j] and huge[j].any()):
            affected = d[one_step[j]]
            k = int(np.flatnonzero(one_step[j])[0])
            i0 = int(affected[0])
            message = (
                f"one step moved {dx.names[i0]} by its own size (‖Δw‖/‖w‖ = {ur1[j, k]:.2g}; "
                f"gradient norm {g1[j, k]:.3g}"
            )
            if np.isfinite(w_init[k]) and w_init[k] > 0:
                message += f", weight norm {w_init[k]:.3g} -> {w_last[j, k]:.3g}"
            message += f") at step {int(v.steps[j])}: the weights were thrown out"
        elif huge[j].any():
            affected = d[huge[j]]
            i0 = int(affected[0])
            message = (
                f"gradient norm of {dx.names[i0]} is {v.med[j, i0, 0]:.3g} "
                f"(above {t.exploding_norm:.3g}); {len(affected)} layer(s) affected"
            )
        elif by_ratio[j].any():
            affected = d[:-1][by_ratio[j]]
            i0 = int(affected[0])
            message = (
                f"gradient norm of {dx.names[i0]} is {ratio[j, by_ratio[j]][0]:.3g} x "
                f"that of {dx.names[d[-1]]}"
            )
        elif by_loss[j]:
            affected = d
            message = f"loss is {v.loss_med[j]:.3g} (above {t.exploding_loss:.3g}): the loss avalanches"
        else:
            k = int(np.flatnonzero(g_grew[j] | w_grew[j])[0])
            n = dx.names[d[k]]
            affected = d[k : k + 1]
            g0 = dx.first_med[d, COL["grad_norm"]]  # type: ignore[index]
            if g_grew[j, k]:
                message = (
                    f"gradient norm of {n} grew {g[j, k] / g0[k]:.3g}x since the start "
                    f"({g0[k]:.3g} -> {g[j, k]:.3g})"
                )
            else:
                w1 = w_last[j, k] if thrown[j, k] else v.med[j, d[k], COL["weight_norm"]]
                message = (
                    f"weight norm of {n} grew {w1 / w0[k]:.3g}x since the start ({w0[k]:.3g} -> {w1:.3g})"
                )
        names = [dx.names[i] for i in affected]
        advice, fix = explode_advice(dx, names, nonfinite=False)
        return Diagnosis(
            "exploding",
            names[0] if names else None,
            int(v.steps[j]),
            "error",
            message,
            advice,
            names,
            fix,
        )

    return holds, build


def adam_paced(dx: Diagnoser, d: np.ndarray, v: Views) -> np.ndarray:
    """``(rows, depth layers)``: under an adaptive optimizer, whether a layer's weight norm
    is within what steps of the learning rate per element could give it since the start:
    ‖w‖ - ‖w0‖ <= lr x sqrt(parameters) x steps. False where the optimizer, the rate or the
    layer's size is unknown."""
    from gradtui.rules.learning_rate import ADAPTIVE

    shape = (len(v), len(d))
    if dx.optimizer_name not in ADAPTIVE or not dx.peak_lr or dx.step0 is None or not len(dx.params):
        return np.zeros(shape, bool)
    w0 = w_ref(dx, d)
    n = dx.params[d]
    w1 = v.last[:, d, COL["weight_norm"]]
    steps = (v.steps - dx.step0 + 1).astype(float)[:, None]
    with np.errstate(invalid="ignore"):
        pace = dx.peak_lr * np.sqrt(n)[None, :] * steps
        return np.isfinite(w1) & np.isfinite(w0)[None, :] & np.isfinite(pace) & (w1 - w0[None, :] <= pace)


def w_ref(dx: Diagnoser, d: np.ndarray) -> np.ndarray:
    """The weight norms growth is measured from: before any update where known, else the
    median of the first records (taken after their updates)."""
    first = dx.first_med[d, COL["weight_norm"]] if dx.first_med is not None else np.full(len(d), math.nan)
    init = dx.w_init[d] if len(dx.w_init) else np.full(len(d), math.nan)
    return np.where(np.isfinite(init) & (init > 1e-6), init, first)


RULE = Rule("exploding", check)
