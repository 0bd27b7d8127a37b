"""``dead_units``: most units of a ReLU-family layer output 0 for a whole batch."""

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

if TYPE_CHECKING:
    from gradtui.diagnose import Diagnoser


def dead_advice(dx: Diagnoser, names: list[str]) -> tuple[str, dict[str, Any] | None]:
    if recurrent_rows(dx, names):
        return recurrent_advice(dx, recurrent_rows(dx, names), "dead_units")
    groups = layer_groups(dx, names)
    if not groups:
        return "use leaky_relu or elu with he_normal, or lower the learning_rate", None
    g_names, info = groups[0]
    bias = info.bias_initializer
    shift = float(bias.param("value", 0.0)) if bias is not None and bias.name == "constant" else 0.0
    if shift < 0:
        advice = (
            f"{describe(dx, g_names, info)}: bias_initializer {bias.label()} pushes every "  # type: ignore[union-attr]
            "pre-activation below 0, where relu outputs 0 and passes no gradient: use "
            "bias_initializer = 'zeros', and leaky_relu (negative_slope 0.2) so no unit can die"
        )
    else:
        advice = (
            f"{describe(dx, g_names, info)}: use leaky_relu (negative_slope 0.2) or elu with "
            "he_normal, keep bias_initializer = 'zeros', or lower learning_rate"
        )
    return advice, make_fix(
        dx,
        names,
        {
            "activation": {"name": "leaky_relu", "negative_slope": 0.2},
            "initializer": "he_normal",
            "bias_initializer": "zeros",
        },
        None,
    )


def check(dx: Diagnoser, v: Views) -> Found:
    return act_rule(dx, v, "dead", "dead_units", dx.t.dead, dead_advice)


RULE = Rule("dead_units", check, explained_by=EXPLOSION)
