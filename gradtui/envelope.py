"""Pictures of runs of any length: curves downsampled to what a figure can show, labels that fit.

A figure ``w`` pixels wide cannot show more than ``w`` values across: a million-step loss drawn
point by point is a solid band, and costs a million vertices. :class:`Envelope` cuts the steps
into at most ``buckets`` equal spans (one a pixel column) and keeps, per span and per column
(layer), the smallest and largest finite value, their sum and count (so the mean), and how many
values were NaN, +Inf or -Inf. Every recorded value lies within its span's ``[lo, hi]``: a spike
of one step stays visible as the top of the band, a NaN as a mark, and the arrays drawn are
bounded by ``buckets`` whatever the run's length.

It is fed in blocks (:meth:`Envelope.add`) and holds only its buckets, so a reader can stream a
run into it. When the steps' range is not known in advance the span doubles (neighbouring
buckets merged in pairs, which is exact for min, max, sum and counts) whenever a step falls past
the last bucket.

:func:`thin_labels` picks which of ``n`` evenly spaced labels (a heatmap's layer names) to write
so that they do not overlap at the figure's size: every k-th, the first and the last always.

NumPy only; no matplotlib here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Envelope", "Buckets", "envelope", "thin_labels"]


@dataclass(frozen=True)
class Buckets:
    """What an :class:`Envelope` holds, for the non-empty spans only (``k`` of them), oldest first.

    Attributes:
        x: each span's mean step (the step of its one record when it holds one), shape ``(k,)``.
        left, right: each span's edges in steps, shape ``(k,)`` (``right`` of one is ``left`` of
            the next when both hold records).
        lo, hi, mean: the smallest, largest and mean finite value, shape ``(k, columns)``; NaN
            where a span has no finite value in that column.
        count: finite values, shape ``(k, columns)``.
        nan, posinf, neginf: how many values were NaN, +Inf, -Inf, shape ``(k, columns)``.
        records: records (steps) in each span, shape ``(k,)``.
    """

    x: Any
    left: Any
    right: Any
    lo: Any
    hi: Any
    mean: Any
    count: Any
    nan: Any
    posinf: Any
    neginf: Any
    records: Any

    @property
    def nonfinite(self) -> Any:
        """NaN, +Inf or -Inf values per span and column."""
        return self.nan + self.posinf + self.neginf

    def edges(self) -> Any:
        """Contiguous cell edges for a mesh over the spans, shape ``(k + 1,)``; a gap between two
        spans (no record in the spans between them) is given to the later one's cell."""
        if not len(self.x):
            return np.zeros(0)
        return np.concatenate([self.left[:1], self.right])


