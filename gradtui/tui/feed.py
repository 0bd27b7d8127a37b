"""The screen's data (:class:`Snapshot` and its builders) lives in :mod:`gradtui.feed`, headless,
so UI-free sources can build it; this module keeps the names the widgets import."""

from gradtui.feed import (
    SERIES_POINTS,
    Clock,
    LayerRow,
    Snapshot,
    snapshot_from_history,
    snapshot_from_records,
    snapshot_from_run,
    weighted_names,
)

__all__ = [
    "SERIES_POINTS",
    "Clock",
    "LayerRow",
    "Snapshot",
    "snapshot_from_history",
    "snapshot_from_records",
    "snapshot_from_run",
    "weighted_names",
]
