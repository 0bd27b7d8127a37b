"""The layer stack as a table: one row per ``[[layers]]`` entry, with parameters, σ² and the
entry's output shape (``8x8x16``, without the batch axis).

The ``units`` column holds what sizes the entry in its type's words (``16 3x3`` for a conv,
``/2`` for a pool, ``17→8`` for an embedding, ``4h×32 ffn512`` for a transformer block: heads ×
key_dim and the feed-forward units, ``ffn×4`` when left to the default); ``BN`` holds its
switches (``before``, ``res`` for residual, ``bi`` for bidirectional, ``seq`` for
return_sequences, ``pos`` for an embedding's positions; a transformer's norm ``pre``/``post``,
``qk`` for qk_norm, ``noncausal``).
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from gradtui.preset import CONV_TYPES, POOL_TYPES, RECURRENT_TYPES, WEIGHTED_TYPES, LayerSpec, Preset
from gradtui.tui.stackinfo import StackInfo

COLUMNS = ("#", "type", "units", "activation", "initializer", "BN", "repeat", "params", "σ²", "output")
#: the order columns are given room in as the table grows; the first five always show
PRIORITY = ("#", "units", "activation", "initializer", "type", "repeat", "params", "σ²", "BN", "output")
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


#: the widest an activation or initializer cell is drawn; the form shows the whole label
LABEL_W = 22


def _short(label: str) -> str:
    """``variance_scaling(scale=2, mode=fan_avg, …`` : a long label ends in an ellipsis."""
    return label if len(label) <= LABEL_W else label[: LABEL_W - 1] + "…"


def _size(value: int | tuple[int, ...]) -> str:
    return "x".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def _width(spec: LayerSpec) -> str:
    """The ``units`` cell: units, or what stands for them in the entry's type."""
    if spec.type in ("dense", *RECURRENT_TYPES):
        return str(spec.units)
    if spec.type in CONV_TYPES:
        k = spec.kernel_size or 1
        kernel = (
            _size(k) if isinstance(k, tuple) else "x".join([str(k)] * (1 if spec.type == "conv1d" else 2))
        )
        return f"{spec.filters} {kernel}"
    if spec.type in POOL_TYPES:
        return f"/{_size(spec.pool_size)}"
    if spec.type == "embedding":
        return f"{spec.input_dim}→{spec.output_dim}"
    if spec.type == "transformer":
        # key_dim and ffn_units unset are the loader's defaults: width/heads and 4x the width
        heads, key_dim, ffn = (getattr(spec, k, None) for k in ("heads", "key_dim", "ffn_units"))
        return f"{heads}h" + (f"×{key_dim}" if key_dim else "") + (f" ffn{ffn}" if ffn else " ffn×4")
    return ""


def _flags(spec: LayerSpec) -> str:
    """The ``BN`` cell: batch_norm, and the other switches of the entry (res, bi, seq)."""
    out = []
    if spec.batch_norm != "none" and spec.type in ("dense", *CONV_TYPES):
        out.append(spec.batch_norm)
    if spec.residual:
        out.append("res")
    if spec.bidirectional:
        out.append("bi")
    if spec.return_sequences:
        out.append("seq")
    if getattr(spec, "positions", False):
        out.append("pos")
    if spec.type == "transformer":
        out.append(str(getattr(spec, "norm", None) or "pre"))
        if getattr(spec, "qk_norm", False):
            out.append("qk")
        if getattr(spec, "causal", None) is False:
            out.append("noncausal")
    return " ".join(out)


def _cells(index: int, spec: LayerSpec, info: StackInfo, flagged: set[int]) -> list[Text | str]:
    weighted = spec.type in WEIGHTED_TYPES
    act = spec.activation.label() if spec.activation else ""
    if spec.type == "transformer":
        act = act or "gelu"  # its feed-forward activation, gelu unless the entry names one
    elif spec.type not in ("activation", *WEIGHTED_TYPES):
        act = f"rate {spec.rate:g}" if spec.type == "dropout" and spec.rate is not None else ""
    params = info.entry_params.get(index)
    var = info.entry_variance.get(index)
    out = info.entry_output.get(index)
    mark = Text(f"{index}", "bold yellow" if index in flagged else "")
    return [
        mark,
        spec.type,
        _width(spec),
        _short(act),
        _short(spec.initializer.label()) if weighted else "",
        _flags(spec),
        f"×{spec.repeat}" if spec.repeat > 1 else "1",
        f"{params:,}" if params is not None else "",
        f"{var:.3g}" if var is not None else "",
        "x".join(str(d) for d in out) if out else "",
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
