"""--task-metrics: which trials generate answers, and the top-K scored after the sweep on saved adapters."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import load_study, records, run_cli
from harness.config.errors import SpecError
from harness.config.objectives import TASK_METRICS
from harness.config.sweep import SweepSpec
from harness.search.readout import open_view


@pytest.mark.parametrize("value", ["all", "none", "top-1", "top-12"])
def test_task_metrics_values(value: str) -> None:
    assert SweepSpec(task_metrics=value).task_metrics == value


@pytest.mark.parametrize("value", ["top-0", "top", "best-3", "some", ""])
def test_a_bad_task_metrics_value_names_the_choices(value: str) -> None:
    with pytest.raises(SpecError, match="task_metrics must be all, none or top-K"):
        SweepSpec(task_metrics=value)


def test_a_task_metric_objective_needs_every_trial_scored() -> None:
    metric = sorted(TASK_METRICS)[0]
    with pytest.raises(SpecError, match=f"objective {metric} is a task metric"):
        SweepSpec(task_metrics="top-2", objectives=(metric,))
    assert SweepSpec(task_metrics="top-2").task_metrics_top == 2 and SweepSpec().task_metrics_top is None


@pytest.mark.integration
def test_top_k_scores_the_best_trials_after_the_sweep_as_the_trials_would_have(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("axes:\n  lora_r: 4\n  lora_alpha: {ratio: 2}\n"
                     "  learning_rate: {choices: [1.0e-4, 3.0e-3, 3.0e-2]}\n  quantization: none\n")
    exp = tmp_path / "exp.yaml"
    exp.write_text("data_options: {eval_size: 8, train_size: 32}\ntrain: {batch_size: 4}\n"
                   "eval: {generate_size: 4, max_new_tokens: 4}\n")
    common = ("sweep", "-e", str(exp), "--model", "tiny-llama", "--space", str(space), "--max-steps", "3",
              "--wandb", "disabled", "--sampler", "grid", "--trials", "3", "--seed", "1")
    every = run_cli(*common, "--study", "every", "--out", str(tmp_path / "every"))
    assert every.returncode == 0, every.stderr[-3000:]
    top = run_cli(*common, "--study", "top", "--out", str(tmp_path / "top"), "--task-metrics", "top-2")
    assert top.returncode == 0, top.stderr[-3000:]

    # While the sweep runs no trial generates; afterwards the two best are scored on their saved adapters.
    for record in records(tmp_path / "top"):
        assert record["result"]["generation_seconds"] == 0 and not set(record["metrics"]) & set(TASK_METRICS)
    study = load_study(tmp_path / "top", "top")
    best = sorted((t for t in study.trials if t.value is not None), key=lambda t: t.value)[:2]
    after = study.user_attrs["task_metrics_after"]
    assert sorted(after) == sorted(str(t.number) for t in best)
    assert top.stderr.count("on its saved adapter...") == 2
    assert sorted(p.name for p in (tmp_path / "top" / "adapters").iterdir()) == sorted(f"trial-{t.number}" for t in best)
    assert (tmp_path / "top" / "best_adapter").resolve().name == f"trial-{best[0].number}"

    # The metrics equal those the same trial scored itself in the study where every trial generated.
    scored_alone = {r["params"]["learning_rate"]: r["metrics"] for r in records(tmp_path / "every")}
    for trial in best:
        mine = after[str(trial.number)]["metrics"]
        assert mine and set(mine) <= set(TASK_METRICS) and after[str(trial.number)]["seconds"] > 0
        alone = {k: v for k, v in scored_alone[trial.params["learning_rate"]].items() if k in mine}
        assert mine == pytest.approx(alone, abs=1e-12)
    # The read-outs see them as the trial's results.
    rows = {r.number: r for r in open_view("top", out=str(tmp_path / "top")).rows}
    for trial in best:
        assert {k: rows[trial.number].result[k] for k in after[str(trial.number)]["metrics"]} == \
            after[str(trial.number)]["metrics"]

    # Run again (the grid is exhausted: no new trial): nothing is scored twice.
    again = run_cli(*common, "--study", "top", "--out", str(tmp_path / "top"), "--task-metrics", "top-2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "on its saved adapter" not in again.stderr
    assert load_study(tmp_path / "top", "top").user_attrs["task_metrics_after"] == after
