"""``attention_logit_growth``: an attention layer's logits grow without bound, or its attention
collapses to one-hot (Dehghani et al. 2023; Wortsman et al. 2023). Its queries' and keys'
gradients fade as the softmax saturates: that fading is this kind's symptom, not ``vanishing``.

Reads ``attn_logit_max`` (the largest |q·k|/√d of the batch) and ``attn_entropy`` (mean over
queries of the attention's entropy in nats, the lowest head), recorded on the row of each
``MultiHeadAttention``'s query projection (``<attention>/query``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from gradtui.diagnosis import Diagnosis
from gradtui.rules.advice import make_fix
from gradtui.rules.base import COL, Found, Rule, Views, nothing, round_lr
from gradtui.stack import layer_range

if TYPE_CHECKING:
    from gradtui.diagnose import Diagnoser

#: above this largest |logit| an attention row is one-hot: exp(100) between two keys. Measured
#: (issue 22): 10-18 in healthy runs, with and without qk-norm; 2.2e4 at 400 steps in a runaway
LOGIT_HIGH = 100.0
#: ... and grown this many times since the first window (not a layer that starts sharp)
LOGIT_GROWTH = 10.0
#: the lowest head's mean entropy (nats) below which attention has collapsed to one key
ENTROPY_LOW = 0.02
#: ... from at least this much in the first window (a head that started spread out)
ENTROPY_START = 0.5
#: the warm-up the fix sets where the run has none (Wortsman et al. 2023 use a linear warm-up)
WARMUP_STEPS = 200


def check(dx: Diagnoser, v: Views) -> Found:
    logit = v.med[:, :, COL["attn_logit_max"]]
    entropy = v.med[:, :, COL["attn_entropy"]]
    rows = np.isfinite(logit).any(0) | np.isfinite(entropy).any(0)
    if not rows.any():
        return nothing(len(v))
    first = dx.first_med
    l0 = first[:, COL["attn_logit_max"]] if first is not None else np.full(len(dx.names), math.nan)
    e0 = first[:, COL["attn_entropy"]] if first is not None else np.full(len(dx.names), math.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        # without a first window to compare with (fewer records than a window), large is enough
        grew = ~np.isfinite(l0) | (logit / l0 > LOGIT_GROWTH)
        big = np.isfinite(logit) & (logit > LOGIT_HIGH) & grew
        collapsed = np.isfinite(entropy) & (entropy < ENTROPY_LOW) & np.isfinite(e0) & (e0 > ENTROPY_START)
    over = big | collapsed
    holds = v.full & over.any(1)

    def build(j: int) -> Diagnosis:
        idx = np.flatnonzero(over[j])
        names = [dx.names[i] for i in idx]
        worst = int(idx[np.nanargmax(np.where(np.isfinite(logit[j, idx]), logit[j, idx], -1.0))])
        n = attention_of(dx.names[worst])
        if big[j, worst]:
            message = f"the largest attention logit of {n} is {logit[j, worst]:.3g}"
            if np.isfinite(l0[worst]):
                message += f" ({l0[worst]:.3g} at the start)"
            message += (
                f"; above {LOGIT_HIGH:g} the softmax is one-hot and the queries and keys get no gradient"
            )
        else:
            message = (
                f"the attention of {n} collapsed to one key: entropy {entropy[j, worst]:.2g} nats "
                f"({e0[worst]:.2g} at the start)"
            )
        if len(names) > 1:
            message += f"; {len(names)} attention layers ({layer_range([attention_of(x) for x in names])})"
        advice, fix = _advice(dx, names)
        return Diagnosis(
            "attention_logit_growth", names[0], int(v.steps[j]), "error", message, advice, names, fix
        )

    return holds, build


def attention_of(row: str) -> str:
    """The attention layer of its query projection's row (``block/mha/query`` -> ``block/mha``)."""
    head, _, last = row.rpartition("/")
    return head if head and last == "query" else row


def _qk_norm_on(dx: Diagnoser, names: list[str]) -> bool:
    """Whether the queries and keys of these attention layers are normalized already: a
    ``query_norm`` row beside the query (the builder's ``qk_norm``), or ``qk_norm`` among the
    Keras arguments of the row or of the block it is part of."""
    for n in names:
        if f"{attention_of(n)}/query_norm" in dx.infos:
            return True
        info = dx.infos.get(n)
        if info is None:
            continue
        block = dx.infos.get(getattr(info, "part_of", "") or "")
        for x in (info, block):
            if x is not None and (getattr(x, "qk_norm", False) or (x.keras_args or {}).get("qk_norm")):
                return True
    return False


def _advice(dx: Diagnoser, names: list[str]) -> tuple[str, dict[str, Any] | None]:
    lr = dx.train.learning_rate if dx.train else None
    warm = dx.train.warmup_steps if dx.train else 0
    steps = max(WARMUP_STEPS, 2 * warm)
    entries = [dx.infos[n].entry for n in names if n in dx.infos and dx.infos[n].entry is not None]
    train: dict[str, Any] = {}
    if lr is not None:
        train["learning_rate"] = round_lr(lr * 0.1)
    train["warmup_steps"] = steps
    if entries and not _qk_norm_on(dx, names):
        advice = (
            "set qk_norm = true on the transformer entry (LayerNorm on the queries and keys bounds "
            f"the logits), or lower learning_rate, or warmup_steps = {steps} in [train]"
        )
        return advice, make_fix(dx, names, {"qk_norm": True}, None)
    if entries:
        advice = (
            "qk_norm is on and the logits still grow: lower learning_rate"
            + (f" to {train['learning_rate']:g}" if lr is not None else "")
            + f" with warmup_steps = {steps} in [train]"
        )
        return advice, make_fix(dx, [], None, train)
    advice = (
        "normalize the queries and keys (a LayerNormalization on each before their dot product: "
        "qk-norm), or lower learning_rate, or warm the learning rate up over the first "
        f"{steps} steps"
    )
    return advice, make_fix(
        dx, [], None, {"learning_rate": train["learning_rate"]}
    ) if lr is not None else None


RULE = Rule("attention_logit_growth", check, explained_by=("non_finite",))
