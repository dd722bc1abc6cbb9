"""--time-budget: no trial starts that is predicted to end past the budget (the planner's prediction until a
trial has finished, the measured mean after), the sweep ends saying so, and bad durations are one line, exit 2.
Deterministic: the budget's clock is a fake that a finished trial moves on by a fixed amount."""

from __future__ import annotations

from pathlib import Path

import pytest

import harness
from harness.search import sweep as sweep_module
from harness.search import time_budget
from harness.search.time_budget import TimeBudget, end_line, stop_note
from helpers import assert_one_line_error, fast_experiment, load_study, run_cli


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_trial_starts_only_when_it_is_predicted_to_end_within_the_budget() -> None:
    clock = FakeClock()
    budget = TimeBudget(250.0, clock=clock, predicted_trial_seconds=100.0)
    assert budget.allows() and not budget.allows(3)  # a pack of 3 would take 300 s
    clock.now += 100
    budget.ran(100.0, 1)
    assert budget.allows()  # 100 spent + 100 predicted <= 250
    clock.now += 100
    budget.ran(100.0, 1)
    assert not budget.allows()  # 200 + 100 > 250: Optuna's timeout would start it and overrun by 50 s
    assert "would end past the budget of 4.2 min (50 s left)" in stop_note(budget, 1, 2)


def test_the_measured_mean_replaces_the_prediction_once_a_trial_has_finished() -> None:
    clock = FakeClock()
    budget = TimeBudget(250.0, clock=clock, predicted_trial_seconds=10.0)
    clock.now += 120
    budget.ran(240.0, 2)  # a pack of two in 240 s: 120 s per trial
    assert budget.measured and budget.trial_seconds() == 120.0
    assert budget.allows() and not budget.allows(2)
    unpredicted = TimeBudget(60.0, clock=clock)  # no prediction at all: whatever time is left
    assert unpredicted.allows()
    clock.now += 60
    assert not unpredicted.allows()


def test_the_end_line_says_how_many_ran_how_long_and_that_the_budget_stopped_it() -> None:
    clock = FakeClock()
    budget = TimeBudget(300.0, clock=clock, predicted_trial_seconds=100.0)
    clock.now += 200
    budget.ran(200.0, 2)
    line = end_line(budget.summary(trials=2, stopped=True))
    assert line.startswith("time budget 5.0 min: 2 trials ran within it in 3.3 min; the budget stopped the sweep")
    assert "(~1.7 min, measured)" in line
    assert end_line(budget.summary(trials=2, stopped=False)).endswith("(every trial asked for)")


def test_a_finished_sweep_prints_the_budget_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.search.outcome import SweepOutcome
    from harness.search.progress import print_sweep_end

    summary = {"seconds": 250.0, "trials": 2, "elapsed_seconds": 200.0, "stopped": True, "trial_seconds": 100.0,
               "measured": True}
    print_sweep_end(SweepOutcome("b", tmp_path, "sqlite:///x.db", time_budget=summary), ("eval_loss",))
    assert "time budget 4.2 min: 2 trials ran within it in 3.3 min; the budget stopped the sweep" in capsys.readouterr().out


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The budget's clock moves on 100 s whenever a trial finishes; the planner predicts 100 s a trial."""
    clock = FakeClock()
    monkeypatch.setattr(time_budget, "CLOCK", clock)
    finish = sweep_module.Sweep.finish_trial

    def finish_after_100_s(self, *args, **kwargs) -> None:
        clock.now += 100
        finish(self, *args, **kwargs)

    monkeypatch.setattr(sweep_module.Sweep, "finish_trial", finish_after_100_s)
    monkeypatch.setattr(sweep_module, "planned_trial_seconds", lambda *args: 100.0)
    return clock


@pytest.mark.integration
@pytest.mark.usefixtures("tiny_checkpoint", "fake_time")
def test_a_sweep_stops_before_the_trial_that_would_overrun_and_a_resume_has_its_own_budget(tmp_path: Path) -> None:
    experiment, out = fast_experiment(tmp_path), tmp_path / "b"
    handle = harness.sweep(experiment, trials=5, study="b", out=str(out), time_budget="250s", say=lambda _: None)
    summary = handle.outcome.time_budget
    assert len(load_study(out, "b").trials) == 2, "a third trial would have ended at 300 s, past 250 s"
    assert summary["trials"] == 2 and summary["stopped"] and summary["elapsed_seconds"] == 200.0
    assert "time_budget" not in str(load_study(out, "b").user_attrs.get("sweep")), "the budget is per invocation"
    again = harness.sweep(experiment, trials=1, study="b", out=str(out), say=lambda _: None)  # no budget given
    assert again.outcome.time_budget is None and len(load_study(out, "b").trials) == 3


@pytest.mark.integration
@pytest.mark.usefixtures("tiny_checkpoint", "fake_time")
def test_no_trial_starts_when_the_prediction_is_over_the_budget(tmp_path: Path) -> None:
    handle = harness.sweep(fast_experiment(tmp_path), trials=2, study="n", out=str(tmp_path / "n"),
                           time_budget=90, say=lambda _: None)
    assert handle.outcome.time_budget["trials"] == 0 and handle.outcome.time_budget["stopped"]
    assert len(load_study(tmp_path / "n", "n").trials) == 0


@pytest.mark.parametrize("command", [["sweep", "--model", "tiny-llama"], ["worker", "--study", "w"]])
@pytest.mark.parametrize("value", ["0", "-5m", "abc"])
def test_a_bad_time_budget_is_one_line_and_exit_2(tmp_path: Path, command: list[str], value: str) -> None:
    proc = run_cli(*command, "--time-budget", value, "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert_one_line_error(proc, "--time-budget", repr(value))
    assert not (tmp_path / "x").exists()
