"""Budgets a user writes on the command line: memory (`--max-memory-mb`) and wall time (`--time-budget`).

One home for their rules, so every command that takes one accepts the same values and refuses the rest with
the same one-line SpecError (exit 2 on the command line)."""

from __future__ import annotations

import math
import re

from harness.config.errors import SpecError

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")


def memory_budget(value: object, flag: str = "--max-memory-mb") -> float | None:
    """A memory budget in MiB: None (no budget) or a positive, finite number; anything else is a SpecError
    naming the flag (`--max-memory-mb -1` used to be accepted and recorded as -1.0)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise SpecError(f"{flag} must be a positive number of MiB (the peak memory a trial may use), got {value!r}")
    return float(value)


def study_budget(value: object, pinned: float | None, study: str, flag: str = "--max-memory-mb") -> float | None:
    """The memory budget of a command that runs more trials in an existing study (`worker`, `compare`'s
    confirmations): the study's own, pinned when it was created so that its trials are measured alike. `value`
    is checked as `memory_budget` checks it; one that differs from the study's is a SpecError naming both."""
    budget = memory_budget(value, flag)
    if budget is not None and budget != pinned:
        theirs = f"{pinned:g} MiB" if pinned is not None else "none"
        fix = f"give {flag} {pinned:g} or leave it out" if pinned is not None else f"leave {flag} out"
        raise SpecError(f"{flag} {budget:g}: study {study!r} runs its trials under the memory budget it was created "
                        f"with ({theirs}), so that they are measured alike; {fix}")
    return pinned


def duration_seconds(text: object, flag: str = "--time-budget") -> float | None:
    """A wall-time budget in seconds from `90`, `90s`, `20m`, `2h` or `1h30m`; None passes through; zero,
    negative or unreadable values are a SpecError naming the flag."""
    if text is None:
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match or not any(match.groups()):
            raise SpecError(f"{flag} {text!r}: write a duration such as 90s, 20m, 2h or 1h30m")
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if not math.isfinite(seconds) or seconds <= 0:
        raise SpecError(f"{flag} must be a positive duration, got {text!r}")
    return seconds
