"""The run directory (SPEC section 3): ``preset.toml``, ``stats.jsonl``, ``summary.json``.

``stats.jsonl`` is appended whole lines at a time (each drain's lines in one ``os.write``); a
process killed in the middle of a write can leave a torn last line, which :func:`read_run`
ignores; ``summary.json`` and ``preset.toml`` are written to a temporary file and
renamed, so a reader never sees half of one. A run directory without ``summary.json`` reads back
as ``incomplete``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradtui.errors import GradtuiError
from gradtui.text import plain

STATUSES = ("completed", "stopped", "interrupted", "failed")


def default_run_dir(name: str, root: str | os.PathLike[str] = "runs") -> Path:
    """``runs/<UTC timestamp>-<name>``."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    path = Path(root) / f"{stamp}-{safe}"
    n = 1
    while path.exists():
        n += 1
        path = Path(root) / f"{stamp}-{safe}-{n}"
    return path


#: files of a run are created ``rw-rw-rw-`` less the user's umask, like any file a tool writes
FILE_MODE = 0o666


def _create_temp(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path``, created with :data:`FILE_MODE` less the umask.

    ``tempfile.mkstemp`` would create it ``0600`` whatever the umask, and the rename keeps that
    mode: ``summary.json`` would then be private while ``stats.jsonl`` beside it is not.
    """
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), tmp
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue


def atomic_write(path: Path, text: str | bytes) -> None:
    """Write ``text`` (or bytes) to ``path`` through a temporary file and a rename: a failure
    (full disk, file-size limit) leaves the old file as it was."""
    path = Path(path)
    fd, tmp = _create_temp(path)
    try:
        binary = isinstance(text, bytes)
        with os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _clean(value: Any) -> Any:
    """JSON has no NaN/Inf: they are written as strings ``"nan"``, ``"inf"``, ``"-inf"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps_record(record: dict[str, Any]) -> str:
    """One compact JSON line; NaN/Inf (rare) are written as strings, see :func:`_clean`."""
    try:
        return json.dumps(record, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_clean(record), separators=(",", ":"), allow_nan=False)


def _unclean(value: Any) -> Any:
    if value in ("nan", "inf", "-inf"):
        return float(value)
    if isinstance(value, dict):
        return {k: _unclean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unclean(v) for v in value]
    return value


#: how an error names the run directory and the overwrite switch, by who asked for the folder:
#: a command line user passes options, a Python caller passes arguments (SPEC section 4)
WORDING = {
    "cli": {"out": "--out", "overwrite": "pass --overwrite"},
    "python": {"out": "out", "overwrite": "pass overwrite=True"},
}


#: the files gradtui writes into a run directory: what ``--overwrite`` may remove
RUN_FILES = (
    "stats.jsonl",
    "summary.json",
    "preset.toml",
    "traceback.txt",
    "report.html",
    "report.png",
    "stats.idx",
)


#: the temporary file of one of :data:`RUN_FILES` (see :func:`_create_temp`)
_TEMP = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.tmp")


def _ours(name: str) -> bool:
    """Whether a file of a run directory is one gradtui writes, or the temporary file of one
    (``.summary.json.1a2b3c4d.tmp``) that a killed process left."""
    temp = _TEMP.fullmatch(name)
    return name in RUN_FILES or (temp is not None and temp["name"] in RUN_FILES)


def check_out(path: Path, *, overwrite: bool = False, wording: str = "python") -> bool:
    """Refuse a run directory that is a file, or that holds files unless ``overwrite``.

    With ``overwrite`` the folder may hold only what gradtui writes there (:data:`RUN_FILES`):
    anything else (a user's notes, another tool's output) is refused, never deleted.

    Returns whether the folder holds files (that ``overwrite`` allows replacing). Called early by
    the CLI too, so a refused ``--out`` costs no data loading.

    Args:
        path: the run directory.
        overwrite (bool): allow a folder that holds a run's files. Defaults to False.
        wording (str): ``"python"`` (the default) names the arguments ``out`` and
            ``overwrite=True``; ``"cli"`` names the options ``--out`` and ``--overwrite``.
    """
    path = Path(path)
    words = WORDING[wording]
    if path.exists() and not path.is_dir():
        raise GradtuiError(
            f"exists and is not a folder; {words['out']} names a folder for the run directory",
            file=str(path),
            key=words["out"],
        )
    try:
        names = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    except OSError as exc:
        raise GradtuiError(
            f"cannot read it: {exc.strerror or exc}", file=str(path), key=words["out"]
        ) from None
    if names:
        if not overwrite:
            raise GradtuiError(
                f"already holds a run; choose another {words['out']} or {words['overwrite']}",
                file=str(path),
                key=words["out"],
            )
        foreign = [n for n in names if not _ours(n) or not (path / n).is_file()]
        if foreign:
            shown = ", ".join(plain(n) for n in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise GradtuiError(
                f"holds files gradtui did not write ({shown}); overwriting removes only a run's own "
                f"files ({', '.join(RUN_FILES)}): move them or choose another {words['out']}",
                file=str(path),
                key=words["out"],
            )
        return True
    return False


class RunDirError(GradtuiError):
    """The run directory could not be written (a full disk, a file-size limit, no permission);
    exit code 1: the training failed, not the input."""

    exit_code = 1


class RunDirGone(RunDirError):
    """The run directory was deleted (or moved) while the run was writing it; exit code 2."""

    exit_code = 2


def _write_error(path: Path, name: str, exc: OSError) -> RunDirError:
    """The one-line error for a failed write of ``name`` in the run directory ``path``."""
    if not path.is_dir():
        return RunDirGone(
            "the run directory was deleted or moved while the run wrote it; training stopped",
            file=str(path),
        )
    if isinstance(exc, FileNotFoundError):
        return RunDirGone(f"{name} was deleted while the run wrote it; training stopped", file=str(path))
    return RunDirError(f"cannot write {name}: {exc.strerror or exc}", file=str(path))


class RunDir:
    """Writes one run directory.

    Args:
        path: the folder; created with its parents.
        overwrite (bool): replace an existing run directory's files. Defaults to False, and an
            existing non-empty folder is then refused.
        wording (str): how that refusal names the switch: ``"python"`` (the default, for
            ``gradtui.watch``: ``overwrite=True``) or ``"cli"`` (``--out``, ``--overwrite``).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, overwrite: bool = False, wording: str = "python"
    ) -> None:
        self.path = Path(path)
        if check_out(self.path, overwrite=overwrite, wording=wording):
            # the old run's files go before the new run writes any: no report, traceback or
            # summary of another run is left beside it (check_out refused anything else)
            for child in self.path.iterdir():
                if _ours(child.name):
                    with contextlib.suppress(FileNotFoundError):
                        child.unlink()
        #: whether this run made the folder (:meth:`discard` then removes it)
        self.created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path / "stats.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        except OSError as exc:
            raise GradtuiError(
                f"cannot write the run directory: {exc.strerror or exc}", file=str(self.path)
            ) from None
        self.closed = False
        #: the first failed append to ``stats.jsonl``, if any (records were lost)
        self.error: RunDirError | None = None
        #: ``stats.idx`` (gradtui.runindex), kept beside ``stats.jsonl`` by :meth:`append_block`
        #: from its first drain; ``None`` before, or when it cannot be written (readers build it)
        self._index: Any = None
        #: whether this writer keeps the index (not after lines were appended without rows)
        self._indexing = os.fstat(self._fd).st_size == 0
        #: set by :meth:`append_block` while its lines are written (their rows follow)
        self._rows_follow = False

    def write_preset(self, toml_text: str) -> None:
        """Write the fully resolved preset (atomically)."""
        self._atomic("preset.toml", toml_text)

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append records to ``stats.jsonl``."""
        self.append_lines("".join(dumps_record(r) + "\n" for r in records))

    def append_lines(self, text: str) -> None:
        """Append whole ``stats.jsonl`` lines (each ending in a newline) in one write.

        A SIGKILL can cut a large write short at a page boundary: the lines before the cut are
        whole, and :func:`read_run` drops a torn last line.

        Raises:
            RunDirGone: the run directory was deleted while the run wrote it (appending to the
                open, deleted file would go on silently, recording nothing anyone can read).
            RunDirError: the write failed (a full disk, a file-size limit).
        """
        if self.closed or not text:
            return
        if not self._rows_follow:  # lines without rows: the index would skip them; readers rebuild it
            self._indexing = False
            if self._index is not None:
                from gradtui.runindex import NAME

                self._index.close()
                self._index = None
                with contextlib.suppress(OSError):
                    os.unlink(self.path / NAME)
        data = text.encode("utf-8")
        try:
            if os.fstat(self._fd).st_nlink == 0:
                raise FileNotFoundError(2, "deleted")
            while data:  # a short write (signal, full pipe) continues where it stopped
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            # kept: a failure in a drain whose caller swallows errors (the last one, after a
            # broken training) still fails the run (gradtui.session)
            error = _write_error(self.path, "stats.jsonl", exc)
            self.error = self.error or error
            raise error from None

    def append_block(self, block: Any) -> None:
        """Append a drain's records (a :class:`gradtui.probe.Records`) to ``stats.jsonl``, then
        their rows to ``stats.idx`` (the lines first: a row never points past what was written).

        Raises:
            RunDirGone, RunDirError: as :meth:`append_lines`.
        """
        if self.closed or not len(block):
            return
        text = block.to_jsonl()
        data = text.encode("utf-8")
        if self._index is None and self._indexing:
            from gradtui.runindex import NAME, IndexWriter

            try:  # created before the first lines: a reader never takes the run for an old one
                self._index = IndexWriter.create(self.path / NAME)
            except OSError:
                self._indexing = False
        index = self._index
        base = os.fstat(self._fd).st_size if index is not None else 0
        self._rows_follow = True
        try:
            self.append_lines(text)
        finally:
            self._rows_follow = False
        if index is not None:
            from gradtui.runindex import block_rows

            try:
                rows = block_rows(block, data, base, index)
                if rows is None:
                    raise ValueError("lines and rows do not pair up")
                index.append(rows)
            except (OSError, ValueError):
                # the record is stats.jsonl: a reader builds what the index lacks
                index.close()
                self._index = None
                self._indexing = False
                from gradtui.runindex import NAME

                with contextlib.suppress(OSError):
                    os.unlink(self.path / NAME)

    def write_text(self, name: str, text: str) -> None:
        """Write another file of the run (atomically), e.g. ``traceback.txt``."""
        self._atomic(name, text)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json`` (atomically)."""
        self._atomic("summary.json", json.dumps(_clean(summary), indent=2, allow_nan=False) + "\n")

    def _atomic(self, name: str, text: str) -> None:
        """Write ``name`` atomically; a failure is one :class:`RunDirError`, and the old file (if
        any) is left whole."""
        try:
            atomic_write(self.path / name, text)
        except OSError as exc:
            raise _write_error(self.path, name, exc) from None

    def discard(self) -> None:
        """Undo a run directory that recorded nothing: the caller failed before the run began
        (``watch`` given bad arguments). Its files go, and the folder too if this run made it, so
        the corrected retry with the same folder is not refused as an existing run."""
        self.close()
        if (self.path / "stats.jsonl").is_file() and (self.path / "stats.jsonl").stat().st_size:
            return  # something was recorded: it is the user's now
        for name in RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()
        if self.created:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only if empty

    def close(self) -> None:
        """Close ``stats.jsonl`` (and ``stats.idx``)."""
        if not self.closed:
            os.close(self._fd)
            if self._index is not None:
                self._index.close()
            self.closed = True


@dataclass
class Run:
    """A run directory read back.

    Attributes:
        path: the folder.
        status: the summary's status, or ``incomplete`` while there is no ``summary.json``.
        summary: ``summary.json`` (empty while absent).
        records: the ``stats.jsonl`` records, oldest first (a torn last line left out).
        preset_text: ``preset.toml`` (``None`` for a run of ``watch``, which writes none).
    """

    path: Path
    status: str
    summary: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    preset_text: str | None = None
    #: what the reader left out, in one line (see :class:`Skipped`); empty when nothing
    note: str = ""
    #: files of the run that could not be read at all, with why (``summary.json``...)
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The run's name: the summary's, the preset's, else the folder's."""
        if self.summary.get("name"):
            return str(self.summary["name"])
        if self.preset_text:
            for line in self.preset_text.splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "name" and value.strip().startswith('"'):
                    return value.strip().strip('"')
        return self.path.name

    @property
    def count(self) -> int:
        """Records read."""
        return len(self.records)

    def tail(self, key: str, names: list[str], n: int) -> Any:
        """``(rows, layers)`` of the last ``n`` records' ``key`` (a list of lists); NaN where
        absent."""
        import numpy as np

        rows = [[_number(r.get("layers", {}).get(x, {}).get(key)) for x in names] for r in self.records[-n:]]
        return np.array(rows, dtype=float).reshape(len(rows), len(names))

    def stream(self, keys: list[str], names: list[str]) -> Any:
        """Every record in one chunk: ``(steps, losses, {key: (rows, layers)})`` as arrays (see
        :meth:`gradtui.runindex.IndexedRun.stream`)."""
        import numpy as np

        n = len(self.records)
        yield (
            np.array(self.steps(), dtype=np.int64),
            np.array(self.losses(), dtype=float),
            {k: np.array(self.field(k, names), dtype=float).reshape(n, len(names)) for k in keys},
        )

    def time_curves(self, per_layer: int = 5) -> list[dict[str, Any]]:
        """The records with ``time_grads``."""
        return [r for r in self.records if "time_grads" in r]

    def layer_names(self) -> list[str]:
        """Every layer key of the records, in the order they first appear (model order)."""
        names: dict[str, None] = {}
        for rec in self.records:
            for key in rec.get("layers", {}):
                names.setdefault(key, None)
        return list(names)

    def steps(self) -> list[int]:
        """The step of each record."""
        return [int(r.get("step", i)) for i, r in enumerate(self.records)]

    def losses(self) -> list[float]:
        """The loss of each record (NaN where missing)."""
        return [_number(r.get("loss")) for r in self.records]

    def field(self, key: str, names: list[str] | None = None) -> list[list[float]]:
        """One per-layer field for every record: ``[record][layer]``, NaN where a layer lacks it."""
        names = names if names is not None else self.layer_names()
        out = []
        for rec in self.records:
            layers = rec.get("layers", {})
            out.append([_number(layers.get(n, {}).get(key)) for n in names])
        return out


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding ``stats.jsonl`` or ``summary.json``."""
    path = Path(path)
    # lexists: a FIFO or a device in place of stats.jsonl still marks a run (its reader refuses
    # the file and says so) rather than "not a run directory"
    return path.is_dir() and any(os.path.lexists(path / name) for name in ("stats.jsonl", "summary.json"))


def check_run_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` if it is a run directory, else a one-line :class:`GradtuiError` (exit 2)."""
    path = Path(path)
    if not path.exists():
        raise GradtuiError(
            "there is no such folder; give a run directory (from gradtui run, the TUI or watch)",
            file=str(path),
        )
    if not path.is_dir():
        raise GradtuiError(
            "is not a folder; give a run directory (from gradtui run, the TUI or watch)", file=str(path)
        )
    if not is_run_dir(path):
        raise GradtuiError(
            "is not a run directory: it holds neither stats.jsonl nor summary.json", file=str(path)
        )
    return path


#: a ``stats.jsonl`` number: a JSON number, or the strings NaN and Inf are written as
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
#: examples of what was skipped named in the one-line note (the rest are counted)
_EXAMPLES = 3


def _num(value: Any) -> float | None:
    """A ``stats.jsonl``/``summary.json`` number as a float, or ``None`` when it is not one
    (a bool, a list, an object, any other string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an integer too large for a float
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str):
        return _NONFINITE.get(value)
    return None


def _int(value: Any) -> int | None:
    """A whole number (``3`` or ``3.0``) as an int, or ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _text(value: str) -> str:
    """A string read from JSON, without lone surrogates (``"\\ud800"`` parses to one, and no
    terminal, font or UTF-8 file takes it): those become ``\\ud800``."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")


class Skipped:
    """What a reader left out of a run directory, counted, for a one-line note.

    ``lines`` counts skipped ``stats.jsonl`` lines by reason; ``fields`` counts fields left out
    of otherwise good records (or of ``summary.json``), by ``where: why``; ``files`` names files
    that could not be read at all, with why.
    """

    def __init__(self) -> None:
        self.lines: dict[str, int] = {}
        self.fields: dict[str, int] = {}
        self.files: dict[str, str] = {}

    def line(self, why: str) -> None:
        self.lines[why] = self.lines.get(why, 0) + 1

    def field(self, where: str, why: str) -> None:
        key = f"{where} ({why})"
        self.fields[key] = self.fields.get(key, 0) + 1

    def __bool__(self) -> bool:
        return bool(self.lines or self.fields or self.files)

    def note(self) -> str:
        """One line: ``skipped 3 lines of stats.jsonl (2 not JSON, 1 without a step); ...``
        (empty when nothing was skipped). Names from the files are shown with
        :func:`gradtui.text.plain`."""
        from gradtui.text import plain

        parts = []
        if self.lines:
            n = sum(self.lines.values())
            why = ", ".join(f"{c} {w}" for w, c in self.lines.items())
            parts.append(f"skipped {n} line{'s' * (n != 1)} of stats.jsonl ({why})")
        if self.fields:
            n = sum(self.fields.values())
            shown = list(self.fields)[:_EXAMPLES]
            more = len(self.fields) - len(shown)
            what = ", ".join(plain(w) for w in shown) + (f" and {more} more" if more > 0 else "")
            parts.append(f"left out {n} field{'s' * (n != 1)}: {what}")
        for name, why in self.files.items():
            parts.append(f"{name}: {plain(why)}")
        return "; ".join(parts)


def clean_record(raw: Any, skipped: Skipped | None = None) -> dict[str, Any] | None:
    """A ``stats.jsonl`` record as the readers use it, or ``None`` for a line that is no record.

    ``step`` (a whole number) is required; ``epoch`` is an int, ``loss`` a float or ``None``
    (``null``, which a custom loop writes), ``layers`` maps each layer to its numeric fields, and
    ``time_grads`` keeps the curves whose ``t`` and ``grad_norm`` pair up. Anything else of a known
    field (a list, a string, an object where a number belongs) is left out and counted in
    ``skipped``; unknown fields are kept as they are (new fields may be added, FORMATS.md).
    """
    sk = skipped if skipped is not None else Skipped()
    if not isinstance(raw, dict):
        sk.line("not a JSON object")
        return None
    step = _int(raw.get("step"))
    if step is None:
        sk.line("without a whole-number step")
        return None
    rec = dict(raw)
    rec["step"] = step
    if "epoch" in raw:
        epoch = _int(raw["epoch"])
        if epoch is None:
            sk.field("epoch", "not a whole number")
            del rec["epoch"]
        else:
            rec["epoch"] = epoch
    # null (computed out of gradtui's sight, FORMATS.md) stays None, as does a loss that is not a
    # number (counted); the curves take None as NaN, export leaves it out
    loss = raw.get("loss")
    if loss is not None:
        value = _num(loss)
        if value is None:
            sk.field("loss", "not a number")
        rec["loss"] = value
    layers = raw.get("layers")
    out: dict[str, dict[str, float]] = {}
    if not isinstance(layers, dict):
        sk.field("layers", "missing" if layers is None else "not an object")
    else:
        for name, stats in layers.items():
            name = _text(name)
            if not isinstance(stats, dict):
                sk.field(f"layers.{name}", "not an object")
                continue
            row = {}
            for key, v in stats.items():
                value = _num(v)
                if value is None:
                    sk.field(f"layers.{name}.{key}", "not a number")
                else:
                    row[key] = value
            out[name] = row
    rec["layers"] = out
    if "time_grads" in raw:
        curves = raw["time_grads"]
        good: dict[str, dict[str, list[Any]]] = {}
        if not isinstance(curves, dict):
            sk.field("time_grads", "not an object")
        else:
            for name, curve in curves.items():
                norms = curve.get("grad_norm") if isinstance(curve, dict) else None
                starts = curve.get("t") if isinstance(curve, dict) else None
                vals = [_num(v) for v in norms] if isinstance(norms, list) else [None]
                ts = [_int(t) for t in starts] if isinstance(starts, list) else [None]
                if vals and None not in vals and None not in ts and len(ts) == len(vals):
                    good[_text(name)] = {"t": ts, "grad_norm": vals}
                else:
                    sk.field(f"time_grads.{name}", "not t and grad_norm lists of numbers that pair up")
        rec["time_grads"] = good
    return rec


def _clean_diagnosis(d: Any) -> dict[str, Any] | None:
    if not isinstance(d, dict) or not isinstance(d.get("kind"), str):
        return None
    out = dict(d)
    out["kind"] = _text(d["kind"])
    layer = d.get("layer")
    out["layer"] = _text(layer) if isinstance(layer, str) else None
    out["step"] = _int(d.get("step")) or 0
    for key, default in (("severity", "warning"), ("message", ""), ("advice", "")):
        out[key] = _text(d[key]) if isinstance(d.get(key), str) else default
    layers = d.get("layers")
    out["layers"] = [_text(x) for x in layers if isinstance(x, str)] if isinstance(layers, list) else []
    out["fix"] = d.get("fix") if isinstance(d.get("fix"), dict) else None
    cleared = _int(d.get("cleared_step"))
    if cleared is None:
        out.pop("cleared_step", None)
    else:
        out["cleared_step"] = cleared
    return out


def clean_summary(raw: dict[str, Any], skipped: Skipped | None = None) -> dict[str, Any]:
    """``summary.json`` as the readers use it: ``status``, ``name``, ``device`` and ``error``
    strings, ``steps`` and ``epochs`` whole numbers, ``final`` numbers, ``diagnoses`` each with a
    kind; what does not fit is left out and counted in ``skipped``."""
    sk = skipped if skipped is not None else Skipped()
    out = _unclean_shallow(dict(raw))
    for key in ("status", "name", "device", "error"):
        if key in out and not isinstance(out[key], str) and not (key == "error" and out[key] is None):
            sk.field(f"summary.json {key}", "not a string")
            del out[key]
        elif isinstance(out.get(key), str):
            out[key] = _text(out[key])
    for key in ("steps", "epochs"):
        if key in out and _int(out[key]) is None:
            sk.field(f"summary.json {key}", "not a whole number")
            del out[key]
    if "final" in out:
        final = out["final"]
        if not isinstance(final, dict):
            if final is not None:
                sk.field("summary.json final", "not an object")
            final = {}
        keep = {}
        for k, v in final.items():
            k = _text(k)
            value = _num(v)
            if value is None:
                sk.field(f"summary.json final.{k}", "not a number")
            else:
                keep[k] = value
        out["final"] = keep
    if "diagnoses" in out:
        diagnoses = out["diagnoses"]
        if not isinstance(diagnoses, list):
            if diagnoses is not None:
                sk.field("summary.json diagnoses", "not a list")
            diagnoses = []
        keep_d = []
        for d in diagnoses:
            clean = _clean_diagnosis(d)
            if clean is None:
                sk.field("summary.json diagnoses", "an entry without a kind")
            else:
                keep_d.append(clean)
        out["diagnoses"] = keep_d
    return out


def _unclean_shallow(summary: dict[str, Any]) -> dict[str, Any]:
    """:func:`_unclean` on the fields the readers use (not on unknown, maybe deep, ones)."""
    for key in ("final", "initial"):
        if isinstance(summary.get(key), dict):
            summary[key] = {
                k: _NONFINITE.get(v, v) if isinstance(v, str) else v for k, v in summary[key].items()
            }
    return summary


class NotARegularFile(OSError):
    """A run file that is a FIFO, a device, a socket: refused before it is opened."""


def open_regular(path: Path) -> Any:
    """``path`` opened for reading in binary, refusing anything but a regular file.

    Opened with ``O_NONBLOCK`` (a FIFO's open then returns at once instead of waiting for a
    writer) and checked with ``fstat`` on what was opened, so a FIFO or ``/dev/zero`` swapped in
    never blocks nor streams forever."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = (
                "a FIFO"
                if stat.S_ISFIFO(mode)
                else "a device"
                if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "not a regular file"
            )
            raise NotARegularFile(f"is {kind}; a run's files are regular files")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _why(exc: BaseException) -> str:
    if isinstance(exc, NotARegularFile):
        return str(exc)
    if isinstance(exc, OSError):
        return f"cannot read it: {exc.strerror or exc}"
    if isinstance(exc, RecursionError):
        return "not JSON: nested too deep"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc}"
    return str(exc)


