"""Names read from files (run folders, presets, layer names) made safe to show.

What is read from a file is data: never Rich markup, never a terminal control sequence, never
matplotlib math. Every place that shows such a name passes it through one of these helpers; Rich
output additionally wraps it in :class:`rich.text.Text` (never an f-string into markup).
"""

from __future__ import annotations

import unicodedata

__all__ = ["plain", "for_matplotlib"]


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(value: object, one_line: bool = True) -> str:
    """``value`` as text a terminal shows literally: control characters (ESC, BEL, C1 codes,
    bidi overrides…) become ``\\xNN``; with ``one_line`` newlines and tabs become spaces."""
    out = []
    for char in str(value):
        if char in "\n\r\t":
            out.append(" " if one_line else char)
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs") and char not in "\u200d":  # Cs: lone surrogates
            out.append(_escape(char))
        else:
            out.append(char)
    return "".join(out)


def for_matplotlib(value: object) -> str:
    """``value`` for a matplotlib title or label: :func:`plain`, with ``$`` escaped (matplotlib
    reads ``$…$`` as math and fails on what is not)."""
    return plain(value).replace("$", r"\$")
