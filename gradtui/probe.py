"""Recorded steps as arrays (:class:`Records`), their ``stats.jsonl`` lines, and the Keras
callback that drains them during ``fit``.

The statistics themselves are taken in the training by :mod:`gradtui.recorder`; the rows they
belong to are chosen by :mod:`gradtui.rows`. A drain's rows are turned into ``stats.jsonl`` lines,
history points and diagnoses in bulk, so the host side costs a few microseconds a record.
``benchmarks/bench_overhead.py`` measures what recording costs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import numpy as np

from gradtui.build import import_keras
from gradtui.rows import Tracked

__all__ = ["COLUMNS", "K", "RECORD_FIELDS", "Records", "Tracked", "make_callback"]

#: per-layer statistics of a recorded step, the last axis of :attr:`Records.stats`: gradient norm
#: (input kernel and bias for a recurrent layer), largest gradient magnitude, weight norm, update
#: norm, NaN/Inf count in the gradients, the activation statistic (fraction saturated or dead)
#: and the mean of the tapped output, the recurrent kernel's gradient norm, an attention layer's
#: largest |logit| and lowest head's entropy (on its query projection's row) and the output
#: logits' mean log-partition (on the output layer's row); NaN where a layer has no such statistic
COLUMNS = (
    "grad_norm",
    "grad_max",
    "weight_norm",
    "update_norm",
    "nonfinite",
    "act",
    "act_mean",
    "recurrent_grad_norm",
    "attn_logit_max",
    "attn_entropy",
    "logz_mean",
)
K = len(COLUMNS)
#: the per-layer fields of a ``stats.jsonl`` record, in the order they are written (a layer with
#: an activation tap adds ``saturation`` or ``dead`` and ``act_mean``; a recurrent layer adds
#: ``recurrent_grad_norm``; an attention layer's query projection ``attn_logit_max`` and
#: ``attn_entropy``; the output layer of a model on logits ``logz_mean``)
RECORD_FIELDS = ("grad_norm", "grad_max", "weight_norm", "update_ratio", "nonfinite")
#: the fields of an attention layer's query projection row
ATTENTION_FIELDS = ("attn_logit_max", "attn_entropy")
#: the fields only some rows have (besides the activation and recurrent ones)
OPTIONAL = (*ATTENTION_FIELDS, "logz_mean")


@dataclass
class Records:
    """Consecutive recorded steps as arrays: what one drain of the ring gives.

    Everything downstream (``stats.jsonl``, the history, the diagnoser) reads these arrays
    directly, vectorized over the rows; :meth:`to_records` builds the ``stats.jsonl`` records as
    dicts for whoever wants them.

    Attributes:
        steps: the optimizer step of each row, ``(n,)`` int64.
        losses: the loss of each row's batch, ``(n,)`` float64.
        stats: ``(n, layers, K)`` float64, the columns of :data:`COLUMNS`.
        epoch: the epoch the rows were drained in.
        layers: the recorded layers, in model order.
    """

    steps: np.ndarray
    losses: np.ndarray
    stats: np.ndarray
    epoch: int
    layers: list[Tracked]
    #: ``%`` templates of ``stats.jsonl`` lines, kept across drains by the :class:`Instrument`
    templates: dict[bytes, str] = dataclass_field(default_factory=dict, repr=False, compare=False)
    _fields: dict[str, np.ndarray] = dataclass_field(default_factory=dict, repr=False, compare=False)
    #: whether each row's loss is known (a step that computed its loss out of gradtui's sight
    #: leaves it unknown: ``NaN`` in :attr:`losses`, ``null`` in ``stats.jsonl``)
    loss_known: np.ndarray | None = None
    #: per recurrent layer: the first time step of each span of its input sequence, and the
    #: gradient norm reaching each span, ``(n, spans)``, NaN on rows where it was not measured
    time_grads: dict[str, tuple[list[int], np.ndarray]] | None = None
    #: fields computed outside the recorder (the monitor's ``time_ratio``), ``(n, layers)``
    extra: dict[str, np.ndarray] = dataclass_field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def names(self) -> list[str]:
        """The recorded layers' names."""
        return [t.name for t in self.layers]

    def fields(self, t: Tracked) -> tuple[str, ...]:
        """The fields one layer's entry of a record has, in order."""
        extra: tuple[str, ...] = (t.act_kind, "act_mean") if t.act_kind else ()
        extra += ("recurrent_grad_norm",) if t.recurrent else ()
        extra += ATTENTION_FIELDS if t.attention is not None else ()
        return RECORD_FIELDS + extra + (("logz_mean",) if t.logits else ())

    def field(self, key: str) -> np.ndarray:
        """One ``stats.jsonl`` field for every row and layer, ``(n, layers)``; NaN where a layer
        does not have it (``saturation`` and ``dead`` belong to layers with that tap).
        Computed once per drain: ``stats.jsonl``, the history and the diagnoser all read it."""
        got = self._fields.get(key)
        if got is None:
            got = self._fields[key] = self._field(key)
        return got

    def _field(self, key: str) -> np.ndarray:
        if key in self.extra:
            return self.extra[key]
        if key == "time_ratio":
            raise KeyError(key)  # only where the monitor computed it
        s = self.stats
        if key == "update_ratio":
            wn, un = s[:, :, COLUMNS.index("weight_norm")], s[:, :, COLUMNS.index("update_norm")]
            ok = (wn > 0) & np.isfinite(wn)
            ratio = np.divide(un, wn, out=np.zeros_like(un), where=ok)
            return np.where(ok, ratio, np.where(un == 0, 0.0, math.inf))
        if key in ("saturation", "dead"):
            has = np.array([t.act_kind == key for t in self.layers], bool)
            return np.where(has, s[:, :, COLUMNS.index("act")], math.nan)
        if key in ATTENTION_FIELDS or key == "logz_mean":
            # as in the records: a row without that statistic does not have it
            has = np.array([key in self.fields(t) for t in self.layers], bool)
            return np.where(has, s[:, :, COLUMNS.index(key)], math.nan)
        return s[:, :, COLUMNS.index(key)]

    def time_spans(self, i: int) -> dict[str, dict[str, list]]:
        """Row ``i``'s gradient norms across time, per recurrent layer where measured:
        ``{layer: {"t": [first time step of each span], "grad_norm": [...]}}``."""
        out: dict[str, dict[str, list]] = {}
        for name, (starts, norms) in (self.time_grads or {}).items():
            row = norms[i]
            if not np.isnan(row).all():
                out[name] = {"t": list(starts), "grad_norm": [_number(v) for v in row.tolist()]}
        return out

    def _known(self, i: int) -> bool:
        return self.loss_known is None or bool(self.loss_known[i])

    def _values(self) -> np.ndarray:
        """Every number of every record, in the order :meth:`to_jsonl` writes them."""
        cols = [self.steps.astype(np.float64), np.full(len(self), float(self.epoch)), self.losses]
        fields = {
            key: self.field(key)
            for key in (*RECORD_FIELDS, "saturation", "dead", "act_mean", "recurrent_grad_norm", *OPTIONAL)
        }
        for li, t in enumerate(self.layers):
            cols.extend(fields[key][:, li] for key in self.fields(t))
        return np.stack(cols, axis=1)

    def to_records(self) -> list[dict[str, Any]]:
        """The ``stats.jsonl`` records (SPEC section 3), one dict per row."""
        out = []
        for row in self._values().tolist():
            layers: dict[str, dict[str, float]] = {}
            i = 3
            for t in self.layers:
                entry: dict[str, Any] = {}
                for key in self.fields(t):
                    entry[key] = int(row[i]) if key == "nonfinite" else row[i]
                    i += 1
                layers[t.name] = entry
            loss = row[2] if not math.isnan(row[2]) or self._known(len(out)) else None
            record = {"step": int(row[0]), "epoch": int(row[1]), "loss": loss, "layers": layers}
            spans = self.time_spans(len(out))
            if spans:
                record["time_grads"] = spans
            out.append(record)
        return out

    def to_jsonl(self) -> str:
        """The records as compact ``stats.jsonl`` lines, formatted from one ``%`` template a row.

        Floats are written with 9 significant digits (``%.9g``: every float32 statistic reads
        back exactly), or with one decimal (``%.1f``) where ``%.9g`` would print an integer, so
        a float always reads back as a float. Shortest-``repr`` formatting, what ``json.dumps``
        does, costs 2.5 times as much here. NaN and Inf are written as the strings ``"nan"``,
        ``"inf"``, ``"-inf"``, as :func:`gradtui.runlog.dumps_record` does.
        """
        values = self._values()
        pieces, is_int = _jsonl_pieces(self)
        floats = ~np.array(is_int)
        with np.errstate(invalid="ignore"):
            size = np.abs(values)
            # %.9g drops the fraction of these (|v - rint(v)| < 0.5e-8 |v| suffices for that)
            whole = floats & (size < 1e16) & (np.abs(values - np.rint(values)) <= 1e-8 * size)
        finite = np.isfinite(values).all(axis=1).tolist()
        templates = self.templates
        out = []
        for n, (row, ok, pattern) in enumerate(zip(values.tolist(), finite, whole, strict=True)):
            if not ok:
                tokens = [_token(v, i, w) for v, i, w in zip(row, is_int, pattern.tolist(), strict=True)]
                if not self._known(n):
                    tokens[2] = "null"
                out.append(_build(pieces, ["%s"] * len(row)) % tuple(tokens))
                continue
            key = pattern.tobytes()
            template = templates.get(key)
            if template is None:
                formats = [
                    "%d" if i else ("%.1f" if w else "%.9g")
                    for i, w in zip(is_int, pattern.tolist(), strict=True)
                ]
                template = templates[key] = _build(pieces, formats)
            out.append(template % tuple(row))
        if self.time_grads:
            for i, line in enumerate(out):
                spans = self.time_spans(i)
                if spans:  # measured every few records: added to those lines only
                    out[i] = line[:-2] + ',"time_grads":' + json.dumps(spans, separators=(",", ":")) + "}\n"
        return "".join(out)


