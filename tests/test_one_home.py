"""Concepts with one home each: ranking by an objective's direction, the untuned baseline of any objective,
a storage URL fit to print, the paths of a study. Every command reads them from the same place, so they
cannot disagree (the perplexity baseline once did)."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from helpers import run_cli
from harness.evidence.compare import build_comparison
from harness.search.progress import print_sweep_end, ranked_records
from harness.search.readout import baseline_of, open_view
from harness.evidence.recommend import recommend_study
from harness.config.errors import SpecError
from harness.config.objectives import OBJECTIVES, TASK_METRICS, direction_of, perplexity, ranked
from harness.config.sweep import SweepSpec
from harness.search.study import public_url
from harness.search.sweep import SweepOutcome

# --- ranking ------------------------------------------------------------------------------------------


def test_ranked_puts_the_best_first_in_either_direction_and_missing_values_last() -> None:
    values = [0.5, None, 0.2, float("nan"), 0.9]
    assert ranked(values, "minimize", lambda v: v)[:3] == [0.2, 0.5, 0.9]
    assert ranked(values, "maximize", lambda v: v)[:3] == [0.9, 0.5, 0.2]
    assert ranked(values, "maximize")[3] is None and math.isnan(ranked(values, "maximize")[4])
    ties = [("a", 1.0), ("b", 1.0), ("c", 0.0)]
    assert ranked(ties, "maximize", lambda t: t[1]) == [("a", 1.0), ("b", 1.0), ("c", 0.0)]  # ties keep order
    with pytest.raises(SpecError, match="direction"):
        ranked(values, "up")


@pytest.mark.parametrize("objective", [*OBJECTIVES, *TASK_METRICS])
def test_every_objective_has_one_direction_used_everywhere(objective: str) -> None:
    spec = SweepSpec(objectives=(objective,))
    assert spec.directions == [direction_of(objective)]
    records = [{"number": n, "state": "COMPLETE", "result": {objective: v}} for n, v in enumerate([2.0, 1.0, 3.0])]
    best = ranked_records(records, objective)[0]["number"]
    assert best == (1 if direction_of(objective) == "minimize" else 2)


# --- the untuned baseline of every objective -----------------------------------------------------------

ATTRS = {"baseline_by_mode": {"none": {"eval_loss": 2.0, "metrics": {"exact_match": 0.25, "rouge_l": 0.5}},
                              "nf4": {"eval_loss": 2.5, "metrics": {"exact_match": 0.125}},
                              "int8": {"eval_loss": None, "missing": "killed by SIGKILL"}}}


@pytest.mark.parametrize("objective", [*OBJECTIVES, *TASK_METRICS])
def test_the_baseline_of_every_objective(objective: str) -> None:
    expected = {"eval_loss": 2.0, "perplexity": math.exp(2.0), "exact_match": 0.25, "rouge_l": 0.5}.get(objective)
    assert baseline_of(ATTRS, "none", objective) == expected  # costs (memory, time) have no untuned value
    assert baseline_of(ATTRS, "int8", objective) is None
    legacy = {"baseline_eval_loss": 2.0, "baseline_metrics": {"exact_match": 0.25, "rouge_l": 0.5}}
    assert baseline_of(legacy, "none", objective) == expected  # studies recorded before per-mode baselines
    assert baseline_of(ATTRS, "nf4", "perplexity") == perplexity(2.5)


DISTS = {"quantization": CategoricalDistribution(["none"]), "lora_r": CategoricalDistribution([8]),
         "lora_alpha": FloatDistribution(1.0, 64.0), "learning_rate": FloatDistribution(1e-5, 1e-2, log=True),
         "lora_dropout": CategoricalDistribution([0.0]), "target_modules": CategoricalDistribution(["all-linear"])}


def _perplexity_study(tmp_path: Path) -> str:
    """A hand-built study whose objective is perplexity (no training)."""
    url = f"sqlite:///{tmp_path}/p.db"
    study = optuna.create_study(study_name="p", storage=url, direction="minimize")
    study.set_user_attr("sweep", {"model": "tiny-llama", "data": "stdlib-qa", "max_steps": 10,
                                  "objectives": ["perplexity"]})
    study.set_user_attr("objectives", ["perplexity"])
    study.set_user_attr("baseline_by_mode", {"none": {"eval_loss": 2.0, "metrics": {}}})
    for lr, loss in ((1e-4, 1.5), (1e-3, 1.2)):
        params = {"quantization": "none", "lora_r": 8, "lora_alpha": 16.0, "learning_rate": lr,
                  "lora_dropout": 0.0, "target_modules": "all-linear"}
        result = {"eval_loss": loss, "perplexity": perplexity(loss), "peak_memory_mb": 100.0, "steps": 10,
                  "train_seconds": 5.0, "device_name": "cpu X"}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=DISTS, value=perplexity(loss),
                                                  user_attrs={"status": "complete", "result": result, "seed": 0}))
    return url


@pytest.mark.integration  # starts `harness status`
def test_a_perplexity_baseline_is_the_same_in_every_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = _perplexity_study(tmp_path)
    base = math.exp(2.0)
    view = open_view("p", url)
    assert view.baseline() == pytest.approx(base)
    assert build_comparison(view).baseline == pytest.approx(base)
    evidence = recommend_study(view)["evidence"]
    assert evidence["baseline"] == pytest.approx(base) and evidence["metrics"]["perplexity"]["mean"] < base
    outcome = SweepOutcome("p", tmp_path, url, study_attrs=dict(optuna.load_study(study_name="p", storage=url).user_attrs),
                           best={"number": 1, "values": [perplexity(1.2)], "params": {}})
    print_sweep_end(outcome, ("perplexity",))
    assert f"untuned base model: {base:.4f}" in capsys.readouterr().out
    status = run_cli("status", "--study", "p", "--storage", url)
    assert status.returncode == 0, status.stderr
    assert f"untuned base model perplexity: {base:.4f}" in status.stdout


# --- storage URLs and paths --------------------------------------------------------------------------


def test_public_url_hides_only_the_password() -> None:
    assert public_url("postgresql://alice:s3cret@db.example:5432/optuna") == "postgresql://alice:***@db.example:5432/optuna"
    assert public_url("postgresql://db.example/optuna") == "postgresql://db.example/optuna"
    assert public_url("sqlite:///experiments/a/study.db") == "sqlite:///experiments/a/study.db"
    assert public_url("experiments/a/study.journal") == "experiments/a/study.journal"


@pytest.mark.integration  # starts `harness status`
def test_a_study_open_error_never_prints_the_password(tmp_path: Path) -> None:
    proc = run_cli("status", "--study", "x", "--storage", "postgresql://alice:s3cret@127.0.0.1:9/none")
    assert proc.returncode == 2 and "s3cret" not in proc.stderr and "alice:***@" in proc.stderr, proc.stderr


def test_the_sweep_and_the_readout_commands_derive_the_same_paths() -> None:
    spec = SweepSpec(study="s")
    assert (spec.out_dir, spec.storage_url) == ("experiments/s", "sqlite:///experiments/s/study.db")
    spec = SweepSpec(study="s", out="runs/s")
    assert spec.storage_url == "sqlite:///runs/s/study.db"


def test_one_line_is_the_first_line_of_an_error_with_its_type() -> None:
    from harness.config.errors import one_line

    assert one_line(ValueError("bad value\n  detail\n  more")) == "ValueError: bad value"
    assert one_line(KeyError()) == "KeyError"
    assert one_line("first\nsecond") == "first" and one_line("") == ""
    assert len(one_line(RuntimeError("x" * 1000))) == 300 and len(one_line(RuntimeError("x" * 1000), 50)) == 50
