"""``saturation``: most units of a sigmoid/tanh layer on the flat ends of the curve."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradtui.rules.activity import EXPLOSION, act_rule
from gradtui.rules.advice import (
    describe,
    layer_groups,
    make_fix,
    recurrent_advice,
    recurrent_rows,
)
from gradtui.rules.base import Found, Rule, Views
from gradtui.stack import matched_init, matched_variance

if TYPE_CHECKING:
    from gradtui.diagnose import Diagnoser


def saturation_advice(dx: Diagnoser, names: list[str]) -> tuple[str, dict[str, Any] | None]:
    if recurrent_rows(dx, names):
        return recurrent_advice(dx, recurrent_rows(dx, names), "saturation")
    groups = layer_groups(dx, names)
    if not groups:
        return "use relu with he_normal, or batch_norm = 'before'", None
    g_names, info = groups[0]
    var = info.variance
    good_var = matched_variance(info.activation, info.fan_in, info.fan_out) if info.fan_in else None
    if var is not None and good_var and var > 4 * good_var:
        good, rule, _ = matched_init(info.activation)
        advice = (
            f"{describe(dx, g_names, info)} (σ² = {var:.3g}, {var / good_var:.3g}x {rule}): "
            f"use {good}, or batch_norm = 'before' to keep pre-activations near 0"
        )
        return advice, make_fix(dx, names, {"initializer": good}, None)
    advice = f"{describe(dx, g_names, info)}: add batch_norm = 'before', or use relu with he_normal"
    return advice, make_fix(dx, names, {"batch_norm": "before"}, None)


def check(dx: Diagnoser, v: Views) -> Found:
    return act_rule(dx, v, "saturation", "saturation", dx.t.saturation, saturation_advice)


RULE = Rule("saturation", check, explained_by=EXPLOSION)
