"""Several workers on one study: exact trial counts, a worker killed mid-trial (journal file, one machine),
Ctrl-C forwarded to every worker, concurrent outputs, bad input. Tiny trials (2 steps, 8 eval examples)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import optuna
import pytest

from helpers import (assert_accounted_for, assert_one_line_error, fast_experiment, journal_study, records, run_cli,
                     start, wait_for)
from wandb_reader import offline_runs, read_offline_run


@pytest.mark.integration
@pytest.mark.parametrize("args, needles", [
    (["--workers", "0"], ["--workers", "0"]),
    (["--workers", "2", "--storage", "sqlite:///x.db"], ["SQLite", "journal", "postgresql"]),
    (["--heartbeat-interval", "5", "--grace-period", "3"], ["--grace-period"]),
])
def test_bad_worker_flags_are_one_line_and_exit_2(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    proc = run_cli("sweep", "-e", str(fast_experiment(tmp_path)), "--out", str(tmp_path / "x"), *args)
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "x").exists()


@pytest.mark.integration
def test_a_study_folder_with_sqlite_is_not_shared_by_workers(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "study.db").write_bytes(b"")
    proc = run_cli("sweep", "-e", str(fast_experiment(tmp_path)), "--out", str(tmp_path / "x"), "--workers", "2")
    assert_one_line_error(proc, "study.db", "--workers 1")
    proc = run_cli("worker", "--study", "x", "--storage", str(tmp_path / "x" / "none.journal"), "--trials", "0")
    assert_one_line_error(proc, "--trials")


@pytest.mark.integration
def test_four_workers_leave_exactly_the_trials_asked_for(tmp_path: Path) -> None:
    out = tmp_path / "w4"
    proc = run_cli("sweep", "-e", str(fast_experiment(tmp_path)), "--workers", "4", "--trials", "20", "--study", "w4",
                   "--out", str(out), "--wandb", "offline")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{out}/study.journal" in proc.stderr  # the default storage for several workers, printed
    study = journal_study(out, "w4")
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 20
    rows = records(out)
    assert sorted(r["number"] for r in rows) == list(range(20))  # none duplicated, none lost
    assert len({r["params"]["learning_rate"] for r in rows}) == 20  # workers do not sample alike
    workers = {r["worker"]["worker"] for r in rows}
    assert workers <= {1, 2, 3, 4} and len(workers) >= 2, workers
    expected_threads = str(max(1, len(os.sched_getaffinity(0)) // 4))
    assert {r["worker"]["threads"] for r in rows} == {expected_threads}
    assert len({r["worker"]["pid"] for r in rows}) == len(workers)
    best = study.best_trial.number
    assert (out / "best_adapter").resolve() == (out / "adapters" / f"trial-{best}").resolve()
    assert (out / "best_adapter" / "adapter_model.safetensors").exists()
    assert sorted(p.name for p in (out / "adapters").iterdir()) == [f"trial-{best}"]
    assert "20 trials this run" in proc.stdout
    assert study.user_attrs["target_trials"] == 20
    runs = [read_offline_run(p) for p in offline_runs(out)]  # one W&B run per trial, all in the study's group
    assert sorted(r["name"] for r in runs) == sorted(f"w4-trial-{n}" for n in range(20))
    assert {r["group"] for r in runs} == {"w4"} and {r["exit_code"] for r in runs} == {0}
    # Readers find the journal in the study folder without being told.
    status = run_cli("status", "--study", "w4", "--out", str(out))
    assert status.returncode == 0 and "20 trials" in status.stdout, status.stderr


@pytest.mark.integration
def test_a_worker_killed_mid_trial_loses_nothing_journal(tmp_path: Path) -> None:
    """Two workers on a journal file; worker 1 SIGKILLs itself in the middle of its first trial. The other one
    sees at once that the owner process is gone, fails the trial as "worker lost", records it and runs its
    retry."""
    out = tmp_path / "j"
    proc = run_cli("sweep", "-e", str(fast_experiment(tmp_path)), "--workers", "2", "--trials", "6", "--study", "j",
                   "--out", str(out), env={"HARNESS_INJECT_FAULTS": "1.0:die"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "worker 1 ended abnormally (killed by SIGKILL)" in proc.stderr
    lost = assert_accounted_for(journal_study(out, "j"), records(out), target=6)
    assert "orphaned" in lost.user_attrs["reason"] and lost.user_attrs["owner"]["pid"]
    assert not list((out / "adapters").glob(".trial-*"))  # the lost trial's partial adapter is gone


def _running(out: Path, name: str, count: int) -> bool:
    try:
        trials = journal_study(out, name).get_trials(states=(optuna.trial.TrialState.RUNNING,))
    except Exception:  # the journal is still being created
        return False
    return len([t for t in trials if t.user_attrs.get("config")]) >= count


def _wait(condition, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until both workers' trials are RUNNING with their config stored: a Ctrl-C from then on interrupts trials."""
    wait_for(condition, timeout, "two RUNNING trials with their config in the journal", alive=proc)


