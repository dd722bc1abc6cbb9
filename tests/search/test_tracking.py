"""harness.search.tracking: W&B modes, offline runs read back (with tests/wandb_reader.py), and a broken wandb
that never breaks a sweep.

Never online: every test runs with WANDB_MODE=offline, no API key, and a W&B host that does not
exist, and passes mode="offline" explicitly.
"""

from __future__ import annotations

import os
import sys
import struct
from pathlib import Path
from typing import Any

import pytest
from wandb_reader import offline_runs, read_offline_run

from helpers import wait_for
from harness.search import tracking
from harness.config.errors import SpecError

WANDB_ENV = ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_PROJECT", "WANDB_API_KEY")


@pytest.fixture(autouse=True)
def offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials, no reachable host; env vars that configure_dirs sets are restored after."""
    for name in WANDB_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setattr(tracking, "_warned", set())


def _one_trial(study_dir: Path, *, failed: bool = False, number: int = 3) -> tracking.TrialRun:
    run = tracking.start_trial_run(
        study="demo", number=number, config={"lora": {"r": 8}, "quant": {"mode": "nf4"}},
        params={"lora_r": 8, "learning_rate": 2e-4}, mode="offline", study_dir=study_dir)
    assert run.active
    for step in (1, 2):
        run.log({"train/loss": 3.0 / step, "train/lr": 1e-4 * step}, step=step)
    run.log({"eval/loss": 2.5}, step=2)  # same step: merged into one row
    run.finish({"eval_loss": 2.25, "eval/loss": 2.25, "peak_memory_mb": 123.0}, failed=failed)
    assert not run.active
    return run


def test_resolve_mode_explicit_values() -> None:
    for mode in ("offline", "online", "disabled"):
        assert tracking.resolve_mode(mode) == mode
    with pytest.raises(SpecError, match="--wandb 'sometimes'") as err:
        tracking.resolve_mode("sometimes")
    assert "\n" not in str(err.value)


def test_resolve_mode_auto(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_MODE")
    assert tracking.resolve_mode(None) == "offline"
    assert tracking.resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert tracking.resolve_mode(None) == "online"
    monkeypatch.delenv("WANDB_API_KEY")

    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine 127.0.0.1:9\n  login user\n  password " + "k" * 40 + "\n")
    monkeypatch.setenv("NETRC", str(netrc_file))
    assert tracking.resolve_mode("auto") == "online"

    monkeypatch.setenv("WANDB_MODE", "disabled")  # an explicit WANDB_MODE wins over credentials
    assert tracking.resolve_mode(None) == "disabled"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert tracking.resolve_mode(None) == "offline"
    monkeypatch.setenv("WANDB_MODE", "bogus")
    with pytest.raises(SpecError, match="WANDB_MODE"):
        tracking.resolve_mode(None)


def test_disabled_creates_nothing_and_never_imports_wandb(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # any `import wandb` now raises ImportError
    study_dir = tmp_path / "study"
    run = tracking.start_trial_run(study="demo", number=0, config={}, params={},
                                   mode="disabled", study_dir=study_dir)
    run.log({"train/loss": 1.0}, step=1)
    run.finish({"eval_loss": 1.0}, failed=False)
    assert not run.active
    assert not study_dir.exists()
    assert capsys.readouterr().err == ""


def _read_finished(run_dir: Path, timeout: float = 60.0) -> dict:
    """The run's records once its exit record is on disk: on a loaded machine wandb's service process
    can still be flushing the log for a moment after `finish()` returns (seen once in CI)."""
    def finished() -> dict | None:
        rec = read_offline_run(run_dir)
        return rec if rec["exit_code"] is not None else None

    return wait_for(finished, timeout, f"the exit record of the W&B run {run_dir.name}", interval=0.5)


@pytest.mark.integration
def test_offline_run_records_group_job_type_config_summary(tmp_path: Path) -> None:
    _one_trial(tmp_path)
    runs = offline_runs(tmp_path)
    assert len(runs) == 1 and runs[0].parent == tmp_path / "wandb"
    rec = _read_finished(runs[0])
    assert (rec["group"], rec["job_type"], rec["name"]) == ("demo", "trial", "demo-trial-3")
    assert rec["config"] == {"lora": {"r": 8}, "quant": {"mode": "nf4"}, "trial_number": 3,
                             "params": {"lora_r": 8, "learning_rate": 2e-4}}
    assert rec["summary"]["eval_loss"] == 2.25
    assert rec["summary"]["eval/loss"] == 2.25  # the summary wins over the last logged value
    assert rec["summary"]["train/loss"] == 1.5
    assert [(row["_step"], row.get("eval/loss")) for row in rec["history"]] == [(1, None), (2, 2.5)]
    assert rec["exit_code"] == 0


@pytest.mark.integration
def test_failed_trial_records_exit_code_1(tmp_path: Path) -> None:
    _one_trial(tmp_path, failed=True)
    (run_dir,) = offline_runs(tmp_path)
    assert _read_finished(run_dir)["exit_code"] == 1


@pytest.mark.integration
def test_everything_stays_in_the_study_dir(tmp_path: Path) -> None:
    study_dir = tmp_path / "study"
    _one_trial(study_dir)
    assert [p.name for p in tmp_path.iterdir()] == ["study"]
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        assert Path(os.environ[name]).is_relative_to(study_dir.resolve())


@pytest.mark.integration
def _complete(log: Path) -> bool:
    try:
        return read_offline_run(log)["exit_code"] is not None
    except struct.error:  # shorter than a header yet
        return False


def test_killed_run_reads_back_without_exit_code(tmp_path: Path) -> None:
    _one_trial(tmp_path)
    (run_dir,) = offline_runs(tmp_path)
    (log,) = run_dir.glob("run-*.wandb")
    # W&B's service process may still be writing the log after finish() returns (seen on a loaded machine):
    # tear it only once it holds the whole run
    wait_for(lambda: _complete(log), 30, "the offline run's log to be complete")
    torn = tmp_path / "torn.wandb"
    torn.write_bytes(log.read_bytes()[: log.stat().st_size // 2])  # as if killed mid-write
    rec = read_offline_run(torn)
    assert rec["group"] == "demo" and rec["exit_code"] is None


@pytest.mark.integration
def test_broken_wandb_init_is_a_noop_with_one_warning(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import wandb

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("wandb is broken\nsecond line")

    monkeypatch.setattr(wandb, "init", boom)
    for number in range(2):
        run = tracking.start_trial_run(study="demo", number=number, config={}, params={},
                                       mode="offline", study_dir=tmp_path)
        assert not run.active
        run.log({"train/loss": 1.0}, step=1)
        run.finish({"eval_loss": 1.0}, failed=True)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1  # warned once, on one line
    assert "W&B init failed" in err[0] and "RuntimeError: wandb is broken" in err[0]


class _BrokenRun:
    def __init__(self) -> None:
        self.calls = 0

    def log(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        raise OSError("disk full")


def test_broken_log_turns_the_run_into_a_noop(capsys: pytest.CaptureFixture[str]) -> None:
    broken = _BrokenRun()
    run = tracking.TrialRun(broken)
    run.log({"train/loss": 1.0}, step=1)
    run.log({"train/loss": 0.5}, step=2)
    run.finish({"eval_loss": 1.0}, failed=False)
    assert broken.calls == 1 and not run.active
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("harness: W&B log failed (OSError: disk full)")
