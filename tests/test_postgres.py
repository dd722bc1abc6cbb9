"""Workers on a real PostgreSQL server (a throwaway cluster: initdb into a temporary folder, pg_ctl on a
free port, a unix socket only). Two `harness worker` processes that act as two machines; one is SIGKILLed
in the middle of a trial; the other notices through Optuna's heartbeats, fails it as "worker lost" and
runs its retry. In CI (CI set) missing PostgreSQL binaries fail the test; elsewhere they skip it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import optuna
import pytest

from conftest import run_cli
from pgcluster import cluster, server_bin
from test_workers import assert_accounted_for, fast_experiment, records, start

HEARTBEAT = {"HARNESS_HEARTBEAT_INTERVAL": "1", "HARNESS_GRACE_PERIOD": "4"}


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL cluster of its own for this module; yields its SQLAlchemy URL."""
    folder = server_bin()
    if folder is None:
        why = "PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(why + " (.ci/run installs them)")
        pytest.skip(why + " (CI installs them and runs this test)")
    with cluster(folder) as url:
        yield url


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
    deadline = time.time() + 180
    while not study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        assert time.time() < deadline and doomed.poll() is None, doomed.communicate()
        time.sleep(0.5)
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
