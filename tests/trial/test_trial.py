"""run_trial and its invariants, in-process on tiny-llama: the adapter learns, the base does not move,
failures come back as results."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from harness.data import load_examples, make_batches, tokenize_splits
from harness.trial.models import load_base_model, load_tokenizer
from harness.config.dataset import DataSpec
from harness.config.lora import LoraSpec
from harness.config.model import ModelSpec, QuantSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig
from harness.trial.train import train
from harness.trial.run import TrialCache, TrialCallbacks, attach_adapter, run_trial

pytestmark = pytest.mark.integration  # trains tiny-llama in-process


def config(mode: str = "none", **train: object) -> TrialConfig:
    return TrialConfig(model=ModelSpec("tiny-llama"), quant=QuantSpec(mode), lora=LoraSpec(r=4, alpha=8.0),
                       train=TrainSpec(**{"learning_rate": 1e-2, "max_steps": 3, "batch_size": 4, **train}),
                       data=DataSpec(eval_size=16, train_size=64))


@pytest.fixture(scope="module")
def cache() -> TrialCache:
    return TrialCache()


def _base_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every base parameter and buffer (quantized weights included, as stored)."""
    state = {}
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if "lora_" not in name:
            state[name.replace("base_model.model.", "").replace(".base_layer", "")] = tensor.detach().clone()
    return state


@pytest.mark.parametrize("mode", ["none", "int8", "nf4"])
def test_lora_weights_change_and_base_weights_do_not(mode: str, tiny_checkpoint: str) -> None:
    cfg = config(mode)
    tokenizer = load_tokenizer(tiny_checkpoint)
    data = tokenize_splits(load_examples(cfg.data), tokenizer, cfg.data)
    base = load_base_model(tiny_checkpoint, mode, "cpu")
    before = _base_state(base)
    model = attach_adapter(base, cfg)
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert lora_before and all("lora_" in n for n in lora_before)

    train(model, lambda e: make_batches(data.train, 4, tokenizer.pad_token_id, shuffle_seed=e), cfg.train, "cpu")

    after = _base_state(model)
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), f"base weight {name} changed"
    lora_after = dict(model.named_parameters())
    changed = [n for n, p in lora_before.items() if not torch.equal(p, lora_after[n])]
    assert len(changed) == len(lora_before), "every LoRA matrix should have moved"


def test_a_complete_trial_measures_everything(tmp_path: Path, cache: TrialCache) -> None:
    steps: list[int] = []
    cfg = dataclasses.replace(config(), adapter_dir=str(tmp_path / "adapter"))
    result = run_trial(cfg, cache, TrialCallbacks(on_step=lambda info: steps.append(info.step)))
    assert result.status == "complete", result.reason
    assert steps == [1, 2, 3] and result.steps == 3
    assert math.isfinite(result.eval_loss) and result.perplexity == pytest.approx(math.exp(result.eval_loss))
    assert result.peak_memory_mb > 0 and result.train_seconds > 0 and result.eval_seconds > 0
    assert result.tokens_per_second == pytest.approx(result.train_tokens / result.train_seconds)
    assert 0 < result.trainable_params < result.total_params
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    assert [h["step"] for h in result.history if "loss" in h] == [1, 2, 3]
    # where and with what it ran
    assert result.device == "cpu" and "cores)" in result.device_name
    assert result.compute_dtype in ("bfloat16", "float32") and result.optimizer == "adamw_torch"
    # two peaks, and the trial's peak is the larger
    assert result.train_peak_memory_mb > 0 and result.eval_peak_memory_mb > 0
    assert result.peak_memory_mb == max(result.train_peak_memory_mb, result.eval_peak_memory_mb)
    # per-example losses: one per held-out example, whose token-weighted mean is the eval loss
    losses, tokens = result.per_example["loss"], result.per_example["tokens"]
    assert len(losses) == len(tokens) == 16 and all(t > 0 for t in tokens)
    assert sum(l * t for l, t in zip(losses, tokens)) / sum(tokens) == pytest.approx(result.eval_loss, rel=1e-9)
    # the weight breakdown adds up
    w = result.weights
    assert w["quantized_mb"] == 0 and w["total_mb"] == pytest.approx(w["other_mb"]) == result.metrics["base_model_mb"]


