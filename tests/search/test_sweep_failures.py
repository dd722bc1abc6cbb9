"""Sweeps whose trials or processes fail: a failing, NaN or out-of-memory trial is a result, Ctrl-C and SIGKILL
leave the study resumable, a broken config stops the sweep early, a baseline whose worker dies is retried."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from helpers import (TINY, fast_experiment, load_study as load, records, run_cli, start, wait_for_running,
                     write_space)
from wandb_reader import offline_runs, read_offline_run

pytestmark = pytest.mark.integration  # every test runs harness in a subprocess


def test_failing_trials_are_results_and_the_study_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "f"
    proc = run_cli("sweep", *TINY, "--trials", "5", "--study", "f", "--out", str(out), "--wandb", "offline",
                   env={"HARNESS_INJECT_FAULTS": "0:raise,1:nan,2:kill,3:oom"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = sorted(records(out), key=lambda r: r["number"])
    assert [r["state"] for r in rows] == ["FAIL", "PRUNED", "FAIL", "FAIL", "COMPLETE"]
    assert [r["status"] for r in rows] == ["failed", "diverged", "failed", "oom", "complete"]
    assert "injected failure" in rows[0]["error"]
    assert "non-finite" in rows[1]["error"]
    assert "killed by SIGKILL" in rows[2]["error"]
    assert "out of memory" in rows[3]["error"]
    assert all("\n" not in r["error"] for r in rows[:4])
    study = load(out, "f")
    assert [t.state.name for t in study.trials] == ["FAIL", "PRUNED", "FAIL", "FAIL", "COMPLETE"]
    assert "killed by SIGKILL" in study.trials[2].user_attrs["reason"]
    runs = {r["name"]: r for r in map(read_offline_run, offline_runs(out))}
    assert runs["f-trial-0"]["exit_code"] == 1 and runs["f-trial-4"]["exit_code"] == 0


# The first trial sleeps at every step (a fault hook), so it is surely running when the test interrupts it,
# with the same settings a resume then uses.


SLOW = {"HARNESS_INJECT_FAULTS": "0:slow"}


@pytest.mark.usefixtures("tiny_checkpoint")  # built before the timed wait, not by the sweep inside it
def test_ctrl_c_records_the_trial_and_the_study_resumes(tmp_path: Path) -> None:
    out = tmp_path / "c"
    args = ["sweep", *TINY, "--trials", "3", "--study", "c", "--out", str(out), "--wandb", "disabled"]
    proc = start(args, env=SLOW)
    wait_for_running(out, "c", proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "resumed" in stderr and "Traceback" not in stderr
    study = load(out, "c")
    assert [t.state.name for t in study.trials] == ["FAIL"]
    assert "interrupted" in study.trials[0].user_attrs["reason"]
    assert records(out)[0]["error"].startswith("interrupted")

    again = run_cli("sweep", *TINY, "--trials", "1", "--study", "c", "--out", str(out), "--wandb", "disabled")
    assert again.returncode == 0, again.stderr[-3000:]
    assert [t.state.name for t in load(out, "c").trials] == ["FAIL", "COMPLETE"]


@pytest.mark.usefixtures("tiny_checkpoint")  # built before the timed wait, not by the sweep inside it
def test_a_killed_sweep_leaves_no_trial_running_forever(tmp_path: Path) -> None:
    out = tmp_path / "k"
    fast = ["-e", str(fast_experiment(tmp_path))]  # one mode, no generation: what is tested is the recovery
    args = ["sweep", *fast, "--trials", "2", "--study", "k", "--out", str(out), "--wandb", "disabled"]
    proc = start(args, env=SLOW)
    wait_for_running(out, "k", proc)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.communicate(timeout=60)
    again = run_cli("sweep", *fast, "--trials", "1", "--study", "k", "--out", str(out), "--wandb", "disabled")
    assert again.returncode == 0, again.stderr[-3000:]
    trials = load(out, "k").trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert "orphaned" in trials[0].user_attrs["reason"]
    assert [r["state"] for r in sorted(records(out), key=lambda r: r["number"])] == ["FAIL", "COMPLETE"]


def test_a_broken_config_stops_the_sweep_early(tmp_path: Path) -> None:
    out = tmp_path / "b"
    proc = run_cli("sweep", *TINY, "--trials", "6", "--study", "b", "--out", str(out), "--wandb", "disabled",
                   env={"HARNESS_INJECT_FAULTS": "0:raise,1:raise,2:raise"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("harness: error:") and "first 3 trials" in last and "injected failure" in last
    assert len(records(out)) == 3  # nothing the user computed is lost
    assert [t.state.name for t in load(out, "b").trials] == ["FAIL"] * 3


def test_a_killed_baseline_is_retried_once_in_a_fresh_worker(tmp_path: Path) -> None:
    space = write_space(tmp_path / "s.yaml", quantization="none")
    out = tmp_path / "b"
    proc = run_cli("sweep", "--model", "tiny-llama", "--space", str(space), "--trials", "1", "--max-steps", "2",
                   "--study", "b", "--out", str(out), "--wandb", "disabled", env={"HARNESS_INJECT_FAULTS": "base:kill"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "retrying once" in proc.stderr and "SIGKILL" in proc.stderr
    assert load(out, "b").user_attrs["baseline_by_mode"]["none"]["eval_loss"] > 0


def test_a_baseline_that_dies_twice_is_recorded_missing_and_the_trials_go_on(tmp_path: Path) -> None:
    space = write_space(tmp_path / "s.yaml", quantization="none")
    out = tmp_path / "m"
    proc = run_cli("sweep", "--model", "tiny-llama", "--space", str(space), "--trials", "1", "--max-steps", "2",
                   "--study", "m", "--out", str(out), "--wandb", "disabled",
                   env={"HARNESS_INJECT_FAULTS": "base:killall"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(out, "m")
    assert "killed by SIGKILL" in study.user_attrs["baseline_by_mode"]["none"]["missing"]
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    compare = run_cli("compare", "--study", "m", "--out", str(out), "--reports-dir", str(tmp_path / "r"))
    assert compare.returncode == 0, compare.stderr[-2000:]
