"""gradtui: see every layer's gradients while a Keras network trains, and fix what is wrong.

The package imports nothing heavy: ``gradtui.watch`` loads TensorFlow on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "watch"]

if TYPE_CHECKING:  # pragma: no cover
    from gradtui.monitor import Watch


def watch(model: Any, out: Any = None, every: int = 1, **kwargs: Any) -> Watch:
    """Instrument a Keras model so its own ``fit`` records a gradtui run directory.

    See :func:`gradtui.monitor.watch`.
    """
    from gradtui.monitor import watch as _watch

    return _watch(model, out=out, every=every, **kwargs)
