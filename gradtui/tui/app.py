"""The gradtui Textual application: build a stack, train it live, see every layer, fix it.

:func:`create_app` is the one factory the CLI (:func:`run_app`) and the tests use.

Threads: TensorFlow is imported in the background as the app opens (the status line says
"loading" until it is done), and each training runs in the background too, talking to the
screen only through messages (:mod:`gradtui.tui.messages`). Both run on one engine thread: a
training in another thread than the one that imported TensorFlow ran at 0.88x the steps a second
here (median of 8 paired runs, 7 of 8 slower). The screen repaints the newest statistics at
most :data:`REPAINT_HZ` times a second, whatever the rate they arrive at, and while training only
as often as the UI thread's CPU time stays within :data:`UI_BUDGET` of the wall time (and at
least every :data:`MAX_STALE_S`): drawing holds the GIL that the training thread needs between
compiled steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, TabbedContent, TabPane

from gradtui.diagnosis import Diagnosis
from gradtui.errors import GradtuiError
from gradtui.preset import Preset, load, loads
from gradtui.runlog import atomic_write, default_run_dir
from gradtui.session import Session
from gradtui.source import RunSource, TrainingSource
from gradtui.text import plain
from gradtui.tui.confine import data_refusal
from gradtui.tui.feed import Snapshot
from gradtui.tui.messages import (
    ApplyFix,
    KerasReady,
    StackChanged,
    StatsUpdated,
    TrainingEnded,
    TrainingStarted,
    TrainingStatus,
)
from gradtui.tui.screens.load_dialog import LoadDialog
from gradtui.tui.screens.save_dialog import SaveDialog
from gradtui.tui.trainer import poster
from gradtui.tui.widgets.builder_view import BuilderView
from gradtui.tui.widgets.compare_view import CompareView
from gradtui.tui.widgets.layer_form import LayerForm
from gradtui.tui.widgets.monitor_view import MonitorView
from gradtui.tui.widgets.run_status import RunStatus
from gradtui.tui.widgets.train_form import TrainForm
from gradtui.tui.widgets.warnings_panel import WarningsPanel, describe_fix

DEFAULT_PRESET = "vanishing-sigmoid"
#: the most repaints of the monitor per second
REPAINT_HZ = 4
#: while training, the share of its wall time the UI thread may spend (CPU time) between two
#: repaints: drawing holds the GIL the training thread needs between compiled steps, so a slow
#: machine gets fewer frames rather than a slower training
UI_BUDGET = 0.03
#: ... but the monitor is never older than this many seconds
MAX_STALE_S = 2.0
#: how long ``q`` waits for a stopped training to write its run directory before leaving
QUIT_GRACE_S = 1.2
#: ``q`` during training returns to the shell within this many seconds
QUIT_LIMIT_S = 1.8


def state_dir() -> Path:
    """Where an unsaved stack is kept between sessions (``$GRADTUI_STATE_DIR`` or XDG state)."""
    if os.environ.get("GRADTUI_STATE_DIR"):
        return Path(os.environ["GRADTUI_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "gradtui"


def _load_keras() -> str:
    """Import TensorFlow/Keras; returns the device training will use."""
    from gradtui.build import device_name, import_keras

    import_keras()
    return device_name()


def _held(diagnosis: Diagnosis) -> Diagnosis:
    """``diagnosis`` as still holding: a fix chosen by hand is applied even after it cleared."""
    return dataclasses.replace(diagnosis, cleared_step=None)


def _where(trace: str | None) -> str:
    """The innermost ``File "...", line N, in f`` of a traceback, or an empty string."""
    frames = [line.strip() for line in (trace or "").splitlines() if line.strip().startswith("File ")]
    return frames[-1] if frames else ""


class GradtuiApp(App[int]):
    """Build a layer stack, train it with every layer's gradients live, apply the remedy.

    Args:
        preset: the stack to start with.
        preset_path: the file it came from (the default path for ``ctrl+s``), if any.
        runs_root: the folder run directories go in. Defaults to ``runs``.
        load_keras (bool): import TensorFlow in the background at start. Defaults to True;
            snapshot tests turn it off to stay deterministic and fast.
        auto_train (bool): start training once the app is up. Defaults to False.
        exit_after_train (bool): exit when that training ends (``--headless --train``).
        state: where an unsaved stack is kept on quit. Defaults to :func:`state_dir`.
        dirty (bool): the stack starts as unsaved changes (restored from a previous session).
        source: a recorded run to show at start (``gradtui open``), read once or followed.
        compare: recorded runs to open the compare view on (``gradtui compare --tui``).
    """

    CSS_PATH = "app.tcss"
    TITLE = "gradtui"
    SUB_TITLE = "every layer's gradients, live"

    BINDINGS = [
        Binding("t", "toggle_training", "Train/Stop"),
        Binding("p", "pause", "Pause/Resume"),
        Binding("f", "apply_fix", "Apply fix"),
        Binding("o", "load", "Load"),
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("1", "tab('builder')", "Builder", show=False),
        Binding("2", "tab('monitor')", "Monitor", show=False),
        Binding("3", "tab('compare')", "Compare", show=False),
        Binding("q", "quit", "Quit"),
        Binding("escape", "leave_field", "Leave field", show=False),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        preset: Preset,
        *,
        preset_path: str | None = None,
        runs_root: str | Path = "runs",
        load_keras: bool = True,
        auto_train: bool = False,
        exit_after_train: bool = False,
        state: Path | None = None,
        dirty: bool = False,
        source: RunSource | None = None,
        compare: list[Snapshot] | None = None,
    ) -> None:
        super().__init__()
        self.preset = preset
        self.preset_path = preset_path
        self.saved_toml = "" if dirty else preset.to_toml()
        self.runs_root = Path(runs_root)
        self.load_keras = load_keras
        self.auto_train = auto_train
        self.exit_after_train = exit_after_train
        self.state = state if state is not None else state_dir()
        self.restored = dirty
        self.session: Session | None = None
        self.keras_ready = False
        #: the one thread that imports TensorFlow and runs every training (see the module doc)
        self.engine = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradtui-engine")
        self.device = ""
        #: finished runs, oldest first; the compare view shows the newest two
        self.runs: list[Snapshot] = []
        self.current: Snapshot | None = None
        self.errors: list[Text] = []
        self.last_summary: dict[str, Any] | None = None
        #: the stack of the latest training: a diagnosis's fix names its layer entries
        self.trained_preset: Preset | None = None
        self.last_error: str | None = None
        self.last_trace: str | None = None
        self.kept_unsaved: Path | None = None
        self._pending: Snapshot | None = None
        self._last_paint: tuple[float, float] | None = None  # (monotonic, UI thread CPU time)
        self._quitting = False
        self.repaints = 0
        #: leave right after the first screen (``--headless`` without ``--train``)
        self.exit_on_mount = False
        #: the training that ``q`` stopped, and when ``q`` was pressed
        self.quit_session: Session | None = None
        self.quit_requested = 0.0
        #: the recorded run shown (``open``), and whether it is still being read or followed
        self.run_source = source
        self.reading = source is not None
        #: said above the builder's stack when it is not the stack of the run on screen
        self.stack_note: str | None = None
        self.compare_at_start = compare or []
        #: what the app said when a followed run finished
        self.finished_note: str | None = None

    def notify(  # type: ignore[override]
        self,
        message: str,
        *,
        title: str = "",
        severity: Any = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Textual's ``notify``, but plain text by default: a notification carries paths, names
        and error messages read from files (``[0, 10)``, ``[/]``), never markup."""
        from gradtui.text import plain

        super().notify(
            plain(message, one_line=False),
            title=plain(title),
            severity=severity,
            timeout=timeout,
            markup=markup,
        )

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        """Header, the three tabs, the status line, the footer with the keys."""
        yield Header(show_clock=False, icon="∇")
        with TabbedContent(initial="builder", id="tabs"):
            with TabPane("Builder [1]", id="builder"):
                yield BuilderView(self.preset, id="builder-view")
            with TabPane("Monitor [2]", id="monitor"):
                yield MonitorView(id="monitor-view")
            with TabPane("Compare [3]", id="compare"), VerticalScroll():
                yield CompareView(id="compare-view")
        yield RunStatus(id="run-status")
        yield Footer()

    def on_mount(self) -> None:
        """Start importing TensorFlow in the background; repaint at a bounded rate."""
        status = self.query_one(RunStatus)
        if self.load_keras:
            status.set_state("loading", "importing TensorFlow in the background…")
            # after the first frame: the import holds the GIL for seconds and would delay it
            self.call_after_refresh(self._import_keras)
        else:
            status.set_state("ready", "")
        self.set_interval(1 / REPAINT_HZ, self._repaint)
        self.query_one("#layer-table").focus()
        if self.restored:
            self.notify(
                f"restored the unsaved stack of your last session ({self.state / 'unsaved.toml'})",
                title="Unsaved stack restored",
            )
        if self.run_source is not None:
            self.call_after_refresh(self.action_tab, "monitor")  # after the tabs settle on their first
            what = "following" if self.run_source.follow else "reading"
            status.set_state(what, str(self.run_source.path))
            self.reading = True
            self._feed(self.run_source)
        if self.compare_at_start:
            self.runs = self.compare_at_start[:-1]
            self.current = self.compare_at_start[-1]
            self.query_one(MonitorView).show(self.current, [])
            self._show_compare()
            self.call_after_refresh(self.action_tab, "compare")  # after the tabs settle on their first
        if self.exit_on_mount:
            self.call_after_refresh(self.exit, 0)
        elif self.auto_train:
            self.call_after_refresh(self.action_toggle_training)

    @property
    def training(self) -> bool:
        """Whether a training is under way (including stopping)."""
        return self.session is not None

    @property
    def dirty(self) -> bool:
        """Whether the stack differs from the last saved or loaded one."""
        return self.preset.to_toml() != self.saved_toml

    # ------------------------------------------------------------------ TensorFlow

    def _import_keras(self) -> None:
        """Import TensorFlow/Keras (seconds) on the engine thread; :class:`KerasReady` says when.

        Not a Textual thread worker: those run in asyncio's default executor, which
        ``asyncio.run`` joins as ``App.run`` returns, so a ``q`` while the import ran took 5-7 s
        to reach the shell. The engine thread posts the message itself (posting is thread-safe;
        once the app is gone the message is dropped)."""

        def done(future: Future) -> None:
            exc = future.exception()
            if exc is not None:  # a broken TF install is shown, not raised
                self.post_message(KerasReady("", error=f"{type(exc).__name__}: {exc}"))
            else:
                self.post_message(KerasReady(future.result()))

        self.engine.submit(_load_keras).add_done_callback(done)

    def on_unmount(self) -> None:
        """Let the engine thread end once its work is done (the process does not wait for it)."""
        if self.run_source is not None:
            self.run_source.stop()
        self.engine.shutdown(wait=False)

    def on_keras_ready(self, message: KerasReady) -> None:
        """TensorFlow is loaded (or failed to load)."""
        status = self.query_one(RunStatus)
        if message.error:
            status.set_state("failed", f"TensorFlow could not be imported: {message.error}")
            return
        self.keras_ready = True
        self.device = message.device
        if not self.training:
            status.set_state("ready", "TensorFlow loaded", device=message.device)
        else:
            status.device = message.device

    # ------------------------------------------------------------------ training

    def action_toggle_training(self) -> None:
        """Start training the stack, or stop the training under way."""
        if self.reading:
            self.notify("following a recorded run; q quits", severity="warning", timeout=4)
            return
        if self.session is not None:
            self.session.stop()
            self.query_one(RunStatus).set_state("stopping", "stopping after the current step…")
            return
        self.start_training()

    def start_training(self) -> None:
        """Train the current stack in a thread worker, writing a new run directory."""
        refusal = data_refusal(self.preset.data.dataset)  # a served tab reads only its folder
        if refusal is not None:
            self.notify(refusal, title="Not trained", severity="error", timeout=8, markup=False)
            return
        if self.current is not None:
            self.runs.append(self.current)
        self.current = None
        self._pending = None
        self.errors = []
        out = default_run_dir(self.preset.name, root=self.runs_root)
        session = Session(self.preset, out)
        self.trained_preset = self.preset
        self.session = session
        status = self.query_one(RunStatus)
        status.snapshot = None
        detail = "loading data" if self.keras_ready else "waiting for TensorFlow to finish loading"
        status.set_state("starting", detail)
        self.query_one(MonitorView).show(Snapshot(name=self.preset.name), [])
        self.action_tab("monitor")
        self._feed(TrainingSource(session))

    @work(thread=True, exclusive=True, group="feed", exit_on_error=False)
    def _feed(self, source: TrainingSource | RunSource) -> None:
        """Run a source in the background; its events arrive as messages (its last one
        :class:`TrainingEnded`). A training runs on the engine thread (see the module doc)."""
        emit = poster(self.post_message)
        if isinstance(source, TrainingSource):
            self.engine.submit(source.run, emit).result()
        else:
            source.run(emit)

    def on_training_status(self, message: TrainingStatus) -> None:
        """Progress before the first step."""
        # a recorded run says so too while its index is built (a long run written without one)
        if (self.session is not None or self.reading) and not self._quitting:
            self.query_one(RunStatus).set_state("starting", message.text)

    def on_training_started(self, message: TrainingStarted) -> None:
        """The model is built: show its layers."""
        self._pending = message.snapshot
        if self.session is None:  # a recorded run
            self._repaint()
            if self.reading and self.run_source is not None and self.run_source.follow:
                detail = f"following {self.run_source.path}: drawn as its lines arrive"
                self.query_one(RunStatus).set_state("following", detail, device=message.snapshot.device)
            return
        self.query_one(RunStatus).set_state("running", "t stops, p pauses", device=message.snapshot.device)

    def on_stats_updated(self, message: StatsUpdated) -> None:
        """Keep the newest statistics; the repaint timer draws them."""
        self._pending = message.snapshot

    def _repaint(self) -> None:
        """Draw the newest snapshot, if a new one arrived (at most REPAINT_HZ times a second)."""
        snap = self._pending
        if snap is None:
            return
        now, cpu = time.monotonic(), time.thread_time()
        if self.session is not None and self._last_paint is not None:
            wall0, cpu0 = self._last_paint
            if cpu - cpu0 > UI_BUDGET * (now - wall0) and now - wall0 < MAX_STALE_S:
                return  # the last frame is not paid for yet: the next tick tries again
        self._last_paint = (now, cpu)
        self._pending = None
        self.current = snap
        self.repaints += 1
        self.query_one(MonitorView).show(snap, self.errors)
        status = self.query_one(RunStatus)
        status.set_progress(snap)
        if self.session is not None and not self._quitting:
            state = "paused" if self.session.paused else "running"
            if status.state not in ("stopping",) and status.state != state:
                status.set_state(state, "p resumes" if state == "paused" else "t stops, p pauses")
        self._show_compare()

    def on_training_ended(self, message: TrainingEnded) -> None:
        """Training finished, stopped or failed: show how, keep the stack, record the run."""
        self.session = None
        if self.reading:
            self.reading = False
            self._recorded_ended(message)
            return
        self.last_summary = message.summary
        self.last_error = message.error
        self.last_trace = message.trace
        snap = message.snapshot or Snapshot(name=self.preset.name)
        snap.status = str(message.summary.get("status", "failed"))
        self._pending = None
        self.current = snap
        status = self.query_one(RunStatus)
        status.set_progress(snap)
        if message.error:
            line = Text("✖ training failed\n", "bold red")
            line.append(message.error, "red")
            where = _where(message.trace)
            if where:
                line.append(f"\n  {where}", "dim")
            line.append("\n  the stack is unchanged; fix the input and press t", "dim")
            self.errors = [line]
            status.set_state("failed", message.error)
            self.notify(message.error, title="Training failed", severity="error", timeout=12)
        else:
            steps = message.summary.get("steps", snap.steps_done)
            status.set_state(snap.status, f"{steps} steps; run directory {snap.out}")
        self.query_one(MonitorView).show(snap, self.errors)
        self._show_compare()
        if self._quitting:
            self.exit(self.return_code or 0)
        elif self.exit_after_train:
            from gradtui.session import stopped_at_nonfinite

            # a training stopped at a NaN/Inf is no success for a script either (as `gradtui run`)
            self.exit(1 if snap.status == "failed" or stopped_at_nonfinite(message.summary) else 0)

    def _recorded_ended(self, message: TrainingEnded) -> None:
        """A recorded run is read (or a followed one finished): draw it and say how it ended."""
        snap = message.snapshot or Snapshot(name=self.preset.name)
        self._pending = None
        self.current = snap
        status = self.query_one(RunStatus)
        status.set_progress(snap)
        steps = message.summary.get("steps", snap.steps_done)
        where = f"run directory {snap.out}"
        if snap.status == "incomplete":
            status.set_state("incomplete", f"{snap.steps_done} steps recorded, no summary.json; {where}")
        else:
            status.set_state(snap.status, f"{steps} steps; {where}", device=snap.device)
        if message.followed:
            self.finished_note = f"the run finished: {snap.status} after {steps} steps"
            self.notify(self.finished_note, title="Run finished", timeout=10)
        notes = self.run_source.notes() if self.run_source is not None else []
        if message.error:
            failed = not message.error.startswith(("stopped following", "cannot read the run"))
            line = Text("✖ the run failed\n" if failed else "✖ reading stopped\n", "bold red")
            line.append(plain(message.error), "red")
            self.errors = [line]
        for note in notes:  # what was skipped, why following stopped: on the screen and on exit
            if note != message.error:
                self.errors.append(Text(f"⚠ {note}", "yellow"))
                self.notify(note, title="Reading the run", severity="warning", timeout=12)
        if notes:
            self.finished_note = "; ".join([*([self.finished_note] if self.finished_note else []), *notes])
        self.query_one(MonitorView).show(snap, self.errors)
        self._show_compare()
        if self._quitting or self.exit_after_train:
            self.exit(0)

    def action_pause(self) -> None:
        """Pause or resume the training."""
        session = self.session
        status = self.query_one(RunStatus)
        if session is None:
            self.notify("nothing to pause: press t to train", severity="warning", timeout=3)
            return
        if session.paused:
            session.resume()
            status.set_state("running", "t stops, p pauses")
        else:
            session.pause()
            status.set_state("paused", "p resumes")

    def show_run(self, snapshot: Snapshot, previous: Snapshot | None = None) -> None:
        """Show a recorded run on the monitor (and ``previous`` beside it in the compare view)."""
        if previous is not None:
            self.runs.append(previous)
        self._pending = snapshot
        self._repaint()
        status = self.query_one(RunStatus)
        status.set_state(snapshot.status, f"{snapshot.steps_done} steps", device=snapshot.device)

    def _show_compare(self) -> None:
        before = self.runs[-1] if self.runs else None
        self.query_one(CompareView).show(before, self.current)

    # ------------------------------------------------------------------ fix

    def action_apply_fix(self) -> None:
        """Apply the remedy of the run's open diagnoses to the stack, as one change (what
        ``gradtui fix`` writes); a diagnosis highlighted with Enter applies its own fix alone."""
        diagnoses = self.query_one(WarningsPanel).diagnoses
        if not diagnoses:
            self.notify("no diagnosis to fix: train first (t)", severity="warning", timeout=4)
            return
        self.apply_remedy(diagnoses)

    def on_apply_fix(self, message: ApplyFix) -> None:
        """Change the stack as the diagnosis's fix says, ready to train again."""
        self.apply_diagnosis(message.diagnosis)

    def apply_diagnosis(self, diagnosis: Diagnosis) -> bool:
        """Apply ``diagnosis.fix`` to the stack; returns whether the stack changed."""
        return self.apply_remedy([diagnosis], single=True)

    def apply_remedy(self, diagnoses: list[Diagnosis], *, single: bool = False) -> bool:
        """Apply the fixes of ``diagnoses`` that still hold, merged into one consistent change
        (:func:`gradtui.remedy.apply_remedy`, as ``gradtui fix``); returns whether the stack changed."""
        from gradtui.remedy import apply_remedy, open_fixable

        if self.training:
            self.notify("stop the training first (t), then apply the fix", severity="warning", timeout=4)
            return False
        chosen = open_fixable([_held(d) for d in diagnoses] if single else diagnoses)
        if not chosen:
            advice = "; ".join(f"{d.kind}: {d.advice}" for d in diagnoses if single or d.cleared_step is None)
            self.notify(advice or "every diagnosis has cleared", title="No automatic fix", timeout=6)
            return False
        entries = sorted({i for d in chosen for i in (d.fix or {}).get("entries", [])})
        trained = self.trained_preset
        if trained is not None and any(
            i >= len(self.preset.layers)
            or i >= len(trained.layers)
            or self.preset.layers[i] != trained.layers[i]
            for i in entries
        ):
            # the entries the fix names were edited or moved since that run: applying it blindly
            # could change the wrong layers
            self.notify(
                "the stack changed since that run; the fix was: "
                + "; ".join(describe_fix(d.fix) for d in chosen),
                title="Fix not applied",
                severity="warning",
                timeout=8,
            )
            return False
        try:
            remedy = apply_remedy(self.preset, chosen)
        except GradtuiError as exc:
            self.notify(exc.one_line(), title="The fix does not fit this stack", severity="error")
            return False
        if not remedy.changes:
            self.notify("the stack already has that fix", title="Nothing changed", timeout=6)
            return False
        # the form shows the first entry the fix changed (qk_norm turned on, in its switch)
        self.set_preset(remedy.preset, cursor=min(entries) if entries else 0)
        kinds = ", ".join(dict.fromkeys(d.kind for d in remedy.applied))
        self.notify(
            "; ".join(remedy.changes) + " — press t to train again",
            title=f"Applied the fix for {kinds}",
            timeout=8,
            markup=False,
        )
        return True

    # ------------------------------------------------------------------ stack

    def set_preset(
        self, preset: Preset, *, saved: bool = False, path: str | None = None, cursor: int = 0
    ) -> None:
        """Make ``preset`` the stack (loaded, fixed or edited) and show it in the builder, entry
        ``cursor`` highlighted and in the layer form."""
        self.preset = preset
        self.stack_note = None
        if saved:
            self.saved_toml = preset.to_toml()
        if path is not None:
            self.preset_path = path
        self.query_one(BuilderView).show(preset, cursor=cursor)

    def on_stack_changed(self, message: StackChanged) -> None:
        """An edit in the builder."""
        self.preset = message.preset

    def save_to(self, path: str) -> str | None:
        """Save the stack as preset TOML at ``path``; returns an error message or ``None``."""
        target = Path(path).expanduser()
        if target.suffix != ".toml":
            target = target.with_suffix(".toml")
        preset = self._named_for(target)
        text = preset.to_toml()
        try:
            loads(text, source=str(target))  # what `gradtui run` will read back
            atomic_write(target, text)
        except GradtuiError as exc:
            return exc.one_line()
        except OSError as exc:
            return f"{target}: cannot write: {exc.strerror or exc}"
        if preset is not self.preset:  # renamed: the builder shows the new name, same cursor
            self.preset = preset
            builder = self.query_one(BuilderView)
            builder.show(preset, cursor=builder.index)
        self.saved_toml = text
        self.preset_path = str(target)
        if self.restored:
            self._forget_unsaved()
        self.notify(f"saved {plain(target)}", title="Saved", timeout=4, markup=False)
        return None

    def _named_for(self, target: Path) -> Preset:
        """The stack as it is saved at ``target``: an edited stack saved under another name
        takes the file's name, and its description says what it was edited from (the old one
        described the old stack); a stack saved unchanged, or onto its own file, keeps both."""
        if target.stem == self.preset.name or not self.dirty:
            return self.preset
        if self.preset_path and Path(self.preset_path).resolve() == target.resolve():
            return self.preset
        old = self.preset
        description = old.description
        if not description.startswith("edited from "):
            description = f"edited from {old.name}" + (f": {description}" if description else "")
        return dataclasses.replace(old, name=target.stem, description=description)

    def action_save(self) -> None:
        """Ask where to save the stack (ctrl+s)."""
        default = self.preset_path
        if not default or Path(default).parent == Path(__file__).resolve().parents[2] / "presets":
            default = f"{self.preset.name}.toml"
        self.push_screen(SaveDialog(default, self.save_to))

    def open_preset(self, name: str) -> str | None:
        """Load a preset by name or path into the builder; returns an error message or ``None``."""
        try:
            preset = load(name)
        except GradtuiError as exc:
            return exc.one_line()
        self.set_preset(preset, saved=True, path=name if name.endswith(".toml") else None)
        self.notify(f"loaded {plain(name)}", timeout=3, markup=False)
        self.action_tab("builder")
        return None

    def action_load(self) -> None:
        """Choose a preset to load into the builder."""
        self.push_screen(LoadDialog(self.open_preset))

    def action_leave_field(self) -> None:
        """Leave a form field (where letters are typed, not taken as keys) for the layer table."""
        focused = self.focused
        if focused is None or isinstance(self.screen, (SaveDialog, LoadDialog)):
            return
        if any(isinstance(node, (LayerForm, TrainForm)) for node in focused.ancestors):
            self.query_one("#layer-table").focus()

    def action_tab(self, tab: str) -> None:
        """Show the builder, monitor or compare tab."""
        self.query_one(TabbedContent).active = tab

    # ------------------------------------------------------------------ quit

    def _keep_unsaved(self) -> None:
        """Keep an unsaved stack for the next start instead of losing it."""
        if not self.dirty:
            if self.restored:
                self._forget_unsaved()
            return
        path = self.state / "unsaved.toml"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, self.preset.to_toml())
            self.kept_unsaved = path
        except OSError as exc:
            self.kept_unsaved = None
            self.notify(f"cannot keep the unsaved stack: {exc}", severity="error")

    def _forget_unsaved(self) -> None:
        try:
            (self.state / "unsaved.toml").unlink()
        except OSError:
            pass
        self.restored = False

    async def action_quit(self) -> None:
        """Quit; during training, stop the worker first and leave within two seconds."""
        if self.run_source is not None:
            self.run_source.stop()
        self._keep_unsaved()
        if self.session is None:
            self.exit(0)
            return
        if self._quitting:  # a second q: leave now
            self.exit(0)
            return
        self._quitting = True
        self.quit_requested = time.monotonic()
        self.quit_session = self.session
        self.session.stop()
        self.query_one(RunStatus).set_state("stopping", "stopping the training to quit…")
        self.set_timer(QUIT_GRACE_S, lambda: self.exit(0))


