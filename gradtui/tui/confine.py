"""A served tab's files stay inside the folder ``gradtui serve`` was started in.

Whoever has a served tab is not the server's user: without a fence the load dialog read any file
the server's user can read (a TOML error quoting it) and the save dialog replaced any ``.toml``
it can write. ``gradtui serve`` gives each tab's process that folder in :data:`ROOT_ENV`; a
path typed there is resolved (``~``, ``..``, symbolic links) and refused unless it lies inside,
before anything is opened, with the same message whether or not it exists. A data file a
training would read (the builder's dataset, a loaded preset's) is held to the same folder (a
CSV error quotes a cell), except the one of the preset the server was started with.
"""

from __future__ import annotations

import os
from pathlib import Path

from gradtui.errors import GradtuiError
from gradtui.preset import DATA_SUFFIXES
from gradtui.text import plain

#: set by ``gradtui serve`` in each tab's process: the folder its dialogs may read and write
ROOT_ENV = "GRADTUI_SERVE_ROOT"

#: set by ``gradtui serve`` when its preset names a data file: that file, allowed wherever it is
DATA_ENV = "GRADTUI_SERVE_DATA"


def served_root() -> Path | None:
    """The folder a served tab is confined to, or ``None`` outside ``gradtui serve``."""
    value = os.environ.get(ROOT_ENV)
    return Path(value) if value else None


def confine(typed: str, root: Path) -> Path:
    """``typed`` (relative to ``root``) resolved, when it lies inside ``root``; else one line."""
    outside = GradtuiError(
        f"outside the folder this server serves ({plain(root)}); a served tab loads and saves only there",
        file=plain(typed),
    )
    try:
        base = root.resolve(strict=True)
        path = (base / Path(typed).expanduser()).resolve()
    except (OSError, RuntimeError, ValueError):  # a link loop, a NUL byte, no such root
        raise outside from None
    if not path.is_relative_to(base):
        raise outside
    return path


def data_refusal(dataset: str) -> str | None:
    """Why a served tab may not train on ``dataset`` (a data file outside its folder), or ``None``."""
    root = served_root()
    if root is None or not dataset.lower().endswith(DATA_SUFFIXES):
        return None
    allowed = os.environ.get(DATA_ENV)
    if allowed and os.path.abspath(os.path.expanduser(dataset)) == allowed:
        return None
    try:
        confine(dataset, root)
    except GradtuiError as exc:
        return exc.one_line()
    return None
