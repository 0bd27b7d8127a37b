"""The training settings: data set, optimizer, learning rate, clipping, epochs, batch, seed, monitor.

For the generated regression task (``adding``) the form also shows its ``[data] length`` and the
``[train] loss`` (mse or mae); for the ``text`` data set its context ``length`` and ``source`` (a
``.txt`` file; empty: the standard library's ``.py`` files). ``z_loss`` (the auxiliary loss on
the output logits' log Z) shows for a stack whose output layer is linear (its logits), when the
preset loader knows the key.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label, Select, Static

from gradtui.preset import (
    EPSILON_OPTIMIZERS,
    NAMED_DATASETS,
    OPTIMIZERS,
    REGRESSION_DATASETS,
    REGRESSION_LOSSES,
    SCHEDULES,
    SEQUENCE_DATASETS,
    TRAIN_KEYS,
    Preset,
)
from gradtui.tui.widgets.layer_form import _num

#: the clipping choices and the ``[train]`` key each one sets
CLIPPING = {"none": None, "value": "clipvalue", "norm": "clipnorm", "global norm": "global_clipnorm"}


class TrainForm(VerticalScroll):
    """Edit ``[data]``, ``[train]`` and ``[monitor] every``; valid changes apply at once."""

    #: in a field, letters are typed, not keys: the footer says how to get the keys back
    BINDINGS = [Binding("escape", "app.leave_field", "Leave field (keys)")]

    DEFAULT_CSS = """
    TrainForm { height: auto; max-height: 100%; }
    TrainForm .field { height: 1; }
    TrainForm .field > Label { width: 15; padding: 0 1 0 0; text-align: right; color: $text-muted; }
    TrainForm .field > Input { width: 1fr; }
    TrainForm .field > Select { width: 1fr; }
    TrainForm #train-error { color: $error; height: auto; }
    TrainForm #train-title { text-style: bold; color: $accent; }
    """

    class Edited(Message):
        """The settings now read ``data``, ``train`` and ``every`` (not yet validated)."""

        def __init__(self, data: dict[str, Any], train: dict[str, Any], every: Any) -> None:
            self.data = data
            self.train = train
            self.every = every
            super().__init__()

    def compose(self) -> ComposeResult:
        """The fields."""
        yield Static("Training", id="train-title")
        yield from self._field(
            "dataset",
            Input(
                id="t-dataset",
                placeholder="digits, spiral, ... or a .npz/.csv path",
                suggester=SuggestFromList(NAMED_DATASETS),
            ),
        )
        yield from self._field("val split", Input(id="t-validation_split"))
        # the generated regression task (adding) has a length and a loss of its own to choose
        yield from self._field("  length", Input(id="t-length", type="integer"))
        yield from self._field(
            "  loss", Select([(x, x) for x in REGRESSION_LOSSES], allow_blank=False, id="t-loss")
        )
        yield from self._field("  source", Input(id="t-source", placeholder="stdlib .py files"))
        yield from self._field(
            "optimizer", Select([(o, o) for o in OPTIMIZERS], allow_blank=False, id="t-optimizer")
        )
        yield from self._field("learning rate", Input(id="t-learning_rate"))
        yield from self._field("momentum", Input(id="t-momentum"))
        yield from self._field("  epsilon", Input(id="t-epsilon", placeholder="1e-07 (Keras)"))
        yield from self._field("weight decay", Input(id="t-weight_decay", placeholder="default"))
        yield from self._field("warm-up steps", Input(id="t-warmup_steps", type="integer"))
        yield from self._field(
            "schedule", Select([(x, x) for x in SCHEDULES], allow_blank=False, id="t-schedule")
        )
        yield from self._field("z-loss", Input(id="t-z_loss", placeholder="0 (off), e.g. 1e-4"))
        yield from self._field(
            "clipping", Select([(c, c) for c in CLIPPING], allow_blank=False, id="t-clipping")
        )
        yield from self._field("  threshold", Input(id="t-clip"))
        yield from self._field("epochs", Input(id="t-epochs", type="integer"))
        yield from self._field("batch size", Input(id="t-batch_size", type="integer"))
        yield from self._field("seed", Input(id="t-seed", type="integer"))
        yield from self._field("max steps", Input(id="t-max_steps", type="integer", placeholder="all"))
        yield from self._field("record every", Input(id="t-every", type="integer"))
        yield Static("", id="train-error")

    def _field(self, label: str, widget: Input | Select) -> ComposeResult:
        with Horizontal(classes="field", id=f"row-{(widget.id or '')[2:]}"):
            yield Label(label)
            widget.compact = True
            yield widget

    def show(self, preset: Preset) -> None:
        """Fill the form from ``preset`` without sending any change back."""
        t, d = preset.train, preset.data
        clip = next((name for name, key in CLIPPING.items() if key and getattr(t, key) is not None), "none")
        clip_value = getattr(t, CLIPPING[clip]) if CLIPPING[clip] else None
        values = {
            "#t-dataset": d.dataset,
            "#t-validation_split": f"{d.validation_split:g}",
            "#t-learning_rate": f"{t.learning_rate:g}",
            "#t-momentum": f"{t.momentum:g}",
            "#t-clip": f"{clip_value:g}" if clip_value is not None else "",
            "#t-epochs": str(t.epochs),
            "#t-batch_size": str(t.batch_size),
            "#t-seed": str(t.seed),
            "#t-max_steps": str(t.max_steps) if t.max_steps else "",
            "#t-every": str(preset.monitor.every),
            "#t-length": str(d.length),
            "#t-epsilon": f"{t.epsilon:g}" if t.epsilon is not None else "",
            "#t-weight_decay": f"{t.weight_decay:g}" if t.weight_decay is not None else "",
            "#t-warmup_steps": str(t.warmup_steps),
            "#t-z_loss": f"{z:g}" if (z := getattr(t, "z_loss", None)) else "",
            "#t-source": d.source or "",
        }
        with self.prevent(Input.Changed, Select.Changed):
            for selector, value in values.items():
                self.query_one(selector, Input).value = value
            self.query_one("#t-optimizer", Select).value = t.optimizer
            self.query_one("#t-clipping", Select).value = clip
            self.query_one("#t-schedule", Select).value = t.schedule
            if preset.loss in REGRESSION_LOSSES:
                self.query_one("#t-loss", Select).value = preset.loss
        self.query_one("#row-clip").display = clip != "none"
        self.query_one("#row-epsilon").display = t.optimizer in EPSILON_OPTIMIZERS
        self._arrange_regression(d.dataset)
        self.follow_stack(preset)
        self.error = ""
        self.shown = True

    def follow_stack(self, preset: Preset) -> None:
        """Show the fields that depend on the layer stack: ``z_loss`` acts on the output layer's
        logits, so it shows for a linear output layer (or when it is set)."""
        last = preset.layers[-1] if preset.layers else None
        logits = last is not None and last.activation_name == "linear"
        z_loss = getattr(preset.train, "z_loss", None)
        self.query_one("#row-z_loss").display = "z_loss" in TRAIN_KEYS and (logits or bool(z_loss))

    @property
    def error(self) -> str:
        """The validation error shown under the form."""
        return str(self.query_one("#train-error", Static).content)

    @error.setter
    def error(self, text: str) -> None:
        self.query_one("#train-error", Static).update(Text(text))  # it quotes what was typed: never markup

    def tables(self) -> tuple[dict[str, Any], dict[str, Any], Any]:
        """``(data, train, every)`` in their TOML form, from the fields."""

        def val(name: str) -> str:
            return str(self.query_one(f"#t-{name}", Input).value).strip()

        data: dict[str, Any] = {"dataset": val("dataset"), "validation_split": _num(val("validation_split"))}
        regression = data["dataset"] in REGRESSION_DATASETS
        if regression:
            data["length"] = _num(val("length") or "50")
        if data["dataset"] in SEQUENCE_DATASETS:
            data["length"] = _num(val("length") or "64")
            data["source"] = val("source") or None  # none: the standard library's .py files
        optimizer = str(self.query_one("#t-optimizer", Select).value)
        train: dict[str, Any] = {
            "optimizer": optimizer,
            "learning_rate": _num(val("learning_rate")),
            "epochs": _num(val("epochs")),
            "batch_size": _num(val("batch_size")),
            "seed": _num(val("seed")),
        }
        momentum = _num(val("momentum") or "0")
        if momentum != 0 or optimizer in ("sgd", "rmsprop"):
            train["momentum"] = momentum
        clip_key = CLIPPING[str(self.query_one("#t-clipping", Select).value)]
        if clip_key:
            train[clip_key] = _num(val("clip") or "1.0")
        if val("max_steps"):
            train["max_steps"] = _num(val("max_steps"))
        if optimizer in EPSILON_OPTIMIZERS and val("epsilon"):
            train["epsilon"] = _num(val("epsilon"))
        if val("weight_decay"):
            train["weight_decay"] = _num(val("weight_decay"))
        train["warmup_steps"] = _num(val("warmup_steps") or "0")
        train["schedule"] = str(self.query_one("#t-schedule", Select).value)
        if "z_loss" in TRAIN_KEYS and val("z_loss"):
            train["z_loss"] = _num(val("z_loss"))
        if regression:
            train["loss"] = str(self.query_one("#t-loss", Select).value)
        return data, train, _num(val("every") or "1")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.shown = False

    def _changed(self) -> None:
        if not self.shown:  # the fields' own start-up events, before the preset is shown
            return
        clipping = str(self.query_one("#t-clipping", Select).value)
        self.query_one("#row-clip").display = clipping != "none"
        self.query_one("#row-epsilon").display = (
            self.query_one("#t-optimizer", Select).value in EPSILON_OPTIMIZERS
        )
        self._arrange_regression(str(self.query_one("#t-dataset", Input).value).strip())
        self.post_message(self.Edited(*self.tables()))

    def _arrange_regression(self, dataset: str) -> None:
        """The data set's own fields: length and loss for regression, context and source for text."""
        regression = dataset in REGRESSION_DATASETS
        text = dataset in SEQUENCE_DATASETS
        self.query_one("#row-length").display = regression or text
        self.query_one("#row-length Label", Label).update("  context" if text else "  length")
        self.query_one("#row-loss").display = regression
        self.query_one("#row-source").display = text

    def on_select_changed(self, event: Select.Changed) -> None:
        """A choice changed: send the settings."""
        event.stop()
        self._changed()

    def on_input_changed(self, event: Input.Changed) -> None:
        """A value was typed: send the settings."""
        event.stop()
        self._changed()
