"""TensorBoard event files (SPEC section 5), written without TensorFlow.

Scalars ``gradtui/<layer>/grad_norm``, ``.../update_ratio``, ``.../saturation`` or ``.../dead``
and ``loss`` per recorded step, the epoch's metrics, the diagnoses as text, and histograms
``gradtui/<layer>/gradients`` and ``gradtui/<layer>/weights`` when given the raw values.

TensorBoard's own writer (``tensorboard.summary.writer``, protobuf only: no TensorFlow graph ops)
writes one event a recorded step holding all of that step's scalars as ``simple_value``: building
one protobuf per step is what the sink costs (see :class:`TensorBoardSink`), and TensorBoard's
reader shows them under *Scalars*. Text and histograms go through the plugins' ``*_pb`` helpers,
the same summaries ``tf.summary`` writes.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from gradtui.diagnosis import Diagnosis
    from gradtui.history import History
    from gradtui.probe import Records
    from gradtui.runlog import Run

#: the per-layer statistics written as scalars, in this order
SCALAR_KEYS = ("grad_norm", "update_ratio", "saturation", "dead")
#: bins of a histogram
HISTOGRAM_BINS = 30


def tag(layer: str, key: str) -> str:
    """``gradtui/<layer>/<key>``."""
    return f"gradtui/{layer}/{key}"


class TensorBoardSink:
    """Writes a run's statistics as TensorBoard event files in ``logdir``.

    Usable as a session listener (``on_records``, ``on_epoch``, ``on_end``) and directly
    (:meth:`add_rows`, :meth:`add_diagnoses`, :meth:`add_histograms`).

    Args:
        logdir: the folder for the event files (created).
        flush_secs (float): how often the writer's thread flushes. Defaults to 5.
        histograms (bool): whether the training should keep raw gradients for histograms
            (read by whoever attaches the sink). Defaults to True.
        temporary (bool): write a temporary file renamed by :meth:`close` (``export``: all or
            nothing). Defaults to False (a live training's events appear as they are written).
    """

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        *,
        flush_secs: float = 5.0,
        histograms: bool = True,
        temporary: bool = False,
    ) -> None:
        self.histograms = histograms
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        self.logdir = Path(logdir)
        self._Event, self._Summary = Event, Summary
        self._writer = EventFile(self.logdir, Event, flush_secs=flush_secs, temporary=temporary)
        self._written: set[tuple[str, str | None, int]] = set()
        self.last_step = 0
        #: seconds spent in :meth:`add_rows` and rows written (the sink's cost)
        self.seconds = 0.0
        self.rows = 0
        self.closed = False

    # ------------------------------------------------------------------ writing

    def _event(self, step: int, values: list[Any]) -> None:
        summary = self._Summary(value=values)
        self._writer.add_event(self._Event(wall_time=time.time(), step=int(step), summary=summary))

    def add_rows(
        self,
        steps: Sequence[int] | np.ndarray,
        losses: Sequence[float] | np.ndarray,
        names: Sequence[str],
        fields: Mapping[str, np.ndarray],
        present: np.ndarray | None = None,
    ) -> None:
        """Scalars of consecutive recorded steps: ``fields[key]`` is ``(rows, layers)``; NaN
        (a layer without that statistic) is left out, so a sigmoid layer has no ``dead``.

        ``present`` (``(rows, 1 + keys * layers)``: the loss, then each key's layers) says which
        values were recorded, when known: those are written even when NaN or Inf (the step where a
        run turned NaN shows in TensorBoard), the others left out."""
        if not len(steps):
            return
        t0 = time.perf_counter()
        keys = list(fields)
        # (rows, 1 + layers * keys): the loss, then each statistic of each layer
        values = np.concatenate(
            [np.asarray(losses, dtype=np.float64).reshape(-1, 1)]
            + [np.asarray(fields[k], dtype=np.float64).reshape(len(steps), -1) for k in keys],
            axis=1,
        )
        prefixes = [_value_prefix("loss")] + [_value_prefix(tag(n, k)) for k in keys for n in names]
        present = ~np.isnan(values) if present is None else np.asarray(present, dtype=bool)
        floats = values.astype("<f4").tobytes()
        width = values.shape[1]
        wall = time.time()
        masks = {}  # rows share their NaN layout (a layer's statistics are fixed): one column list each
        for i, step in enumerate(np.asarray(steps).tolist()):
            key = present[i].tobytes()
            cols = masks.get(key)
            if cols is None:
                cols = masks[key] = [(prefixes[j], 4 * j) for j in np.flatnonzero(present[i]).tolist()]
            base = i * width * 4
            summary = b"".join([pre + floats[base + off : base + off + 4] for pre, off in cols])
            self._writer.add_record(_event_bytes(wall, step, summary))
        if len(steps):
            self.last_step = int(steps[-1])
        self.rows += len(steps)
        self.seconds += time.perf_counter() - t0

    def add_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """A few named scalars at one step (the epoch's metrics)."""
        Value = self._Summary.Value
        vals = [Value(tag=k, simple_value=float(v)) for k, v in values.items() if _is_number(v)]
        if vals:
            self._event(step, vals)

    def add_diagnoses(
        self, diagnoses: Sequence[Diagnosis | Mapping[str, Any]], step: int | None = None
    ) -> None:
        """Each diagnosis not written yet, as text ``gradtui/diagnoses`` at its step."""
        from tensorboard.plugins.text.summary_v2 import text_pb

        for d in diagnoses:
            d = d if isinstance(d, Mapping) else d.to_dict()
            key = (str(d.get("kind")), d.get("layer"), int(d.get("step") or 0))
            cleared = d.get("cleared_step")
            if key in self._written and cleared is None:
                continue
            self._written.add(key)
            where = f" — `{d['layer']}`" if d.get("layer") else ""
            text = f"**{d.get('kind')}** ({d.get('severity', '')}){where}: {d.get('message', '')}\n\n"
            text += f"advice: {d.get('advice', '')}"
            if cleared is not None:
                text += f"\n\ncleared at step {cleared}"
            summary = text_pb("gradtui/diagnoses", np.array(text))
            at = int(cleared if cleared is not None else (step if step is not None else key[2]))
            self._writer.add_event(self._Event(wall_time=time.time(), step=at, summary=summary))

    def add_histograms(
        self,
        step: int,
        gradients: Mapping[str, np.ndarray] | None = None,
        weights: Mapping[str, np.ndarray] | None = None,
        *,
        bins: int = HISTOGRAM_BINS,
    ) -> None:
        """Histograms ``gradtui/<layer>/gradients`` and ``gradtui/<layer>/weights`` of raw values
        (the recorder calls this at the histogram interval); non-finite values are left out."""
        from tensorboard.plugins.histogram.summary_v2 import histogram_pb

        values = []
        for key, arrays in (("gradients", gradients or {}), ("weights", weights or {})):
            for layer, arr in arrays.items():
                flat = np.asarray(arr, dtype=np.float64).ravel()
                flat = flat[np.isfinite(flat)]
                values.extend(histogram_pb(tag(layer, key), flat, buckets=bins).value)
        if values:
            self._event(step, values)

    def flush(self) -> None:
        """Write what is buffered to disk."""
        if not self.closed:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if not self.closed:
            self._writer.close()
            self.closed = True

    @property
    def seconds_per_row(self) -> float:
        """Measured cost of the scalars of one recorded step."""
        return self.seconds / self.rows if self.rows else math.nan

    # ------------------------------------------------------------------ session listener

    def on_records(
        self, records: Records, diagnoses: list[Diagnosis], history: History | None = None
    ) -> None:
        """A drain's rows and any new diagnoses."""
        fields = {key: records.field(key) for key in SCALAR_KEYS}
        self.add_rows(records.steps, records.losses, records.names, fields)
        if diagnoses:
            self.add_diagnoses(diagnoses)

    def on_epoch(self, epoch: int, logs: dict[str, Any]) -> None:
        """The epoch's metrics, as ``epoch/<name>`` at its last recorded step."""
        self.add_scalars(self.last_step, {f"epoch/{k}": v for k, v in logs.items()})

    def on_end(self, summary: dict[str, Any]) -> None:
        """The final diagnoses (with their cleared steps), then close."""
        self.add_diagnoses(summary.get("diagnoses", []))
        self.close()


class EventFile:
    """One ``events.out.tfevents.*`` file, written in this thread.

    TensorBoard's ``EventFileWriter`` opens its file through ``tf.io.gfile``, which imports
    TensorFlow (seconds) whenever it is installed, and writes from a thread of its own; the
    records themselves are TFRecord framing around serialized ``Event`` protos
    (``RecordWriter``, pure Python), written here to a plain buffered file.

    With ``temporary`` (``export``) the events go to a hidden temporary file in ``logdir`` that
    :meth:`close` renames to its ``events.out.tfevents.*`` name, and :meth:`discard` removes: a
    failed export (full disk, file-size limit) leaves no partial event file.
    """

    def __init__(
        self, logdir: Path, event_cls: Any, *, flush_secs: float = 5.0, temporary: bool = False
    ) -> None:
        import socket

        from tensorboard.summary.writer.record_writer import RecordWriter

        logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{time.time():010.0f}.{socket.gethostname()}.{os.getpid()}.0.gradtui"
        self.path = logdir / name
        # no "tfevents" in the temporary name: TensorBoard reads any file holding it
        self._writing = (
            logdir / f".gradtui-export-{os.getpid()}-{time.monotonic_ns()}.tmp" if temporary else self.path
        )
        tf = sys.modules.get("tensorflow")
        if tf is not None and hasattr(tf, "io") and not temporary:
            # the same TFRecord framing with the checksums computed in C++: TensorBoard's
            # pure-Python crc32c costs ~0.9 ms per event of a 13-layer network, this ~20 us
            self._file = tf.io.TFRecordWriter(str(self.path))
            self._records = self._file
        else:  # export, without TensorFlow: not worth importing it for a one-off write
            self._file = open(self._writing, "xb")  # noqa: SIM115 - closed by close()
            self._records = RecordWriter(self._file)
        self.flush_secs = flush_secs
        self._flushed = time.monotonic()
        self.add_event(event_cls(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def add_event(self, event: Any) -> None:
        """Append one event (flushed to disk every ``flush_secs``)."""
        self.add_record(event.SerializeToString())

    def add_record(self, data: bytes) -> None:
        """Append one serialized event."""
        self._records.write(data)
        if time.monotonic() - self._flushed > self.flush_secs:
            self.flush()

    def flush(self) -> None:
        """Write the buffer to disk."""
        self._file.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        """Flush and close (a temporary file: synced, then renamed to its event file name)."""
        if self._writing != self.path:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._writing, self.path)
        else:
            self._file.close()

    def discard(self) -> None:
        """Close and remove a temporary file (after a failure); the event file never appears."""
        if self._writing == self.path:
            return
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self._writing)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


_PREFIXES: dict[str, bytes] = {}


def _value_prefix(name: str) -> bytes:
    """The bytes of ``Summary.value { tag: name  simple_value: <4 bytes follow> }``.

    Scalars are encoded by hand (protobuf wire format, fields as in ``summary.proto`` and
    ``event.proto``): building ~40 ``Summary.Value`` messages a recorded step cost ~0.3 ms,
    these prefixes and the packed float32s a few microseconds. A test checks the bytes parse to
    the messages the protobuf library builds.
    """
    got = _PREFIXES.get(name)
    if got is None:
        tag_bytes = name.encode("utf-8")
        inner = b"\x0a" + _varint(len(tag_bytes)) + tag_bytes + b"\x15"  # tag = 1; simple_value = 2 (fixed32)
        got = _PREFIXES[name] = b"\x0a" + _varint(len(inner) + 4) + inner  # Summary.value = 1
    return got


def _event_bytes(wall_time: float, step: int, summary: bytes) -> bytes:
    """``Event { wall_time: 1 (double)  step: 2 (int64)  summary: 5 }`` serialized."""
    return (
        b"\x09"
        + struct.pack("<d", wall_time)
        + b"\x10"
        + _varint(step & 0xFFFFFFFFFFFFFFFF)
        + b"\x2a"
        + _varint(len(summary))
        + summary
    )


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _has_events(folder: Path) -> bool:
    try:
        return any("tfevents" in p.name for p in folder.iterdir() if p.is_file())
    except OSError:
        return False


def export_dir(run: Run, logdir: str | os.PathLike[str]) -> Path:
    """Where :func:`export_run` writes: ``logdir``, or its subfolder named after the run when
    ``logdir`` already holds event files (TensorBoard would merge two runs of one folder).

    Raises:
        GradtuiError: that subfolder holds event files too.
    """
    from gradtui.errors import GradtuiError
    from gradtui.text import plain

    logdir = Path(logdir)
    if not _has_events(logdir):
        return logdir
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in run.path.resolve().name).lstrip(".")
    sub = logdir / (name or "run")
    if _has_events(sub):
        raise GradtuiError(
            f"already holds TensorBoard event files, and so does {plain(sub)}; "
            "give a folder without event files (TensorBoard would merge the runs)",
            file=plain(logdir),
            key="--tensorboard",
        )
    return sub


def export_run(run: Run, logdir: str | os.PathLike[str]) -> TensorBoardSink:
    """Write what a run directory holds (scalars, final metrics, diagnoses) as event files.

    Into ``logdir``, or its subfolder named after the run when ``logdir`` holds another run's
    events (see :func:`export_dir`); the sink's ``logdir`` says which. Recorded NaN and Inf
    values are written (the step where a run turned NaN shows); the event file appears whole or
    not at all.

    Raises:
        GradtuiError: the folder cannot be written (read-only, full disk), in one line.
    """

    def rows(sink: TensorBoardSink) -> None:
        names = run.layer_names()
        n = len(run.records)
        fields = {
            key: np.array(run.field(key, names), dtype=float).reshape(n, len(names)) for key in SCALAR_KEYS
        }
        # recorded values (NaN and Inf included) are written; a statistic a layer lacks is not
        present = np.array(
            [
                [r.get("loss") is not None]
                + [key in (r.get("layers") or {}).get(name, {}) for key in SCALAR_KEYS for name in names]
                for r in run.records
            ],
            dtype=bool,
        ).reshape(n, 1 + len(SCALAR_KEYS) * len(names))
        sink.add_rows(run.steps(), run.losses(), names, fields, present)

    return _export(run, logdir, rows)


def _export(run: Any, logdir: str | os.PathLike[str], rows: Any) -> TensorBoardSink:
    """The event file of a run: ``rows(sink)`` writes its recorded steps, then the final
    metrics and the diagnoses; written whole (a temporary file renamed) or not at all.

    Raises:
        GradtuiError: the folder cannot be written (read-only, full disk), in one line.
    """
    from gradtui.errors import GradtuiError
    from gradtui.text import plain

    target = export_dir(run, logdir)
    sink = None
    try:
        sink = TensorBoardSink(target, temporary=True)
        rows(sink)
        final = run.summary.get("final") or {}
        sink.add_scalars(sink.last_step, {f"final/{k}": v for k, v in final.items()})
        sink.add_diagnoses(run.summary.get("diagnoses", []))
        sink.close()
    except OSError as exc:
        if sink is not None:
            sink._writer.discard()
        raise GradtuiError(
            f"cannot write the event file: {exc.strerror or exc}", file=plain(target), key="--tensorboard"
        ) from None
    except BaseException:
        if sink is not None:
            sink._writer.discard()
        raise
    return sink


class Tee:
    """A session listener that hands every call to several listeners, in order."""

    def __init__(self, *listeners: Any) -> None:
        self.listeners = [x for x in listeners if x is not None]

    def __getattr__(self, method: str) -> Any:
        if not method.startswith("on_"):
            raise AttributeError(method)
        fns = [getattr(x, method) for x in self.listeners if hasattr(x, method)]

        def call(*args: Any) -> None:
            for fn in fns:
                fn(*args)

        return call


# ---------------------------------------------------------------------- export of long runs

#: bytes of event records built at once by :func:`framed_events` (bounded memory)
EVENT_BYTES = 32 << 20


def _crc_table() -> np.ndarray:
    """CRC-32C (Castagnoli, reflected 0x82F63B78) byte table."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1).astype(np.uint32)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (the TFRecord checksum), for the constant parts of a layout."""
    crc = 0xFFFFFFFF
    table = _TABLE.tolist()
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc: Any) -> Any:
    """TFRecord's masked CRC, for an int or a uint32 array."""
    if isinstance(crc, np.ndarray):
        crc = crc.astype(np.uint64)
        return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


_SHIFTS: dict[int, np.ndarray] = {}


def _shift_tables(length: int) -> np.ndarray:
    """``U[k][b]``: what byte ``b`` followed by ``k`` zero bytes adds to a CRC-32C register
    (CRC is linear: a message's CRC is its template's XOR what each byte that differs adds),
    for ``k < length``; ``(length, 256)`` uint32."""
    got = _SHIFTS.get(length)
    if got is None or len(got) < length:
        out = np.empty((length, 256), np.uint32)
        reg = _TABLE.copy()
        for k in range(length):
            out[k] = reg
            reg = _TABLE[reg & 0xFF] ^ (reg >> 8)
        _SHIFTS.clear()  # one layout at a time is enough
        _SHIFTS[length] = got = out
    return got


def framed_events(
    wall: float, steps: np.ndarray, values: np.ndarray, present: np.ndarray, prefixes: list[bytes]
) -> bytes:
    """TFRecord-framed ``Event`` protos, one a row: ``Event{wall_time, step, summary}`` whose
    summary holds ``prefixes[j]`` + the float32 of ``values[i, j]`` for each present ``j``;
    built for all rows of one layout at once (NumPy), the checksums by CRC's linearity from the
    layout's constant bytes and the bytes that differ (the step and the values).

    The same bytes as :class:`TensorBoardSink`'s ``add_rows`` writes through
    ``RecordWriter`` (a test checks it)."""
    n = len(steps)
    if not n:
        return b""
    u = np.asarray(steps, dtype=np.int64).view(np.uint64)
    nbytes = np.ones(n, np.int64)
    for k in range(1, 10):
        nbytes += (u >> np.uint64(7 * k)) > 0
    floats = np.ascontiguousarray(values, dtype="<f4").view(np.uint8).reshape(n, -1, 4)
    keys = np.concatenate([present.astype(np.uint8), nbytes.astype(np.uint8).reshape(-1, 1)], axis=1)
    # rows of one layout (which values, how long the step) share everything but those bytes
    uniq, group = np.unique(keys, axis=0, return_inverse=True)
    group = group.reshape(-1)
    parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for g, key in enumerate(uniq):
        rows = np.flatnonzero(group == g)
        cols = np.flatnonzero(key[:-1])
        k = int(key[-1])
        summary_len = sum(len(prefixes[j]) + 4 for j in cols)
        head = b"\x09" + struct.pack("<d", wall) + b"\x10"
        mid = b"\x2a" + _varint(summary_len)
        body = bytearray(head + b"\x00" * k + mid)
        at_step = len(head)
        at_vals = []
        for j in cols:
            body += prefixes[j]
            at_vals.append(len(body))
            body += b"\x00\x00\x00\x00"
        length = len(body)
        header = struct.pack("<Q", length)
        header += struct.pack("<I", _masked(crc32c(header)))
        rec = np.empty((len(rows), 12 + length + 4), np.uint8)
        rec[:, :12] = np.frombuffer(header, np.uint8)
        rec[:, 12 : 12 + length] = np.frombuffer(bytes(body), np.uint8)
        var_pos = []
        su = u[rows]
        for b in range(k):
            byte = ((su >> np.uint64(7 * b)) & np.uint64(0x7F)).astype(np.uint8)
            if b < k - 1:
                byte |= 0x80
            rec[:, 12 + at_step + b] = byte
            var_pos.append(at_step + b)
        if len(cols):
            pos = np.array(at_vals)[:, None] + np.arange(4)  # (values, 4)
            rec[:, 12 + pos.reshape(-1)] = floats[rows][:, cols, :].reshape(len(rows), -1)
            var_pos.extend(pos.reshape(-1).tolist())
        # the checksum: the template's, XOR what each differing byte adds
        crc = np.full(len(rows), crc32c(bytes(body)) ^ 0xFFFFFFFF ^ 0xFFFFFFFF, np.uint32)
        shifts = _shift_tables(length)
        data = rec[:, 12 : 12 + length]
        for p in var_pos:
            delta = data[:, p] ^ body[p]
            crc ^= shifts[length - 1 - p][delta] ^ shifts[length - 1 - p][0]
        rec[:, 12 + length :] = _masked(crc).astype("<u4").view(np.uint8).reshape(-1, 4)
        parts[g] = (rows, rec)
    if len(uniq) == 1:
        return parts[0][1].tobytes()
    # several layouts (a statistic a layer has only sometimes): the rows in their order
    where = np.empty(n, np.int64)
    for _g, (rows, _) in parts.items():
        where[rows] = np.arange(len(rows))
    out = []
    for i in range(n):
        out.append(parts[int(group[i])][1][where[i]].tobytes())
    return b"".join(out)


def export_index(run: Any, logdir: str | os.PathLike[str], progress: Any = None) -> TensorBoardSink:
    """:func:`export_run` for a run read through its index (:class:`gradtui.runindex.IndexedRun`):
    every recorded step streamed a chunk at a time, in constant memory."""
    from gradtui.runindex import LOSS

    def rows(sink: TensorBoardSink) -> None:
        names = run.layer_names()
        idx = run.index
        prefixes = [_value_prefix("loss")] + [_value_prefix(tag(n, k)) for k in SCALAR_KEYS for n in names]
        cols = [idx.column(n, k) for k in SCALAR_KEYS for n in names]
        width = len(prefixes)
        per_chunk = max(1, EVENT_BYTES // max(1, sum(len(p) + 4 for p in prefixes) + 40))
        done = 0
        t0 = time.perf_counter()
        for chunk in idx.chunks():
            for a in range(0, len(chunk), per_chunk):
                part = chunk[a : a + per_chunk]
                values = np.empty((len(part), width), np.float32)
                values[:, 0] = part["loss"]
                present = np.empty((len(part), width), bool)
                present[:, 0] = (part["flags"] & LOSS) != 0
                values[:, 1:] = idx.values(part, cols)
                present[:, 1:] = idx.present(part, cols)
                data = framed_events(time.time(), part["step"], values, present, prefixes)
                sink._writer._file.write(data)
                sink.rows += len(part)
                sink.last_step = int(part["step"][-1])
            done += len(chunk)
            if progress is not None:
                progress(done, idx.count)
        sink.seconds += time.perf_counter() - t0

    return _export(run, logdir, rows)
