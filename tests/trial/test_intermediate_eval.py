"""Intermediate evaluations score the seeded subset, loss only; the final evaluation scores every example."""

from __future__ import annotations

import dataclasses

import pytest

from harness.config.dataset import DataSpec
from harness.config.evaluation import EvalSpec
from harness.config.lora import LoraSpec
from harness.config.model import ModelSpec, QuantSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig
from harness.data import intermediate_subset
from harness.trial import run
from harness.trial.run import TrialCache, TrialCallbacks, run_trial

pytestmark = pytest.mark.integration  # trains tiny-llama in-process


def _config(seed: int, learning_rate: float, size: int = 4) -> TrialConfig:
    return TrialConfig(model=ModelSpec("tiny-llama"), quant=QuantSpec("none"), lora=LoraSpec(r=4, alpha=8.0),
                       train=TrainSpec(learning_rate=learning_rate, max_steps=4, batch_size=4, eval_every=2, seed=seed),
                       data=DataSpec(eval_size=12, train_size=32),
                       eval=EvalSpec(batch_size=4, intermediate_size=size, metrics=("exact_match",), generate_size=2,
                                     max_new_tokens=2))


@pytest.fixture
def scored(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The held-out positions each eval_loss call of a trial scores, in call order."""
    calls: list[list[int]] = []
    real = run.eval_loss

    def recording(model, batches, device):
        calls.append(sorted(i for batch in batches for i in batch.indices))
        return real(model, batches, device)

    monkeypatch.setattr(run, "eval_loss", recording)
    return calls


def test_every_trial_scores_the_same_subset_at_intermediate_evals(scored: list[list[int]]) -> None:
    cache = TrialCache()
    results = [run_trial(_config(seed, lr), cache) for seed, lr in ((0, 1e-3), (1, 1e-2))]
    split_hash = cache.prepared(_config(0, 1e-3)).split_hash
    subset = list(intermediate_subset(12, 4, split_hash))
    assert scored == [subset, list(range(12))] * 2  # step 2 (subset), then the final evaluation (all)
    for result in results:
        assert result.status == "complete", result.reason
        evals = [h for h in result.history if "eval_loss" in h]
        assert [(h["step"], h["eval_examples"]) for h in evals] == [(2, 4), (4, 12)]
        assert result.eval_examples == 12
        assert result.intermediate_eval_seconds > 0 and result.generation_seconds > 0
        assert result.eval_seconds >= result.generation_seconds


def test_a_pruned_trial_reports_its_loss_on_the_subset(scored: list[list[int]]) -> None:
    cache = TrialCache()
    result = run_trial(_config(0, 1e-3), cache, TrialCallbacks(on_eval=lambda step, loss: True))
    assert result.status == "pruned" and result.steps == 2
    assert result.eval_examples == 4 and result.eval_loss is not None
    assert scored == [list(intermediate_subset(12, 4, cache.prepared(_config(0, 1e-3)).split_hash))]


def test_size_zero_scores_the_whole_split_at_intermediate_evals(scored: list[list[int]]) -> None:
    result = run_trial(dataclasses.replace(_config(0, 1e-3), eval=EvalSpec(intermediate_size=0, metrics=())))
    assert scored == [list(range(12))] * 2
    assert [h["eval_examples"] for h in result.history if "eval_loss" in h] == [12, 12]
