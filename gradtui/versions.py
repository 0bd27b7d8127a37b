"""The Keras and TensorFlow releases gradtui was tested on, and the check of its hooks at a watch.

gradtui wraps private parts of Keras and TensorFlow (:mod:`gradtui.keras_compat`). ``pyproject.toml``
allows every release from the oldest tested on (:data:`KERAS_OLDEST`, :data:`TF_OLDEST`) up to the
next major version; ``.ci/matrix`` runs the hook and ``watch`` tests on the oldest, a middle and the
newest pair. On a release newer than the newest tested gradtui still runs: it warns once
(:class:`UntestedVersionWarning`, naming the versions tested) and, at every ``watch``, checks
that each hook it wraps is there; a missing one is a :class:`MissingHookError` before anything is
recorded or written, never a silently wrong record.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from gradtui.errors import GradtuiError

#: the (TensorFlow, Keras) pairs ``.ci/matrix`` tests: newest, one between, oldest allowed
MATRIX = (
    ("2.21.0", "3.15.1"),
    ("2.19.1", "3.12.4"),
    ("2.16.2", "3.10.0"),
)


def minor(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a version string (``"3.15.1"``, ``"2.21.0rc1"``, ``"3.16.0.dev2026"``)."""
    parts = re.findall(r"\d+", version)[:2]
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 else (0, 0)


#: oldest and newest (major, minor) releases the hook and watch tests pass on
TF_OLDEST = min(minor(tf) for tf, _ in MATRIX)
TF_NEWEST = max(minor(tf) for tf, _ in MATRIX)
KERAS_OLDEST = min(minor(k) for _, k in MATRIX)
KERAS_NEWEST = max(minor(k) for _, k in MATRIX)

_warned = False


class UntestedVersionWarning(UserWarning):
    """Keras or TensorFlow is newer (or older) than the releases gradtui was tested on."""


class MissingHookError(GradtuiError, RuntimeError):
    """A private method or attribute gradtui wraps is not in the installed Keras/TensorFlow (a
    ``GradtuiError``: one line; ``gradtui run`` ends the run as failed after 0 steps, naming it)."""


def _name(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def tested_range() -> str:
    """The tested releases, as one phrase."""
    return (
        f"Keras {_name(KERAS_OLDEST)}-{_name(KERAS_NEWEST)} "
        f"and TensorFlow {_name(TF_OLDEST)}-{_name(TF_NEWEST)}"
    )


def untested(keras_version: str, tf_version: str) -> str | None:
    """Why this pair is outside the tested releases, or ``None`` where it is inside."""
    out = []
    for what, version, oldest, newest in (
        ("Keras", keras_version, KERAS_OLDEST, KERAS_NEWEST),
        ("TensorFlow", tf_version, TF_OLDEST, TF_NEWEST),
    ):
        v = minor(version)
        if v > newest:
            out.append(f"{what} {version} is newer than the newest tested ({_name(newest)})")
        elif v < oldest:
            out.append(f"{what} {version} is older than the oldest tested ({_name(oldest)})")
    return "; ".join(out) or None


def installed() -> tuple[str, str]:
    """The installed Keras and TensorFlow versions (imports both, in :mod:`gradtui.keras_compat`:
    the one module that imports Keras)."""
    from gradtui import keras_compat as kc

    return kc.installed_versions()


def warn_untested() -> bool:
    """Warn once per process where the installed Keras or TensorFlow is outside the tested
    releases. Returns whether this call warned."""
    global _warned
    if _warned:
        return False
    why = untested(*installed())
    if why is None:
        return False
    _warned = True
    warnings.warn(
        f"gradtui was tested with {tested_range()}: {why}. It checks the Keras internals it "
        "wraps at each watch and stops with an error if one is missing.",
        UntestedVersionWarning,
        stacklevel=3,
    )
    return True


def check(model: Any, optimizer: Any) -> None:
    """Warn once on untested releases; raise :class:`MissingHookError` (naming the missing hooks
    and the versions tested) where one is missing."""
    warn_untested()
    from gradtui import keras_compat as kc

    missing = kc.missing_hooks(model, optimizer)
    if missing:
        keras_version, tf_version = installed()
        raise MissingHookError(
            f"gradtui cannot record this training: Keras {keras_version} / TensorFlow {tf_version} "
            f"lacks {', '.join(missing)} (gradtui wraps it; tested with {tested_range()}). "
            "Install a tested Keras: pip install 'keras>="
            f"{_name(KERAS_OLDEST)},<{KERAS_NEWEST[0]}.{KERAS_NEWEST[1] + 1}'"
        )
