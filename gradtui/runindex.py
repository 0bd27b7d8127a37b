"""``stats.idx``: the columns and byte offsets of ``stats.jsonl``, so a reader seeks and
downsamples a run of any length without parsing every line.

``stats.jsonl`` stays the record (SPEC section 3); ``stats.idx`` beside it holds, for each of
its records, the step, the epoch, where its line starts and how long it is, and every number of
the record as a float32, in fixed-size little-endian rows (docs/FORMATS.md describes the layout
without Python). The training's writer appends the rows of a drain right after its lines
(:class:`IndexWriter`); a run without the file (an older run, one written by hand) gets it on
its first reading (:func:`open_index`), built in one pass, written to a temporary file and
renamed. A read-only run directory keeps it in a temporary file of the system's, for that
reading only (said in :attr:`RunIndex.where`).

A killed writer leaves at most a partial last row, which the row count (the file's size over
the row size) leaves out; lines of ``stats.jsonl`` past the last row are parsed on reading, as
are lines the index skipped (the gaps between two rows), so what a reader says it left out is
the same with the index and without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from gradtui.runlog import Skipped, _create_temp, clean_record, open_regular

NAME = "stats.idx"
MAGIC = b"GTIDX1\n\x00"
#: the bits of a float32 that says "not in this record" (every other NaN was recorded as NaN)
ABSENT = np.uint32(0xFFFFFFFF)
#: row flags
LOSS = 1  # the loss is a number (else ``null``)
TIME = 2  # the line has ``time_grads``
WHOLE = 4  # every layer has a number for ``grad_norm`` and ``weight_norm``
DAMAGED = 8  # the reader left a field of this line out
#: the fixed part of a row, then one float32 a column
BASE = [
    ("step", "<i8"),
    ("offset", "<i8"),
    ("length", "<u4"),
    ("epoch", "<i4"),
    ("flags", "<u4"),
    ("loss", "<f4"),
]
#: rows read at a time by the streaming readers (bounded memory: ~32 MB a chunk)
CHUNK_BYTES = 32 << 20
#: bytes of stats.jsonl parsed at a time while building
READ_BYTES = 16 << 20
#: lines of skipped gaps re-read for the note at most (the rest are counted as one)
GAP_BYTES = 4 << 20

Column = tuple[str, str]


def row_dtype(ncols: int) -> np.dtype:
    """The numpy dtype of a row with ``ncols`` value columns."""
    return np.dtype([*BASE, ("v", "<f4", (ncols,))])


def header_bytes(columns: list[Column], dirty: bool = False) -> bytes:
    """The file's head: :data:`MAGIC`, the header's length (uint32), the JSON header, padded with
    spaces so the rows start at a multiple of 8 bytes.

    ``dirty`` (``"y"``/``"n"``, one character so it is changed in place) says whether the reader
    that built the index left lines or fields of ``stats.jsonl`` out: only then does a reader
    look for them again (for its note)."""
    head = json.dumps(
        {
            "format": "gradtui stats.idx",
            "version": 1,
            "dirty": "y" if dirty else "n",
            "row_bytes": row_dtype(len(columns)).itemsize,
            "fields": [f"{n}:{t}" for n, t in BASE] + [f"values:<f4*{len(columns)}"],
            "columns": [list(c) for c in columns],
        },
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode("ascii")
    pad = (-(len(MAGIC) + 4 + len(head))) % 8
    head += b" " * pad
    return MAGIC + len(head).to_bytes(4, "little") + head


def read_header(f: Any, meta_out: dict[str, Any] | None = None) -> tuple[list[Column], int, np.dtype]:
    """``(columns, start of the rows, row dtype)`` of an index file; ``ValueError`` when it is
    not one. ``meta_out`` receives the whole header."""
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:8] != MAGIC:
        raise ValueError("not a gradtui stats.idx")
    n = int.from_bytes(head[8:12], "little")
    if n > 64 << 20:
        raise ValueError("header too long")
    raw = f.read(n)
    if len(raw) < n:
        raise ValueError("torn header")
    meta = json.loads(raw)
    columns = [(str(a), str(b)) for a, b in meta["columns"]]
    dtype = row_dtype(len(columns))
    if meta.get("version") != 1 or meta.get("row_bytes") != dtype.itemsize:
        raise ValueError("unknown version")
    if meta_out is not None:
        meta_out.update(meta)
    return columns, 12 + n, dtype


def mark_dirty(path: Path) -> None:
    """Set the header's ``dirty`` to ``"y"`` in place (same length)."""
    with open(path, "r+b") as f:
        head = f.read(1 << 16)
        at = head.find(b'"dirty":"n"')
        if at >= 0:
            f.seek(at + len(b'"dirty":"'))
            f.write(b"y")


