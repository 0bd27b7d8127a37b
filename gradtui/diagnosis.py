"""What a diagnosis is (SPEC section 3): the record every part of gradtui passes around.

Kept apart from the rules in :mod:`gradtui.diagnose` (which need numpy) so the TUI and the CLI
can show diagnoses without importing numpy at start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: the kinds of diagnosis (SPEC section 3, and README's Diagnoses table)
KINDS = (
    "vanishing",
    "exploding",
    "non_finite",
    "saturation",
    "dead_units",
    "one_sided_saturation",
    "learning_rate",
    "not_learning",
    "bn_statistics",
    "attention_logit_growth",
    "output_logit_divergence",
    "adam_epsilon",
)


@dataclass
class Diagnosis:
    """One problem found in the recorded statistics (SPEC section 3)."""

    kind: str
    layer: str | None
    step: int
    severity: str
    message: str
    advice: str
    layers: list[str] = field(default_factory=list)
    fix: dict[str, Any] | None = None
    #: the step since which the condition no longer holds (SPEC section 3); ``None`` while it holds
    cleared_step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``summary.json`` form."""
        return {
            "kind": self.kind,
            "layer": self.layer,
            "step": self.step,
            "severity": self.severity,
            "message": self.message,
            "advice": self.advice,
            "layers": list(self.layers),
            "fix": self.fix,
            **({"cleared_step": self.cleared_step} if self.cleared_step is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Diagnosis:
        """Read back a ``summary.json`` diagnosis."""
        return cls(
            kind=d["kind"],
            layer=d.get("layer"),
            step=int(d.get("step", 0)),
            severity=d.get("severity", "warning"),
            message=d.get("message", ""),
            advice=d.get("advice", ""),
            layers=list(d.get("layers") or []),
            fix=d.get("fix"),
            cleared_step=d.get("cleared_step"),
        )


#: preset syntax in advice, and how a user of ``gradtui.watch`` (their own Keras code) says it,
#: in order: the specific phrases first, then any ``key = value`` as a Python keyword argument
_KERAS_TERMS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (
            r"\b(?:add )?batch_norm = 'before'",
            "a BatchNormalization layer between each layer and its activation",
        ),
        (r"\b(?:add )?batch_norm = 'after'", "a BatchNormalization layer after each layer's activation"),
        (r"\badd batch_norm\b", "add BatchNormalization layers"),
        (
            r"\buse (\w+) with (he_normal|he_uniform|glorot_uniform|glorot_normal|lecun_normal|lecun_uniform)\b",
            r"use activation='\1' with kernel_initializer='\2'",
        ),
        (r"\bset clipnorm = ([\d.e+-]+) in \[train\]", r"pass clipnorm=\1 to the optimizer"),
        (r"\bclipnorm = ([\d.e+-]+)", r"clipnorm=\1 on the optimizer"),
        (
            r"\bset batch_norm_momentum = ([\d.e+-]+) in \[train\]",
            r"set momentum=\1 on each BatchNormalization layer",
        ),
        (r"\bbatch_norm_momentum = ([\d.e+-]+)", r"momentum=\1 on each BatchNormalization layer"),
        (
            r"\badd residual = true\b",
            "add skip connections (keras.layers.Add of each block's input and output)",
        ),
        (r"\bresidual = true\b", "skip connections (keras.layers.Add of each block's input and output)"),
        (r"\boptimizer = '(\w+)' with learning_rate = ([\d.e+-]+)", r"optimizer='\1' with learning_rate=\2"),
        (r"\blower learning_rate\b", "lower the optimizer's learning_rate"),
        (r" in \[train\]", " on the optimizer"),
        (r"\b(\w+) = '([^']*)'", r"\1='\2'"),
        (r"\b(\w+) = ([\d.e+-]+\b)", r"\1=\2"),
    )
)


def keras_terms(advice: str) -> str:
    """``advice`` for a user of :func:`gradtui.watch`: their model is Keras code, not a preset,
    so ``batch_norm = 'before'`` becomes a BatchNormalization layer between each layer and its
    activation, ``clipnorm = 1.0`` an optimizer argument, and so on (issue 21)."""
    for pattern, replacement in _KERAS_TERMS:
        advice = pattern.sub(replacement, advice)
    return advice
