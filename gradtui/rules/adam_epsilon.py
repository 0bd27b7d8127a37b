"""``adam_epsilon``: a layer whose gradient RMS is at or below the optimizer's epsilon. Adam
(and its family, and RMSprop) divide each gradient by its running RMS plus epsilon: where the
RMS is epsilon the update is half of what it should be, below it the layer's updates shrink
with its gradient (Wortsman et al. 2023, "Small-scale proxies"). The remedy is a smaller
epsilon.

Reads ``grad_norm`` and each row's trainable parameter count (RMS = ‖g‖ / √n), over
:data:`PERSIST` steps, and the optimizer's ``epsilon`` (``[train] epsilon``, Keras's 1e-7 by default; a watched optimizer's own).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from gradtui.diagnosis import Diagnosis
from gradtui.roles import EMBEDDING
from gradtui.rules.advice import make_fix
from gradtui.rules.base import COL, Found, Rule, Views, held_since, nothing
from gradtui.stack import layer_range

if TYPE_CHECKING:
    from gradtui.diagnose import Diagnoser

#: steps the RMS must stay at or below epsilon: at the start, attention that is still uniform
#: passes little gradient to its queries and keys (measured on transformer-qk-norm: 3e-8 per
#: weight at step 4, above 1e-7 from step 44), and that passes on its own
PERSIST = 100
#: the fix sets epsilon this many times below the smallest gradient RMS (rounded down to a power
#: of ten), so the updates are within ~10% of their size without epsilon
MARGIN = 10.0
#: the smallest epsilon the fix sets (float32 resolves a gradient RMS well below it)
SMALLEST = 1e-16


def check(dx: Diagnoser, v: Views) -> Found:
    eps = dx.epsilon
    if eps is None or not eps > 0:
        return nothing(len(v))
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = v.med[:, :, COL["grad_norm"]] / np.sqrt(dx.params)
    # an embedding's gradient is sparse (the rows of the batch's tokens): its RMS over the whole
    # table understates the rows in use; a gradient of exactly 0 is no layer's epsilon's doing
    judged = ~dx.role_mask((EMBEDDING,))
    with np.errstate(invalid="ignore"):
        below = judged & np.isfinite(rms) & (rms > 0) & (rms <= eps)
    since = held_since(below, v.steps, dx.memory.get("adam_epsilon"))
    dx.memory["adam_epsilon"] = since[-1]
    over = below & (v.steps[:, None] - since >= PERSIST)
    holds = v.full & over.any(1)

    def build(j: int) -> Diagnosis:
        idx = np.flatnonzero(over[j])
        names = [dx.names[i] for i in idx]
        low = float(np.min(rms[j, idx]))
        message = (
            f"gradient RMS of {names[0]} is {rms[j, idx[0]]:.2g} per weight, at or below the optimizer's "
            f"epsilon {eps:g}: its updates shrink with its gradient"
        )
        if len(names) > 1:
            message += f"; {len(names)} layers ({layer_range(names)}), the lowest {low:.2g}"
        advice, fix = _advice(dx, low)
        return Diagnosis("adam_epsilon", names[0], int(v.steps[j]), "warning", message, advice, names, fix)

    return holds, build


def smaller_epsilon(rms: float) -> float:
    """A power of ten at least :data:`MARGIN` times below ``rms``."""
    return max(SMALLEST, 10.0 ** math.floor(math.log10(rms / MARGIN)))


def _advice(dx: Diagnoser, low: float) -> tuple[str, dict[str, Any] | None]:
    e = smaller_epsilon(low)
    advice = f"set epsilon = {e:g} in [train] (below the smallest gradient RMS, {low:.2g})"
    return advice, make_fix(dx, [], None, {"epsilon": e})


RULE = Rule("adam_epsilon", check, explained_by=("non_finite", "exploding", "attention_logit_growth"))
