"""Workers on a real PostgreSQL server (a throwaway cluster: initdb into a temporary folder, pg_ctl on a
free port; its unix socket trusts every local user, 127.0.0.1 asks for PASSWORD). Two `harness worker` processes
that act as two machines; one is SIGKILLed in the middle of a trial; the other notices through Optuna's
heartbeats, fails it as "worker lost" and runs its retry. A password given in a storage URL, or only in the
environment, appears in no process's arguments, nothing printed and no file written (issue 38).
In CI (CI set) missing PostgreSQL binaries fail the test; elsewhere they skip it."""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import optuna
import pytest

from helpers import assert_accounted_for, fast_experiment, records, run_cli, start, wait_for

pytestmark = pytest.mark.integration  # a PostgreSQL server and harness workers in subprocesses

HEARTBEAT = {"HARNESS_HEARTBEAT_INTERVAL": "1", "HARNESS_GRACE_PERIOD": "4"}
PASSWORD = "pw-" + secrets.token_hex(12)
"""The password of the cluster's `postgres` user over TCP (a fresh one each run, so finding it means a leak)."""


def _server_bin() -> Path | None:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL cluster of its own for this module; yields its SQLAlchemy URL."""
    folder = _server_bin()
    if folder is None:
        why = "PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(why + " (.ci/run installs them)")
        pytest.skip(why + " (CI installs them and runs this test)")
    root = Path(tempfile.mkdtemp(prefix="harness-pg-"))  # short: unix socket paths are limited to ~100 bytes
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port, pwfile = root / "data", _free_port(), root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    subprocess.run([*as_user, str(folder / "initdb"), "-D", str(data), "--auth-local=trust",
                    "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-U", "postgres", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True)
    pwfile.unlink()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
    subprocess.run([*as_user, str(folder / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
                    "-o", options, "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://postgres@/postgres?host={root}&port={port}"
    finally:
        subprocess.run([*as_user, str(folder / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_a_worker_killed_mid_trial_is_detected_by_heartbeat_and_retried(tmp_path: Path, postgres_url: str) -> None:
    out = tmp_path / "pg"
    experiment = str(fast_experiment(tmp_path))
    created = run_cli("sweep", "-e", experiment, "--storage", postgres_url, "--study", "pg", "--trials", "1",
                      "--out", str(out), env=HEARTBEAT)
    assert created.returncode == 0, created.stderr[-3000:]
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    assert study.user_attrs["heartbeat"] == {"interval": 1, "grace": 4}

    join = ["worker", "--study", "pg", "--storage", postgres_url, "--trials", "6", "--out", str(out)]
    # Machine A dies (SIGKILL, as a preempted machine would) in the middle of its first trial.
    doomed = start(join, env={**HEARTBEAT, "HARNESS_HOST": "machine-a", "HARNESS_INJECT_FAULTS": "0:die"})
    wait_for(lambda: study.get_trials(states=(optuna.trial.TrialState.RUNNING,)), 180, "machine A's RUNNING trial",
             alive=doomed, interval=0.5)
    survivor = start(join, env={**HEARTBEAT, "HARNESS_HOST": "machine-b"})
    doomed.communicate(timeout=120)
    assert doomed.returncode == -9
    _, stderr = survivor.communicate(timeout=400)
    assert survivor.returncode == 0, stderr[-3000:]

    study = optuna.load_study(study_name="pg", storage=postgres_url)
    lost = assert_accounted_for(study, records(out), target=6)  # --trials 6 caps the study, all workers together
    assert "no heartbeat" in lost.user_attrs["reason"] and "machine-a" in lost.user_attrs["reason"]
    assert f"trial #{lost.number} FAIL (worker lost" in stderr

    status = run_cli("status", "--study", "pg", "--storage", postgres_url)
    assert status.returncode == 0 and "7 trials" in status.stdout, status.stderr


# ---- issue 38: a password stays in the process that needs it ------------------------------------------------


def _tcp_url(postgres_url: str, password: str | None) -> str:
    """The cluster over 127.0.0.1, where it asks for the password: with `password` in the URL, or none."""
    port = re.search(r"port=(\d+)", postgres_url)[1]
    return f"postgresql+psycopg2://postgres{':' + password if password else ''}@127.0.0.1:{port}/postgres"


def _cmdlines() -> list[str]:
    """The arguments of every process on this machine, as /proc shows them to any user."""
    lines = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # ended meanwhile
            continue
    return lines


def _watched(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, list[str], bool]:
    """`harness ARGS`, with every process's arguments read while it runs: its exit code, everything it printed,
    the command lines that held PASSWORD, and whether a sweep worker process was seen."""
    proc, leaks, worker_seen = start(args, env=env), [], False
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        for line in _cmdlines():
            leaks += [line] if PASSWORD in line else []
            worker_seen |= "harness.search.workers" in line
        time.sleep(0.1)
    stdout, stderr = proc.communicate(timeout=60)
    return proc.returncode, stdout + stderr, leaks, worker_seen


def _files_holding(root: Path, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_password_in_the_url_or_the_environment_is_nowhere_outside(tmp_path: Path, postgres_url: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    api_key = secrets.token_hex(20)  # shaped like a W&B key; offline runs never send it
    for name in ("PGPASSWORD", "HARNESS_STORAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none.pgpass"))  # not the user's ~/.pgpass
    out, reports, url = str(tmp_path / "sweep"), str(tmp_path / "reports"), _tcp_url(postgres_url, PASSWORD)
    read = ["--study", "sec", "--out", out, "--reports-dir", reports]
    flow = [["sweep", "-e", str(fast_experiment(tmp_path)), "--storage", url, "--study", "sec", "--out", out,
             "--trials", "2", "--workers", "2"],
            ["compare", "--storage", url, *read],
            ["recommend", "--storage", url, *read, "--format", "axolotl,trl"],
            ["report", "--storage", url, *read, "--wandb", "offline"],
            ["validate", "--storage", url, *read, "--steps", "3", "--top", "1", "--seeds", "1", "--no-defaults"]]
    printed = ""
    for args in flow:
        code, output, leaks, worker_seen = _watched(args, {"WANDB_API_KEY": api_key})
        assert code == 0 and not leaks, (args[0], leaks, output[-3000:])
        assert worker_seen or args[0] != "sweep", "no worker process was seen: the check read nothing"
        printed += output
    assert "postgres:***@127.0.0.1" in printed and "PGPASSWORD" in printed  # the URL shown, and the note

    # The same flow with the password only in the environment (PGPASSWORD, which libpq reads, or HARNESS_STORAGE),
    # as a second machine would join: `harness worker` with no storage on its command line (the study already
    # holds its 2 trials, so it joins, checks and leaves; a joined worker's trials: the test above).
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    bare = {"HARNESS_STORAGE": _tcp_url(postgres_url, None)}
    for args in (["worker", "--study", "sec", "--out", out, "--trials", "2"],
                 ["recommend", *read, "--format", "axolotl,trl"]):
        code, output, leaks, _ = _watched(args, bare)
        assert code == 0 and not leaks and "PGPASSWORD" not in output, (args[0], output[-3000:])
        printed += output
    monkeypatch.delenv("PGPASSWORD")
    status = run_cli("status", "--study", "sec", env={"HARNESS_STORAGE": url})
    assert status.returncode == 0 and "trials" in status.stdout, status.stderr
    refused = run_cli("status", "--study", "sec", env=bare)  # no password anywhere: the server says no
    assert refused.returncode == 2 and "password" in refused.stderr, refused.stderr
    printed += status.stdout + status.stderr + refused.stderr

    study = optuna.load_study(study_name="sec", storage=url)
    assert PASSWORD not in json.dumps([study.user_attrs, [t.user_attrs for t in study.trials]], default=str)
    for secret in (PASSWORD, api_key):
        assert secret not in printed
        assert not _files_holding(tmp_path, secret)  # the sweep folder (W&B runs in it), the reports folder
