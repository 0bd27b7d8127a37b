"""Bounded in-memory history of the statistics, for sparklines and charts.

Each series keeps at most ``size`` points: when it fills, neighbouring pairs are averaged and
every later point stands for twice as many steps. A million steps cost what a thousand do, and
the oldest part of the curve stays visible at a coarser grain.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: recorded steps between two measurements of a recurrent layer's gradient through time (the
#: recorder's ``TIME_EVERY``; :mod:`gradtui.recorder` imports Keras, so the number is repeated)
TIME_EVERY = 10


class Series:
    """A fixed-size, downsampling series of ``(step, value)``.

    Adding a point is a few arithmetic operations (the partial bucket is kept as a running sum,
    not a list): the history is fed every recorded step, on the training thread.

    Args:
        size (int): points kept at most (even). Defaults to 256.
    """

    __slots__ = ("size", "steps", "values", "stride", "_sum", "_n", "_acc_step", "_last", "count")

    def __init__(self, size: int = 256) -> None:
        self.size = max(2, size - size % 2)
        self.steps: list[int] = []
        self.values: list[float] = []
        self.stride = 1
        self._sum = 0.0
        self._n = 0
        self._acc_step = 0
        self._last = math.nan
        self.count = 0

    @property
    def _acc(self) -> int:
        """Raw points in the partial newest bucket (truthy when there is one)."""
        return self._n

    def add(self, step: int, value: float) -> None:
        """Add one raw point."""
        self.count += 1
        self._last = value
        if self.stride == 1:
            self._push(step, value)
            return
        if not self._n:
            self._acc_step = step
        self._sum += value
        self._n += 1
        if self._n >= self.stride:
            self._push(self._acc_step, self._sum / self._n)
            self._sum = 0.0
            self._n = 0

    def extend(self, steps: list[int], values: list[float]) -> None:
        """Add raw points in bulk: the same series as :meth:`add` point by point (the partial
        bucket's sum is accumulated left to right, as there), at a few list operations a call."""
        n = len(values)
        if not n:
            return
        self.count += n
        self._last = values[-1]
        i = 0
        while i < n:
            stride, room = self.stride, self.size - len(self.values)
            whole = 0 if self._n else min((n - i) // stride, room)
            if whole:  # whole buckets at once (single points while the stride is 1)
                end = i + whole * stride
                self.steps.extend(steps[i:end:stride])
                if stride == 1:
                    self.values.extend(values[i:end])
                else:
                    self.values.extend(
                        [sum(values[j : j + stride], 0.0) / stride for j in range(i, end, stride)]
                    )
                i = end
                if len(self.values) >= self.size:
                    self._halve()
                continue
            # the partial bucket: complete it, or start it with the last few points
            if not self._n:
                self._acc_step = steps[i]
            take = min(stride - self._n, n - i)
            self._sum = sum(values[i : i + take], self._sum)
            self._n += take
            i += take
            if self._n >= stride:
                self._push(self._acc_step, self._sum / self._n)
                self._sum = 0.0
                self._n = 0

    def extend_array(self, steps: Any, values: Any) -> None:
        """Add raw points given as NumPy arrays: the series :meth:`extend` makes (each bucket the
        mean of its points; sums in NumPy's order, so the last bits may differ), at a few NumPy
        operations a call whatever the number of points (a run read back through its index)."""
        import numpy as np

        n = len(values)
        if not n:
            return
        values = np.asarray(values, dtype=np.float64)
        self.count += n
        self._last = float(values[-1])
        i = 0
        while i < n:
            stride = self.stride
            if self._n:  # complete the partial bucket
                take = min(stride - self._n, n - i)
                self._sum += float(values[i : i + take].sum())
                self._n += take
                i += take
                if self._n >= stride:
                    self._push(self._acc_step, self._sum / self._n)
                    self._sum = 0.0
                    self._n = 0
                continue
            whole = min((n - i) // stride, self.size - len(self.values))
            if whole:
                end = i + whole * stride
                self.steps.extend(np.asarray(steps[i:end:stride]).tolist())
                block = values[i:end]
                self.values.extend(
                    block.tolist() if stride == 1 else block.reshape(whole, stride).mean(axis=1).tolist()
                )
                i = end
                if len(self.values) >= self.size:
                    self._halve()
                continue
            self._acc_step = int(steps[i])
            self._sum = float(values[i:].sum())
            self._n = n - i
            i = n

    def _push(self, step: int, value: float) -> None:
        self.steps.append(step)
        self.values.append(value)
        if len(self.values) >= self.size:
            self._halve()

    def _halve(self) -> None:
        v = self.values
        self.values = [(v[i] + v[i + 1]) / 2 for i in range(0, len(v) - 1, 2)]
        self.steps = self.steps[::2]
        self.stride *= 2

    @property
    def last(self) -> float:
        """The newest raw value (``nan`` when empty)."""
        return self._last

    def points(self) -> list[float]:
        """Every kept value, oldest first, with the partial newest bucket."""
        return self.values + ([self._sum / self._n] if self._n else [])


@dataclass(frozen=True)
class TimeCurve:
    """How the gradient reaching a recurrent layer's input spreads across its sequence, as
    measured at one step (a ``stats.jsonl`` record's ``time_grads`` entry).

    Frozen: a newer measurement replaces the curve, so a snapshot may share it with the history.

    Attributes:
        layer: the recurrent layer's row name.
        step: the optimizer step it was measured at.
        t: the first time step of each span of the sequence.
        grad_norm: the gradient norm reaching each span (NaN where unknown).
    """

    layer: str
    step: int
    t: tuple[int, ...]
    grad_norm: tuple[float, ...]

    @property
    def first(self) -> float:
        """What reaches the first span (``t = 0``)."""
        return self.grad_norm[0] if self.grad_norm else math.nan

    @property
    def last(self) -> float:
        """What reaches the last span (the end of the sequence, nearest the loss)."""
        return self.grad_norm[-1] if self.grad_norm else math.nan

    @property
    def ratio(self) -> float:
        """``first / last``: below 1 the gradient shrinks going back in time, above 1 it grows
        (NaN when the last span's norm is not a positive number)."""
        first, last = self.first, self.last
        if not (math.isfinite(last) and last > 0) or math.isnan(first):
            return math.nan
        return first / last


def _float(value: Any) -> float:
    """A ``stats.jsonl`` number (``"nan"``, ``"inf"`` as strings, ``null``) as a float."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def time_curves(record: dict[str, Any]) -> list[TimeCurve]:
    """The curves of a ``stats.jsonl`` record's ``time_grads`` (none on most records), in the
    record's order; an entry whose ``t`` and ``grad_norm`` do not pair up is left out."""
    out = []
    step = record.get("step", -1)
    step = step if isinstance(step, int) else -1
    curves = record.get("time_grads")
    for name, curve in (curves if isinstance(curves, dict) else {}).items():
        try:
            norms = tuple(_float(v) for v in curve.get("grad_norm", ()))
            starts = tuple(int(t) for t in curve.get("t", range(len(norms))))
        except (AttributeError, TypeError, ValueError, OverflowError):
            continue  # malformed (gradtui.runlog's reader has counted it)
        if norms and len(starts) == len(norms):
            out.append(TimeCurve(name, step, starts, norms))
    return out


class History:
    """Per-layer series of every statistic, and the loss, fed with ``stats.jsonl`` records.

    Also keeps each recurrent layer's newest curve of the gradient through time
    (:attr:`time`), measured every :data:`TIME_EVERY` recorded steps.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.loss = Series(size)
        self.layers: dict[str, dict[str, Series]] = {}
        self.last_step = -1
        self.last_epoch = 0
        #: per recurrent layer, the newest :class:`TimeCurve`
        self.time: dict[str, TimeCurve] = {}

    def add(self, record: dict[str, Any]) -> None:
        """Add one record."""
        step = record.get("step")
        if not isinstance(step, int) or isinstance(step, bool):  # a raw line, not read by gradtui.runlog
            from gradtui.runlog import clean_record

            record = clean_record(record)
            if record is None:
                return
            step = record["step"]
        self.last_step = step
        epoch = record.get("epoch", 0)
        self.last_epoch = epoch if isinstance(epoch, int) else self.last_epoch
        self.loss.add(step, _float(record.get("loss")))
        layers = record.get("layers")
        for name, stats in (layers if isinstance(layers, dict) else {}).items():
            if not isinstance(stats, dict):
                continue
            layer = self._layer(name)
            for key, value in stats.items():
                self._series(layer, key).add(step, _float(value))
        if "time_grads" in record:
            for curve in time_curves(record):
                self.time[curve.layer] = curve

    def _layer(self, name: str) -> dict[str, Series]:
        layer = self.layers.get(name)
        if layer is None:
            layer = self.layers[name] = {}
        return layer

    def _series(self, layer: dict[str, Series], key: str) -> Series:
        series = layer.get(key)
        if series is None:
            series = layer[key] = Series(self.size)
        return series

    def extend(self, records: Iterable[dict[str, Any]]) -> None:
        """Add several records."""
        for r in records:
            self.add(r)

    def add_block(self, block: Any) -> None:
        """Add a drain's statistics as arrays (a :class:`gradtui.probe.Records`): the same
        series as :meth:`extend` with its records, each series fed in one call."""
        n = len(block)
        if not n:
            return
        steps = block.steps.tolist()
        self.last_step = steps[-1]
        self.last_epoch = int(block.epoch)
        self.loss.extend(steps, block.losses.tolist())
        columns: dict[str, list[list[float]]] = {}
        for li, t in enumerate(block.layers):
            layer = self._layer(t.name)
            for key in block.fields(t):
                if key not in columns:
                    columns[key] = block.field(key).T.tolist()
                self._series(layer, key).extend(steps, columns[key][li])
        for name, (starts, norms) in (block.time_grads or {}).items():
            # measured on a few rows only (all NaN on the others): keep the newest measured one
            measured = (norms == norms).any(axis=1).nonzero()[0]
            if len(measured):
                i = int(measured[-1])
                self.time[name] = TimeCurve(name, steps[i], tuple(starts), tuple(norms[i].tolist()))

    def add_index(self, index: Any, stop: int | None = None) -> None:
        """Add the records of a run's index (:class:`gradtui.runindex.RunIndex`), a chunk of rows
        at a time: the series :meth:`extend` makes with those records, in memory bounded by the
        series' size whatever the run's length. The newest curve through time of each recurrent
        layer is read from its line."""
        import numpy as np

        from gradtui.runindex import ABSENT, LOSS, TIME

        last_time = -1
        at = 0
        names = index.columns
        total = index.count if stop is None else min(stop, index.count)
        # the stride the series reach after ``total`` points, taken at once (halving a series
        # as it fills gives the same buckets: means of equal blocks)
        stride = 1
        while total >= self.size * stride:
            stride *= 2

        def fresh(s: Series) -> Series:
            if not s.count and not s.values and stride > s.stride:
                s.stride = stride
            return s

        fresh(self.loss)
        for rows in index.chunks(0, stop):
            steps = rows["step"]
            self.loss.extend_array(
                steps, np.where(rows["flags"] & LOSS, rows["loss"].astype(np.float64), np.nan)
            )
            values = np.ascontiguousarray(index.plain(rows).T)  # a column a row
            bits = values.view(np.uint32)
            absent = (bits == ABSENT).any(axis=1)
            for j, (layer, key) in enumerate(names):
                if not absent[j]:
                    fresh(self._series(self._layer(layer), key)).extend_array(steps, values[j])
                    continue
                present = bits[j] != ABSENT
                if present.any():
                    fresh(self._series(self._layer(layer), key)).extend_array(
                        steps[present], values[j][present]
                    )
            timed = np.flatnonzero(rows["flags"] & TIME)
            if len(timed):
                last_time = at + int(timed[-1])
            at += len(rows)
            self.last_step = int(steps[-1])
            self.last_epoch = int(rows["epoch"][-1])
        if last_time >= 0:
            record = index.record(last_time)
            if record is not None:
                for curve in time_curves(record):
                    self.time[curve.layer] = curve

    def series(self, layer: str, key: str) -> Series | None:
        """One layer's series of one statistic, if recorded."""
        return self.layers.get(layer, {}).get(key)

    def latest(self, layer: str) -> dict[str, float]:
        """The newest value of each statistic of a layer."""
        return {k: s.last for k, s in self.layers.get(layer, {}).items()}


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(
    values: list[float],
    width: int = 24,
    *,
    log: bool = True,
    lo: float | None = None,
    hi: float | None = None,
) -> str:
    """A unicode sparkline of the last ``width`` values; log scale by default.

    ``lo`` and ``hi`` fix the scale (in the values' units) so several lines compare: with one
    scale for every layer, vanishing shows as rows fading toward the input. Non-finite values
    are drawn as ``!``, zeros (on a log scale) as a space.
    """
    vals = values[-width:]
    if not vals:
        return ""

    def tr(v: float) -> float:
        if not math.isfinite(v):
            return math.nan
        if log:
            return math.log10(v) if v > 0 else -math.inf
        return v

    t = [tr(v) for v in vals]
    finite = [v for v in t if math.isfinite(v)]
    if not finite:
        return "".join("!" if not math.isfinite(v) else " " for v in vals)
    low = tr(lo) if lo is not None and lo > 0 else min(finite)
    high = tr(hi) if hi is not None and hi > 0 else max(finite)
    span = high - low
    out = []
    for raw, v in zip(vals, t, strict=True):
        if not math.isfinite(raw):
            out.append("!")
        elif v == -math.inf:
            out.append(" ")
        else:
            frac = 0.5 if span <= 0 else (v - low) / span
            out.append(SPARK[min(len(SPARK) - 1, max(0, int(frac * (len(SPARK) - 1) + 0.5)))])
    return "".join(out)