def create_app(
    preset: str | None = None,
    *,
    runs_root: str | Path = "runs",
    load_keras: bool = True,
    auto_train: bool = False,
    exit_after_train: bool = False,
    state: Path | None = None,
) -> GradtuiApp:
    """The one factory of the app, used by the CLI and the tests.

    Args:
        preset: a bundled preset's name or a ``.toml`` path; ``None`` restores the unsaved
            stack of the last session if there is one, else opens :data:`DEFAULT_PRESET`.
        runs_root: the folder run directories go in. Defaults to ``runs``.
        load_keras (bool): import TensorFlow in the background at start. Defaults to True.
        auto_train (bool): start training once the app is up. Defaults to False.
        exit_after_train (bool): exit when that training ends. Defaults to False.
        state: where an unsaved stack is kept. Defaults to :func:`state_dir`.

    Raises:
        GradtuiError: the preset cannot be loaded.
    """
    state = state if state is not None else state_dir()
    common: dict[str, Any] = {
        "runs_root": runs_root,
        "load_keras": load_keras,
        "auto_train": auto_train,
        "exit_after_train": exit_after_train,
        "state": state,
    }
    unsaved = state / "unsaved.toml"
    if preset is None and unsaved.is_file():
        try:
            restored = load(str(unsaved))
        except GradtuiError:
            restored = None  # a damaged leftover: open the default preset instead
        if restored is not None:
            return GradtuiApp(restored, dirty=True, **common)
    name = preset or DEFAULT_PRESET
    return GradtuiApp(load(name), preset_path=name if name.endswith(".toml") else None, **common)


