"""Names from files are shown as text: no control sequence, no markup, no math."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from gradtui.text import for_matplotlib, plain


def test_control_sequences_become_visible_escapes() -> None:
    name = "run\x1b]0;pwned\x07\x1b[2J\x9b"
    shown = plain(name)
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert shown == "run\\x1b]0;pwned\\x07\\x1b[2J\\x9b"


def test_newlines_and_tabs_keep_one_line_unless_asked() -> None:
    assert plain("a\nb\tc") == "a b c"
    assert plain("a\nb", one_line=False) == "a\nb"
    assert plain("\u202eevil") == "\\u202eevil"  # a bidi override is a control too


def test_markup_is_text_once_wrapped() -> None:
    console = Console(record=True, width=80, color_system=None)
    console.print(Text(plain("[link=file:///etc]x[/] [/]")))
    assert "[link=file:///etc]x[/] [/]" in console.export_text()


def test_dollars_are_not_matplotlib_math() -> None:
    assert for_matplotlib("cost $5 $x$") == r"cost \$5 \$x\$"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_title(for_matplotlib("$\\frac{$"))
    fig.canvas.draw()  # raised ValueError on unescaped broken math
    plt.close(fig)
