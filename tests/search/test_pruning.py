"""Pruning within a quantization mode, after a warm-up of reports, never of confirmation runs
(hand-built studies: no training)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution

from helpers import load_study as load, lr_decades_setup, records, run_cli
from harness.data import intermediate_subset
from harness.config.training import TrainSpec
from harness.search.pruning import (PRUNE_FROM_REPORT, PerModePruner, asha_rungs, make_pruner, pruning_interval,
                                    pruning_schedule)

DISTS = {"quantization": CategoricalDistribution(["none", "nf4"])}
# Per report (steps 1-4): 16-bit starts low and ends at 1.5; nf4 starts high (its base lost precision)
# and ends better, at 1.4.
CURVES = {"none": [2.0, 1.8, 1.6, 1.5], "nf4": [3.0, 2.6, 2.0, 1.4]}


def _study(pruner: optuna.pruners.BasePruner) -> optuna.Study:
    study = optuna.create_study(pruner=pruner)
    for mode, curve in CURVES.items():
        for offset in (0.0, 0.01, 0.02):
            study.add_trial(optuna.trial.create_trial(
                params={"quantization": mode}, distributions=DISTS, value=curve[-1] + offset,
                intermediate_values={step + 1: v + offset for step, v in enumerate(curve)}))
    return study


def _new_trial(study: optuna.Study, mode: str, reports: list[float], **attrs: object) -> bool:
    """Run a trial of `mode`, report the values at steps 1, 2, ... and say whether it is pruned at the last."""
    study.enqueue_trial({"quantization": mode}, user_attrs=attrs)
    trial = study.ask()
    trial.suggest_categorical("quantization", ["none", "nf4"])
    for step, value in enumerate(reports, start=1):
        trial.report(value, step)
    return bool(trial.should_prune())


def _median(**kwargs: int) -> optuna.pruners.MedianPruner:
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=PRUNE_FROM_REPORT, **kwargs)


def test_a_mode_that_starts_higher_but_ends_better_is_not_pruned_away() -> None:
    on_track = CURVES["nf4"][:2]  # an nf4 trial exactly on its mode's curve, at report 2
    assert _new_trial(_study(_median()), "nf4", on_track) is True, "control: one median across modes prunes it"
    assert _new_trial(_study(PerModePruner(_median())), "nf4", on_track) is False
    # ... while an nf4 trial that is worse than its own mode is still pruned.
    assert _new_trial(_study(PerModePruner(_median())), "nf4", [3.5, 3.2]) is True


def test_no_trial_is_pruned_on_its_first_report() -> None:
    pruner = make_pruner("median", max_steps=4, eval_every=1)
    assert _new_trial(_study(pruner), "none", [9.0]) is False
    assert _new_trial(_study(pruner), "none", [9.0, 9.0]) is True


def test_a_mode_is_not_pruned_before_it_has_three_completed_trials() -> None:
    study = optuna.create_study(pruner=make_pruner("median", max_steps=4, eval_every=1))
    for offset in (0.0, 0.01, 0.02):  # three 16-bit trials only
        study.add_trial(optuna.trial.create_trial(
            params={"quantization": "none"}, distributions=DISTS, value=1.5 + offset,
            intermediate_values={1: 2.0, 2: 1.8, 3: 1.6, 4: 1.5}))
    assert _new_trial(study, "nf4", [9.0, 9.0, 9.0]) is False  # nf4 has no trials of its own yet


def test_confirmation_runs_are_never_pruned_and_never_count() -> None:
    study = _study(PerModePruner(_median()))
    assert _new_trial(study, "none", [9.0, 9.0], confirmation_of=0, seed=1) is False
    # Three terrible completed confirmation runs of nf4 would raise its median if they counted.
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(
            params={"quantization": "nf4"}, distributions=DISTS, value=9.0, user_attrs={"confirmation_of": 3},
            intermediate_values={1: 9.0, 2: 9.0, 3: 9.0, 4: 9.0}))
    assert _new_trial(study, "nf4", [3.5, 3.2]) is True


def test_hyperband_works_within_a_mode() -> None:
    pruner = make_pruner("hyperband", max_steps=8, eval_every=1)
    assert isinstance(pruner, PerModePruner)
    study = optuna.create_study(pruner=pruner)
    for number in range(12):  # hyperband keeps its own rung bookkeeping in the real storage
        mode = "none" if number % 2 else "nf4"
        study.enqueue_trial({"quantization": mode})
        trial = study.ask()
        trial.suggest_categorical("quantization", ["none", "nf4"])
        pruned = False
        for step in range(1, 9):
            trial.report(CURVES[mode][min(step, 4) - 1] + 0.1 * number, step)
            if trial.should_prune():
                pruned = True
                break
        study.tell(trial, None if pruned else CURVES[mode][-1] + 0.1 * number,
                   state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE)
    states = {t.state for t in study.trials}
    assert optuna.trial.TrialState.COMPLETE in states


@pytest.mark.parametrize("max_steps, eval_every, expected", [(40, 0, 8), (40, 5, 5), (3, 0, 1)])
def test_pruning_interval(max_steps: int, eval_every: int, expected: int) -> None:
    assert pruning_interval(max_steps, eval_every) == expected


@pytest.mark.parametrize("max_steps, warmup, rungs", [(20, 1, (2, 6)), (30, 2, (3, 9)), (9, 0, (1, 3)),
                                                     (40, 8, (8, 24)), (3, 0, (1,)), (1, 0, ())])
def test_asha_rungs_follow_the_budget_and_skip_the_warm_up(max_steps: int, warmup: int, rungs: tuple) -> None:
    assert asha_rungs(max_steps, warmup) == rungs


def test_the_recorded_schedule_is_where_trials_evaluate() -> None:
    assert pruning_schedule("asha", 20, warmup_steps=1) == {"pruner": "asha", "eval_steps": [2, 6],
                                                            "reduction_factor": 3}
    median = pruning_schedule("median", 20)
    assert median == {"pruner": "median", "eval_steps": [4, 8, 12, 16], "prune_from_step": 8}
    train = TrainSpec(max_steps=20, eval_at=(2, 6))
    assert [s for s in range(1, 21) if train.evaluates_at(s)] == [2, 6]
    assert [s for s in range(1, 21) if TrainSpec(max_steps=20, eval_every=4).evaluates_at(s)] == median["eval_steps"]


def test_asha_stops_a_trial_behind_its_own_mode_at_a_rung() -> None:
    """At the first rung (step 2 of 20) a trial goes on only when it is in the best third of its mode."""
    study = optuna.create_study(pruner=make_pruner("asha", max_steps=20, warmup_steps=1))

    def trial_at_rung(mode: str, value: float) -> bool:
        study.enqueue_trial({"quantization": mode})
        trial = study.ask()
        trial.suggest_categorical("quantization", ["none", "nf4"])
        trial.report(value, 2)
        pruned = trial.should_prune()
        study.tell(trial, None if pruned else value,
                   state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE)
        return pruned

    assert [trial_at_rung("none", v) for v in (2.0, 1.9, 1.8)] == [False, False, False]  # each the best so far
    assert trial_at_rung("none", 1.95) is True  # not in the best third of four 16-bit trials
    assert trial_at_rung("nf4", 3.0) is False  # far worse than every 16-bit trial, but the first of its mode


def test_no_pruner_is_a_nop() -> None:
    assert isinstance(make_pruner("none", 10), optuna.pruners.NopPruner)


@pytest.mark.integration
def test_a_pruner_prunes_and_records_why(tmp_path: Path) -> None:
    # One mode (the pruner compares a trial with its own mode only) and learning rates over three decades,
    # so that after 3 completed trials some fall behind the median.
    space, no_generation = lr_decades_setup(tmp_path)
    out = tmp_path / "p"
    args = ("sweep", "-e", str(no_generation), "--model", "tiny-llama", "--space", str(space), "--max-steps", "10",
            "--pruner", "median", "--sampler", "random", "--trials", "8", "--study", "p", "--out", str(out),
            "--wandb", "disabled")
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(out, "p")
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned, [t.state.name for t in study.trials]
    for trial in pruned:
        assert trial.user_attrs["reason"].startswith("pruned at step")
        assert trial.intermediate_values  # the eval losses it was judged on are stored
        assert trial.user_attrs["result"]["steps"] < 10
    rows = {r["number"]: r for r in records(out)}
    assert all(rows[t.number]["state"] == "PRUNED" and rows[t.number]["eval_loss"] is not None for t in pruned)
    # Intermediate evaluations score the study's recorded subset (16 of the 64 held-out examples, by default).
    n_eval = study.user_attrs["n_eval"]
    subset = {"size": 16, "of": n_eval, "indices": list(intermediate_subset(n_eval, 16, study.user_attrs["split_hash"]))}
    assert study.user_attrs["intermediate_subset"] == subset
    for trial in study.trials:
        result = trial.user_attrs["result"]
        assert result["eval_examples"] == (16 if trial.state.name == "PRUNED" else n_eval)
        assert all(h["eval_examples"] == 16 for h in rows[trial.number]["history"]
                   if "eval_loss" in h and h["step"] < result["steps"])
    # A resumed study keeps the subset; one whose stored subset differs is refused in one line.
    one_more = [("1" if previous == "--trials" else a) for previous, a in zip(("",) + args, args)]
    proc = run_cli(*one_more)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(out, "p")
    assert len(study.trials) == 9 and study.user_attrs["intermediate_subset"] == subset
    study.set_user_attr("intermediate_subset", {**subset, "indices": subset["indices"][::-1]})
    proc = run_cli(*one_more)
    assert proc.returncode == 2 and "intermediate evaluations scored held-out examples" in proc.stderr, proc.stderr


@pytest.mark.integration
def test_an_asha_sweep_evaluates_at_the_rungs_and_records_them(tmp_path: Path) -> None:
    space, no_generation = lr_decades_setup(tmp_path)
    out = tmp_path / "a"
    proc = run_cli("sweep", "-e", str(no_generation), "--model", "tiny-llama", "--space", str(space), "--max-steps",
                   "9", "--pruner", "asha", "--sampler", "random", "--trials", "6", "--study", "a", "--out", str(out),
                   "--wandb", "disabled")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(out, "a")
    assert study.user_attrs["pruning_schedule"] == {"pruner": "asha", "eval_steps": [1, 3], "reduction_factor": 3}
    for trial in study.trials:
        assert set(trial.intermediate_values) <= {1, 3}, trial.intermediate_values
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned, [(t.state.name, t.intermediate_values) for t in study.trials]
    assert all(t.user_attrs["result"]["steps"] in (1, 3) for t in pruned)
