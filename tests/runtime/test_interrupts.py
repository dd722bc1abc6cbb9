"""Ctrl-C ends a command within seconds even when its clean-up hangs (harness.runtime.interrupts)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from harness.runtime.interrupts import DEADLINE_NOTE
from harness.search.exits import INTERRUPTED

HUNG = """
import sys, time
from harness.runtime.interrupts import exit_within_deadline_on_ctrl_c
from harness.search.exits import INTERRUPTED
if sys.argv[1] == "deadline":
    exit_within_deadline_on_ctrl_c(INTERRUPTED, 1.5)
try:
    print("ready", flush=True)  # inside the try: a Ctrl-C that lands just after it is caught too
    time.sleep(60)
except KeyboardInterrupt:
    if sys.argv[2] == "hang":
        while True:  # a clean-up that never ends (a lock held when the signal landed, say)
            try:
                time.sleep(60)
            except KeyboardInterrupt:
                pass
    print("cleaned up", flush=True)
    sys.exit(130)
"""


def _interrupt(*args: str, timeout: float = 20) -> tuple[subprocess.CompletedProcess, float]:
    proc = subprocess.Popen([sys.executable, "-c", HUNG, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), time.monotonic() - sent


def test_a_clean_up_that_hangs_after_ctrl_c_is_cut_short_at_the_deadline() -> None:
    done, seconds = _interrupt("deadline", "hang")
    assert done.returncode == INTERRUPTED
    assert DEADLINE_NOTE.format(seconds=1.5) in done.stderr and "Traceback" not in done.stderr
    assert 1.4 <= seconds < 15


def test_without_the_deadline_the_same_clean_up_would_hang() -> None:
    """The control: the hang is real, so the test above measures the deadline, not a clean-up that ended."""
    try:
        _interrupt("none", "hang", timeout=4)  # 2.5x the deadline above
    except subprocess.TimeoutExpired:
        return
    raise AssertionError("the hung clean-up exited on its own: the deadline test would prove nothing")


def test_a_clean_up_that_ends_in_time_exits_as_it_chose() -> None:
    done, _ = _interrupt("deadline", "finish")
    assert done.returncode == 130 and done.stdout == "cleaned up\n"
    assert "clean-up did not finish" not in done.stderr
