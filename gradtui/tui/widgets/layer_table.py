"""The layer stack as a table: one row per ``[[layers]]`` entry, with parameters, σ² and the
entry's output shape (``8x8x16``, without the batch axis).

The ``units`` column holds what sizes the entry in its type's words (``16 3x3`` for a conv,
``/2`` for a pool, ``17→8`` for an embedding); ``BN`` holds its switches (``before``, ``res``
for residual, ``bi`` for bidirectional, ``seq`` for return_sequences).
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from gradtui.preset import CONV_TYPES, POOL_TYPES, RECURRENT_TYPES, WEIGHTED_TYPES, LayerSpec, Preset
from gradtui.tui.stackinfo import StackInfo

COLUMNS = ("#", "type", "units", "activation", "initializer", "BN", "repeat", "params", "σ²", "output")


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
    return " ".join(out)


def _cells(index: int, spec: LayerSpec, info: StackInfo, flagged: set[int]) -> list[Text | str]:
    weighted = spec.type in WEIGHTED_TYPES
    act = spec.activation.label() if spec.activation else ""
    if spec.type not in ("activation", *WEIGHTED_TYPES):
        act = f"rate {spec.rate:g}" if spec.type == "dropout" and spec.rate is not None else ""
    params = info.entry_params.get(index)
    var = info.entry_variance.get(index)
    out = info.entry_output.get(index)
    mark = Text(f"{index}", "bold yellow" if index in flagged else "")
    return [
        mark,
        spec.type,
        _width(spec),
        act,
        spec.initializer.label() if weighted else "",
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
