"""The line above the monitor: state, progress with steps/epoch/ETA, device, run directory."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from gradtui.text import plain
from gradtui.tui.feed import Snapshot
from gradtui.tui.render import fmt_duration, progress_bar

STATE_STYLE = {
    "loading": "yellow",
    "ready": "green",
    "starting": "yellow",
    "running": "bold green",
    "paused": "bold yellow",
    "stopping": "yellow",
    "completed": "green",
    "stopped": "yellow",
    "failed": "bold red",
    "interrupted": "yellow",
    "reading": "yellow",
    "following": "bold cyan",
    "incomplete": "yellow",
}


class RunStatus(Static):
    """What the app is doing: loading TensorFlow, ready, training (with progress), done, failed."""

    DEFAULT_CSS = """
    RunStatus { height: 2; padding: 0 1; background: $boost; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = "loading"
        self.detail = "loading TensorFlow in the background…"
        self.device = ""
        self.snapshot: Snapshot | None = None

    def set_state(self, state: str, detail: str = "", *, device: str | None = None) -> None:
        """Change the state line (``loading``, ``ready``, ``running``, ``failed``...)."""
        self.state = state
        self.detail = detail
        if device is not None:
            self.device = device
        self._draw()

    def set_progress(self, snapshot: Snapshot) -> None:
        """Show a run's progress."""
        self.snapshot = snapshot
        if snapshot.device:
            self.device = snapshot.device
        self._draw()

    def _draw(self) -> None:
        text = Text()
        text.append(f"● {self.state}", STATE_STYLE.get(self.state, ""))
        if self.detail:
            text.append(f"  {plain(self.detail)}", "dim" if self.state != "failed" else "red")
        text.append(f"   device: {plain(self.device or '…')}", "cyan")
        text.append("\n")
        s = self.snapshot
        if s is not None and s.total_steps:
            done = min(s.steps_done, s.total_steps)
            text.append(f"{plain(s.name)}  ", "bold")
            # at 80 columns the bar shrinks and the elapsed time goes, so that the loss still shows
            wide = self.size.width >= 110
            text.append_text(progress_bar(done, s.total_steps, 30 if wide else 10))
            text.append(f" step {done}/{s.total_steps}")
            epochs = f"/{s.epochs}" if s.epochs else ""
            text.append(f"  epoch {s.epoch + 1}{epochs}")
            if wide:
                text.append(f"  elapsed {fmt_duration(s.elapsed)}")
            text.append(f"  ETA {fmt_duration(s.eta)}")
            if s.loss:
                text.append(f"  loss {s.loss[-1]:.4g}")
            if s.out:
                text.append(f"  → {plain(s.out)}", "dim")
        else:
            text.append("press t to train the stack; q quits", "dim")
        self.update(text, layout=False)  # two lines, always: each cut (…), never wrapped

    def on_resize(self) -> None:
        """Lay the progress line out again for the new width."""
        self._draw()
