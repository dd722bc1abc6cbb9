"""The command line as the tests run it (tests/forked_cli.py: forked from a server that imported it once) answers
as a new `python -m harness` process does: the same exit code, stdout and stderr, in the folder and with the
environment the test gives it."""

from __future__ import annotations

from pathlib import Path

import pytest

import forked_cli
from helpers import run_cli, start


@pytest.mark.integration
@pytest.mark.parametrize("args", [
    ["sweep", "--trials", "2", "--nonsense"],             # click's usage error names the program from __main__
    ["status", "--out", "no-such-folder"],                # a path relative to the command's working folder
    ["recommend", "--study", "x", "--out", "nowhere", "--quantization", "nf5"],
    ["--help"],
])
def test_a_forked_command_answers_as_a_new_process_does(args: list[str], tmp_path: Path) -> None:
    forked = run_cli(*args, cwd=tmp_path)
    fresh = run_cli(*args, cwd=tmp_path, fresh=True)
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert forked.args == fresh.args


@pytest.mark.integration
def test_a_forked_command_is_a_process_of_its_own_with_the_environment_it_was_given(tmp_path: Path) -> None:
    proc = start(["status", "--out", str(tmp_path)], env={"HARNESS_DEBUG": "1"})
    assert isinstance(proc, forked_cli.ForkedCommand)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "no study database" in err, (out, err)
    assert proc.pid not in (None, 0)
    # A variable Python or a library reads when it starts cannot be given to a forked command: a new process.
    assert not forked_cli.may_fork({"PYTHONPATH": "elsewhere"})
    assert forked_cli.may_fork({"HARNESS_INJECT_FAULTS": "0:die", "WANDB_MODE": "offline"})
    new = start(["--help"], env={"HOME": str(tmp_path)})
    assert not isinstance(new, forked_cli.ForkedCommand)
    assert new.communicate(timeout=120)[0] and new.returncode == 0


LEAVER = """
import sys, time
sys.path.insert(0, {tests!r})
import forked_cli
from multiprocessing import forkserver
command = forked_cli.start(["sweep", "-e", {exp!r}, "--study", "left", "--out", {out!r}, "--trials", "50"],
                           {env!r}, {cwd!r})
time.sleep(2)
assert command.poll() is None, "the command ended early"
print(command.pid, forkserver._forkserver._forkserver_pid, flush=True)
raise SystemExit(1)  # as a test process that ends with a test failed and its command still running
"""


@pytest.mark.integration
def test_a_test_process_that_ends_leaves_no_command_or_fork_server_running(tmp_path: Path) -> None:
    """stop_everything at exit: a command still running when its test process ends (a failed or timed-out test)
    and the fork server are ended with it, not left behind holding hundreds of MB each."""
    import os
    import subprocess
    import sys
    import time

    import psutil

    from helpers import REPO, fast_experiment

    env = {**os.environ, "HARNESS_INJECT_FAULTS": "0:slow"}
    script = LEAVER.format(tests=str(REPO / "tests"), exp=str(fast_experiment(tmp_path)), out=str(tmp_path / "o"),
                           env=env, cwd=str(REPO))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 1, done.stderr[-2000:]
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids):
        assert time.monotonic() < deadline, f"still running after their test process ended: {pids}"
        time.sleep(0.2)
