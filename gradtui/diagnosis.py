"""What a diagnosis is (SPEC section 3): the record every part of gradtui passes around.

Kept apart from the rules in :mod:`gradtui.diagnose` (which need numpy) so the TUI and the CLI
can show diagnoses without importing numpy at start-up.
"""

from __future__ import annotations

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