def _number(value: float) -> float | str:
    """A float with 9 significant digits, or NaN/Inf as the strings ``stats.jsonl`` uses."""
    if math.isfinite(value):
        return float(f"{value:.9g}")
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _token(value: float, is_int: bool, whole: bool) -> str:
    """One value of a row that holds a NaN or Inf, as JSON text: the formats of the template
    path (``whole``: ``%.9g`` would print an integer), NaN and Inf as strings."""
    if is_int:
        return str(int(value))
    if not math.isfinite(value):
        return '"nan"' if math.isnan(value) else ('"inf"' if value > 0 else '"-inf"')
    return f"{value:.1f}" if whole else f"{value:.9g}"


def _jsonl_pieces(records: Records) -> tuple[list[str], list[bool]]:
    """The text around the values of one compact JSON record (``%`` escaped), one piece before
    each value and one after the last, and which values are integers."""
    pieces = ['{"step":', ',"epoch":', ',"loss":']
    is_int = [True, True, False]
    sep = ',"layers":{'
    for t in records.layers:
        name = json.dumps(t.name).replace("%", "%%")
        for j, key in enumerate(records.fields(t)):
            pieces.append(sep + (name + ":{" if j == 0 else "") + f'"{key}":')
            is_int.append(key == "nonfinite")
            sep = ","
        sep = "},"
    pieces.append("}}}\n" if records.layers else ',"layers":{}}\n')
    return pieces, is_int