def open_app(
    run_dir: str | Path,
    *,
    follow: bool = False,
    interval: float = 0.25,
    state: Path | None = None,
    load_keras: bool = False,
) -> GradtuiApp:
    """The app on a recorded run directory (``gradtui open``): the monitor, warnings and loss
    chart of the run, read once or followed until its ``summary.json`` appears.

    The builder holds the run's ``preset.toml`` when it has one that loads (``t`` trains it
    again once the run is read), else the default preset.

    Raises:
        GradtuiError: ``run_dir`` is not a run directory.
    """
    source = RunSource(run_dir, follow=follow, interval=interval)
    preset = source.preset
    path = str(source.path / "preset.toml") if preset is not None else None
    app = GradtuiApp(
        preset or load(DEFAULT_PRESET),
        preset_path=path,
        load_keras=load_keras,
        state=state if state is not None else state_dir(),
        source=source,
    )
    if preset is None:  # a run of gradtui.watch (or a damaged preset): its stack is not known
        app.stack_note = f"not this run's stack ({source.path.name} has no preset.toml)"
    return app


def compare_app(run_dirs: list[str | Path], *, state: Path | None = None) -> GradtuiApp:
    """The app's compare view on recorded runs (``gradtui compare --tui``); the view shows two
    runs side by side: the first and the last named.

    Raises:
        GradtuiError: one of them is not a run directory.
    """
    from gradtui.feed import snapshot_from_run

    snaps = [snapshot_from_run(d) for d in run_dirs]
    shown = [snaps[0], snaps[-1]] if len(snaps) > 1 else snaps
    return GradtuiApp(
        load(DEFAULT_PRESET),
        load_keras=False,
        state=state if state is not None else state_dir(),
        compare=shown,
    )


