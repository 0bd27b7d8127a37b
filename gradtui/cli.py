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
from typer.core import TyperGroup

from gradtui.diagnosis import KINDS
from gradtui.errors import GradtuiError, in_file


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


def _fail(message: str, code: int = 2) -> None:
    message = " ".join(str(message).split())  # one line, whatever the message held
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
)


@app.callback()
def _root(ctx: typer.Context) -> None:
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
    preset: str = typer.Argument(None, help="A bundled preset's name or a .toml file."),
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


@app.command()
def check(
    preset: str = typer.Argument(..., help="A bundled preset's name or a .toml file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (SPEC section 1)."),
) -> None:
    """Validate a preset, build its model without training, print the summary and advice."""
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
    advice = preflight(layers)
    keras_layers = {layer.name: layer for layer in model.layers}
    rows = []
    for info in layers:
        kl = keras_layers[info.name]
        rows.append(
            {
                "name": info.name,
                "type": type(kl).__name__,
                "output_shape": [None, *[int(d) for d in kl.output.shape[1:]]],
                "params": int(kl.count_params()),
                "activation": info.activation if info.is_dense else None,
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


@app.command()
def run(
    preset: str = typer.Argument(..., help="A bundled preset's name or a .toml file."),
    out: Path = typer.Option(None, "--out", help="Run directory. Default: runs/<UTC timestamp>-<name>."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Epochs (overrides the preset)."),
    max_steps: int = typer.Option(None, "--max-steps", min=1, help="Stop after N optimizer steps in all."),
    seed: int = typer.Option(None, "--seed", min=0, help="Random seed (overrides the preset)."),
    dataset: str = typer.Option(None, "--dataset", help="Data set name or .npz/.csv path (overrides)."),
    every: int = typer.Option(None, "--every", min=1, help="Record statistics every N steps (overrides)."),
    fail_on: str = typer.Option(
        None, "--fail-on", help="Comma list of diagnosis kinds; exit 3 if any is raised."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final summary."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Allow writing into an existing run directory."
    ),
) -> None:
    """Train headless with live progress, per-layer gradients and diagnoses; write a run directory."""
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

        check_out(out, overwrite=overwrite)  # before any data is loaded
    from gradtui.preset import load
    from gradtui.session import Session, prepare

    p = load(preset).with_overrides(
        epochs=epochs, seed=seed, dataset=dataset, max_steps=max_steps, every=every
    )
    try:
        prepared = prepare(p)
    except GradtuiError as exc:
        if dataset is not None and exc.key == "data.dataset":  # the option's fault, not the preset's
            raise GradtuiError(exc.detail, key="--dataset") from None
        raise
    from gradtui.view import RichView

    view = RichView(quiet=quiet)
    session = Session(p, out, listener=view, overwrite=overwrite, prepared=prepared)
    try:
        summary = session.run()
    except KeyboardInterrupt:
        # the run directory is complete: a second Ctrl-C must not turn the exit into a traceback
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        view.close()
        if session.summary is not None:
            view.print_summary(session.summary)
        sys.stderr.write(f"gradtui: interrupted; the run directory {session.out} holds every recorded step\n")
        sys.exit(130)
    view.print_summary(summary)
    if summary["status"] == "failed":
        sys.exit(1)
    if kinds and any(d["kind"] in kinds for d in summary["diagnoses"]):
        sys.exit(3)


def main() -> None:
    """Console entry point."""
    app()
