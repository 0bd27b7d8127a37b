"""The builder tab: the layer table with its buttons and pre-flight advice, the two forms."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, DataTable, Static

from gradtui.errors import GradtuiError
from gradtui.preset import SEQUENCE_DATASETS, Preset
from gradtui.text import plain
from gradtui.tui import edit
from gradtui.tui.messages import StackChanged
from gradtui.tui.stackinfo import StackInfo, stack_info
from gradtui.tui.widgets.advice_panel import AdvicePanel
from gradtui.tui.widgets.layer_form import LayerForm
from gradtui.tui.widgets.layer_table import LayerTable
from gradtui.tui.widgets.train_form import TrainForm

BUTTONS = (
    ("add", "+ Add", "add a layer after the highlighted one"),
    ("insert", "Insert", "insert a layer before the highlighted one"),
    ("duplicate", "Duplicate", "copy the highlighted layer"),
    ("delete", "Delete", "delete the highlighted layer"),
    ("up", "↑ Up", "move the highlighted layer up"),
    ("down", "↓ Down", "move the highlighted layer down"),
)


class FormsColumn(VerticalScroll):
    """The right column: the layer form and the training form.

    The column (its width and border) is there from the first paint; the forms are mounted into
    it just after (as Textual's ``Lazy`` does, but without moving the rest of the screen): their
    eighteen inputs and selects are most of the screen's widgets, and styling them took ~0.3 s
    before anything was drawn.
    """

    class Ready(Message):
        """The forms are mounted and can be filled."""

    #: whether the forms and every field in them are mounted (set once ``mount`` has returned)
    ready = False

    def on_mount(self) -> None:
        """Mount the forms once the first screen is drawn."""
        self.call_after_refresh(self._mount_forms)

    async def _mount_forms(self) -> None:
        if not self.is_attached:  # the app closed before its first refresh
            return
        if not self.is_mounted:  # the refresh came before this column finished mounting
            self.call_after_refresh(self._mount_forms)
            return
        await self.mount(LayerForm(id="layer-form"), TrainForm(id="train-form"))
        self.ready = True
        self.post_message(self.Ready())


class BuilderView(Widget):
    """Build the layer stack and its training settings; every valid edit posts StackChanged."""

    DEFAULT_CSS = """
    BuilderView { layout: horizontal; height: 1fr; }
    BuilderView #builder-left { width: 1fr; }
    BuilderView #builder-right { width: 58; border-left: vkey $secondary; padding: 0 1; }
    BuilderView.-medium #builder-right { width: 48; }
    BuilderView.-narrow #builder-right { width: 38; }
    BuilderView.-narrow #stack-buttons { margin: 0; }
    BuilderView #stack-title { height: 1; text-style: bold; color: $accent; }
    BuilderView #stack-buttons { height: 1; margin: 0 0 1 0; }
    BuilderView #stack-buttons Button { min-width: 8; margin-right: 1; height: 1; border: none; }
    BuilderView #builder-right TrainForm { margin-top: 1; }
    """

    BINDINGS = [
        Binding("a", "add", "Add"),
        Binding("i", "insert", "Insert", show=False),
        Binding("c", "duplicate", "Dup"),
        Binding("x,delete", "delete", "Delete"),
        Binding("left_square_bracket", "up", "Up"),
        Binding("right_square_bracket", "down", "Down"),
        Binding("e", "edit", "Edit", show=False),
    ]

    def __init__(self, preset: Preset, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.preset = preset
        self.info: StackInfo = stack_info(preset)

    def compose(self) -> ComposeResult:
        """Table, buttons and advice on the left; the layer form and the training form on the right."""
        with Vertical(id="builder-left"):
            yield Static("", id="stack-title")
            yield LayerTable(id="layer-table")
            with Horizontal(id="stack-buttons"):
                for key, label, tip in BUTTONS:
                    button = Button(label, id=f"btn-{key}", compact=True)
                    button.tooltip = tip
                    yield button
            yield AdvicePanel(id="advice")
        yield FormsColumn(id="builder-right")

    def on_mount(self) -> None:
        """Show the preset."""
        self.show(self.preset, cursor=0)

    def on_resize(self) -> None:
        """Narrow the forms column on a small terminal: the table keeps its main columns (see
        :class:`~gradtui.tui.widgets.layer_table.LayerTable`), the forms their labels."""
        width = self.size.width
        self.set_class(width < 100, "-narrow")
        self.set_class(100 <= width < 140, "-medium")
        self.call_after_refresh(self._title)  # once the title has its new width

    def on_forms_column_ready(self, event: FormsColumn.Ready) -> None:
        """The forms arrived after the first paint: fill them."""
        event.stop()
        self._fill_forms()

    @property
    def forms_ready(self) -> bool:
        """Whether the forms are mounted (they are, from just after the first paint)."""
        # every field, not only the forms or their first widget: a resize can redraw the table
        # (and highlight a row) between a form's mount and its compose, and a query for one
        # field ('#form-title') held while '#f-type' was not there yet (NoMatches, issue 21)
        # and still there: a Ready handled while the app closes finds them removed (NoMatches)
        columns = self.query(FormsColumn)
        return (
            bool(columns)
            and columns.first().ready
            and bool(self.query(LayerForm))
            and bool(self.query(TrainForm))
        )

    def _fill_forms(self) -> None:
        if self.forms_ready:
            self._show_entry(self.index)
            self.query_one(TrainForm).show(self.preset)

    def _show_entry(self, index: int) -> None:
        """Fill the layer form with entry ``index``."""
        # a transformer entry without ``causal`` is causal on next-character text (SPEC section 2)
        causal = self.preset.data.dataset in SEQUENCE_DATASETS
        self.query_one(LayerForm).show(index, self.preset.layers[index], causal_default=causal)

    # ------------------------------------------------------------------ display

    @property
    def table(self) -> LayerTable:
        """The layer table."""
        return self.query_one(LayerTable)

    @property
    def index(self) -> int:
        """The highlighted entry."""
        return max(0, min(self.table.cursor_row, len(self.preset.layers) - 1))

    def show(self, preset: Preset, cursor: int | None = None) -> None:
        """Show ``preset`` (a new stack loaded, a fix applied, an edit made)."""
        self.preset = preset
        self.info = stack_info(preset)
        self._title()
        self.table.show(preset, self.info, cursor)
        self.query_one(AdvicePanel).show(preset, self.info)
        self._fill_forms()

    def _apply(self, change: Callable[[], Preset], cursor: int | None = None) -> bool:
        """Run one edit; a refused edit is shown and leaves the stack as it was."""
        try:
            preset = change()
        except GradtuiError as exc:
            self.notify(exc.one_line(), title="Not changed", severity="warning")
            return False
        self.show(preset, cursor)
        self.post_message(StackChanged(preset))
        return True

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        index = event.cursor_row
        if not self.forms_ready:
            return  # filled with the highlighted layer once mounted
        form = self.query_one(LayerForm)
        # a redraw after an edit re-highlights the same row: leave the form as the user typed it
        if index != form.index and 0 <= index < len(self.preset.layers):
            self._show_entry(index)

    # ------------------------------------------------------------------ actions

    def action_add(self) -> None:
        """Add a layer after the highlighted one (before the output layer at the end)."""
        at = min(self.index + 1, len(self.preset.layers) - 1) if len(self.preset.layers) > 1 else 0
        self._apply(lambda: edit.insert_layer(self.preset, at), cursor=at)

    def action_insert(self) -> None:
        """Insert a layer before the highlighted one."""
        at = self.index
        self._apply(lambda: edit.insert_layer(self.preset, at), cursor=at)

    def action_duplicate(self) -> None:
        """Copy the highlighted layer right after itself."""
        at = self.index
        self._apply(lambda: edit.duplicate_layer(self.preset, at), cursor=at + 1)

    def action_delete(self) -> None:
        """Delete the highlighted layer."""
        at = self.index
        self._apply(lambda: edit.delete_layer(self.preset, at), cursor=at)

    def action_up(self) -> None:
        """Move the highlighted layer up."""
        at = self.index
        self._apply(lambda: edit.move_layer(self.preset, at, -1), cursor=max(0, at - 1))

    def action_down(self) -> None:
        """Move the highlighted layer down."""
        at = self.index
        last = len(self.preset.layers) - 1
        self._apply(lambda: edit.move_layer(self.preset, at, 1), cursor=min(last, at + 1))

    def action_edit(self) -> None:
        """Focus the layer form."""
        if self.forms_ready:
            self.query_one("#f-type").focus()

    @on(Button.Pressed, "#stack-buttons Button")
    def _button(self, event: Button.Pressed) -> None:
        event.stop()
        getattr(self, f"action_{(event.button.id or '').removeprefix('btn-')}")()

    @on(LayerForm.Edited)
    def _layer_edited(self, event: LayerForm.Edited) -> None:
        self._apply_edit(
            self.query_one(LayerForm),
            lambda: edit.replace_layer(self.preset, event.index, event.table),
            event.index,
        )

    @on(TrainForm.Edited)
    def _train_edited(self, event: TrainForm.Edited) -> None:
        self._apply_edit(
            self.query_one(TrainForm),
            lambda: edit.set_training(self.preset, event.data, event.train, event.every),
        )

    def _apply_edit(
        self, form: LayerForm | TrainForm, change: Callable[[], Preset], cursor: int | None = None
    ) -> None:
        """Apply a form's edit if the loader accepts it; otherwise show its error in the form."""
        try:
            preset = change()
        except GradtuiError as exc:
            form.error = exc.one_line().replace("builder: ", "")
            return
        form.error = ""
        self.preset = preset
        self.info = stack_info(preset)
        self.table.show(preset, self.info, cursor)
        self.query_one(AdvicePanel).show(preset, self.info)
        if isinstance(form, LayerForm) and self.forms_ready:
            self.query_one(TrainForm).follow_stack(preset)  # an output layer made linear: z_loss
        self._title()
        self.post_message(StackChanged(preset))

    def _title(self) -> None:
        n = sum(spec.repeat for spec in self.preset.layers)
        title = self.query_one("#stack-title", Static)
        params = f"{self.info.params.get('total', 0):,} parameters"
        name = plain(self.preset.name)  # the user's text: shown as it is, escapes as \x1b
        choices = [
            f"Stack: {name} — {len(self.preset.layers)} entries, {n} layers, {params}",
            f"Stack: {name} — {n} layers, {params}",
            f"Stack: {name} — {n} layers",
        ]
        note = getattr(self.app, "stack_note", None)
        if note:
            choices = [f"{c} — {note}" for c in choices] + choices[-1:]
        width = title.size.width or 10_000  # before the first layout: the longest
        title.update(Text(next((c for c in choices if len(c) <= width), choices[-1])))