@pytest.mark.parametrize("mode", ["int8", "nf4", "nf4-dq"])
def test_weight_breakdown_explains_a_quantized_mode(mode: str, tiny_checkpoint: str) -> None:
    from harness.trial.weights import weight_breakdown

    w = weight_breakdown(load_base_model(tiny_checkpoint, mode, "cpu"))
    assert w["quantized_mb"] > 0 and w["constants_mb"] > 0 and w["other_mb"] > 0
    assert w["total_mb"] == pytest.approx(w["quantized_mb"] + w["constants_mb"] + w["other_mb"])
    assert sum(w["other_by_dtype"].values()) == pytest.approx(w["other_mb"])
    # prepare_model_for_kbit_training keeps the non-quantized parameters (embedding, norms) in fp32
    assert set(w["other_by_dtype"]) == {"float32"}


def test_per_example_task_scores_average_to_the_metric(cache: TrialCache) -> None:
    cfg = dataclasses.replace(config(), eval=dataclasses.replace(config().eval, generate_size=6, max_new_tokens=4))
    result = run_trial(cfg, cache)
    for name in ("rouge_l", "token_f1"):
        scores = result.per_example[name]
        assert len(scores) == 6
        assert sum(scores) / 6 == pytest.approx(result.metrics[name], abs=1e-12)


def test_same_config_same_seed_gives_the_same_result(cache: TrialCache) -> None:
    first, second = run_trial(config(), cache), run_trial(config(), cache)
    assert first.eval_loss == pytest.approx(second.eval_loss, rel=1e-6)
    other = run_trial(config(seed=1), cache)
    assert other.eval_loss != pytest.approx(first.eval_loss, rel=1e-9)
    # the record says which seeds fixed the data order and the adapter's initial weights (paired comparisons)
    assert (first.data_seed, first.init_seed, other.data_seed, other.init_seed) == (0, 0, 1, 1)


@pytest.mark.parametrize("fault, status, words", [
    ("raise", "failed", "injected failure"),
    ("nan", "diverged", "non-finite training loss"),
    ("oom", "oom", "out of memory"),
])
def test_failures_are_results(fault: str, status: str, words: str, cache: TrialCache) -> None:
    result = run_trial(dataclasses.replace(config(), fault=fault), cache)
    assert result.status == status and words in result.reason
    assert "\n" not in result.reason
    assert result.peak_memory_mb is not None


def test_a_pruner_decision_stops_the_trial_with_its_last_eval(cache: TrialCache) -> None:
    seen: list[tuple[int, float]] = []

    def on_eval(step: int, loss: float) -> bool:
        seen.append((step, loss))
        return step >= 2

    result = run_trial(config(max_steps=6, eval_every=1), cache, TrialCallbacks(on_eval=on_eval))
    assert result.status == "pruned" and "step 2" in result.reason
    assert [s for s, _ in seen] == [1, 2] and result.steps == 2
    assert result.eval_loss == pytest.approx(seen[-1][1])


def test_the_eval_split_is_the_same_for_every_trial(cache: TrialCache) -> None:
    a = cache.prepared(config())
    b = cache.prepared(config("nf4", learning_rate=1e-3))
    assert a is b  # the same tokenized data and eval batches, reused on purpose
    assert load_examples(config().data).split_hash == a.split_hash


def test_tokens_per_second_counts_real_tokens_only(cache: TrialCache) -> None:
    """train_tokens is the sum of attention masks of the batches trained on: padding is not counted."""
    cfg = config(max_steps=4, batch_size=8)
    result = run_trial(cfg, cache)
    data = cache.prepared(cfg)
    batches = make_batches(data.tokenized.train, 8, data.tokenizer.pad_token_id,
                           shuffle_seed=cfg.train.seed * 100_003)[:4]  # epoch 0, the first 4 steps
    real = sum(int(b.attention_mask.sum()) for b in batches)
    padded = sum(b.input_ids.numel() for b in batches)
    assert result.train_tokens == real
    assert real <= padded


def _quantized_state(model: torch.nn.Module) -> dict[str, object]:
    """Every parameter and buffer of a model as stored, and every field of each bitsandbytes quantization state
    (4-bit: packed data, absmax, code, offset, blocksize, dtype, shape and the nested absmax/code of double
    quantization; 8-bit: the int8 data and its per-row scales SCB), flattened to name -> tensor or value."""
    state: dict[str, object] = {}
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        state[name] = tensor.detach()
        quant = getattr(tensor, "quant_state", None)
        if quant is not None:
            for key, value in quant.as_dict(packed=False).items():
                state[f"{name}.quant_state.{key}"] = value
        if getattr(tensor, "SCB", None) is not None:
            state[f"{name}.SCB"] = tensor.SCB
    return state


