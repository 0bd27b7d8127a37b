"""User-facing errors: one line, the file, the key, what is allowed."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Iterator


class GradtuiError(Exception):
    """An error caused by the user's input, shown as one line and exit code 2."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        self.detail = message
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The message as the single line the CLI prints: ``file: key: detail``."""
        parts = [p for p in (self.file, self.key) if p]
        parts.append(self.detail)
        return ": ".join(parts).replace("\n", " ")


@contextlib.contextmanager
def in_file(file: str | None) -> Iterator[None]:
    """Name ``file`` in any :class:`GradtuiError` raised inside that names no file yet.

    The model checks (output units against the data's classes, memory) know the key but not
    which preset file it came from; the caller does.
    """
    try:
        yield
    except GradtuiError as exc:
        if exc.file is None and file:
            exc.file = file
            exc.args = (exc.one_line(),)
        raise


class PresetError(GradtuiError):
    """A preset file that cannot be read or is not valid."""


class DataError(GradtuiError):
    """A data set that cannot be loaded or does not fit the model."""


class ModelTooLargeError(PresetError):
    """A model whose estimated memory exceeds what the machine has."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A `` (did you mean 'x'?)`` suffix for a misspelt name, or an empty string."""
    matches = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def one_of(choices: Iterable[str]) -> str:
    """``one of a, b, c`` for an error message."""
    return "one of " + ", ".join(str(c) for c in choices)