def _run_plain(app: GradtuiApp, headless: bool) -> int:
    if headless:
        code = app.run(headless=True)
    else:
        with screen_off_fd2(app.state / "tui-stderr.log"):
            code = app.run()
    return int(code or 0)


def run_open(run_dir: str | Path, *, follow: bool, headless: bool = False) -> int:
    """Run the app on a recorded run (``gradtui open``); returns the exit code."""
    app = open_app(run_dir, follow=follow)
    app.exit_after_train = headless  # leave once the run is read (or the followed run ended)
    code = _run_plain(app, headless)
    reader = app.run_source.reader if app.run_source is not None else None
    if not code and reader is not None:
        if reader.gone or (app.run_source is not None and app.run_source.error):
            code = 1  # the followed run was deleted or replaced: said so, and stopped
        elif not reader.usable() and not follow:
            code = 2  # nothing in it could be read: bad input, said in one line
    if app.finished_note:
        sys.stderr.write(f"gradtui: {'error: ' if code == 2 else ''}{app.finished_note}\n")
    return leave(code)


def run_compare(run_dirs: list[str | Path]) -> int:
    """Run the app's compare view on recorded runs (``gradtui compare --tui``)."""
    return _run_plain(compare_app(run_dirs), headless=False)


@contextlib.contextmanager
def screen_off_fd2(log: Path) -> Iterator[None]:
    """Give Textual its own copy of the terminal and point file descriptor 2 at ``log``.

    Textual draws on ``sys.__stderr__`` (fd 2). TensorFlow's C++ code writes to fd 2 too, and
    :func:`gradtui.build.import_keras` points fd 2 at /dev/null while it imports, which would
    blank the screen for those seconds. With the screen on a duplicate of the terminal's
    descriptor, nothing TensorFlow writes (or hides) touches the screen; it lands in ``log``.
    """
    original = sys.__stderr__
    if original is None:
        yield
        return
    try:
        original.flush()
        term_fd = os.dup(2)
        log.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError:
        yield
        return
    terminal = open(term_fd, "w", encoding=original.encoding, errors="replace", closefd=False)  # noqa: SIM115
    saved_err = sys.stderr
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.__stderr__ = terminal
    sys.stderr = terminal
    try:
        yield
    finally:
        terminal.flush()
        os.dup2(term_fd, 2)
        os.close(term_fd)
        sys.__stderr__ = original
        sys.stderr = saved_err


