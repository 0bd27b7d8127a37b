"""What every rule reads and is: the recorded columns, the window medians over them
(:class:`Views`) and a :class:`Rule` (a kind, its condition and its diagnosis).

A rule is written once, as numpy over a block of windows: a drain of the recorder is judged at
once, and a single record is a block of one row. Its ``check`` gives, for every row, whether
its condition holds and, for the row where it first holds, the diagnosis (message, advice,
fix). No TensorFlow here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gradtui.diagnosis import Diagnosis

if TYPE_CHECKING:
    from gradtui.diagnose import Diagnoser

#: the per-layer statistics the rules read, by their ``stats.jsonl`` names; a column a record or
#: a drain does not have is NaN (``act_mean``: the mean output of a layer's activation)
KEYS = (
    "grad_norm",
    "weight_norm",
    "nonfinite",
    "saturation",
    "dead",
    "update_ratio",
    "act_mean",
    "time_ratio",
    "attn_logit_max",
    "attn_entropy",
    "logz_mean",
)
COL = {k: i for i, k in enumerate(KEYS)}


def nanmedian(a: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN; NaN where a column has no number (no warning)."""
    n = (~np.isnan(a)).sum(axis=0)
    s = np.sort(a, axis=0)  # NaN sorts last
    cols = np.arange(a.shape[1])
    lo, hi = np.maximum(n - 1, 0) // 2, n // 2
    hi = np.minimum(hi, a.shape[0] - 1)
    out = (s[lo, cols] + s[hi, cols]) / 2
    out[n == 0] = math.nan
    return out


def number(value: Any) -> float:
    """A record's value as a float; NaN for what is not a number (a field left out, null)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def window_median(x: np.ndarray, w: int) -> np.ndarray:
    """Median (NaN left out) of each run of ``w`` consecutive rows: ``len(x) - w + 1`` rows."""
    win = np.lib.stride_tricks.sliding_window_view(x, w, axis=0)  # n x ... x w
    n = win.shape[0]
    return nanmedian(np.moveaxis(win, -1, 0).reshape(w, -1)).reshape(n, *x.shape[1:])


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def round_lr(x: float) -> float:
    """A learning rate to one significant digit (0.0523 -> 0.05)."""
    return float(f"{x:.0e}")


@dataclass
class Views:
    """What the rules read for ``n`` consecutive rows: each row's own values and the medians
    of the window of ``w`` records that ends at it."""

    steps: np.ndarray  # (n,)
    losses: np.ndarray  # (n,) the row's own loss
    last: np.ndarray  # (n, L, K) the row's own statistics
    med: np.ndarray  # (n, L, K) window medians
    loss_med: np.ndarray  # (n,) window median of the finite losses
    vratio: np.ndarray  # (n, D - 1) window median of each lower depth layer's norm / the top's
    full: np.ndarray  # (n,) a whole window of records ends here
    grown: np.ndarray  # (n,) past the first window: growth since the start can be judged
    plateau: np.ndarray  # (n,) mean loss over the last plateau_steps steps (NaN: too early)
    recent: np.ndarray  # (n,) mean loss over the second half of those steps

    def __len__(self) -> int:
        return len(self.steps)


#: what a rule's check gives: for every row of the views whether it holds, and the diagnosis
#: at a row
Found = tuple[np.ndarray, Callable[[int], Diagnosis]]


@dataclass(frozen=True)
class Rule:
    """One kind of diagnosis.

    Attributes:
        kind: the ``kind`` field of the diagnoses it raises (:data:`gradtui.diagnosis.KINDS`).
        check: ``check(diagnoser, views)``: whether the condition holds at each row and the
            diagnosis at a row. The diagnoser gives the rows (``names``, ``infos``, ``roles``,
            ``depth``), the thresholds ``t`` and the training settings ``train``.
        explained_by: kinds whose being raised keeps this one from being raised (they explain
            it); ``("*",)``: any other kind. A raised diagnosis clears on its own condition only.
    """

    kind: str
    check: Callable[[Diagnoser, Views], Found]
    explained_by: tuple[str, ...] = ()


def nothing(n: int) -> Found:
    """A rule that holds at no row (it does not apply to this model)."""
    return np.zeros(n, bool), lambda j: None  # type: ignore[return-value,arg-type]


def held_since(held: np.ndarray, steps: np.ndarray, before: np.ndarray | None) -> np.ndarray:
    """For each row and column of ``held`` (rows x columns), the step since which it has held
    without a break (NaN where it does not hold); ``before``: the same for the last row of the
    previous feed (carried across feeds, so a block gives what records one by one give)."""
    n, cols = held.shape
    index = np.arange(n)[:, None]
    last_break = np.maximum.accumulate(np.where(held, -1, index), axis=0)  # -1: none in this block
    start = np.asarray(steps, float)[np.minimum(last_break + 1, n - 1)]
    carried = np.full(cols, math.nan) if before is None else before
    start = np.where(last_break < 0, np.where(np.isfinite(carried), carried, float(steps[0])), start)
    return np.where(held, start, math.nan)
