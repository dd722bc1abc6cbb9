"""The process's exit code for the exception that ended a command, in one table for `harness` (cli.main)
and each `--workers N` worker (workers.child): 0 success; 1 anything else; 2 bad input; 130 interrupted."""

from __future__ import annotations

from harness.config.errors import SpecError

OK = 0
FAILED = 1
"""Anything unexpected (one line on stderr, no traceback unless HARNESS_DEBUG is set)."""
BAD_INPUT = 2
"""A SpecError, or a usage error from the command-line parser (unknown flag, bad value)."""
INTERRUPTED = 130
"""Ctrl-C or SIGTERM (128 + SIGINT, as a shell reports it): what was in flight is recorded and resumable."""


class Interrupted(Exception):
    """Stopped by Ctrl-C or SIGTERM after recording the work in flight as interrupted (exit 130)."""


def exit_code(exc: BaseException) -> int:
    """The exit code for `exc`: 2 for bad input, 130 for an interruption, the parser's own code for its usage
    errors and exits (typer/click, matched by shape: typer bundles its own copy of click), else 1."""
    if isinstance(exc, SpecError):
        return BAD_INPUT
    if isinstance(exc, (KeyboardInterrupt, Interrupted)) or type(exc).__name__ == "Abort":
        return INTERRUPTED
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int) and (is_usage_error(exc) or type(exc).__name__ == "Exit"):
        return code
    return FAILED


def is_usage_error(exc: BaseException) -> bool:
    """A command-line parser's error that carries its own message and exit code (click's UsageError and kin)."""
    return hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)