def _build(pieces: list[str], formats: list[str]) -> str:
    return "".join(p + f for p, f in zip(pieces, formats, strict=False)) + pieces[-1]


def make_callback(
    flush: Callable[[str], None],
    on_epoch: Callable[[int, dict], None] | None = None,
    on_epoch_begin: Callable[[int], None] | None = None,
) -> Any:
    """A Keras callback that drains the ring a few times a second (and at epoch/train ends).

    Its per-batch work is a clock read and a look at the loss Keras already converted to a
    Python float (the TensorFlow backend runs batch callbacks synchronously whatever they do).
    """
    keras = import_keras()

    class GradtuiCallback(keras.callbacks.Callback):
        """Drains gradtui's statistics ring; never touches the logs the user sees."""

        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.interval = 0.2
            #: drain after this many batches at the latest (the ring must not overflow)
            self.flush_every = 256
            self._last = 0.0
            self._batches = 0
            #: training batches of all fits so far
            self.batches_total = 0
            #: seconds spent inside ``fit`` (all fits so far): steps per second for a summary
            self.train_seconds = 0.0
            self._began = 0.0
            #: epochs begun in all fits so far
            self.epochs_seen = 0
            self._offset = 0

        def on_train_begin(self, logs: dict | None = None) -> None:
            self._began = time.monotonic()
            # a second fit starts its epochs at 0 again: its records continue the count
            self._offset = self.epochs_seen

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = self._offset + epoch
            self.epochs_seen = max(self.epochs_seen, self.epoch + 1)
            if on_epoch_begin is not None:
                on_epoch_begin(self.epoch)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self._batches += 1
            self.batches_total += 1
            now = time.monotonic()
            # Keras hands batch callbacks Python floats already: a NaN loss costs nothing to
            # see, and draining at once stops a diverging run within a step.
            loss = (logs or {}).get("loss", 0.0)
            blown = isinstance(loss, float) and not math.isfinite(loss)
            if blown or now - self._last >= self.interval or self._batches >= self.flush_every:
                self._last = now
                self._batches = 0
                flush("batch")

        @property
        def drained(self) -> bool:
            """Whether no training batch ended since the last drain this callback made."""
            return self._batches == 0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            # no training batch since the last drain: nothing new to read (validation records
            # nothing), and an empty drain still costs a read of the ring
            if self._batches:
                self._batches = 0
                flush("epoch")
            if on_epoch is not None:
                on_epoch(self._offset + epoch, dict(logs or {}))

        def on_train_end(self, logs: dict | None = None) -> None:
            self.train_seconds += time.monotonic() - self._began
            if self._batches:
                self._batches = 0
                flush("end")

    return GradtuiCallback()