def _absent_rows(n: int, dtype: np.dtype) -> np.ndarray:
    rows = np.zeros(n, dtype)
    rows["v"].view(np.uint32)[...] = ABSENT
    return rows


def _widen(rows: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Rows in a wider layout (new columns at the end, absent in these rows)."""
    out = _absent_rows(len(rows), dtype)
    for name, _ in BASE:
        out[name] = rows[name]
    k = rows.dtype["v"].shape[0] if rows.dtype["v"].shape else 0
    out["v"][:, :k] = rows["v"]
    return out


class IndexWriter:
    """Appends rows to a ``stats.idx`` (the training's writer, and the builder).

    Columns are added as records name them; a new column rewrites the file in the wider layout
    (a temporary file, then a rename): rare, at a new ``compile`` or a second optimizer's first
    step. Rows are appended with one ``os.write``; a killed writer leaves at most a partial row.
    """

    def __init__(self, path: Path, columns: list[Column] | None = None) -> None:
        self.path = Path(path)
        self.columns: list[Column] = list(columns or [])
        self.where = {c: i for i, c in enumerate(self.columns)}
        self.dtype = row_dtype(len(self.columns))
        self.fd = -1
        self.dirty = False

    @classmethod
    def create(cls, path: Path, columns: list[Column] | None = None) -> IndexWriter:
        """A new, empty index at ``path`` (replacing any)."""
        w = cls(path, columns)
        w._rewrite(np.zeros(0, w.dtype))
        return w

    @classmethod
    def reopen(cls, path: Path) -> IndexWriter:
        """An existing index, to append to (a partial last row is cut off first)."""
        meta: dict[str, Any] = {}
        with open(path, "rb") as f:
            columns, start, dtype = read_header(f, meta)
        w = cls(path, columns)
        w.dirty = meta.get("dirty") != "n"
        w.fd = os.open(path, os.O_RDWR)
        size = os.fstat(w.fd).st_size
        whole = start + (size - start) // dtype.itemsize * dtype.itemsize
        if whole != size:
            os.ftruncate(w.fd, whole)
        os.lseek(w.fd, 0, os.SEEK_END)
        return w

    def _rewrite(self, old_rows: np.ndarray | None) -> None:
        """Write the file anew in the current layout with ``old_rows`` (or the file's rows)."""
        if old_rows is None:
            old_rows = np.zeros(0, self.dtype)
            old = read_rows_file(self.path)
            if old is not None:
                old_rows = _widen(old, self.dtype)
        fd, tmp = _create_temp(self.path)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header_bytes(self.columns, self.dirty))
                f.write(old_rows.tobytes())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def ensure(self, columns: list[Column]) -> None:
        """Add the columns not in the layout yet (rewriting the file once if any)."""
        new = [c for c in columns if c not in self.where]
        if not new:
            return
        for c in new:
            self.where[c] = len(self.columns)
            self.columns.append(c)
        self.dtype = row_dtype(len(self.columns))
        self._rewrite(None)

    def append(self, rows: np.ndarray) -> None:
        """Append rows already in the current layout."""
        data = rows.tobytes()
        while data:
            data = data[os.write(self.fd, data) :]

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def read_rows_file(path: Path) -> np.ndarray | None:
    """Every whole row of an index file (for a rewrite), or ``None`` when it is not one."""
    try:
        with open(path, "rb") as f:
            _, start, dtype = read_header(f)
            f.seek(start)
            data = f.read()
    except (OSError, ValueError):
        return None
    n = len(data) // dtype.itemsize
    return np.frombuffer(data[: n * dtype.itemsize], dtype).copy()


def block_rows(block: Any, data: bytes, base: int, writer: IndexWriter) -> np.ndarray | None:
    """The index rows of a drain (:class:`gradtui.probe.Records`) whose ``stats.jsonl`` lines
    are ``data``, written at byte ``base``; ``None`` when they do not pair up (then the reader
    parses those lines)."""
    n = len(block)
    buf = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(buf == 10) + 1
    if len(ends) != n or not n:
        return None
    columns: list[Column] = []
    values = []
    for li, t in enumerate(block.layers):
        for key in block.fields(t):
            columns.append((t.name, key))
            values.append((key, li))
    writer.ensure(columns)
    rows = _absent_rows(n, writer.dtype)
    starts = np.concatenate([[0], ends[:-1]])
    rows["step"] = block.steps
    rows["offset"] = base + starts
    rows["length"] = ends - starts
    rows["epoch"] = int(block.epoch)
    known = block.loss_known if block.loss_known is not None else np.ones(n, bool)
    flags = np.where(known, LOSS, 0) | WHOLE
    if block.time_grads:
        measured = np.zeros(n, bool)
        for _, norms in block.time_grads.values():
            measured |= ~np.isnan(norms).all(axis=1)
        flags |= np.where(measured, TIME, 0)
    rows["flags"] = flags
    rows["loss"] = np.where(known, block.losses, np.nan)
    cache: dict[str, np.ndarray] = {}
    v = rows["v"]
    for (key, li), col in zip(values, columns, strict=True):
        if key not in cache:
            cache[key] = block.field(key)
        v[:, writer.where[col]] = cache[key][:, li]
    return rows


# ---------------------------------------------------------------------- reading


def _float(x: Any) -> float:
    try:
        return float(x)
    except OverflowError:
        return float("inf") if x > 0 else float("-inf")


#: layer names seen to be plain UTF-8 text (the fast path keeps them as they are)
_GOOD_NAMES: set[str] = set()


def _fast_record(raw: Any) -> dict[str, Any] | None:
    """The common, well-formed record as :func:`clean_record` would return it, or ``None`` to
    let it decide (anything unusual). Checks the top level; :func:`_rows_of` checks the values
    (their types, a set built in C) and falls back to :func:`clean_record` itself."""
    if type(raw) is not dict:
        return None
    step = raw.get("step")
    if type(step) is not int or "time_grads" in raw:
        return None
    epoch = raw.get("epoch", 0)
    if type(epoch) is not int:
        return None
    loss = raw.get("loss")
    if loss is not None and type(loss) is not float and type(loss) is not int:
        return None
    layers = raw.get("layers")
    if type(layers) is not dict:
        return None
    for name, stats in layers.items():
        if type(stats) is not dict:
            return None
        if name not in _GOOD_NAMES:
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                return None
            if len(_GOOD_NAMES) < 100_000:
                _GOOD_NAMES.add(name)
    return raw


class RunIndex:
    """A run's ``stats.idx`` opened for reading, covering ``stats.jsonl`` up to :attr:`covered`.

    Rows are read in chunks (:meth:`chunks`), by position (:meth:`rows`), or as the records they
    index (:meth:`record`); nothing holds the run in memory.

    Attributes:
        columns: ``(layer, field)`` of each value column, in the order records first name them.
        count: rows (records).
        covered: bytes of ``stats.jsonl`` the rows (and skipped lines) account for.
        skip: what the reader left out (the lines and fields :func:`gradtui.runlog.read_run`
            would name).
        where: where the index lives: ``"stats.idx"``, or a sentence saying it is temporary.
        built: rows parsed from ``stats.jsonl`` in this reading (0: the index was there).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.columns: list[Column] = []
        self.dtype = row_dtype(0)
        self.count = 0
        self.covered = 0
        self.skip = Skipped()
        self.where = NAME
        self.built = 0
        self._f: Any = None
        self._start = 0
        self._tail = np.zeros(0, self.dtype)  # rows kept in memory (an index we may not extend)
        self._disk = 0
        self._f_dtype = self.dtype

    # -------------------------------------------------------------- access

    def layer_names(self) -> list[str]:
        """Every layer of the records, in the order they first appear."""
        return list(dict.fromkeys(layer for layer, _ in self.columns))

    def column(self, layer: str, key: str) -> int | None:
        try:
            return self.columns.index((layer, key))
        except ValueError:
            return None

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` in the current layout."""
        start, stop = max(0, start), min(stop, self.count)
        if stop <= start:
            return np.zeros(0, self.dtype)
        parts = []
        if start < self._disk:
            end = min(stop, self._disk)
            size = self._f_dtype.itemsize
            self._f.seek(self._start + start * size)
            data = self._f.read((end - start) * size)
            got = np.frombuffer(data[: len(data) // size * size], self._f_dtype)
            parts.append(got if self._f_dtype == self.dtype else _widen(got, self.dtype))
        if stop > self._disk:
            t = self._tail[max(0, start - self._disk) : stop - self._disk]
            parts.append(t if t.dtype == self.dtype else _widen(t, self.dtype))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def chunks(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Rows ``start:stop`` a chunk at a time (about :data:`CHUNK_BYTES` each)."""
        stop = self.count if stop is None else min(stop, self.count)
        size = max(1, CHUNK_BYTES // self.dtype.itemsize)
        for a in range(start, stop, size):
            yield self.rows(a, min(stop, a + size))

    @staticmethod
    def plain(rows: np.ndarray) -> np.ndarray:
        """The value columns of rows as a plain ``(rows, columns)`` float32 array (a view)."""
        words = rows.dtype.itemsize // 4
        return np.ascontiguousarray(rows).view(np.float32).reshape(len(rows), words)[:, 8:]

    def values(self, rows: np.ndarray, columns: list[int | None]) -> np.ndarray:
        """``(rows, len(columns))`` float64 values, NaN where absent (or no such column)."""
        v = self.plain(rows)
        have = [j for j, c in enumerate(columns) if c is not None]
        out = np.full((len(rows), len(columns)), np.nan)
        if have:
            out[:, have] = v[:, [columns[j] for j in have]]
        return out

    def present(self, rows: np.ndarray, columns: list[int | None]) -> np.ndarray:
        """Which of ``values`` were recorded (a recorded NaN included)."""
        bits = self.plain(rows).view(np.uint32)
        have = [j for j, c in enumerate(columns) if c is not None]
        out = np.zeros((len(rows), len(columns)), bool)
        if have:
            out[:, have] = bits[:, [columns[j] for j in have]] != ABSENT
        return out

    def field(self, key: str, names: list[str], start: int = 0, stop: int | None = None) -> np.ndarray:
        """``(rows, layers)`` of one statistic, NaN where a layer lacks it (a bounded slice)."""
        rows = self.rows(start, self.count if stop is None else stop)
        return self.values(rows, [self.column(n, key) for n in names])

    def record(self, i: int) -> dict[str, Any] | None:
        """The ``stats.jsonl`` record of row ``i``, read from its line."""
        row = self.rows(i, i + 1)
        if not len(row):
            return None
        try:
            with open_regular(self.path / "stats.jsonl") as f:
                f.seek(int(row["offset"][0]))
                line = f.read(int(row["length"][0]))
            return clean_record(json.loads(line))
        except (OSError, ValueError, RecursionError):
            return None

    def tail_records(self, n: int) -> list[dict[str, Any]]:
        """The last ``n`` records, parsed from their lines (one read)."""
        rows = self.rows(self.count - n, self.count)
        if not len(rows):
            return []
        a = int(rows["offset"][0])
        b = int(rows["offset"][-1]) + int(rows["length"][-1])
        try:
            with open_regular(self.path / "stats.jsonl") as f:
                f.seek(a)
                data = f.read(b - a)
        except OSError:
            return []
        out = []
        for off, length in zip(rows["offset"].tolist(), rows["length"].tolist(), strict=True):
            try:
                rec = clean_record(json.loads(data[off - a : off - a + length]))
            except (ValueError, RecursionError):
                rec = None
            if rec is not None:
                out.append(rec)
        return out

    def flagged(self, flag: int) -> np.ndarray:
        """Row numbers whose flags have ``flag`` (streamed)."""
        out = []
        at = 0
        for rows in self.chunks():
            out.append(np.flatnonzero(rows["flags"] & flag) + at)
            at += len(rows)
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> RunIndex:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _parse(data: bytes, base: int, skip: Skipped) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """``(offset, length, record)`` of each record among whole lines ``data`` (at ``base``); a
    record whose values are not all numbers is marked ``_raw`` (:func:`_rows_of` cleans it)."""
    at = 0
    end = len(data)
    while at < end:
        nl = data.find(b"\n", at)
        if nl < 0:
            break
        line = data[at : nl + 1]
        off = at
        at = nl + 1
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except RecursionError:
            skip.line("nested too deep")
            continue
        except ValueError:
            skip.line("not JSON")
            continue
        rec = _fast_record(raw)
        if rec is None:
            before = sum(skip.fields.values())
            rec = clean_record(raw, skip)
            if rec is None:
                continue
            if sum(skip.fields.values()) != before:
                rec["_damaged"] = True
        yield base + off, len(line), rec


_NUMBERS = {float, int}


def _rows_of(
    records: list[tuple[int, int, dict[str, Any]]], writer: IndexWriter, skip: Skipped | None = None
) -> np.ndarray:
    """Index rows of parsed records (adding their columns to ``writer``'s layout).

    Per layer the columns of its keys are looked up once for each set of keys (a cache), and its
    values taken in bulk: no Python work per value, which a 200-layer record has 1,400 of."""
    where = writer.where
    cache: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    new: list[Column] = []
    cols_all: list[int] = []
    vals: list[Any] = []
    counts: list[int] = []
    steps, offs, lens, epochs, flags, losses = [], [], [], [], [], []
    for off, length, rec in records:
        start = len(vals)
        types: set[type] = set()
        layers = rec["layers"]
        for layer, stats in layers.items():
            keys = tuple(stats)
            cols = cache.get((layer, keys))
            if cols is None:
                cols = []
                for key in keys:
                    c = where.get((layer, key))
                    if c is None:
                        c = where[(layer, key)] = len(writer.columns)
                        writer.columns.append((layer, key))
                        new.append((layer, key))
                    cols.append(c)
                cache[(layer, keys)] = cols
            cols_all.extend(cols)
            values = stats.values()
            types.update(map(type, values))
            vals.extend(values)
        if not types <= _NUMBERS:  # a bool, a string, null...: the reader's own cleaning
            del cols_all[len(cols_all) - (len(vals) - start) :]
            del vals[start:]
            sk = skip if skip is not None else Skipped()
            before = sum(sk.fields.values())
            rec = clean_record(rec, sk)
            if rec is None:
                continue
            if sum(sk.fields.values()) != before:
                rec["_damaged"] = True
            layers = rec["layers"]
            for layer, stats in layers.items():
                for key, value in stats.items():
                    c = where.get((layer, key))
                    if c is None:
                        c = where[(layer, key)] = len(writer.columns)
                        writer.columns.append((layer, key))
                        new.append((layer, key))
                    cols_all.append(c)
                    vals.append(value)
        counts.append(len(vals) - start)
        steps.append(rec["step"])
        offs.append(off)
        lens.append(length)
        e = rec.get("epoch", 0)
        epochs.append(e if type(e) is int and -(2**31) <= e < 2**31 else 0)
        loss = rec.get("loss")
        f = WHOLE
        if loss is not None:
            f |= LOSS
            losses.append(loss)
        else:
            losses.append(np.nan)
        if rec.get("time_grads"):
            f |= TIME
        for stats in layers.values():
            if "grad_norm" not in stats or "weight_norm" not in stats:
                f &= ~WHOLE
                break
        if rec.get("_damaged"):
            f |= DAMAGED
        flags.append(f)
    if new:  # the layout grew: the file is rewritten wider once (or, in memory, just wider)
        added = new
        for c in added:
            del where[c]
        del writer.columns[len(writer.columns) - len(added) :]
        writer.ensure(added) if writer.fd >= 0 else _grow(writer, added)
    n = len(steps)
    width = len(writer.columns)
    rows = _absent_rows(n, writer.dtype)
    if vals:
        try:
            arr = np.array(vals, dtype=np.float64)
        except (OverflowError, TypeError, ValueError):  # an integer beyond a float: infinite
            arr = np.array([_float(x) for x in vals])
        flat = np.full(n * width, np.nan, np.float32)
        flat.view(np.uint32)[...] = ABSENT
        pos = np.repeat(np.arange(n, dtype=np.int64) * width, counts) + np.array(cols_all, dtype=np.int64)
        with np.errstate(over="ignore"):
            flat[pos] = arr
        rows["v"] = flat.reshape(n, width)
    try:
        rows["step"] = np.array(steps, dtype=np.int64)
    except OverflowError:  # a step beyond int64 (a damaged line): clipped
        rows["step"] = [min(max(s, -(2**63)), 2**63 - 1) for s in steps]
    rows["offset"] = offs
    rows["length"] = lens
    rows["epoch"] = epochs
    rows["flags"] = flags
    try:
        loss_arr = np.array(losses, dtype=np.float64)
    except (OverflowError, TypeError):
        loss_arr = np.array([_float(x) for x in losses])
    with np.errstate(over="ignore"):
        rows["loss"] = loss_arr
    return rows


def _grow(writer: IndexWriter, new: list[Column]) -> None:
    """Add columns to a layout kept in memory (no file behind the writer)."""
    for c in new:
        writer.where[c] = len(writer.columns)
        writer.columns.append(c)
    writer.dtype = row_dtype(len(writer.columns))


def _load(
    path: Path, meta: dict[str, Any] | None = None
) -> tuple[Any, list[Column], int, np.dtype, int] | None:
    """An index file opened for reading: ``(file, columns, start, dtype, rows)``, or ``None``."""
    try:
        f = open_regular(path)
    except OSError:
        return None
    try:
        columns, start, dtype = read_header(f, meta)
        size = os.fstat(f.fileno()).st_size
    except (OSError, ValueError, KeyError, TypeError):
        f.close()
        return None
    return f, columns, start, dtype, max(0, (size - start) // dtype.itemsize)


def _valid(idx: RunIndex, stats: Any, size: int) -> bool:
    """Whether the index's rows belong to this ``stats.jsonl``: its first and last rows' lines are
    where the index says, with their steps (a ``stats.jsonl`` rewritten by hand or replaced by
    another run's reads as not)."""
    if idx.count == 0:
        return True
    for i in {0, idx.count - 1}:
        row = idx.rows(i, i + 1)
        off, length = int(row["offset"][0]), int(row["length"][0])
        if off + length > size:
            return False
        stats.seek(off)
        line = stats.read(length)
        if not line.endswith(b"\n"):
            return False
        try:
            raw = json.loads(line)
        except (ValueError, RecursionError):
            return False
        rec = clean_record(raw)
        if rec is None or rec["step"] != int(row["step"][0]):
            return False
    return True


def _may_write(run: Path) -> bool:
    """Whether nothing writes the run any more: its ``summary.json`` says it ended."""
    try:
        with open_regular(run / "summary.json") as f:
            summary = json.loads(f.read())
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(summary, dict):
        return False
    if summary.get("watching") is True:
        from gradtui.runlog import writer_alive

        return not writer_alive(summary.get("writer"))
    return True


Progress = Callable[[int, int], Any]


def open_index(path: str | os.PathLike[str], progress: Progress | None = None) -> RunIndex:
    """The index of a run directory, covering every whole line of its ``stats.jsonl`` now.

    Uses ``stats.idx`` when it is there and matches; parses only the lines past its last row
    (and the lines it skipped, for the note). A run without one (or with one that does not match)
    gets it built once: on disk, beside ``stats.jsonl``, when the folder can be written (a
    temporary file renamed: never half an index), else in a temporary file of the system's that
    this reading alone uses (:attr:`RunIndex.where` says so).

    Args:
        path: the run directory (already checked to be one).
        progress: called as ``progress(bytes_done, bytes_total)`` while lines are parsed.
    """
    run = Path(path)
    idx = RunIndex(run)
    try:
        stats = open_regular(run / "stats.jsonl")
    except FileNotFoundError:
        return idx
    except OSError as exc:
        from gradtui.runlog import _why

        idx.skip.files["stats.jsonl"] = _why(exc)
        return idx
    with stats:
        size = os.fstat(stats.fileno()).st_size
        meta: dict[str, Any] = {}
        loaded = _load(run / NAME, meta)
        if loaded is not None:
            f, columns, start, dtype, n = loaded
            idx._f, idx.columns, idx._start, idx.dtype, idx.count, idx._disk = f, columns, start, dtype, n, n
            idx._f_dtype = dtype
            idx._tail = np.zeros(0, dtype)
            if not _valid(idx, stats, size):
                idx.close()
                loaded = None
        if loaded is None:
            idx = _build(run, stats, size, progress)
        else:
            if meta.get("dirty") != "n":
                _gaps(idx, stats)  # what the index skipped, for the note (before the new lines)
            _extend(idx, stats, size, progress)
    return idx


def _build(run: Path, stats: Any, size: int, progress: Progress | None) -> RunIndex:
    """Build the whole index from ``stats.jsonl``."""
    idx = RunIndex(run)
    target = run / NAME
    writer = IndexWriter(target)
    tmp = None
    try:
        fd, tmp = _create_temp(target)
        os.close(fd)
        writer.path = Path(tmp)
        writer._rewrite(np.zeros(0, writer.dtype))
    except OSError:
        tmp = None
        idx.where = "a temporary file (the run directory cannot be written; built again next time)"
        t = tempfile.NamedTemporaryFile(prefix="gradtui-", suffix=".idx", delete=False)  # noqa: SIM115
        t.close()
        writer.path = Path(t.name)
        writer._rewrite(np.zeros(0, writer.dtype))
    try:
        covered = _append_parsed(idx, writer, stats, 0, size, progress)
        writer.close()
        if idx.skip:
            mark_dirty(writer.path)
        if tmp is not None:
            os.replace(tmp, target)
            writer.path = target
        idx.covered = covered
        loaded = _load(writer.path)
        if loaded is None:
            raise OSError("the index just written cannot be read")
        f, columns, start, dtype, n = loaded
        idx._f, idx.columns, idx._start, idx.dtype, idx.count, idx._disk = f, columns, start, dtype, n, n
        idx._f_dtype = dtype
        idx._tail = np.zeros(0, dtype)
        if tmp is None:
            with contextlib.suppress(OSError):
                os.unlink(writer.path)  # the open file stays readable; nothing is left behind
    except BaseException:
        writer.close()
        for p in (tmp, None if tmp is not None else writer.path):
            if p is not None:
                with contextlib.suppress(OSError):
                    os.unlink(p)
        raise
    return idx


def _append_parsed(
    idx: RunIndex, writer: IndexWriter, stats: Any, start: int, size: int, progress: Progress | None
) -> int:
    """Parse whole lines of ``stats.jsonl`` from ``start`` and append their rows; returns the
    byte after the last whole line."""
    at = start
    stats.seek(start)
    leftover = b""
    last = time.monotonic()
    while at + len(leftover) < size:
        data = stats.read(min(READ_BYTES, size - at - len(leftover)))
        if not data:
            break
        data = leftover + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            leftover = data
            continue
        parsed = list(_parse(data[:cut], at, idx.skip))
        if parsed:
            writer.append(_rows_of(parsed, writer, idx.skip))
            idx.built += len(parsed)
        at += cut
        leftover = data[cut:]
        if progress is not None and time.monotonic() - last > 0.2:
            last = time.monotonic()
            progress(at, size)
    if progress is not None:
        progress(at, size)
    return at


def _extend(idx: RunIndex, stats: Any, size: int, progress: Progress | None) -> None:
    """Cover the lines past the index's last row: appended to ``stats.idx`` when the run has
    ended (nothing else writes it) and the folder can be written, else kept in memory."""
    last = idx.rows(idx.count - 1, idx.count) if idx.count else None
    start = int(last["offset"][0]) + int(last["length"][0]) if last is not None else 0
    if start >= size:
        idx.covered = start
        return
    writer = None
    if _may_write(idx.path):
        with contextlib.suppress(OSError, ValueError):
            writer = IndexWriter.reopen(idx.path / NAME)
    if writer is not None:
        before = idx.count
        before_skip = (sum(idx.skip.lines.values()), sum(idx.skip.fields.values()))
        try:
            idx.covered = _append_parsed(idx, writer, stats, start, size, progress)
        finally:
            writer.close()
        if (sum(idx.skip.lines.values()), sum(idx.skip.fields.values())) != before_skip:
            with contextlib.suppress(OSError):
                mark_dirty(idx.path / NAME)
        loaded = _load(idx.path / NAME)
        if loaded is not None:
            idx.close()
            f, columns, st, dtype, n = loaded
            idx._f, idx.columns, idx._start, idx.dtype, idx.count, idx._disk = f, columns, st, dtype, n, n
            idx._f_dtype = dtype
            idx._tail = np.zeros(0, dtype)
            idx.built = n - before
            return
    # in memory: the lines a live writer appended since its last drain (a few), or an old
    # writer's run being written
    mem = IndexWriter(idx.path / NAME, idx.columns)
    buf: list[np.ndarray] = []
    stats.seek(start)
    data = stats.read(size - start)
    cut = data.rfind(b"\n") + 1
    parsed = list(_parse(data[:cut], start, idx.skip))
    if parsed:
        rows = _rows_of(parsed, mem, idx.skip)
        buf.append(rows)
        idx.built += len(parsed)
    idx.covered = start + cut
    if buf:
        idx.columns = mem.columns
        idx.dtype = mem.dtype
        idx._tail = buf[0]
        idx.count = idx._disk + len(buf[0])


def _gaps(idx: RunIndex, stats: Any) -> None:
    """Re-read the lines the index skipped (between rows, or fields left out of a row) so the
    note says what a full reading would; at most :data:`GAP_BYTES` of them."""
    budget = GAP_BYTES
    prev_end = 0
    for rows in idx.chunks():
        offs = rows["offset"].astype(np.int64)
        ends = offs + rows["length"].astype(np.int64)
        before = np.concatenate([[prev_end], ends[:-1]])
        gaps = set(np.flatnonzero(offs > before).tolist())
        damaged = np.flatnonzero(rows["flags"] & DAMAGED)
        for i in sorted(gaps | set(damaged.tolist())):
            if i in gaps:
                a, b = int(before[i]), int(offs[i])
                if budget > 0:
                    stats.seek(a)
                    data = stats.read(min(b - a, budget))
                    budget -= len(data)
                    cut = data.rfind(b"\n") + 1
                    for _ in _parse(data[:cut], a, idx.skip):
                        pass
            if rows["flags"][i] & DAMAGED and budget > 0:
                stats.seek(int(offs[i]))
                line = stats.read(int(rows["length"][i]))
                budget -= len(line)
                with contextlib.suppress(ValueError, RecursionError):
                    clean_record(json.loads(line), idx.skip)
        if len(ends):
            prev_end = int(ends[-1])


# ---------------------------------------------------------------------- a run read through its index


class IndexedRun:
    """A run directory read through its index: the summary, the preset and the note as
    :class:`gradtui.runlog.Run` has them, and the records left on disk.

    :meth:`stream` gives every record's values a chunk at a time, for whoever reduces them
    (the report's figure: :class:`gradtui.report.FigureData`, :mod:`gradtui.envelope`);
    :meth:`tail` the last few.
    """

    def __init__(self, run: Any, index: RunIndex) -> None:
        self._run = run
        self.index = index

    def __getattr__(self, name: str) -> Any:  # path, status, summary, preset_text, note, name...
        return getattr(self._run, name)

    @property
    def name(self) -> str:
        return self._run.name

    @property
    def records(self) -> list[dict[str, Any]]:
        raise AttributeError("an indexed run keeps its records on disk: use count, stream() or record()")

    @property
    def count(self) -> int:
        """Records."""
        return self.index.count

    def layer_names(self) -> list[str]:
        return self.index.layer_names()

    def tail(self, key: str, names: list[str], n: int) -> np.ndarray:
        """``(rows, layers)`` of the last ``n`` records' ``key``; NaN where absent."""
        return self.index.field(key, names, self.index.count - n, self.index.count)

    def stream(
        self, keys: list[str], names: list[str]
    ) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
        """Every record, a chunk at a time: ``(steps, losses, {key: (rows, layers)})``, NaN where a
        value is absent or the loss ``null``."""
        for steps, losses, values, _ in self._stream(keys, names):
            yield steps, losses, values

    def _stream(
        self, keys: list[str], names: list[str]
    ) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]]:
        idx = self.index
        cols = {k: [idx.column(n, k) for n in names] for k in keys}
        for rows in idx.chunks():
            yield (
                rows["step"],
                np.where(rows["flags"] & LOSS, rows["loss"].astype(np.float64), np.nan),
                {k: idx.values(rows, c) for k, c in cols.items()},
                rows["flags"],
            )

    def time_curves(self, per_layer: int = 5) -> list[dict[str, Any]]:
        """A few records with ``time_grads``, spread over the run (the newest among them)."""
        rows = self.index.flagged(TIME)
        if not len(rows):
            return []
        picks = sorted(
            {int(rows[round(i * (len(rows) - 1) / max(1, per_layer - 1))]) for i in range(per_layer)}
        )
        return [r for r in (self.index.record(i) for i in picks) if r is not None]


def read_indexed(path: str | os.PathLike[str], progress: Progress | None = None) -> IndexedRun:
    """A run directory for ``compare``, ``report`` and ``export``: its summary and preset read
    as :func:`gradtui.runlog.read_run` reads them, its records through :func:`open_index`.

    Raises:
        GradtuiError: not a run directory, or nothing in it can be read.
    """
    from gradtui.errors import GradtuiError
    from gradtui.runlog import RunReader

    reader = RunReader(path, keep=False)
    idx = open_index(reader.path, progress)
    reader.offset = idx.covered
    reader.count = idx.count
    reader.skip = idx.skip
    run = reader.finish()
    run.note = reader.note()
    run.unreadable = dict(reader.skip.files)
    indexed = IndexedRun(run, idx)
    if reader.count > idx.count:  # lines appended since the index was read: re-read it
        idx.close()
        indexed.index = open_index(reader.path)
    if not reader.usable():
        why = run.note or "stats.jsonl holds no record and there is no summary.json"
        raise GradtuiError(f"nothing in it can be read: {why}", file=str(reader.path))
    return indexed
