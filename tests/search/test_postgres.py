"""Workers on a real PostgreSQL server (a throwaway cluster: initdb into a temporary folder, pg_ctl on a
free port, a unix socket only). Two `harness worker` processes that act as two machines; one is SIGKILLed
in the middle of a trial; the other notices through Optuna's heartbeats, fails it as "worker lost" and
runs its retry. In CI (CI set) missing PostgreSQL binaries fail the test; elsewhere they skip it."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import optuna
import pytest

from helpers import assert_accounted_for, fast_experiment, records, run_cli, start, wait_for

pytestmark = pytest.mark.integration  # a PostgreSQL server and harness workers in subprocesses

HEARTBEAT = {"HARNESS_HEARTBEAT_INTERVAL": "1", "HARNESS_GRACE_PERIOD": "4"}


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
    data, port = root / "data", _free_port()
    subprocess.run([*as_user, str(folder / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses='' -c fsync=off -c max_connections=100"
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
