"""`python -m harness ARGS` without paying Python's start-up and harness's imports again for every command a test
runs: the command runs in a process forked from a server that imported them once per test process.

A new `harness` process spends about 1.5-2 s of a core importing typer, optuna, torch and transformers, and its
trial worker 3-5 s more importing those and peft and bitsandbytes; the suite starts about 180 commands. Here
each test process (pytest-xdist worker) starts one multiprocessing fork server that imports PRELOAD (the command
line and the libraries its commands and their workers import), and every command is a process forked from it:
its own pid, its own stdout and stderr pipes, its own environment and working folder, signals and exit codes as
a `python -m harness` process has them, nothing shared with the test process or with another command. It is
not the user's entry point in one respect, which is why a test that needs that one runs the real thing
(`helpers.run_cli(..., fresh=True)`, and any variable that Python or an imported library reads when it starts,
such as PYTHONPATH or HOME, sends the command there too): the imports happened before the command's
environment was set, in the server.

The trial worker a command starts is forked from the command (harness.search.runner.START_METHOD), not spawned
as in production, so that it too finds its imports done: the process tree, the pipe, the supervision and the
recovery are production's, the fresh interpreter is not. The runner's own tests (tests/runtime/,
tests/trial/test_reuse.py) start it as production does, and so do the real-model tests (`fresh=True`).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import io
import locale
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
import types
from multiprocessing.reduction import DupFd
from typing import Any

import harness.cli
from harness.search import runner

PRELOAD = ["harness.cli", "optuna", "torch", "transformers", "harness.search.sweep", "harness.evidence.compare",
           "harness.evidence.compare_doc", "harness.evidence.validate", "harness.publish.documents",
           "peft", "bitsandbytes", "datasets", "evaluate", "harness.trial.run", "harness.trial.baselines",
           "harness.runtime.quiet"]
"""What the fork server imports once: the command line, what its commands import in their own process, and what
their trial worker imports. By name, from the installed package: the server's sys.path is a fresh
interpreter's, without tests/ (Python 3.11 does not pass it on)."""

ENTRY = os.path.join(os.path.dirname(harness.__file__), "__main__.py")
"""sys.argv[0] of `python -m harness`: the records name the command from sys.argv."""

RUNTIME_PREFIXES = ("HARNESS_", "WANDB_")
"""Variables read when a command runs, not when a library is imported: a test that sets only these (on top of the
test process's environment) may use a forked command."""


def may_fork(env: dict[str, str] | None) -> bool:
    """Whether a command whose environment is the test process's plus `env` may run forked."""
    return all(name.startswith(RUNTIME_PREFIXES) for name in env or {})


def _stream(fd: int, like: Any) -> io.TextIOWrapper:
    """A text stream on `fd` as `python -u` makes one (PYTHONUNBUFFERED: the tests read output as it comes)."""
    return io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding=like.encoding, errors=like.errors,
                            write_through=True)


class _PassedFd:
    """A file descriptor of the test process that the forked process receives as its own (pickled while the
    process starts, when multiprocessing can pass descriptors to the fork server)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return _detach, (DupFd(self.fd),)


def _detach(passed: Any) -> int:
    return passed.detach()


def _command(args: list[str], env: dict[str, str], cwd: str, stdout: int, stderr: int) -> None:
    """In the forked process: become `python -m harness ARGS` run in `cwd` with `env`, stdout and stderr on the
    test's pipes, and run it; the exit code is the command's (SystemExit), as with the real entry point."""
    for fd, received in ((1, stdout), (2, stderr)):
        os.dup2(received, fd)
        os.close(received)
    sys.stdout, sys.stderr = _stream(1, sys.__stdout__), _stream(2, sys.__stderr__)
    sys.__stdout__, sys.__stderr__ = sys.stdout, sys.stderr
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    # It dies with its parent, the fork server (which stop_everything kills), as a trial worker dies with its sweep.
    ctypes.CDLL(None, use_errno=True).prctl(runner._PR_SET_PDEATHSIG, signal.SIGKILL)
    sys.argv = [ENTRY, *args]
    # The main module as `python -m harness` has it: click names the program from it ("see `python -m harness
    # sweep --help`"), and multiprocessing's spawn (the trial worker) reads its spec.
    main = types.ModuleType("__main__")
    main.__file__, main.__package__, main.__spec__ = ENTRY, "harness", importlib.util.find_spec("harness.__main__")
    sys.modules["__main__"] = main
    # A main process to multiprocessing, as `python -m harness` is: no parent (harness.search.runner's
    # die_with_parent checks it), named as a main process is.
    mp.process._parent_process = None  # type: ignore[attr-defined]
    mp.current_process().name = "MainProcess"
    # The trial worker is forked from the command, its imports already done, rather than spawned (the one
    # departure from production here: tests/runtime's runner tests and the fresh=True tests spawn it).
    runner.START_METHOD = "fork"
    runner._worker_main = _as_spawned(runner._worker_main)
    try:
        harness.cli.main()
    finally:
        # What the interpreter does at exit after the main module (multiprocessing ends its children with
        # os._exit, which skips these): threads joined, then the atexit functions (W&B's among them).
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()


def _as_spawned(worker_main: Any) -> Any:
    """The worker's entry, started as a new interpreter would be: with the default signal dispositions (a forked
    child inherits the command's Ctrl-C and SIGTERM handlers; the worker sets its own SIGINT first thing), and
    with plain stdout and stderr, and without the command's W&B run (W&B wraps the command's streams to record
    its console, and its import hooks report each newly imported library to the run: from a forked process
    they raise its ForkedError)."""
    def main(*args: Any) -> None:
        sys.stdout, sys.stderr = _stream(1, sys.__stdout__), _stream(2, sys.__stderr__)
        sys.excepthook = sys.__excepthook__
        hooks = sys.modules.get("wandb.sdk.lib.import_hooks")
        if hooks is not None:
            hooks.unregister_all_post_import_hooks()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for name in ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGCHLD"):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        worker_main(*args)

    return main


def _context() -> Any:
    """This test process's fork server, which imports PRELOAD once."""
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


