"""The diagnosis rules, one module per kind, registered in :data:`RULES`.

A new phenomenon is one new module here (a :class:`~gradtui.rules.base.Rule`: its kind, the
condition over the recorded columns as numpy over a block of windows, the message and the
advice with its fix), one line in :data:`RULES`, its kind in :data:`gradtui.diagnosis.KINDS`
and a test. The :class:`~gradtui.diagnose.Diagnoser` feeds every rule the same
:class:`~gradtui.rules.base.Views`, raises each kind once and clears it when its condition
stops holding.
"""

from __future__ import annotations

from gradtui.rules import (
    adam_epsilon,
    attention_logit_growth,
    dead_units,
    exploding,
    learning_rate,
    non_finite,
    not_learning,
    one_sided_saturation,
    output_logit_divergence,
    saturation,
    vanishing,
)
from gradtui.rules.base import Rule

#: every rule judged on the recorded rows, in the order their diagnoses are raised at one step
RULES: tuple[Rule, ...] = (
    non_finite.RULE,
    exploding.RULE,
    vanishing.RULE,
    saturation.RULE,
    dead_units.RULE,
    one_sided_saturation.RULE,
    learning_rate.RULE,
    attention_logit_growth.RULE,
    output_logit_divergence.RULE,
    adam_epsilon.RULE,
    not_learning.RULE,
)
