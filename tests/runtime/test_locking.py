"""harness.runtime.locking.file_lock: one holder at a time, across threads and processes."""

from __future__ import annotations

import threading
from pathlib import Path

from harness.runtime.locking import file_lock


def test_a_second_holder_waits_until_the_first_lets_go(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    entered, leave = threading.Event(), threading.Event()

    def other() -> None:
        with file_lock(lock):
            entered.set()
            leave.wait(10)

    with file_lock(lock):
        thread = threading.Thread(target=other)
        thread.start()
        assert not entered.wait(0.3)  # blocked while held here
    assert entered.wait(10)
    leave.set()
    thread.join(10)


def test_the_lock_file_is_created_with_its_folders_and_never_truncated(tmp_path: Path) -> None:
    lock = tmp_path / "a" / "b" / "x.lock"
    with file_lock(str(lock)):
        assert lock.exists()
    lock.write_text("kept")
    with file_lock(lock):
        pass
    assert lock.read_text() == "kept"
