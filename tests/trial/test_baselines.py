"""The untuned baselines kept on the machine: read back only for exactly what they were scored on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.config.dataset import DataSpec
from harness.config.evaluation import EvalSpec
from harness.config.lora import LoraSpec
from harness.config.model import ModelSpec, QuantSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig
from harness.trial import baselines
from harness.trial.baselines import baseline_key, baseline_path, cached_baseline
from harness.trial.run import TrialCache

pytestmark = pytest.mark.integration  # scores tiny-llama in-process


def _config(mode: str = "none", **eval_changes) -> TrialConfig:
    return TrialConfig(model=ModelSpec("tiny-llama"), quant=QuantSpec(mode), lora=LoraSpec(r=1, alpha=1.0),
                       train=TrainSpec(batch_size=4), data=DataSpec(eval_size=8, train_size=16),
                       eval=EvalSpec(**{"metrics": (), "generate_size": 0, "batch_size": 4, **eval_changes}))


@pytest.fixture
def cache(tiny_checkpoint: str, monkeypatch: pytest.MonkeyPatch) -> TrialCache:
    """A TrialCache whose tiny-llama checkpoint is the test run's shared one (converted before HARNESS_CACHE
    moves): only the baselines go to the fresh cache folder."""
    cache = TrialCache()
    monkeypatch.setattr(cache, "checkpoint", lambda name: tiny_checkpoint)
    return cache


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """A fresh baseline cache folder; the modes run_baseline really scored, in order."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    real, calls = baselines.run_baseline, []

    def scoring(config, cache):
        calls.append(config.quant.mode)
        return real(config, cache)

    monkeypatch.setattr(baselines, "run_baseline", scoring)
    return calls


def test_a_baseline_is_scored_once_and_then_read_back_equal(counted: list[str], cache: TrialCache) -> None:
    first, was_cached = cached_baseline(_config(), cache)
    assert not was_cached and counted == ["none"]
    again, was_cached = cached_baseline(_config(), cache)
    assert was_cached and counted == ["none"] and again == first
    assert baseline_path(baseline_key(_config(), cache)).is_file()
    # Another mode, other eval settings: other keys, scored again. An injected fault never uses the cache.
    assert not cached_baseline(_config("nf4"), cache)[1]
    assert not cached_baseline(_config(batch_size=2), cache)[1]
    assert counted == ["none", "nf4", "none"]
    assert not cached_baseline(dataclasses.replace(_config(), fault="raise"), cache)[1]
    assert counted == ["none", "nf4", "none", "none"]


def test_a_damaged_cache_file_is_scored_again(counted: list[str], cache: TrialCache) -> None:
    cached_baseline(_config(), cache)
    path = baseline_path(baseline_key(_config(), cache))
    path.write_text(json.dumps({"mode": "none"}))  # written by an older harness, say
    score, was_cached = cached_baseline(_config(), cache)
    assert not was_cached and counted == ["none", "none"] and score.eval_loss > 0
    assert json.loads(path.read_text())["eval_loss"] == score.eval_loss