class Envelope:
    """Min / max / mean per span of steps, for ``columns`` series at once, in bounded memory.

    Args:
        buckets: most spans kept (e.g. the plot's width in pixels); at least 2.
        columns: series fed side by side (e.g. one a layer).
        start: the first span's left edge; default: the first step fed.
        width: steps per span; default: 1, doubled as the steps go past the last span. Give
            ``start`` and ``width = (last - start) / buckets`` when the range is known.
    """

    def __init__(
        self, buckets: int, columns: int = 1, *, start: float | None = None, width: float | None = None
    ):
        if buckets < 2:
            raise ValueError("an envelope needs at least 2 buckets")
        if width is not None and not width > 0:
            raise ValueError("width must be > 0")
        self.buckets = int(buckets)
        self.columns = int(columns)
        self.start = start
        self.width = float(width) if width is not None else 1.0
        n, c = self.buckets, self.columns
        self._lo = np.full((n, c), np.inf)
        self._hi = np.full((n, c), -np.inf)
        self._sum = np.zeros((n, c))
        self._count = np.zeros((n, c), dtype=np.int64)
        self._nan = np.zeros((n, c), dtype=np.int64)
        self._posinf = np.zeros((n, c), dtype=np.int64)
        self._neginf = np.zeros((n, c), dtype=np.int64)
        self._records = np.zeros(n, dtype=np.int64)
        self._steps = np.zeros(n)  # sum of the steps, for each span's mean step

    # -------------------------------------------------------------------- feeding

    def add(self, steps: Any, values: Any) -> None:
        """Feed records: ``steps`` shape ``(m,)``, ``values`` shape ``(m,)`` or ``(m, columns)``
        (``None`` in a list counts as NaN). Steps need not be sorted; a step before ``start``
        counts in the first span."""
        steps = np.asarray(steps, dtype=float).reshape(-1)
        vals = (
            np.asarray(values, dtype=float).reshape(len(steps), -1)
            if len(steps)
            else np.zeros((0, self.columns))
        )
        if vals.shape[1] != self.columns:
            raise ValueError(f"values have {vals.shape[1]} columns, the envelope {self.columns}")
        ok = np.isfinite(steps)
        if not ok.all():  # a record without a usable step cannot be placed
            steps, vals = steps[ok], vals[ok]
        if not len(steps):
            return
        if self.start is None:
            self.start = float(steps.min())
        top = float(steps.max())
        while top >= self.start + self.buckets * self.width:
            self._halve()
        idx = np.clip(((steps - self.start) // self.width).astype(np.int64), 0, self.buckets - 1)
        if len(idx) > 1 and (np.diff(idx) < 0).any():
            order = np.argsort(idx, kind="stable")
            idx, steps, vals = idx[order], steps[order], vals[order]
        # one reduction per span touched (runs of equal idx), then merged into the spans
        first = np.concatenate([[0], np.nonzero(np.diff(idx))[0] + 1])
        u = idx[first]
        sizes = np.diff(np.concatenate([first, [len(idx)]]))
        finite = np.isfinite(vals)
        if finite.all():  # the usual block: no masking, no counting of what is not there
            self._lo[u] = np.minimum(self._lo[u], np.minimum.reduceat(vals, first, axis=0))
            self._hi[u] = np.maximum(self._hi[u], np.maximum.reduceat(vals, first, axis=0))
            self._sum[u] += np.add.reduceat(vals, first, axis=0)
            self._count[u] += sizes[:, None]
        else:
            lo = np.minimum.reduceat(np.where(finite, vals, np.inf), first, axis=0)
            self._lo[u] = np.minimum(self._lo[u], lo)
            hi = np.maximum.reduceat(np.where(finite, vals, -np.inf), first, axis=0)
            self._hi[u] = np.maximum(self._hi[u], hi)
            self._sum[u] += np.add.reduceat(np.where(finite, vals, 0.0), first, axis=0)
            self._count[u] += np.add.reduceat(finite, first, axis=0, dtype=np.int64)
            self._nan[u] += np.add.reduceat(np.isnan(vals), first, axis=0, dtype=np.int64)
            self._posinf[u] += np.add.reduceat(vals == np.inf, first, axis=0, dtype=np.int64)
            self._neginf[u] += np.add.reduceat(vals == -np.inf, first, axis=0, dtype=np.int64)
        self._records[u] += sizes
        self._steps[u] += np.add.reduceat(steps, first)

    def _halve(self) -> None:
        """Double the span: buckets merged in pairs (exact), the upper half emptied."""
        half = (self.buckets + 1) // 2

        def pairs(a: Any, how: Any, empty: float) -> Any:
            b = a.copy() if a.shape[0] % 2 == 0 else np.concatenate([a, np.full((1,) + a.shape[1:], empty)])
            merged = how(b[0::2], b[1::2])
            out = np.full_like(a, empty)
            out[:half] = merged
            return out

        self._lo = pairs(self._lo, np.minimum, np.inf)
        self._hi = pairs(self._hi, np.maximum, -np.inf)
        for name in ("_sum", "_count", "_nan", "_posinf", "_neginf", "_records", "_steps"):
            setattr(self, name, pairs(getattr(self, name), np.add, 0))
        self.width *= 2

    # -------------------------------------------------------------------- reading

    def result(self) -> Buckets:
        """The non-empty spans, as :class:`Buckets`."""
        used = self._records > 0
        i = np.nonzero(used)[0]
        start = self.start if self.start is not None else 0.0
        left = start + i * self.width
        right = left + self.width
        if len(i) > 1:  # a gap before a span: its cell starts where the previous one ended
            left[1:] = right[:-1]
        count = self._count[i]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, self._sum[i] / np.maximum(count, 1), np.nan)
        lo = np.where(count > 0, self._lo[i], np.nan)
        hi = np.where(count > 0, self._hi[i], np.nan)
        return Buckets(
            x=self._steps[i] / self._records[i],
            left=left,
            right=right,
            lo=lo,
            hi=hi,
            mean=np.clip(mean, lo, hi),  # rounding of the sum cannot put the mean outside
            count=count,
            nan=self._nan[i],
            posinf=self._posinf[i],
            neginf=self._neginf[i],
            records=self._records[i],
        )


def envelope(steps: Any, values: Any, buckets: int) -> Buckets:
    """The envelope of one run's ``values`` (``(m,)`` or ``(m, columns)``) over ``steps`` in at
    most ``buckets`` equal spans from the first step to the last (a run with ``buckets`` records
    or fewer keeps one span a record)."""
    steps = np.asarray(steps, dtype=float).reshape(-1)
    vals = np.asarray(values, dtype=float)
    columns = 1 if vals.ndim == 1 else vals.shape[1]
    finite = steps[np.isfinite(steps)]
    if not len(finite):
        env = Envelope(max(2, buckets), columns)
        return env.result()
    first, last = float(finite.min()), float(finite.max())
    if len(finite) <= buckets and len(np.unique(finite)) == len(finite):
        # one span a record: spans around each step, halfway to its neighbours
        order = np.argsort(steps, kind="stable")
        s = steps[order]
        v = vals.reshape(len(steps), columns)[order]
        ok = np.isfinite(s)
        s, v = s[ok], v[ok]
        fin = np.isfinite(v)
        if len(s) == 1:
            left, right = s - 0.5, s + 0.5
        else:
            mid = (s[1:] + s[:-1]) / 2
            left = np.concatenate([[s[0] - (mid[0] - s[0])], mid])
            right = np.concatenate([mid, [s[-1] + (s[-1] - mid[-1])]])
        vv = np.where(fin, v, np.nan)
        return Buckets(
            x=s,
            left=left,
            right=right,
            lo=vv,
            hi=vv,
            mean=vv,
            count=fin.astype(np.int64),
            nan=np.isnan(v).astype(np.int64),
            posinf=(v == np.inf).astype(np.int64),
            neginf=(v == -np.inf).astype(np.int64),
            records=np.ones(len(s), dtype=np.int64),
        )
    # the last step must fall inside the last span: widen by a hair
    width = max((last - first) / buckets, 1e-12) * (1 + 1e-9)
    env = Envelope(buckets, columns, start=first, width=width)
    env.add(steps, vals.reshape(len(steps), columns))
    return env.result()


def thin_labels(n: int, length_pt: float, fontsize: float, spacing: float = 1.2) -> list[int]:
    """Which of ``n`` labels evenly spaced along ``length_pt`` points to write, ``fontsize``
    points high, so that no two overlap: every k-th from the first, and the last always (it takes
    the place of the last k-th one, so the gaps stay at least k). At most
    ``length_pt / (fontsize * spacing)`` labels (and the first and last whatever the room)."""
    if n <= 0:
        return []
    room = max(2, math.floor(length_pt / (fontsize * spacing))) if length_pt > 0 else 2
    if n <= room:
        return list(range(n))
    k = math.ceil(n / room)
    picked = list(range(0, n, k))
    picked[-1] = n - 1
    return picked
