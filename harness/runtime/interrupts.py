"""Ctrl-C ends the command within seconds, whatever else the machine runs.

The first Ctrl-C raises KeyboardInterrupt as Python's own handler does: the sweep records the trial in flight as
interrupted and the command exits 130. That clean-up is short (a few database writes), but it cannot be bounded:
under load a process may wait on a lock a thread held when the signal landed, or spend seconds in the interpreter's
final garbage collection (py-spy on `harness validate` after Ctrl-C, 2 cores busy with 3 other processes:
`gc_collect_main` during finalization for most of 12.8 s). So the first Ctrl-C also starts a deadline: if the
command has not exited EXIT_DEADLINE_SECONDS later, it says so in one line and exits 130 at once. The study stays
resumable either way: a trial left RUNNING is recovered as lost by the next command on the study (its heartbeat
stopped), as after a killed process. A second Ctrl-C exits at once, as before.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from typing import Any

EXIT_DEADLINE_SECONDS = 15.0
"""Seconds from the first Ctrl-C to a forced exit (130) when the clean-up has not ended by then."""

DEADLINE_NOTE = ("harness: interrupted: clean-up did not finish within {seconds:g} s of Ctrl-C; exiting now (the study "
                 "is resumable: a trial left running is recovered as lost by the next command on it)")


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or broken stream must not stop the exit
            pass


def _exit_after(seconds: float, code: int) -> None:
    """In a daemon thread: exit the process with `code` `seconds` from now unless it has exited by then."""
    def deadline() -> None:
        _flush()
        try:
            os.write(2, (DEADLINE_NOTE.format(seconds=seconds) + "\n").encode())
        finally:
            os._exit(code)

    timer = threading.Timer(seconds, deadline)
    timer.daemon = True
    timer.start()


def exit_within_deadline_on_ctrl_c(code: int, seconds: float = EXIT_DEADLINE_SECONDS) -> Any:
    """Install the command line's Ctrl-C handler in the main thread: KeyboardInterrupt as usual, plus a deadline
    for the exit that follows, which exits with `code` (harness.search.exits.INTERRUPTED; see the module
    docstring). Returns the previous handler (None off the main thread,
    where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    started = threading.Event()

    def on_ctrl_c(signum: int, frame: Any) -> None:
        if not started.is_set():
            started.set()
            _exit_after(seconds, code)
        raise KeyboardInterrupt

    return signal.signal(signal.SIGINT, on_ctrl_c)


def fast_exit_collection() -> None:
    """Spare the interpreter's final garbage collection, which walks every object torch, transformers and optuna
    made (seconds under load, after Ctrl-C or not): everything alive now is frozen out of the collector. Call just
    before the process exits; objects' own finalizers and atexit functions still run."""
    gc.freeze()
