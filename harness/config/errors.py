"""Errors in what the user wrote: SpecError (a bad value in a config, flag or file, one line naming the
field and the fix; the command line prints it and exits 2), and the checks every spec builds on."""

from __future__ import annotations


class SpecError(ValueError):
    """A bad value in a config, flag or file. Its message is one line that names the field."""


def one_line(err: BaseException | str, limit: int = 300) -> str:
    """An exception as `Type: first line of its message` (a message string: its first line), at most `limit`
    characters: how errors are shown in records, notes and one-line failures."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, str):
        return text[:limit]
    line = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return line[:limit]


def check(cond: bool, message: str) -> None:
    """Raise SpecError(message) unless cond holds."""
    if not cond:
        raise SpecError(message)


def positive(name: str, value: float) -> None:
    """A positive number (not a bool), else SpecError naming the field."""
    check(isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0,
           f"{name} must be a positive number, got {value!r}")