def finish_quit(app: GradtuiApp, limit: float = QUIT_LIMIT_S) -> None:
    """After ``q`` during training: let the stopped training finish its run directory, but
    return to the shell within ``limit`` seconds of the key press.

    Stopping takes Keras one step, then the epoch's validation (which traces a function the
    first time) and the final flush. If that is not done in time, the summary is written now
    with status ``interrupted`` (every drained record is already in ``stats.jsonl``) and the
    process leaves without waiting for the training thread, which Python would otherwise join.
    """
    session = app.quit_session
    if session is None:
        return
    deadline = app.quit_requested + limit
    while session.summary is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if session.summary is not None:
        return
    monitor = session.monitor
    try:
        if monitor is not None and monitor.run is not None:
            monitor.run.write_summary(monitor.summary("interrupted", error=None))
    except Exception:  # noqa: BLE001 - leaving promptly matters more; the run reads as incomplete
        pass


#: set by the ``gradtui`` program's entry points (``python -m gradtui``, the console script):
#: only there may :func:`leave` end the process at once
STANDALONE_ENV = "GRADTUI_STANDALONE"


def leave(code: int) -> int:
    """Return ``code``, or end the process at once when TensorFlow was imported.

    Python's teardown with TensorFlow loaded takes seconds (measured 2.5 s on 2 cores), and it
    joins a training thread that is still finishing: ``q`` must return to the shell within two
    seconds. Everything worth keeping is already written (run directories, the unsaved stack).
    """
    if "tensorflow" not in sys.modules or os.environ.get(STANDALONE_ENV) != "1":
        # not the gradtui program itself (a test's CliRunner, a user's script calling the
        # command): ending the process would end theirs too (it ended a test session with
        # exit status 0, the rest of its tests never run)
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


