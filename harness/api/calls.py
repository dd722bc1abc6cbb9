"""What every API function shares: the command recorded in the documents it writes, and Ctrl-C raised as
KeyboardInterrupt (the command line maps both to its exit codes)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

Say = Callable[[str], None]
"""Where a function's progress lines go (print in Python; the command line passes its own echo)."""


def call_text(name: str, **kwargs: Any) -> str:
    """`harness.compare(study='x')`: the call as written documents record it (the arguments that were given)."""
    given = ", ".join(f"{key}={value!r}" for key, value in kwargs.items() if value is not None)
    return f"harness.{name}({given})"


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """A sweep stopped by Ctrl-C (harness.search.exits.Interrupted: what was in flight is recorded and the
    study is resumable) raises KeyboardInterrupt with the same message, as Python code expects of Ctrl-C."""
    from harness.search.exits import Interrupted

    try:
        yield
    except Interrupted as stop:
        raise KeyboardInterrupt(str(stop)) from stop
