"""gradtui: see every layer's gradients while a Keras network trains, and fix what is wrong.

The package imports nothing heavy: ``gradtui.watch`` loads TensorFlow on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "watch"]

if TYPE_CHECKING:  # pragma: no cover
    from gradtui.monitor import Watch


def watch(
    model: Any,
    out: str | Path | None = None,
    every: int = 1,
    *,
    optimizer: Any = None,
    overwrite: bool = False,
    tensorboard: str | Path | None = None,
    histograms: bool = True,
    stop_on_nonfinite: bool = True,
    thresholds: Any = None,
) -> Watch:
    """Record a user's Keras training into a gradtui run directory, without changing it.

    Args:
        model: a Keras model whose weights exist: Sequential, functional or subclassed, nested
            blocks included, or a wrapper holding built sub-models (a GAN, a VAE, a distiller),
            built or not.
        out: the run directory to write. Defaults to ``runs/<timestamp>-<model name>``.
        every (int): record statistics every N optimizer steps. Defaults to 1.
        optimizer: the optimizer, or a list of optimizers, whose updates are recorded. Defaults
            to every optimizer the model holds (``model.optimizer``, a GAN's ``d_optimizer`` and
            ``g_optimizer``...). Naming it starts a background drain, for loops that never call
            ``fit``; leave the ``with`` block (or call ``monitor.close()``) to write
            ``summary.json``.
        overwrite (bool): write into an existing run directory. Defaults to False.
        tensorboard: also write TensorBoard event files into this folder. Defaults to None.
        histograms (bool): with ``tensorboard``, also write gradient and weight histograms
            (once an epoch; every 100 steps in a custom loop). False: scalars and diagnoses
            only, and the step keeps no copy of the raw gradients. Defaults to True.
        stop_on_nonfinite (bool): stop ``fit`` at the first NaN/Inf, with one line on stderr
            saying why. Defaults to True.
        thresholds: diagnosis thresholds (:class:`gradtui.preset.Thresholds`). Defaults to None.

    Returns:
        The monitor; ``monitor.diagnoses`` lists what was found so far. ``monitor.close()``
        gives back exactly what this watch took (``fit``, the optimizers' and layers' methods).

    Example:
        >>> monitor = gradtui.watch(model, out="runs/mine", every=1)
        >>> model.fit(x, y, epochs=3)
        >>> [d.kind for d in monitor.diagnoses]

        >>> with gradtui.watch(model, out="runs/loop", optimizer=opt) as monitor:
        ...     for x, y in dataset:
        ...         train_step(x, y)
    """
    from gradtui.monitor import watch as _watch

    return _watch(
        model,
        out=out,
        every=every,
        optimizer=optimizer,
        overwrite=overwrite,
        tensorboard=tensorboard,
        histograms=histograms,
        stop_on_nonfinite=stop_on_nonfinite,
        thresholds=thresholds,
    )
