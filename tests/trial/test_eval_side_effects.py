"""An evaluation never changes training or the weights it scores, in every quantization mode.

On a CPU with AVX512-BF16, bitsandbytes repacks a 4-bit layer's weight in place into an inference
layout at its first eval-mode forward without grad; afterwards backward through it drops the
gradient of the frozen base path (torch: "This may lead to silently incorrect behavior"). harness
turns the repack off (`models.keep_4bit_training_layout`). These tests pretend the CPU has
AVX512-BF16 (bitsandbytes reads that when a layer is built), so they exercise the repack on any
machine; the control test shows that the pretence does trigger it when the repack is left on.
"""

from __future__ import annotations


import pytest
import torch

from harness.data import load_examples, make_batches, tokenize_splits
from harness.trial.generation import generate
from harness.trial.models import load_base_model, load_tokenizer
from harness.trial.scoring import eval_loss
from harness.config.dataset import DataSpec
from harness.config.evaluation import EvalSpec
from harness.config.lora import LoraSpec
from harness.config.model import QUANTIZATION_MODES, ModelSpec, QuantSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig
from harness.trial.run import TrialCache, attach_adapter, run_trial

pytestmark = pytest.mark.integration  # loads and trains tiny-llama in every mode

FOUR_BIT = [m for m in QUANTIZATION_MODES if m.startswith(("nf4", "fp4"))]


@pytest.fixture
def pretend_avx512_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every Linear4bit built from now on believe the CPU has AVX512-BF16."""
    import bitsandbytes.nn.modules as bnb_modules

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)


def _config(mode: str, eval_every: int = 0) -> TrialConfig:
    return TrialConfig(model=ModelSpec("tiny-llama"), quant=QuantSpec(mode), lora=LoraSpec(r=4, alpha=8.0),
                       train=TrainSpec(learning_rate=1e-2, max_steps=6, batch_size=4, eval_every=eval_every),
                       data=DataSpec(eval_size=8, train_size=48), eval=EvalSpec(metrics=()))


@pytest.fixture(scope="module")
def data(tiny_checkpoint: str):
    cfg = _config("none")
    tokenizer = load_tokenizer(tiny_checkpoint)
    tokenized = tokenize_splits(load_examples(cfg.data), tokenizer, cfg.data)
    train_batch = make_batches(tokenized.train, 4, tokenizer.pad_token_id, shuffle_seed=0)[0]
    eval_batches = make_batches(tokenized.eval, 4, tokenizer.pad_token_id, shuffle_seed=None)
    return tokenizer, tokenized, train_batch, eval_batches


def _adapted(checkpoint: str, mode: str) -> torch.nn.Module:
    model = attach_adapter(load_base_model(checkpoint, mode, "cpu"), _config(mode))
    torch.manual_seed(1)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at zero, which would make every A gradient zero
            torch.nn.init.normal_(param, std=0.05)
    return model


def _grads(model: torch.nn.Module, batch) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels)
    out.loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _stored_4bit(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Each 4-bit layer's stored weight and its first-level quantization constants."""
    state = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        quant_state = getattr(weight, "quant_state", None)
        if quant_state is not None:
            state[f"{name}.weight"] = weight.data.clone()
            state[f"{name}.absmax"] = quant_state.absmax.clone()
    return state


def _evaluate_and_generate(model: torch.nn.Module, data) -> None:
    tokenizer, tokenized, _, eval_batches = data
    eval_loss(model, eval_batches, "cpu")
    generate(model, tokenizer, tokenized.eval_prompts[:2], max_new_tokens=3, batch_size=2, device="cpu")


@pytest.mark.parametrize("mode", QUANTIZATION_MODES)
def test_lora_gradients_are_the_same_before_and_after_an_eval(mode: str, tiny_checkpoint: str, data,
                                                             pretend_avx512_bf16: None) -> None:
    model = _adapted(tiny_checkpoint, mode)
    stored = _stored_4bit(model)
    before = _grads(model, data[2])
    _evaluate_and_generate(model, data)
    after = _grads(model, data[2])
    assert before.keys() == after.keys() and before
    assert all(g.abs().sum() > 0 for g in before.values()), "every LoRA parameter should get a gradient"
    for name, grad in before.items():
        assert torch.equal(grad, after[name]), f"{mode}: gradient of {name} changed after an eval"
    assert (len(stored) > 0) == (mode in FOUR_BIT)
    for name, tensor in _stored_4bit(model).items():
        assert torch.equal(tensor, stored[name]), f"{mode}: {name} was rewritten by an eval"


@pytest.mark.parametrize("mode", FOUR_BIT)
def test_control_the_pretended_cpu_does_trigger_the_repack(mode: str, tiny_checkpoint: str, data,
                                                           pretend_avx512_bf16: None) -> None:
    """Without keep_4bit_training_layout the same sequence changes the gradients: the tests above can fail."""
    model = _adapted(tiny_checkpoint, mode)
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = True  # what bitsandbytes sets on such a CPU
    before = _grads(model, data[2])
    _evaluate_and_generate(model, data)
    with pytest.warns(UserWarning, match="silently incorrect behavior"):
        after = _grads(model, data[2])
    assert any(not torch.equal(g, after[n]) for n, g in before.items())


@pytest.fixture(scope="module")
def cache() -> TrialCache:
    return TrialCache()


@pytest.mark.parametrize("mode", QUANTIZATION_MODES)
def test_intermediate_evals_do_not_change_a_trials_result(mode: str, cache: TrialCache,
                                                          pretend_avx512_bf16: None) -> None:
    plain = run_trial(_config(mode, eval_every=0), cache)
    evaluated = run_trial(_config(mode, eval_every=2), cache)
    assert plain.status == evaluated.status == "complete", (plain.reason, evaluated.reason)
    assert [h["step"] for h in evaluated.history if "eval_loss" in h] == [2, 4, 6]
    assert evaluated.eval_loss == plain.eval_loss, f"{mode}: {evaluated.eval_loss!r} != {plain.eval_loss!r}"
    losses = [[h["loss"] for h in r.history if "loss" in h] for r in (plain, evaluated)]
    assert losses[0] == losses[1]