@pytest.mark.integration
@pytest.mark.usefixtures("tiny_checkpoint")  # built before the timed wait, not by the sweep inside it
def test_ctrl_c_stops_every_worker_and_a_second_one_exits_at_once(tmp_path: Path) -> None:
    out = tmp_path / "c"
    args = ["sweep", "-e", str(fast_experiment(tmp_path)), "--workers", "2", "--max-steps", "100000", "--trials", "4",
            "--study", "c", "--out", str(out)]
    proc = start(args)
    _wait(lambda: _running(out, "c", 2), proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 130, stderr
    assert "resumed" in stderr.splitlines()[-1] and "Traceback" not in stderr
    trials = journal_study(out, "c").get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert all(t.user_attrs["reason"].startswith("interrupted") for t in trials)
    assert sorted(r["number"] for r in records(out)) == [0, 1]

    proc = start(args)
    _wait(lambda: _running(out, "c", 2), proc)
    lines: list[str] = []

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    proc.send_signal(signal.SIGINT)
    deadline = time.time() + 60
    while not any(line.startswith("harness: stopping") for line in lines):  # the parent saw the first one
        assert time.time() < deadline, lines
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    began = time.time()
    proc.wait(timeout=60)
    assert proc.returncode == 130, lines
    assert time.time() - began < 20, "a second Ctrl-C must not wait for the workers"


def test_devices_round_robin_and_cores_are_split() -> None:
    from harness.search.workers import assignments

    envs = assignments(4, ["0", "1"], 16)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "0", "1"]
    assert {e["HARNESS_TORCH_THREADS"] for e in envs} == {"4"} and envs[0]["OMP_NUM_THREADS"] == "4"
    cpu = assignments(3, [], 2)
    assert all("CUDA_VISIBLE_DEVICES" not in e and e["HARNESS_TORCH_THREADS"] == "1" for e in cpu)


def test_a_retry_keeps_params_seed_and_confirmation_and_is_retried_once() -> None:
    from harness.search.recovery import retry

    study = optuna.create_study()
    study.enqueue_trial({"x": 0.25}, user_attrs={"seed": 3, "confirmation_of": 1})
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr("owner", {"host": "gone", "pid": 1})
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    number = retry(study, study.trials[0])
    again = study.trials[number]
    assert again.state.name == "WAITING" and again.params == {"x": 0.25}
    assert again.user_attrs == {"seed": 3, "confirmation_of": 1, "retry_of": 0}
    asked = study.ask()
    assert asked.number == number and asked.suggest_float("x", 0, 1) == 0.25 and asked.user_attrs["seed"] == 3
    study.tell(asked, state=optuna.trial.TrialState.FAIL)
    assert retry(study, study.trials[number]) is None  # a lost retry is not retried again


def test_keeping_adapters_waits_for_the_lock_another_worker_holds(tmp_path: Path) -> None:
    """The race fixed: a worker must not prune adapters while another moves its new best into place."""
    from harness.search.adapters import LOCK_NAME, keep_adapter
    from harness.runtime.locking import file_lock

    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=1.0))
    partial = tmp_path / "adapters" / ".trial-0"
    partial.mkdir(parents=True)
    (partial / "adapter_model.safetensors").write_bytes(b"x")
    done = threading.Event()
    with file_lock(tmp_path / LOCK_NAME):
        worker = threading.Thread(target=lambda: (keep_adapter(study, tmp_path, 0, True, True), done.set()))
        worker.start()
        assert not done.wait(0.5) and partial.exists()  # blocked while the lock is held elsewhere
    assert done.wait(10)
    assert (tmp_path / "best_adapter").resolve() == (tmp_path / "adapters" / "trial-0").resolve()


def test_appending_a_record_waits_for_the_lock_on_trials_jsonl_and_reading_starts_at_an_offset(
        tmp_path: Path) -> None:
    """Writers lock trials.jsonl itself; the parent reads back what its workers appended after `offset`."""
    from harness.runtime.locking import file_lock
    from harness.search.records import append_record, read_records

    log = tmp_path / "out" / "trials.jsonl"
    append_record(log, {"number": 0})
    offset = log.stat().st_size
    done = threading.Event()
    with file_lock(log):
        writer = threading.Thread(target=lambda: (append_record(log, {"number": 1, "loss": float("nan")}),
                                                  done.set()))
        writer.start()
        assert not done.wait(0.5)  # blocked while another worker holds the lock
    assert done.wait(10)
    with open(log, "a") as handle:
        handle.write('{"number": 2, "torn')
    assert [r["number"] for r in read_records(log)] == [0, 1]
    assert list(read_records(log, offset)) == [{"number": 1, "loss": None}]
    assert list(read_records(tmp_path / "missing.jsonl")) == []


def test_one_exit_code_table_for_the_cli_and_its_workers() -> None:
    import click
    import typer

    from harness.search.exits import exit_code
    from harness.config.errors import SpecError
    from harness.search.sweep import SweepInterrupted

    assert exit_code(SpecError("bad flag")) == 2
    assert exit_code(click.UsageError("no such option")) == 2
    assert exit_code(KeyboardInterrupt()) == exit_code(SweepInterrupted("stopped")) == 130
    assert exit_code(click.exceptions.Abort()) == exit_code(typer.Abort()) == 130
    assert exit_code(typer.Exit(3)) == 3
    assert exit_code(RuntimeError("boom")) == exit_code(MemoryError()) == 1


def test_a_dead_process_is_described_by_its_signal_or_exit_code() -> None:
    from harness.search.runner import _died, describe_exit

    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-signal.SIGTERM) == "killed by SIGTERM" and describe_exit(3) == "exit code 3"
    assert _died(-signal.SIGKILL).startswith("trial process died: killed by SIGKILL (out of memory?")
    assert _died(-signal.SIGSEGV) == "trial process died: killed by SIGSEGV"