class ForkedCommand:
    """The started command, with the part of subprocess.Popen's interface the tests use (text pipes)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: str) -> None:
        self.args = [sys.executable, "-m", "harness", *args]
        self.returncode: int | None = None
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        context = _context()
        self._process = context.Process(target=_command, name="harness",
                                        args=(list(args), env, cwd, _PassedFd(out_w), _PassedFd(err_w)))
        try:
            self._process.start()
        finally:
            os.close(out_w)
            os.close(err_w)
        self.pid = self._process.pid
        _STARTED.append(self)
        self.stdout = open(out_r, encoding=locale.getpreferredencoding(False))  # as Popen(text=True) reads
        self.stderr = open(err_r, encoding=locale.getpreferredencoding(False))
        self._read: dict[str, list[str]] | None = None
        self._readers: list[threading.Thread] = []

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._process.exitcode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(9)

    def terminate(self) -> None:
        self.send_signal(15)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Read both pipes to their end and wait for the process, as Popen.communicate (TimeoutExpired after
        `timeout` seconds; a later call goes on where it stopped)."""
        if self._read is None:
            self._read = {"stdout": [], "stderr": []}
            for name in self._read:
                pipe, chunks = getattr(self, name), self._read[name]
                reader = threading.Thread(target=lambda p=pipe, c=chunks: c.append(p.read()), daemon=True)
                reader.start()
                self._readers.append(reader)
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in self._readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self.stdout.close()
        self.stderr.close()
        return "".join(self._read["stdout"]), "".join(self._read["stderr"])


_STARTED: list[ForkedCommand] = []
"""Every command this test process started, for stop_everything."""


def stop_everything() -> list[int]:
    """End every command this test process started that is still running (with the processes it started) and
    this process's fork server; returns the pids that had to be killed. Called when the test process ends
    (atexit, and tests/conftest.py's pytest_unconfigure), so that a suite leaves nothing running, also after a
    test that failed or timed out with its command still alive."""
    import psutil
    from multiprocessing import forkserver

    killed = []
    for command in _STARTED:
        if command.poll() is None:
            with contextlib.suppress(psutil.Error):
                for process in [*psutil.Process(command.pid).children(recursive=True), psutil.Process(command.pid)]:
                    with contextlib.suppress(psutil.Error):
                        process.kill()
                        killed.append(process.pid)
            command._process.join(10)
    _STARTED.clear()
    server = forkserver._forkserver
    pid = getattr(server, "_forkserver_pid", None)
    if pid is not None:
        # Closing its "alive" pipe asks it to stop, but a copy of that pipe in a forked child would keep it
        # waiting: kill it, then let multiprocessing reap it and forget it (a later command starts a new one).
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        server._stop()
    return killed


atexit.register(stop_everything)


def start(args: list[str], env: dict[str, str], cwd: str) -> ForkedCommand:
    """Start `harness ARGS` forked from this test process's server, with exactly `env` as its environment."""
    return ForkedCommand(args, env, cwd)


def run(args: list[str], env: dict[str, str], cwd: str, timeout: float) -> subprocess.CompletedProcess:
    """Run `harness ARGS` to its end, as subprocess.run(capture_output=True, text=True, timeout=...) would."""
    command = start(args, env, cwd)
    try:
        out, err = command.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        command.kill()
        command.communicate()
        raise
    return subprocess.CompletedProcess(command.args, command.returncode, out, err)
