"""Widgets that redraw only while on screen.

A widget on a hidden tab that asks Textual to repaint makes the compositor lay out the whole
screen again (it is not among the visible widgets), every time: ~14 ms of the UI thread per
repaint here, with the builder's ~120 widgets. While training, that is time the training thread
waits for the GIL. These widgets keep their newest data and draw it when they are shown.
"""

from __future__ import annotations

from textual.geometry import Region


class DrawnWhenShown:
    """Mixin for a :class:`~textual.widget.Widget`: :meth:`redraw` instead of ``refresh``."""

    _on_screen = False
    _stale = False

    def redraw(self, *regions: Region, layout: bool = False) -> None:
        """Repaint now if on screen, else once the widget is shown."""
        if self._on_screen:
            self.refresh(*regions, layout=layout)  # type: ignore[attr-defined]
        else:
            self._stale = True

    def on_show(self) -> None:
        """Shown (its tab was chosen): draw what arrived while hidden."""
        self._on_screen = True
        if self._stale:
            self._stale = False
            self.refresh(layout=True)  # type: ignore[attr-defined]

    def on_hide(self) -> None:
        """Hidden (another tab was chosen)."""
        self._on_screen = False