def _differences(a: dict[str, object], b: dict[str, object]) -> list[str]:
    """Names whose entries differ (exactly: same dtype, shape and bits for tensors; == for anything else)."""
    names = sorted(set(a) | set(b))
    return [n for n in names if n not in a or n not in b or not (
        torch.equal(a[n], b[n]) and a[n].dtype == b[n].dtype if isinstance(a[n], torch.Tensor) else a[n] == b[n])]


@pytest.mark.parametrize("numerics", ["device", "fp32"])
@pytest.mark.parametrize("mode", ["int8", "nf4-dq"])
def test_quantized_checkpoint_is_built_once_and_loads_identical_weights(mode: str, numerics: str, tiny_checkpoint: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Trials load a cached quantized checkpoint instead of requantizing; it must hold the very same weights.

    Compared like with like: the fresh load uses the attention implementation load_base_model uses (eager
    and sdpa differ by rounding, 2.4e-7 in the logits on AVX2-only CPUs), and the quantized state itself is
    compared field by field, so the test fails when the cache changes any stored bit and passes on every CPU.
    `fp32` runs it in the numerics of a CPU without native bf16 (AVX2 only) whatever this CPU has."""
    from transformers import AutoModelForCausalLM

    if numerics == "fp32":
        monkeypatch.setattr("harness.runtime.devices.bf16_supported", lambda device: False)

    from harness.runtime.devices import compute_dtype
    from harness.trial.models import attention_for, keep_4bit_training_layout, quantized_checkpoint
    from harness.trial.quantization import quantization_config

    dtype = compute_dtype("cpu")
    assert numerics == "device" or dtype == torch.float32
    from peft import prepare_model_for_kbit_training

    fresh = prepare_model_for_kbit_training(AutoModelForCausalLM.from_pretrained(
        tiny_checkpoint, dtype=dtype, device_map={"": "cpu"}, quantization_config=quantization_config(mode, dtype),
        attn_implementation=attention_for("cpu", None)), use_gradient_checkpointing=False)
    keep_4bit_training_layout(fresh)  # as every load does: on AVX512-BF16 CPUs the 4-bit layout otherwise differs
    for param in fresh.parameters():
        param.requires_grad_(False)  # as load_base_model leaves them
    cached = load_base_model(tiny_checkpoint, mode, "cpu")
    folder = quantized_checkpoint(tiny_checkpoint, mode, "cpu")
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert quantized_checkpoint(tiny_checkpoint, mode, "cpu") == folder
    assert (folder / "config.json").stat().st_mtime_ns == stamp  # not rebuilt
    assert fresh.config._attn_implementation == cached.config._attn_implementation
    fresh_state, cached_state = _quantized_state(fresh), _quantized_state(cached)
    fields = [n for n in fresh_state if ".quant_state." in n or n.endswith(".SCB")]
    assert fields, "no quantization state found: the comparison would not cover the quantized weights"
    assert _differences(fresh_state, cached_state) == []
    ids = torch.randint(0, 1000, (2, 12))
    with torch.no_grad():
        assert torch.equal(fresh(input_ids=ids).logits, cached(input_ids=ids).logits)
    # The comparison is not vacuous: one changed byte of one quantized weight is found, and only it.
    name = next(n for n, p in cached.named_parameters() if p.dtype in (torch.uint8, torch.int8))
    changed = dict(cached_state, **{name: cached_state[name].clone()})
    changed[name].view(-1)[0] += 1
    assert _differences(fresh_state, changed) == [name]


@pytest.mark.parametrize("mode", ["none", "nf4"])
def test_a_fitted_config_trains_as_the_config_it_was_fitted_from(mode: str, cache: TrialCache,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Fitting to a memory budget halves the micro-batch and doubles the accumulation (harness.search.planning):
    the same sequences in every optimizer step, the loss token-weighted over the step, so the training losses and
    the held-out loss equal the unfitted config's (fp32; the split moves only the summation order)."""
    from harness.trial import models

    monkeypatch.setattr(models, "compute_dtype", lambda device: torch.float32)
    plain = run_trial(config(mode, batch_size=8, max_steps=4, learning_rate=3e-3), cache)
    assert plain.status == "complete", plain.reason
    for batch, accum in ((4, 2), (2, 4)):
        fitted = run_trial(config(mode, batch_size=batch, grad_accum=accum, max_steps=4, learning_rate=3e-3), cache)
        assert fitted.status == "complete", fitted.reason
        losses = lambda result: [h["loss"] for h in result.history if "loss" in h]  # noqa: E731
        assert losses(fitted) == pytest.approx(losses(plain), rel=1e-5), f"{batch} x {accum}: another training"
        assert fitted.eval_loss == pytest.approx(plain.eval_loss, rel=1e-5)
        assert fitted.train_tokens == plain.train_tokens