def writer_alive(writer: Any) -> bool:
    """Whether the process that wrote a ``watching`` summary (``{"host", "pid"}``) still runs:
    on this machine, asked of the system; on another one it cannot be known, so yes."""
    import socket

    if not isinstance(writer, dict) or not isinstance(writer.get("pid"), int) or writer["pid"] <= 0:
        return False
    if writer.get("host") != socket.gethostname():
        return True
    try:
        os.kill(writer["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    except OSError:
        return False
    return True


class RunReader:
    """Reads a run directory incrementally, while another process may still be writing it.

    Each :meth:`poll` reads only the bytes of ``stats.jsonl`` appended since the last one and
    parses the whole lines among them; a line without its newline yet (being written, or torn by
    a killed process) waits for the next poll, and :meth:`finish` drops it for good. A complete
    line that is not a record (not JSON, nested too deep, no step) is skipped, and fields that
    are not what they should be are left out: :attr:`skip` counts both, for :meth:`note`.
    A FIFO or a device in place of a file is refused without being read.

    While following, :attr:`gone` says why reading stopped for good: the folder was deleted,
    or ``stats.jsonl`` was removed or replaced (a new run written over it with ``--overwrite``);
    nothing is read after that, so two runs are never mixed.

    Args:
        path: the run directory (checked with :func:`check_run_dir`).
        keep (bool): keep the records read in :attr:`run` (``Run.records``). Defaults to True;
            a follower that feeds them on (bounded memory) passes False and counts them.
    """

    def __init__(self, path: str | os.PathLike[str], *, keep: bool = True) -> None:
        self.path = check_run_dir(path)
        self.run = Run(self.path, "incomplete")
        self.keep = keep
        #: records read so far (kept or not)
        self.count = 0
        self.offset = 0
        self.partial = b""
        self.skip = Skipped()
        self.finished = False
        #: why the run can no longer be read (deleted or replaced while followed), else ``None``
        self.gone: str | None = None
        self._identity: tuple[int, int] | None = None

    @property
    def skipped(self) -> int:
        """Lines of ``stats.jsonl`` skipped so far."""
        return sum(self.skip.lines.values())

    def note(self) -> str:
        """One line of what was skipped (lines, fields, files), or an empty string."""
        return self.skip.note()

    def usable(self) -> bool:
        """Whether anything was read: a record, or a ``summary.json``."""
        return bool(self.count) or self.finished and bool(self.run.summary)

    def poll(self) -> list[dict[str, Any]]:
        """New records since the last poll; also reads ``summary.json`` and ``preset.toml``
        once they appear (see :attr:`finished`)."""
        if self.gone:
            return []
        new = self._read_stats()
        if self.gone:
            return new
        run = self.run
        if run.preset_text is None and "preset.toml" not in self.skip.files:
            try:
                with open_regular(self.path / "preset.toml") as f:
                    run.preset_text = f.read().decode("utf-8")
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as exc:
                self.skip.files["preset.toml"] = _why(exc)
        if not self.finished:
            summary_path = self.path / "summary.json"
            try:
                with open_regular(summary_path) as f:
                    summary = json.loads(f.read().decode("utf-8"))
                if not isinstance(summary, dict):
                    raise ValueError("not a JSON object")
            except FileNotFoundError:
                summary = None
            except (OSError, ValueError, RecursionError) as exc:
                self.skip.files["summary.json"] = _why(exc) + " (its status and diagnoses are unknown)"
                self.finished = True  # written whole (renamed): it will not get better
                self.partial = b""
                summary = None
            if isinstance(summary, dict):
                # written after the last line of stats.jsonl: read whatever came before it
                new += self._read_stats()
                if self.partial.strip():
                    self.skip.line("torn (no newline at the end)")
                summary = clean_summary(summary, self.skip)
                run.summary = summary
                run.status = str(summary.get("status", "incomplete"))
                if summary.get("watching") is True and writer_alive(summary.get("writer")):
                    return new  # a watch between two fits: the same run goes on
                self.finished = True
                self.partial = b""  # a torn last line stays torn once the run has ended
        return new

    def finish(self) -> Run:
        """Read what is left and return the :class:`Run`; a torn last line is dropped."""
        self.poll()
        if self.partial.strip():
            self.skip.line("torn (no newline at the end)")
        self.partial = b""
        return self.run

    def _stop(self, why: str) -> list[dict[str, Any]]:
        self.gone = why
        self.partial = b""
        return []

    def _read_stats(self) -> list[dict[str, Any]]:
        if "stats.jsonl" in self.skip.files:
            return []
        try:
            f = open_regular(self.path / "stats.jsonl")
        except FileNotFoundError:
            if not self.path.is_dir():
                return self._stop(f"the run directory {self.path} was deleted")
            if self._identity is not None:
                return self._stop(
                    f"{self.path / 'stats.jsonl'} was removed (the run was deleted or replaced)"
                )
            return []
        except OSError as exc:
            self.skip.files["stats.jsonl"] = _why(exc)
            return []
        with f:
            st = os.fstat(f.fileno())
            identity = (st.st_dev, st.st_ino)
            if self._identity is None:
                self._identity = identity
            elif identity != self._identity or st.st_size < self.offset:
                return self._stop(
                    f"{self.path / 'stats.jsonl'} was replaced by another run's (--overwrite); "
                    "stopped reading, nothing of the new run is mixed in"
                )
            try:
                f.seek(self.offset)
                data = f.read()
            except OSError as exc:
                self.skip.files["stats.jsonl"] = _why(exc)
                return []
        if not data:
            return []
        self.offset += len(data)
        data = self.partial + data
        cut = data.rfind(b"\n") + 1
        self.partial = data[cut:]
        new = []
        for line in data[:cut].splitlines():
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except RecursionError:
                self.skip.line("nested too deep")
                continue
            except ValueError:  # UnicodeDecodeError included
                self.skip.line("not JSON")
                continue
            record = clean_record(raw, self.skip)
            if record is not None:
                new.append(record)
        self.count += len(new)
        if self.keep:
            self.run.records.extend(new)
        return new


def read_run(path: str | os.PathLike[str]) -> Run:
    """Read a run directory; one without ``summary.json`` has status ``incomplete``, and a torn
    last line of ``stats.jsonl`` (a killed process) is left out.

    Lines and fields that cannot be read are left out and named in :attr:`Run.note`.

    Raises:
        GradtuiError: ``path`` is not a run directory (neither ``stats.jsonl`` nor
            ``summary.json``).
    """
    reader = RunReader(path)
    run = reader.finish()
    run.note = reader.note()
    run.unreadable = dict(reader.skip.files)
    return run


def read_usable(path: str | os.PathLike[str]) -> Run:
    """:func:`read_run`, for a command that needs something to show.

    Raises:
        GradtuiError: ``path`` is not a run directory, or nothing in it could be read (no
            record and no ``summary.json``); the one line says what was skipped.
    """
    reader = RunReader(path)
    run = reader.finish()
    run.note = reader.note()
    run.unreadable = dict(reader.skip.files)
    if not reader.usable():
        why = run.note or "stats.jsonl holds no record and there is no summary.json"
        raise GradtuiError(f"nothing in it can be read: {why}", file=str(reader.path))
    return run
