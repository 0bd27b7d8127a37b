"""``bn_statistics``: BatchNormalization's moving statistics lag the batches'. Judged on one
validation batch scored in both modes (:meth:`gradtui.diagnose.Diagnoser.judge_modes`), not
on the recorded rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gradtui.diagnosis import Diagnosis
from gradtui.rules.advice import BN_MOMENTUM_FIX, make_fix
from gradtui.stack import layer_range

if TYPE_CHECKING:
    from gradtui.diagnose import Diagnoser

KIND = "bn_statistics"
#: training-mode accuracy above inference-mode accuracy by more than this
BN_ACCURACY_GAP = 0.2
#: of a regression: inference-mode loss above this multiple of training-mode's
BN_LOSS_RATIO = 2.0


def judge(
    dx: Diagnoser, step: int, inference: float, training: float, metric: str
) -> tuple[bool, Callable[[], Diagnosis]] | None:
    """Whether the gap holds, and the diagnosis when it is raised; ``None`` when the model has
    no BatchNormalization."""
    names = [n for n in dx.order if dx.infos[n].type == "BatchNormalization"]
    if not names:
        return None
    if metric == "accuracy":
        holds = training - inference > BN_ACCURACY_GAP
        gap = f"accuracy {inference:.2f} in inference mode, {training:.2f} with the batch's own statistics"
    else:
        holds = inference > BN_LOSS_RATIO * training and inference - training > 1e-6
        gap = f"loss {inference:.3g} in inference mode, {training:.3g} with the batch's own statistics"

    def build() -> Diagnosis:
        momentum = dx.train.batch_norm_momentum if dx.train else None
        now = 0.99 if momentum is None else momentum
        message = (
            f"BatchNorm's moving statistics lag the batches': on one validation batch, {gap}; "
            f"{len(names)} BatchNormalization layer(s) ({layer_range(names)}), momentum {now:g}"
        )
        if now > BN_MOMENTUM_FIX:
            advice = (
                f"momentum {now:g} averages the statistics over ~{1 / (1 - now):.0f} steps of a network "
                f"that keeps changing: set batch_norm_momentum = {BN_MOMENTUM_FIX:g} in [train] "
                "(BatchNormalization(momentum=0.9) in Keras), or train longer"
            )
            fix = make_fix(dx, [], None, {"batch_norm_momentum": BN_MOMENTUM_FIX})
        else:
            epochs = dx.train.epochs if dx.train else None
            advice = (
                "train longer (more epochs) so the moving statistics catch up, or lower the learning_rate"
            )
            fix = make_fix(dx, [], None, {"epochs": 2 * epochs}) if epochs else None
        return Diagnosis(KIND, names[0], int(step), "warning", message, advice, names, fix)

    return holds, build
