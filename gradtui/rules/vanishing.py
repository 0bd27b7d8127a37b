"""``vanishing``: lower layers whose gradients are orders of magnitude below the top layer's, or a
SimpleRNN's first time steps that receive none."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gradtui.diagnosis import Diagnosis
from gradtui.roles import ATTENTION, EMBEDDING
from gradtui.rules.activity import EXPLOSION
from gradtui.rules.advice import (
    bn_train,
    describe,
    entry_layers,
    layer_groups,
    make_fix,
    recurrent_advice,
    recurrent_rows,
    weighted,
)
from gradtui.rules.base import COL, Found, Rule, Views
from gradtui.stack import DEEP_PLAIN, SATURATING, layer_range, matched_init

if TYPE_CHECKING:
    from gradtui.diagnose import Diagnoser


def check(dx: Diagnoser, v: Views) -> Found:
    d = dx.depth
    r = v.vratio  # n x (D - 1)
    # a dead layer passes no gradient to its own weights: its gradient of 0 is the dead
    # units' (their fix, not BatchNorm or residuals, cures it), not a vanishing one
    with np.errstate(invalid="ignore"):
        dead = v.med[:, d[:-1], COL["dead"]] > dx.t.dead
    # an embedding (a lookup table: no activation, no initializer to match) and an attention
    # projection (its gradient fades when its softmax saturates: attention_logit_growth's to
    # tell) are compared with the top but never named: relu/he_normal is no remedy for them
    judged = ~dx.role_mask((*ATTENTION, EMBEDDING))[d[:-1]]
    aff = np.isfinite(r) & (r < dx.t.vanishing_ratio) & ~dead & judged
    holds = v.full & aff.any(1) if len(d) >= 2 else np.zeros(len(v), bool)
    # through time: the gradient reaching a recurrent layer's first time step against its
    # largest (the latest measured curve, carried between measurements)
    tr = v.last[:, :, COL["time_ratio"]]
    # a plain recurrent layer only: an LSTM's or GRU's gates learn to carry the gradient
    # (their early steps often start small and recover: lstm-pixels at step 30)
    plain = np.array([n in dx.infos and dx.infos[n].type == "SimpleRNN" for n in dx.names], bool)
    with np.errstate(invalid="ignore"):
        in_time = plain & np.isfinite(tr) & (tr < dx.t.vanishing_ratio)
    holds = holds | in_time.any(1)

    def build(j: int) -> Diagnosis:
        if not (len(d) >= 2 and v.full[j] and aff[j].any()):
            return vanishing_in_time(dx, v, j, in_time[j], tr[j])
        lower = d[:-1]
        affected = lower[aff[j]]
        ratios = r[j, aff[j]]
        names = [dx.names[i] for i in affected]
        severity = "error" if ratios.min() < dx.t.vanishing_ratio**2 else "warning"
        message = f"gradient norm of {names[0]} is {ratios[0]:.2g} x that of {dx.names[d[-1]]}"
        if len(names) > 1:
            message += f"; {len(names)} layers below {dx.t.vanishing_ratio:.0e} ({layer_range(names)})"
        advice, fix = vanish_advice(dx, names)
        return Diagnosis("vanishing", names[0], int(v.steps[j]), severity, message, advice, names, fix)

    return holds, build


def vanishing_in_time(dx: Diagnoser, v: Views, j: int, affected: np.ndarray, ratio: np.ndarray) -> Diagnosis:
    """Vanishing through time (Bengio, Simard & Frasconi 1994; Pascanu et al. 2013): what
    reaches a SimpleRNN's first time steps is a tiny part of what reaches its last."""
    idx = np.flatnonzero(affected)
    names = [dx.names[i] for i in idx]
    worst = int(idx[np.argmin(ratio[idx])])
    severity = "error" if ratio[worst] < dx.t.vanishing_ratio**2 else "warning"
    share = (
        "no gradient at all (it underflows to 0)"
        if ratio[worst] == 0.0
        else f"{ratio[worst]:.2g} x the largest it receives"
    )
    message = (
        f"the gradient reaching {dx.names[worst]}'s first time step is {share}: the start of "
        "the sequence stops shaping the weights"
    )
    advice = f"{layer_range(names)}: use lstm or gru (their gates keep a path for the gradient through time)"
    fix = make_fix(dx, names, {"type": "lstm", "activation": "tanh"}, None)
    return Diagnosis("vanishing", names[0], int(v.steps[j]), severity, message, advice, names, fix)


def vanish_advice(dx: Diagnoser, names: list[str]) -> tuple[str, dict[str, Any] | None]:
    if recurrent_rows(dx, names):
        return recurrent_advice(dx, recurrent_rows(dx, names), "vanishing")
    groups = layer_groups(dx, names)
    if not groups:
        return "use relu with he_normal, or add batch_norm = 'before'", None
    names_all = [n for g, _ in groups for n in g]
    g_names, info = groups[0]
    act = info.activation
    if act in SATURATING or act in ("linear", "softmax"):
        conv = [n for n in entry_layers(dx, names_all) if dx.infos[n].type.startswith("Conv")]
        if conv and info.batch_norm == "none":
            # a convolution's channel dies as a whole (0 at every position): relu alone on a
            # stack of narrow convolutions trades vanishing for dead channels, as measured on
            # conv-sigmoid; BatchNorm keeps each channel's pre-activations centred on 0
            advice = (
                f"{describe(dx, g_names, info)}: {len(conv)} convolutions; use relu with he_normal "
                f"and batch_norm = 'before' (relu alone leaves whole channels dead)"
            )
            return advice, make_fix(
                dx,
                names_all,
                {"activation": "relu", "initializer": "he_normal", "batch_norm": "before"},
                bn_train(dx),
            )
        advice = f"{describe(dx, g_names, info)}: use relu with he_normal, or batch_norm = 'before'"
        return advice, make_fix(dx, names_all, {"activation": "relu", "initializer": "he_normal"}, None)
    good, rule, _ = matched_init(act)
    weighted_rows = [n for n in dx.order if n in dx.infos and weighted(dx.infos[n])]
    residual = any(getattr(x, "role", None) == "add" for x in dx.infos.values())
    if len(weighted_rows) >= DEEP_PLAIN and not residual and info.batch_norm == "none":
        # a deep plain stack of a non-saturating activation: He et al. (2016)'s remedy
        advice = (
            f"{describe(dx, g_names, info)}, {len(weighted_rows)} weighted layers without skip "
            f"connections: add residual = true (each block keeps a path for the gradient), "
            f"or use {good} ({rule})"
        )
        return advice, make_fix(dx, names_all, {"residual": True}, None)
    if info.initializer is not None and not info.initializer.name.startswith(good.split("_")[0]):
        advice = f"{describe(dx, g_names, info)}: use {good} ({rule}), or batch_norm = 'before'"
        return advice, make_fix(dx, names_all, {"initializer": good}, None)
    advice = (
        f"{describe(dx, g_names, info)}: the initialization already fits {act}; add "
        "batch_norm = 'before', or residual = true (a skip connection around each block keeps "
        "a path for the gradient), or use fewer layers"
    )
    return advice, make_fix(dx, names_all, {"batch_norm": "before"}, bn_train(dx))


RULE = Rule("vanishing", check, explained_by=EXPLOSION)
