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


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
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
RUN_FILES = ("stats.jsonl", "summary.json", "preset.toml", "traceback.txt", "report.html", "report.png")


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
        """Close ``stats.jsonl``."""
        if not self.closed:
            os.close(self._fd)
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
    return path.is_dir() and ((path / "stats.jsonl").is_file() or (path / "summary.json").is_file())


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


class RunReader:
    """Reads a run directory incrementally, while another process may still be writing it.

    Each :meth:`poll` reads only the bytes of ``stats.jsonl`` appended since the last one and
    parses the whole lines among them; a line without its newline yet (being written, or torn by
    a killed process) waits for the next poll, and :meth:`finish` drops it for good. A complete
    line that is not JSON (a torn write followed by more appends) is skipped and counted.

    Args:
        path: the run directory (checked with :func:`check_run_dir`).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = check_run_dir(path)
        self.run = Run(self.path, "incomplete")
        self.offset = 0
        self.partial = b""
        self.skipped = 0
        self.finished = False

    def poll(self) -> list[dict[str, Any]]:
        """New records since the last poll; also reads ``summary.json`` and ``preset.toml``
        once they appear (see :attr:`finished`)."""
        new = self._read_stats()
        run = self.run
        if run.preset_text is None:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                run.preset_text = (self.path / "preset.toml").read_text(encoding="utf-8")
        if not self.finished:
            summary_path = self.path / "summary.json"
            try:
                summary = _unclean(json.loads(summary_path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                summary = None
            if isinstance(summary, dict):
                # written after the last line of stats.jsonl: read whatever came before it
                new += self._read_stats()
                run.summary = summary
                run.status = str(summary.get("status", "incomplete"))
                self.finished = True
                self.partial = b""  # a torn last line stays torn once the run has ended
        return new

    def finish(self) -> Run:
        """Read what is left and return the :class:`Run`; a torn last line is dropped."""
        self.poll()
        self.partial = b""
        return self.run

    def _read_stats(self) -> list[dict[str, Any]]:
        try:
            with open(self.path / "stats.jsonl", "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
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
                record = json.loads(line)
            except ValueError:
                self.skipped += 1
                continue
            if isinstance(record, dict):
                new.append(_unclean(record))
        self.run.records.extend(new)
        return new


def read_run(path: str | os.PathLike[str]) -> Run:
    """Read a run directory; one without ``summary.json`` has status ``incomplete``, and a torn
    last line of ``stats.jsonl`` (a killed process) is left out.

    Raises:
        GradtuiError: ``path`` is not a run directory (neither ``stats.jsonl`` nor
            ``summary.json``).
    """
    return RunReader(path).finish()