#: set by ``gradtui serve`` in each browser tab's process: the server's process id
PARENT_ENV = "GRADTUI_SERVED_BY"


def follow_parent(app: GradtuiApp, poll: float = 1.0, grace: float = QUIT_GRACE_S + 3.0) -> None:
    """In a process ``gradtui serve`` started for a browser tab: quit when the server is gone.

    textual-serve stops its tabs' processes when it shuts down, but a server that is killed
    outright (``kill -9``, a crashed container) leaves them running, TensorFlow loaded, with
    no one to see them. A thread watches the parent process id; when the server is gone, the
    app quits as ``q`` does (a training is stopped and its run directory finished), and the
    process ends ``grace`` seconds later at the latest.
    """
    served_by = os.environ.get(PARENT_ENV, "")
    if not served_by.isdigit():
        return

    def ask_quit() -> None:
        try:
            app.call_from_thread(app.action_quit)
        except Exception:  # noqa: BLE001 - the app may already be closing
            pass

    def watch() -> None:
        while os.getppid() == int(served_by):
            time.sleep(poll)
        # asked from a thread of its own: an app that never answers (an orphaned tab whose
        # render failed on the dead pipe ran on for minutes) must not keep the process alive
        threading.Thread(target=ask_quit, name="gradtui-quit", daemon=True).start()
        time.sleep(grace)
        if app.quit_session is None and app.session is not None:  # the quit never ran
            app.quit_session = app.session
        finish_quit(app, limit=0.0)  # the training's summary: "interrupted" if not done
        os._exit(0)

    threading.Thread(target=watch, name="gradtui-parent", daemon=True).start()


def run_app(preset: str | None, *, headless: bool, train: bool) -> int:
    """Run the TUI (the ``gradtui tui`` command); returns the exit code.

    With ``headless`` and ``train`` it trains once without a terminal, writes the run directory
    and returns 0 (1 when training failed). ``headless`` alone opens and closes the app.
    """
    try:
        app = create_app(preset, auto_train=train, exit_after_train=headless and train)
    except GradtuiError as exc:
        sys.stderr.write(f"gradtui: error: {exc.one_line()}\n")
        return 2
    app.exit_on_mount = headless and not train
    follow_parent(app)
    if headless:
        code = app.run(headless=True)
    else:
        with screen_off_fd2(app.state / "tui-stderr.log"):
            code = app.run()
    finish_quit(app)
    if app.kept_unsaved is not None:
        sys.stderr.write(
            f"gradtui: your unsaved stack is kept in {app.kept_unsaved}; "
            f"`gradtui` restores it, `gradtui tui {app.kept_unsaved}` opens it\n"
        )
    if app.last_error and headless:
        sys.stderr.write(f"gradtui: training failed: {app.last_error}\n")
    return leave(int(code or 0))
