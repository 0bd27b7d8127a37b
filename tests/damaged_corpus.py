"""The damaged-run corpus: ways a run directory is found broken, made from one real run.

``tests/data/damaged/base`` is a real run (``gradtui run rnn-pixels --max-steps 30``: a
SimpleRNN and a Dense layer, ``time_grads`` every ten steps, one diagnosis); regenerate it with
``python tests/damaged_corpus.py --base``. Each :data:`DAMAGES` entry copies it and damages the
copy one way. ``usable`` says whether anything is left to show (readers exit 0, else 2 in one
line); ``says`` is a piece of the one line a reader must print about what it skipped.

``python tests/damaged_corpus.py --table --before PATH`` prints the closing table: each damage
with ``open --headless``, ``compare``, ``report`` and ``export`` run on it, with the gradtui
package in ``PATH`` (e.g. ``git archive <commit> gradtui | tar -x -C PATH``) and this checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BASE = Path(__file__).parent / "data" / "damaged" / "base"


def lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines() if x.strip()]


def write_lines(run: Path, records: list, raw_tail: str = "") -> None:
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    (run / "stats.jsonl").write_bytes((text + raw_tail).encode("utf-8", "surrogateescape"))


def each(fn: Callable[[dict], None], every: int = 1) -> Callable[[Path], None]:
    """Damage every ``every``-th record with ``fn``."""

    def damage(run: Path) -> None:
        recs = lines(run)
        for i, r in enumerate(recs):
            if i % every == 0:
                fn(r)
        write_lines(run, recs)

    return damage


def insert_raw(raw: str, at: int = 5) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        recs: list = lines(run)
        recs.insert(at, raw)
        write_lines(run, recs)

    return damage


def summary_edit(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        s = json.loads((run / "summary.json").read_text())
        fn(s)
        (run / "summary.json").write_text(json.dumps(s))

    return damage


def replace_file(name: str, how: str) -> Callable[[Path], None]:
    """``name`` replaced by a FIFO, a /dev/zero symlink, a folder, text, or removed."""

    def damage(run: Path) -> None:
        path = run / name
        path.unlink(missing_ok=True)
        if how == "fifo":
            os.mkfifo(path)
        elif how == "zero":
            path.symlink_to("/dev/zero")
        elif how == "dir":
            path.mkdir()
        elif how == "missing":
            pass
        else:
            path.write_bytes(how.encode("utf-8", "surrogateescape"))

    return damage


def both(*damages: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        for d in damages:
            d(run)

    return damage


DEEP = "[" * 100_000 + "]" * 100_000


def _set(path: tuple, value: object) -> Callable[[dict], None]:
    def fn(r: dict) -> None:
        d = r
        for k in path[:-1]:
            if not isinstance(d.get(k), dict):
                return  # e.g. time_grads, on every tenth record only
            d = d[k]
        d[path[-1]] = value

    return fn


def _del(key: str) -> Callable[[dict], None]:
    return lambda r: r.pop(key, None)


def _rename_layer(old: str, new: str) -> Callable[[dict], None]:
    def fn(r: dict) -> None:
        r["layers"] = {new if k == old else k: v for k, v in r["layers"].items()}
        if "time_grads" in r and old in r["time_grads"]:
            r["time_grads"] = {new: r["time_grads"][old]}

    return fn


@dataclass(frozen=True)
class Damage:
    name: str
    make: Callable[[Path], None]
    usable: bool = True
    says: str | None = None  # a piece of the one line about what was skipped


MARKUP = "[link=https://evil.example]click[/link][/]"
ESCAPES = "\x1b]0;pwned\x07\x1b[2Jrnn"

DAMAGES: list[Damage] = [
    Damage("loss-null", each(_set(("loss",), None))),  # the README's custom loop writes it
    Damage("loss-string", each(_set(("loss",), "big")), says="loss (not a number)"),
    Damage("loss-list", each(_set(("loss",), [1, 2])), says="loss (not a number)"),
    Damage("step-missing-some", each(_del("step"), 3), says="without a whole-number step"),
    Damage("step-missing-all", each(_del("step")), says="without a whole-number step"),
    Damage("step-string", each(_set(("step",), "3"), 2), says="without a whole-number step"),
    Damage("step-fraction", each(_set(("step",), 2.5), 2), says="without a whole-number step"),
    Damage("step-bool", each(_set(("step",), True), 2), says="without a whole-number step"),
    Damage("step-huge", each(_set(("step",), 10**30), 7)),
    Damage("layers-missing", each(_del("layers"), 2), says="layers (missing)"),
    Damage("layers-list", each(_set(("layers",), [1, 2]), 2), says="layers (not an object)"),
    Damage("layers-null", each(_set(("layers",), None), 2), says="layers (missing)"),
    Damage("layer-is-list", each(_set(("layers", "dense"), [1, 2])), says="layers.dense (not an object)"),
    Damage("field-list", each(_set(("layers", "dense", "grad_norm"), [1, 2])), says="grad_norm"),
    Damage("field-string", each(_set(("layers", "dense", "grad_norm"), "big")), says="grad_norm"),
    Damage("field-null", each(_set(("layers", "dense", "grad_norm"), None)), says="grad_norm"),
    Damage("field-dict", each(_set(("layers", "dense", "grad_norm"), {"a": 1})), says="grad_norm"),
    Damage("field-bool", each(_set(("layers", "dense", "update_ratio"), True)), says="update_ratio"),
    Damage("fields-new", each(_set(("layers", "dense", "new_stat"), 0.5))),  # FORMATS: may be added
    Damage("record-new-key", each(_set(("gpu_memory",), {"used": [1, 2]}))),
    Damage("nan-inf-values", each(_set(("layers", "dense", "grad_norm"), "nan"), 2)),
    Damage(
        "overflow-number", insert_raw('{"step": 3, "loss": 1e400, "layers": {"dense": {"grad_norm": 1e999}}}')
    ),
    Damage(
        "time-grads-string", each(_set(("time_grads", "simple_rnn", "grad_norm"), "x"), 1), says="time_grads"
    ),
    Damage("time-grads-mismatch", each(_set(("time_grads", "simple_rnn", "t"), [0, 1])), says="time_grads"),
    Damage("time-grads-list", each(_set(("time_grads",), [1, 2])), says="time_grads (not an object)"),
    Damage(
        "time-grads-t-strings", each(_set(("time_grads", "simple_rnn", "t"), ["a"] * 32)), says="time_grads"
    ),
    Damage("deep-json-line", insert_raw(DEEP), says="nested too deep"),
    Damage(
        "deep-json-field", insert_raw('{"step": 4, "layers": {}, "x": ' + DEEP + "}"), says="nested too deep"
    ),
    Damage("torn-last-line", lambda run: (run / "stats.jsonl").open("a").write('{"step": 30, "lay')),
    Damage("garbage-mid-file", insert_raw("this is not json at all {{{"), says="not JSON"),
    Damage("binary-mid-file", insert_raw("\udcff\udcfe\x00\x01 bytes"), says="not JSON"),
    Damage("line-is-array", insert_raw("[1, 2, 3]"), says="not a JSON object"),
    Damage("line-is-number", insert_raw("42"), says="not a JSON object"),
    Damage("blank-lines", insert_raw("   \t ")),
    Damage("stats-fifo", replace_file("stats.jsonl", "fifo"), says="FIFO"),
    Damage("stats-dev-zero", replace_file("stats.jsonl", "zero"), says="device"),
    Damage("stats-folder", replace_file("stats.jsonl", "dir"), says="not a regular file"),
    Damage("stats-missing", replace_file("stats.jsonl", "missing")),  # 0 records, a summary
    Damage("stats-empty", replace_file("stats.jsonl", "")),
    Damage(
        "stats-empty-no-summary",
        both(replace_file("stats.jsonl", ""), replace_file("summary.json", "missing")),
        usable=False,
    ),
    Damage(
        "stats-garbage-no-summary",
        both(replace_file("stats.jsonl", "garbage\n{\n"), replace_file("summary.json", "missing")),
        usable=False,
        says="not JSON",
    ),
    Damage(
        "stats-fifo-no-summary",
        both(replace_file("stats.jsonl", "fifo"), replace_file("summary.json", "missing")),
        usable=False,
        says="FIFO",
    ),
    Damage("summary-not-json", replace_file("summary.json", '{"status": "completed", '), says="summary.json"),
    Damage("summary-not-object", replace_file("summary.json", "[1, 2]"), says="summary.json"),
    Damage("summary-deep", replace_file("summary.json", DEEP), says="summary.json"),
    Damage("summary-fifo", replace_file("summary.json", "fifo"), says="summary.json"),
    Damage("summary-folder", replace_file("summary.json", "dir"), says="summary.json"),
    Damage(
        "summary-diagnoses-bad",
        summary_edit(
            lambda s: s.update(diagnoses=["x", {"layer": "dense"}, {"kind": "vanishing", "layers": {"a": 1}}])
        ),
        says="diagnoses",
    ),
    Damage("summary-nulls", summary_edit(lambda s: s.update(diagnoses=None, final=None, steps=None))),
    Damage(
        "summary-diagnoses-not-list", summary_edit(lambda s: s.update(diagnoses="none")), says="diagnoses"
    ),
    Damage(
        "summary-final-bad",
        summary_edit(lambda s: s.update(final={"loss": "low", "accuracy": [1], "val_loss": None})),
        says="final",
    ),
    Damage(
        "summary-fields-bad",
        summary_edit(lambda s: s.update(status=3, steps="many", name=["x"])),
        says="summary.json",
    ),
    Damage("preset-garbage", replace_file("preset.toml", "name = [[[ \x00")),
    Damage("preset-fifo", replace_file("preset.toml", "fifo"), says="preset.toml"),
    Damage(
        "names-markup",
        both(each(_rename_layer("dense", MARKUP)), summary_edit(lambda s: s.update(name=MARKUP))),
    ),
    Damage(
        "names-escapes",
        both(each(_rename_layer("simple_rnn", ESCAPES)), summary_edit(lambda s: s.update(name=ESCAPES))),
    ),
    Damage(
        "names-surrogates",  # "\ud800" in JSON: no terminal, font or UTF-8 file takes it
        both(each(_rename_layer("dense", "\ud800x")), summary_edit(lambda s: s.update(name="\udcffname"))),
    ),
    Damage("names-dollar", summary_edit(lambda s: s.update(name="$x^$ and $\\frac{"))),
]


def make(damage: Damage, root: Path) -> Path:
    """A copy of the base run at ``root/<name>`` with ``damage`` done to it."""
    run = root / damage.name
    shutil.copytree(BASE, run)
    damage.make(run)
    return run


def _base() -> None:  # pragma: no cover - run by hand
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [
            sys.executable,
            "-m",
            "gradtui",
            "run",
            "rnn-pixels",
            "--max-steps",
            "30",
            "--out",
            str(out),
            "-q",
        ]
        subprocess.run(cmd, check=True)
        shutil.rmtree(BASE, ignore_errors=True)
        shutil.copytree(out, BASE)


def _outcomes(root: Path, names: list[str], commands: list[str]) -> None:  # pragma: no cover
    """Run by :func:`_table` in the version's process: ``commands`` (of ``open``, ``compare``,
    ``report``, ``export``) on the damages ``names``, in this process (CliRunner, a 15-second
    alarm); a JSON line on stdout as each starts and ends, so a hang the alarm cannot break (a
    FIFO's open in a thread the signal does not reach) is still told by the caller's timeout."""
    import signal

    from typer.testing import CliRunner

    from gradtui.cli import app

    def alarm(signum: int, frame: object) -> None:
        raise TimeoutError

    signal.signal(signal.SIGALRM, alarm)
    runner = CliRunner()
    for name in names:
        run = root / name
        args = {
            "open": ["open", "--headless", str(run)],
            "compare": ["compare", str(BASE), str(run)],
            "report": ["report", str(run), "-o", str(root / "out" / f"{name}.html")],
            "export": ["export", str(run), "--tensorboard", str(root / "out" / f"tb-{name}")],
        }
        for cmd in commands:
            print(json.dumps([name, cmd, None]), flush=True)
            signal.alarm(15)
            try:
                r = runner.invoke(app, args[cmd])
            except TimeoutError:
                r = None
            finally:
                signal.alarm(0)
            if r is None or isinstance(r.exception, TimeoutError):
                got = "hang (stopped after 15 s)"
            elif r.exception is not None and not isinstance(r.exception, SystemExit):
                got = f"traceback: {type(r.exception).__name__}: {str(r.exception)[:50]}"
            else:
                err = [x for x in r.stderr.splitlines() if x.strip()]
                got = f"rc {r.exit_code}" + (f": {err[-1][:90]}" if err else "")
            print(json.dumps([name, cmd, got]), flush=True)


def _table(before: str) -> None:  # pragma: no cover - run by hand for the closing note
    """The closing table: each damage, each command, with ``before`` (a folder holding another
    version's ``gradtui`` package) and this checkout."""
    import subprocess
    import tempfile

    here = str(Path(__file__).resolve().parents[1])
    commands = ["open", "compare", "report", "export"]
    results: list[dict[tuple[str, str], str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for d in DAMAGES:
            make(d, root)
        for version in (before, here):
            env = dict(
                os.environ, PYTHONPATH=f"{version}:{Path(__file__).parent}", PYTHONDONTWRITEBYTECODE="1"
            )
            got: dict[tuple[str, str], str] = {}
            for d in DAMAGES:
                todo = list(commands)
                while todo:
                    code = (
                        "import damaged_corpus as c; "
                        f"c._outcomes(c.Path({str(root)!r}), [{d.name!r}], {todo!r})"
                    )
                    try:
                        p = subprocess.run(
                            [sys.executable, "-c", code],
                            capture_output=True,
                            text=True,
                            env=env,
                            cwd=tmp,
                            timeout=60,
                            stdin=subprocess.DEVNULL,
                        )
                        out = p.stdout
                    except subprocess.TimeoutExpired as exc:
                        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
                    for line in out.splitlines():
                        name, cmd, what = json.loads(line)
                        got[(name, cmd)] = what or "hang (killed after 60 s)"
                        if what is not None or cmd in todo:
                            todo.remove(cmd) if cmd in todo else None
                    if todo and not out:  # the process died before anything: say so
                        for cmd in todo:
                            got[(d.name, cmd)] = "did not start"
                        todo = []
            results.append(got)
            print(f"{version}: done", file=sys.stderr, flush=True)
    print("| input | command | before | after |")
    print("|---|---|---|---|")
    for d in DAMAGES:
        for cmd in commands:
            cells = [r.get((d.name, cmd), "-").replace("|", "/").replace(str(root), "RUN") for r in results]
            row = f"| {d.name} | {cmd} | {cells[0]} | {cells[1]} |"
            print(row.encode("ascii", "backslashreplace").decode())


if __name__ == "__main__":  # pragma: no cover
    if "--base" in sys.argv:
        _base()
    elif "--table" in sys.argv:
        _table(sys.argv[sys.argv.index("--before") + 1])
    else:
        print(__doc__)
