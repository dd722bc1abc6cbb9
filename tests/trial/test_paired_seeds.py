"""Common random numbers: a seed fixes the data order and the adapter initialisation for every config run
with it, so the differences between configs run on the same seeds are paired (harness.evidence.stats.paired)."""

from __future__ import annotations

import pytest
import torch

from harness.config.dataset import DataSpec
from harness.config.lora import LoraSpec
from harness.config.model import ModelSpec, QuantSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig
from harness.data import load_examples, tokenize_splits
from harness.trial.models import load_base_model, load_tokenizer
from harness.trial.run import PreparedData, attach_adapter, training_epochs

pytestmark = pytest.mark.integration  # builds tiny-llama adapters in-process


def _config(seed: int, r: int = 4, alpha: float = 8.0, lr: float = 1e-3, dropout: float = 0.0) -> TrialConfig:
    return TrialConfig(model=ModelSpec("tiny-llama"), quant=QuantSpec("none"),
                       lora=LoraSpec(r=r, alpha=alpha, dropout=dropout),
                       train=TrainSpec(learning_rate=lr, max_steps=3, batch_size=4, seed=seed),
                       data=DataSpec(eval_size=16, train_size=64))


def _batches(cfg: TrialConfig, tiny_checkpoint: str, epochs: int = 2) -> list[list[list[int]]]:
    tokenizer = load_tokenizer(tiny_checkpoint)
    data = tokenize_splits(load_examples(cfg.data), tokenizer, cfg.data)
    prepared = PreparedData(tokenizer=tokenizer, tokenized=data, eval_batches=[], split_hash="", source="")
    make_epoch = training_epochs(prepared, cfg)
    return [[b.input_ids.tolist() for b in make_epoch(e)] for e in range(epochs)]


def _lora_a(cfg: TrialConfig, tiny_checkpoint: str) -> dict[str, torch.Tensor]:
    model = attach_adapter(load_base_model(tiny_checkpoint, "none", "cpu"), cfg)
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n}


def test_two_configs_on_one_seed_see_the_same_batches_and_two_seeds_do_not(tiny_checkpoint: str) -> None:
    a = _batches(_config(seed=3, r=4, lr=1e-3), tiny_checkpoint)
    b = _batches(_config(seed=3, r=8, alpha=32.0, lr=5e-4, dropout=0.1), tiny_checkpoint)  # other shapes too
    assert a == b
    assert a[0] != a[1]  # each epoch reshuffles
    assert a != _batches(_config(seed=4, r=4, lr=1e-3), tiny_checkpoint)


def test_one_seed_gives_the_same_adapter_initialisation_where_shapes_match(tiny_checkpoint: str) -> None:
    first = _lora_a(_config(seed=3, lr=1e-3, alpha=8.0), tiny_checkpoint)
    same_shapes = _lora_a(_config(seed=3, lr=3e-4, alpha=16.0, dropout=0.1), tiny_checkpoint)
    other_seed = _lora_a(_config(seed=4, lr=1e-3, alpha=8.0), tiny_checkpoint)
    assert first.keys() == same_shapes.keys() == other_seed.keys() and first
    assert all(torch.equal(first[n], same_shapes[n]) for n in first)
    assert not any(torch.equal(first[n], other_seed[n]) for n in first)

