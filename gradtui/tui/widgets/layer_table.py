"""The layer stack as a table: one row per ``[[layers]]`` entry, with parameters and σ²."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from gradtui.preset import LayerSpec, Preset
from gradtui.tui.stackinfo import StackInfo

COLUMNS = ("#", "type", "units", "activation", "initializer", "BN", "repeat", "params", "σ²")
#: the order columns are given room in as the table grows; the first five always show
PRIORITY = ("#", "units", "activation", "initializer", "type", "repeat", "params", "σ²", "BN")
#: a shorter header for a column whose cells are narrower than its name, on a narrow table
SHORT = {"activation": "act", "initializer": "init", "repeat": "rep"}
CELL_PAD = 2  # DataTable's cell padding, one column each side


def fit_columns(width: int, cells: list[list[str]]) -> list[tuple[str, str]]:
    """``(column, header)`` of the columns that fit ``width``, in table order.

    Columns are added in :data:`PRIORITY` order while they fit whole, so a narrow table drops
    σ², params and the like instead of cutting every column (``acti``, ``soft``); the first five
    always show, with short headers when the full ones would not fit.
    """

    def need(col: str, header: str) -> int:
        i = COLUMNS.index(col)
        return max([len(header), *(len(row[i]) for row in cells)]) + CELL_PAD

    core = PRIORITY[:5]
    headers = {c: c for c in COLUMNS}
    if sum(need(c, c) for c in core) > width:
        headers.update(SHORT)
    chosen = set(core)
    used = sum(need(c, headers[c]) for c in core)
    for col in PRIORITY[5:]:
        w = need(col, headers[col])
        if used + w <= width:
            chosen.add(col)
            used += w
    return [(c, headers[c]) for c in COLUMNS if c in chosen]


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
        self._shown: tuple[Preset, StackInfo] | None = None
        self._columns: list[tuple[str, str]] = []

    def on_resize(self) -> None:
        """Choose the columns again for the new width (the rows only if they change)."""
        if self._shown is not None and self._fit(self._rows(*self._shown)) != self._columns:
            self.show(*self._shown)

    @staticmethod
    def _rows(preset: Preset, info: StackInfo) -> list[list[Text | str]]:
        flagged = {a.entry for a in info.advice if a.entry is not None}
        return [_cells(i, spec, info, flagged) for i, spec in enumerate(preset.layers)]

    def _fit(self, rows: list[list[Text | str]]) -> list[tuple[str, str]]:
        # the scrollbar's columns are kept free so a long stack does not push the last column out
        width = self.scrollable_content_region.width - 2 if self.size.width else 10_000
        return fit_columns(width, [[str(c) for c in r] for r in rows])

    def show(self, preset: Preset, info: StackInfo, cursor: int | None = None) -> None:
        """Redraw every row for ``preset`` and keep the cursor on ``cursor`` (or where it was)."""
        self._shown = (preset, info)
        row = self.cursor_row if cursor is None else cursor
        rows = self._rows(preset, info)
        columns = self._fit(rows)
        keep = [COLUMNS.index(c) for c, _ in columns]
        if columns != self._columns:
            self.clear(columns=True)
            for name, header in columns:
                self.add_column(header, key=name)
            self._columns = columns
        else:
            self.clear()
        for i, cells in enumerate(rows):
            self.add_row(*(cells[k] for k in keep), key=str(i))
        if preset.layers:
            self.move_cursor(row=max(0, min(row, len(preset.layers) - 1)), animate=False)
