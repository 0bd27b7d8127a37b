"""The layer stack as a table: one row per ``[[layers]]`` entry, with parameters and σ²."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from gradtui.preset import LayerSpec, Preset
from gradtui.tui.stackinfo import StackInfo

COLUMNS = ("#", "type", "units", "activation", "initializer", "BN", "repeat", "params", "σ²")


def _cells(index: int, spec: LayerSpec, info: StackInfo, flagged: set[int]) -> list[Text | str]:
    dense = spec.type == "dense"
    act = spec.activation.label() if spec.activation else ""
    if spec.type not in ("dense", "activation"):
        act = f"rate {spec.rate:g}" if spec.type == "dropout" and spec.rate is not None else ""
    params = info.entry_params.get(index)
    var = info.entry_variance.get(index)
    mark = Text(f"{index}", "bold yellow" if index in flagged else "")
    return [
        mark,
        spec.type,
        str(spec.units) if dense else "",
        act,
        spec.initializer.label() if dense else "",
        spec.batch_norm if dense and spec.batch_norm != "none" else "",
        f"×{spec.repeat}" if spec.repeat > 1 else "1",
        f"{params:,}" if params is not None else "",
        f"{var:.3g}" if var is not None else "",
    ]


class LayerTable(DataTable):
    """The ``[[layers]]`` entries of the stack; the highlighted row is the one being edited.

    Rows with pre-flight advice are marked in yellow.
    """

    DEFAULT_CSS = """
    LayerTable {
        height: 1fr;
        min-height: 6;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        """Create the columns."""
        for name in COLUMNS:
            self.add_column(name, key=name)

    def show(self, preset: Preset, info: StackInfo, cursor: int | None = None) -> None:
        """Redraw every row for ``preset`` and keep the cursor on ``cursor`` (or where it was)."""
        row = self.cursor_row if cursor is None else cursor
        flagged = {a.entry for a in info.advice if a.entry is not None}
        self.clear()
        for i, spec in enumerate(preset.layers):
            self.add_row(*_cells(i, spec, info, flagged), key=str(i))
        if preset.layers:
            self.move_cursor(row=max(0, min(row, len(preset.layers) - 1)), animate=False)
