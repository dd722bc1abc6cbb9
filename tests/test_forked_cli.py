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



@pytest.mark.integration
def test_what_a_test_process_leaves_running_is_ended_with_it(tmp_path: Path) -> None:
    """forked_cli.stop_everything, which runs when a test process ends (atexit, pytest_unconfigure): a command still
    running (a failed or timed-out test's), the processes it started and the fork server are ended, not left
    behind holding hundreds of MB each. The fork server is started again by the next command that needs it."""
    import time

    import psutil
    from multiprocessing import forkserver

    from helpers import fast_experiment

    command = start(["sweep", "-e", str(fast_experiment(tmp_path)), "--study", "left", "--out", str(tmp_path / "o"),
                     "--trials", "50"], env={"HARNESS_INJECT_FAULTS": "0:slow"})
    assert isinstance(command, forked_cli.ForkedCommand)
    time.sleep(3)
    assert command.poll() is None, "the command ended early"
    server = forkserver._forkserver._forkserver_pid
    pids = [command.pid, server, *(p.pid for p in psutil.Process(command.pid).children(recursive=True))]
    assert server is not None and set(pids) <= set(forked_cli.stop_everything())
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids):
        assert time.monotonic() < deadline, f"still running after stop_everything: {pids}"
        time.sleep(0.2)
    assert run_cli("--help").returncode == 0  # a new fork server for the next command
