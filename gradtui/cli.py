"""The ``gradtui`` command line (SPEC section 1).

Start-up stays instant: TensorFlow, Keras and Textual are imported inside the commands that
need them, never at module level (a test checks ``sys.modules`` in a fresh interpreter).
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import typer
from typer import _click
from typer.core import TyperCommand, TyperGroup

from gradtui import __version__
from gradtui.diagnosis import KINDS
from gradtui.errors import GradtuiError, in_file
from gradtui.text import plain

EXIT_CODES = (
    "Exit codes: 0 done; 1 training failed or stopped at a NaN/Inf (recorded in the run directory); "
    "2 bad input (one line on stderr); 3 a --fail-on kind was diagnosed; 130 interrupted (the run "
    "directory is written)."
)
PRESET_HELP = "A bundled preset's name (`gradtui presets`) or a .toml file."


class _OneLineErrors(TyperGroup):
    """Bad options and arguments end in one line on stderr and exit 2, like bad presets."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:  # type: ignore[override]
        # standalone_mode=False hands every error to us instead of click's multi-line display;
        # typer then turns KeyboardInterrupt into a return value of 130 by itself.
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except _click.exceptions.UsageError as exc:
            cmd = exc.ctx.command_path if exc.ctx else "gradtui"
            _fail(f"{cmd}: {exc.format_message()} (see `{cmd} --help`)")
        except _click.exceptions.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code if exc.exit_code > 0 else 2)
        except typer.Abort:
            _fail("aborted", 1)
        except GradtuiError as exc:
            _fail(exc.one_line(), exc.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


class _PlainUsage(TyperCommand):
    """``Usage: gradtui run [OPTIONS] PRESET``: a required argument written as the README and
    the SPEC write it, not in the braces typer puts around it (``{preset}``)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:  # type: ignore[override]
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]


def _fail(message: str, code: int = 2) -> None:
    # one line, whatever the message held; a name or key read from a file shows as text (\x1b)
    message = plain(" ".join(str(message).split()))
    sys.stderr.write(f"gradtui: error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


app = typer.Typer(
    cls=_OneLineErrors,
    help="See every layer's gradients while a Keras network trains, and fix what is wrong.",
    invoke_without_command=True,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    epilog=EXIT_CODES,
    # click folds help at 80 columns and cuts the commands' one-line descriptions to fit; a wider
    # terminal shows them whole
    context_settings={"max_content_width": 120},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"gradtui {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    """gradtui: vanishing, exploding, saturated and dead units, live, with the remedy that fits.

    Without a command it opens the TUI on the default preset.
    """
    if ctx.invoked_subcommand is None:
        _open_tui(None, headless=False, train=False)


def _open_tui(preset: str | None, *, headless: bool, train: bool) -> None:
    try:
        from gradtui.tui.app import run_app
    except ImportError as exc:  # pragma: no cover - a broken install
        _fail(f"the TUI cannot start: {exc}", 1)
        return
    code = run_app(preset, headless=headless, train=train)
    if code:
        sys.exit(code)


@app.command()
def tui(
    preset: str = typer.Argument(None, metavar="PRESET", help=PRESET_HELP),
    headless: bool = typer.Option(
        False, "--headless", help="Run without a terminal (for scripts and tests)."
    ),
    train: bool = typer.Option(
        False, "--train", help="Start training at once; with --headless, exit when done."
    ),
) -> None:
    """Open the TUI with PRESET loaded into the layer-stack builder."""
    if preset is not None:
        from gradtui.preset import load
        from gradtui.runlog import is_run_dir

        if is_run_dir(preset):
            raise GradtuiError(f"is a run directory; show it with `gradtui open {preset}`", file=preset)
        load(preset)  # bad input ends here, in one line, before the screen opens
    _open_tui(preset, headless=headless, train=train)


@app.command()
def presets() -> None:
    """List the bundled presets with their one-line descriptions."""
    from gradtui.preset import bundled_descriptions

    rows = bundled_descriptions()
    width = max((len(n) for n, _ in rows), default=0)
    for name, desc in rows:
        typer.echo(f"{name.ljust(width)}  {desc}")


def _nested_layer(model: Any, path: str) -> Any:
    """The layer at ``path`` (``transformer_block/multi_head_attention/query``) in a model."""
    from gradtui.keras_compat import sublayers

    layer = model
    for name in path.split("/"):
        layer = next(s for s in sublayers(layer) if s.name == name)
    return layer


@app.command(cls=_PlainUsage)
def check(
    preset: str = typer.Argument(..., metavar="PRESET", help=PRESET_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (SPEC section 1)."),
) -> None:
    """Validate a preset, build its model, print its summary and advice. Nothing is trained."""
    from gradtui.data import input_spec
    from gradtui.preset import load
    from gradtui.stack import check_memory, plan, preflight

    p = load(preset)
    with in_file(p.source):
        shape, classes = input_spec(p.data)
        layers = plan(p, shape, classes)
        check_memory(p, layers)
    from gradtui.build import build, keras_param_counts

    model, layers = build(p, shape, classes, compile=False)
    params = keras_param_counts(model)
    advice = preflight(layers, p.train)
    keras_layers = {layer.name: layer for layer in model.layers}
    rows = []
    for info in layers:
        kl = keras_layers.get(info.name) or _nested_layer(model, info.name)
        rows.append(
            {
                "name": info.name,
                "type": type(kl).__name__,
                # a layer inside a block has no symbolic output of its own: its planned shape
                "output_shape": [
                    None,
                    *(info.output_shape if info.part_of else [int(d) for d in kl.output.shape[1:]]),
                ],
                "params": int(kl.count_params()),
                "activation": info.activation if info.is_weighted else None,
                "initializer": info.initializer.label() if info.initializer else None,
                "fan_in": info.fan_in or None,
                "fan_out": info.fan_out or None,
                "variance": info.variance,
            }
        )
    if as_json:
        out = {
            "name": p.name,
            "description": p.description,
            "input_shape": list(shape),
            "classes": classes,
            "params": params,
            "layers": rows,
            "advice": [a.to_dict() for a in advice],
        }
        typer.echo(json.dumps(out))
        return
    from gradtui.view import print_check

    print_check(p, shape, classes, rows, params, advice)


@app.command(cls=_PlainUsage, epilog=EXIT_CODES)
def run(
    preset: str = typer.Argument(..., metavar="PRESET", help=PRESET_HELP),
    out: Path = typer.Option(
        None, "--out", metavar="DIR", help="Run directory. Default: runs/<UTC timestamp>-<name>."
    ),
    epochs: int = typer.Option(None, "--epochs", min=1, metavar="N", help="Epochs (overrides the preset)."),
    max_steps: int = typer.Option(
        None, "--max-steps", min=1, metavar="N", help="Stop after N optimizer steps in all."
    ),
    seed: int = typer.Option(None, "--seed", min=0, metavar="N", help="Random seed (overrides the preset)."),
    dataset: str = typer.Option(
        None,
        "--dataset",
        metavar="NAME_OR_PATH",
        help="Data set name or .npz/.csv path (overrides); the output layer follows its classes.",
    ),
    every: int = typer.Option(
        None, "--every", min=1, metavar="N", help="Record statistics every N steps (overrides)."
    ),
    fail_on: str = typer.Option(
        None,
        "--fail-on",
        metavar="KINDS",
        help=f"Comma list of diagnosis kinds ({', '.join(KINDS)}): stop training at the first one "
        "diagnosed and exit 3.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final summary."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Allow writing into an existing run directory."
    ),
    tensorboard: Path = typer.Option(
        None, "--tensorboard", help="Also write TensorBoard event files into this folder."
    ),
    histograms: bool = typer.Option(
        True,
        "--histograms/--no-histograms",
        help="With --tensorboard: also gradient and weight histograms, once an epoch.",
    ),
) -> None:
    """Train headless: live progress, per-layer gradients, diagnoses. Writes a run directory."""
    kinds: set[str] = set()
    if fail_on:
        from gradtui.errors import did_you_mean

        for kind in (k.strip() for k in fail_on.split(",") if k.strip()):
            if kind not in KINDS:
                raise GradtuiError(
                    f"unknown diagnosis kind '{kind}'{did_you_mean(kind, KINDS)}; allowed: {', '.join(KINDS)}",
                    key="--fail-on",
                )
            kinds.add(kind)
    if (
        dataset is not None
        and dataset.lower().endswith((".npz", ".csv"))
        and not Path(dataset).expanduser().is_file()
    ):
        raise GradtuiError(f"there is no file {dataset}; give an existing .npz or .csv file", key="--dataset")
    if out is not None:
        from gradtui.runlog import check_out

        check_out(out, overwrite=overwrite, wording="cli")  # before any data is loaded
    from gradtui.preset import load
    from gradtui.session import Session, prepare, stopped_at_nonfinite

    p = load(preset).with_overrides(
        epochs=epochs, seed=seed, dataset=dataset, max_steps=max_steps, every=every
    )
    try:
        prepared = prepare(p, output_follows_data=dataset is not None)
    except GradtuiError as exc:
        if dataset is not None and exc.key == "data.dataset":  # the option's fault, not the preset's
            raise GradtuiError(exc.detail, key="--dataset") from None
        raise
    if prepared.preset is not p:
        old_units, new_units = p.layers[-1].units, prepared.preset.layers[-1].units
        sys.stderr.write(
            f"gradtui: the output layer has {new_units} units instead of the preset's {old_units}: "
            f"--dataset {dataset} has {new_units} classes\n"
        )
        p = prepared.preset
    from gradtui.view import RichView

    view = RichView(quiet=quiet)
    session = Session(
        p,
        out,
        listener=view,
        tensorboard=_tensorboard_sink(tensorboard, histograms),
        overwrite=overwrite,
        prepared=prepared,
        fail_on=kinds,
    )
    try:
        summary = session.run()
    except KeyboardInterrupt:
        # the run directory is complete: a second Ctrl-C must not turn the exit into a traceback
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        view.close()
        if session.summary is not None:
            view.print_summary(session.summary)
        sys.stderr.write(
            f"gradtui: interrupted; the run directory {plain(session.out)} holds every recorded step\n"
        )
        sys.exit(130)
    if session.write_error is not None:
        # not even summary.json could be written (a full disk, the folder deleted): the reason,
        # in one line, is all there is to say
        view.close()
        raise session.write_error
    view.print_summary(summary)
    if summary["status"] == "failed":
        sys.exit(1)
    matched = session.failed_on
    if matched is None and kinds:
        from gradtui.diagnosis import Diagnosis

        matched = next((Diagnosis.from_dict(d) for d in summary["diagnoses"] if d["kind"] in kinds), None)
    if matched is not None:
        where = f"layer {plain(matched.layer)}" if matched.layer else "the model"
        stopped = f"; training stopped at step {summary['steps']}" if summary["status"] == "stopped" else ""
        sys.stderr.write(
            f"gradtui: --fail-on {matched.kind}: {matched.kind} on {where} at step {matched.step}{stopped}\n"
        )
        sys.exit(3)
    if stopped_at_nonfinite(summary):
        # a script or CI must not read a run that ended in NaN as a success
        sys.stderr.write(
            f"gradtui: training stopped at step {summary['steps']}: the loss or a gradient became "
            "NaN/Inf (monitor.stop_on_nonfinite)\n"
        )
        sys.exit(1)


@app.command()
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="Two or more run directories."),
    tui: bool = typer.Option(False, "--tui", help="Open the TUI's compare view on them instead."),
) -> None:
    """Print runs side by side, layer by layer: gradient norms, ratios, diagnoses.

    Per layer: each run's gradient norm and its ratio to the first run's, update ratios, and
    the diagnoses."""
    if len(run_dirs) < 2:
        raise GradtuiError("give at least two run directories to compare", key="RUN_DIR")
    runs = _read_runs(run_dirs)  # a folder that is not a run, or holds nothing readable, ends here
    if tui:
        from gradtui.tui.app import run_compare

        sys.exit(run_compare(run_dirs))
    from gradtui.compare import print_compare

    print_compare(runs)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    out: Path = typer.Option(
        None, "-o", "--out", help="FILE.html or FILE.png. Default: RUN_DIR/report.html."
    ),
) -> None:
    """Write a self-contained report of a run: heatmap of gradient norms, curves, diagnoses."""
    run = _read_runs([run_dir])[0]
    if out is not None and out.suffix.lower() not in (".html", ".htm", ".png"):
        raise GradtuiError(f"cannot write '{out.suffix or out.name}'; give a .html or .png file", key="-o")
    from gradtui.report import write_report

    typer.echo(f"wrote {plain(write_report(run, out))}")


def _index_progress(run_dir: Path) -> Any:
    """Progress of a first reading that builds a run's index (``stats.idx``), on stderr: said
    only when it takes a while (a long run written without it)."""
    import time

    began = time.monotonic()
    said = [False]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - began < 1.0 and not said[0]:
            return
        said[0] = True
        pct = 100 * done // max(total, 1)
        end = "\n" if done >= total else "\r"
        sys.stderr.write(f"gradtui: indexing {plain(run_dir / 'stats.jsonl')} (once): {pct}%{end}")
        sys.stderr.flush()

    return progress


def _read_runs(run_dirs: list[Path]) -> list[Any]:
    """Read run directories for a command; what was skipped is said in one line on stderr.

    Raises:
        GradtuiError: one of them is not a run directory, or holds nothing readable.
    """
    from gradtui.runindex import read_indexed

    runs = [read_indexed(d, _index_progress(d)) for d in run_dirs]
    for r in runs:
        if r.index.where != "stats.idx":
            sys.stderr.write(f"gradtui: {plain(r.path)}: its index is kept in {r.index.where}\n")
    notes = [f"{plain(r.path)}: {r.note}" if len(runs) > 1 else r.note for r in runs if r.note]
    if notes:
        sys.stderr.write(f"gradtui: {plain('; '.join(notes))}\n")
    return runs


@app.command(cls=_PlainUsage)
def fix(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="A run directory (from run or the TUI)."),
    output: Path = typer.Option(
        None, "--output", "-o", metavar="FILE", help="The fixed preset (.toml). Default: RUN_DIR/fixed.toml."
    ),
) -> None:
    """Write the run's preset with the remedy of its open diagnoses applied (the TUI's f).

    One line per change on stderr; the file written on stdout, so that
    `gradtui run "$(gradtui fix RUN_DIR)"` trains the fixed stack."""
    from gradtui.runlog import atomic_write, check_run_dir, read_run

    check_run_dir(run_dir)
    target = output if output is not None else run_dir / "fixed.toml"
    if target.suffix != ".toml":
        raise GradtuiError("give a .toml file (a preset)", file=str(target), key="--output")
    if target.is_dir():
        raise GradtuiError("is a folder; give a .toml file", file=str(target), key="--output")
    if not target.parent.is_dir():
        raise GradtuiError("its folder does not exist", file=str(target), key="--output")
    if target.resolve() == (run_dir / "preset.toml").resolve():
        raise GradtuiError(
            "is the run's own record of what it trained; write the fix to another file",
            file=str(target),
            key="--output",
        )
    run = read_run(run_dir)
    if run.preset_text is None:
        raise GradtuiError(
            "has no preset.toml (a run of watch()): there is no preset to fix; change the model "
            "as the diagnoses' advice says",
            file=str(run_dir),
        )
    if not run.summary:
        raise GradtuiError(
            "has no summary.json yet (the run is still being written); fix it once it has ended",
            file=str(run_dir),
        )
    from gradtui.diagnosis import Diagnosis
    from gradtui.preset import loads
    from gradtui.remedy import apply_remedy

    source = str(run_dir / "preset.toml")
    preset = loads(run.preset_text, source=source, default_name=run.name)
    try:
        diagnoses = [Diagnosis.from_dict(d) for d in run.summary.get("diagnoses") or []]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise GradtuiError(
            "diagnoses: not a list of diagnoses (kind, layer, step, fix)", file=str(run_dir / "summary.json")
        ) from None
    try:
        with in_file(source):
            remedy = apply_remedy(preset, diagnoses)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise GradtuiError(
            "diagnoses: a fix is not a table of entries, set and train", file=str(run_dir / "summary.json")
        ) from None
    if not remedy.changes:
        found = sorted({d.kind for d in diagnoses if d.cleared_step is None})
        why = (
            f"its open diagnoses ({', '.join(found)}) carry no automatic fix; see their advice"
            if found
            else "it has no open diagnosis: there is nothing to fix"
        )
        if "diagnoses" in (run.note or "") and not found:  # what was there could not be read
            raise GradtuiError(
                f"diagnoses could not be read ({run.note}); there is nothing to fix",
                file=str(run_dir / "summary.json"),
            )
        raise GradtuiError(why, file=str(run_dir))
    fixed = remedy.preset
    if not fixed.name.endswith("-fixed"):
        fixed = fixed.replace(name=f"{fixed.name}-fixed")
    kinds = ", ".join(dict.fromkeys(d.kind for d in remedy.applied))
    fixed = fixed.replace(description=f"{preset.name} fixed by gradtui fix ({kinds})")
    atomic_write(target, fixed.to_toml())
    from gradtui.text import plain

    for line in remedy.changes:
        sys.stderr.write(f"gradtui: fix: {plain(line)}\n")
    typer.echo(str(target))


def _tensorboard_sink(logdir: Path | None, histograms: bool = True) -> Any:
    """A TensorBoard sink writing into ``logdir`` (``--tensorboard``), or ``None``."""
    if logdir is None:
        return None
    if logdir.exists() and not logdir.is_dir():
        raise GradtuiError("exists and is not a folder", file=str(logdir), key="--tensorboard")
    from gradtui.tensorboard import TensorBoardSink

    return TensorBoardSink(logdir, histograms=histograms)


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    tensorboard: Path = typer.Option(..., "--tensorboard", help="The folder for TensorBoard event files."),
) -> None:
    """Write TensorBoard event files from a run directory.

    Per-layer scalars, the loss and the diagnoses (histograms need the raw values: only
    `run --tensorboard` and `watch(tensorboard=...)` write them)."""
    run = _read_runs([run_dir])[0]
    if tensorboard.exists() and not tensorboard.is_dir():
        raise GradtuiError("exists and is not a folder", file=str(tensorboard), key="--tensorboard")
    from gradtui.tensorboard import export_index

    sink = export_index(run, tensorboard)
    where = plain(sink.logdir)
    typer.echo(
        f"wrote {sink.rows} steps of {plain(run.name)} to {where}; see it with: tensorboard --logdir {where}"
    )


@app.command(name="open")
def open_run(
    run_dir: Path = typer.Argument(..., help="A run directory (from run, the TUI or watch)."),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="Keep reading a run another process is writing, until it ends."
    ),
    headless: bool = typer.Option(
        False, "--headless", help="Without a terminal: read (or follow) the run, then exit."
    ),
) -> None:
    """Open the TUI's monitor, warnings and loss chart on a recorded run directory.

    With --follow, a run directory that does not exist yet is waited for (a training about to
    start writing it)."""
    from gradtui.runlog import check_run_dir, is_run_dir

    if follow and not is_run_dir(run_dir):
        import time

        print(f"gradtui: waiting for {plain(run_dir)} to appear (Ctrl-C to stop)", file=sys.stderr)
        try:
            while not is_run_dir(run_dir):
                if run_dir.exists() and not run_dir.is_dir():
                    break  # a file in its place: the check below says so
                time.sleep(0.25)
        except KeyboardInterrupt:
            sys.exit(130)
    check_run_dir(run_dir)  # a folder that is not a run ends here, in one line
    from gradtui.tui.app import run_open

    code = run_open(run_dir, follow=follow, headless=headless)
    if code:
        sys.exit(code)


@app.command()
def serve(
    preset: str = typer.Argument(None, help="A bundled preset's name or a .toml file."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="The port to listen on."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="The address to listen on; the default is this machine only."
    ),
    max_tabs: int = typer.Option(
        2, "--max-tabs", min=1, max=64, help="Browser tabs (each one a process that may train) at once."
    ),
) -> None:
    """Serve the TUI to a web browser (textual-serve), on 127.0.0.1 by default.

    Each browser tab gets its own gradtui process; the URL printed at start holds the secret
    token the page asks for. A tab loads and saves presets only inside the current folder."""
    import os
    import shlex

    dataset = ""
    if preset is not None:
        from gradtui.preset import load

        dataset = load(preset).data.dataset  # bad input ends here, in one line, before the server starts
    try:
        from gradtui.tui.serving import GradtuiServer
    except ImportError as exc:  # pragma: no cover - a broken install
        raise GradtuiError(f"textual-serve is not installed ({exc}); pip install textual-serve") from None
    from gradtui.preset import DATA_SUFFIXES
    from gradtui.tui.confine import DATA_ENV, ROOT_ENV

    # exec: the tab's process is the server's own child, and quits when the server is gone
    # (gradtui.tui.app.follow_parent reads GRADTUI_SERVED_BY); its dialogs stay in ROOT_ENV
    root = shlex.quote(str(Path.cwd().resolve()))
    command = (
        f"GRADTUI_SERVED_BY={os.getpid()} {ROOT_ENV}={root} exec {shlex.quote(sys.executable)} -m gradtui tui"
    )
    if dataset.lower().endswith(DATA_SUFFIXES):  # the server's own preset's data, wherever it is
        command = f"{DATA_ENV}={shlex.quote(os.path.abspath(dataset))} {command}"
    if preset is not None:
        command += f" {shlex.quote(preset)}"
    GradtuiServer(command, host=host, port=port, max_tabs=max_tabs).serve()


def main() -> None:
    """The ``gradtui`` program (console script and ``python -m gradtui``): the commands, in a
    process of their own, which may therefore end at once after a TUI with TensorFlow loaded
    (see :func:`gradtui.tui.app.leave`)."""
    import os

    os.environ["GRADTUI_STANDALONE"] = "1"  # gradtui.tui.app.STANDALONE_ENV, without importing it
    app(prog_name="gradtui")
