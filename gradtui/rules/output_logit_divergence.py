"""``output_logit_divergence``: the output logits' log-partition log Z = logsumexp(logits)
drifts far from 0 (Chowdhery et al. 2022, PaLM; Wortsman et al. 2023). Softmax does not see a
shift of all logits, so nothing in the loss holds log Z in place; once it is large, the log
probabilities are differences of large numbers and lose their precision. The remedy is the
z-loss, an auxiliary 1e-4 · (log Z)² that pulls it back to 0.

Reads ``logz_mean`` (the batch's mean log Z), recorded on the output layer's row when the
model's output is logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gradtui.diagnosis import Diagnosis
from gradtui.rules.advice import make_fix
from gradtui.rules.base import COL, Found, Rule, Views, nothing

if TYPE_CHECKING:
    from gradtui.diagnose import Diagnoser

#: |log Z| above this (nats) is far from 0: Z = e^20 ≈ 5e8 is past float16's largest number
#: (65504 = e^11.1), and in bfloat16 (8 significant bits) a log probability computed as
#: logit - log Z is then off by ~20 · 2^-8 ≈ 0.08 nats. A classifier starts at log Z ≈ ln(classes)
#: (2.3 for 10 classes, 4.6 for 100), well inside it
LOGZ_LIMIT = 20.0
#: the z-loss coefficient the fix sets (PaLM's)
Z_LOSS = 1e-4


def check(dx: Diagnoser, v: Views) -> Found:
    logz = v.med[:, :, COL["logz_mean"]]
    if not np.isfinite(logz).any():
        return nothing(len(v))
    with np.errstate(invalid="ignore"):
        over = np.isfinite(logz) & (np.abs(logz) > LOGZ_LIMIT)
    holds = v.full & over.any(1)

    def build(j: int) -> Diagnosis:
        i = int(np.flatnonzero(over[j])[0])
        n = dx.names[i]
        message = f"the output logits' log-partition log Z of {n} is {logz[j, i]:.3g} (|log Z| above {LOGZ_LIMIT:g})"
        if dx.first_med is not None and np.isfinite(dx.first_med[i, COL["logz_mean"]]):
            message += f"; {dx.first_med[i, COL['logz_mean']]:.3g} at the start"
        message += ": the log probabilities are differences of large numbers"
        advice, fix = _advice(dx)
        return Diagnosis("output_logit_divergence", n, int(v.steps[j]), "warning", message, advice, [n], fix)

    return holds, build


def _advice(dx: Diagnoser) -> tuple[str, dict[str, Any] | None]:
    if dx.keras_terms:
        return (
            f"add a z-loss to the model's loss: {Z_LOSS:g} · mean(logsumexp(logits)²) (e.g. with "
            "model.add_loss or in a custom train_step) holds log Z near 0",
            None,
        )
    z = dx.train.z_loss if dx.train is not None and hasattr(dx.train, "z_loss") else 0.0
    if z and z >= Z_LOSS:
        return (
            f"z_loss = {z:g} is on and log Z still drifts: set z_loss = {10 * z:g} in [train], or lower learning_rate",
            make_fix(dx, [], None, {"z_loss": 10 * z}),
        )
    return (
        f"set z_loss = {Z_LOSS:g} in [train] (an auxiliary {Z_LOSS:g} · (log Z)² holds log Z near 0; "
        "add it to the loss in Keras)",
        make_fix(dx, [], None, {"z_loss": Z_LOSS}),
    )


RULE = Rule("output_logit_divergence", check, explained_by=("non_finite", "exploding"))
