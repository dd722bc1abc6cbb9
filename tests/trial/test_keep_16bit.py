"""keep_16bit (issue 41): linear layers left in 16-bit inside a quantized base, chosen by measured sensitivity or at
random (the seeded control). keep_16bit 0 is the plain mode bit for bit; kept layers are plain 16-bit nn.Linear
under their LoRA wrapper while every other target is quantized; the choice is a function of the calibration
batch (or of the seed); bad fractions and `none` are refused in one line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.config.dataset import DataSpec
from harness.config.errors import SpecError
from harness.config.lora import LoraSpec
from harness.config.model import ModelSpec, QuantSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig
from harness.trial.kept_layers import by_sensitivity, choose_kept, random_order
from harness.trial.quantization import quantization_config, quantization_kwargs

SIZES = {"a": 10, "b": 30, "c": 20, "d": 40}  # 100 parameters in all


# ---- the rule, the fields: no model -------------------------------------------------------------------------------


def test_layers_are_kept_in_order_until_the_next_would_exceed_the_fraction() -> None:
    order = by_sensitivity({"a": 0.1, "b": 0.4, "c": 0.3, "d": 0.2})
    assert order == ["b", "c", "d", "a"]
    assert choose_kept(SIZES, order, 0.5) == ("b", "c")        # 30 + 20 = 50 fits; d would make 90
    assert choose_kept(SIZES, order, 0.49) == ("b",)            # c would make 50 > 49: stop there
    assert choose_kept(SIZES, order, 0.29) == ()                # the first one alone is too large
    assert choose_kept(SIZES, order, 0.0) == ()


def test_the_random_order_is_reproducible_from_its_seed_and_differs_between_seeds() -> None:
    sizes = {f"layer{i}": 1 for i in range(20)}
    assert random_order(sizes, 3) == random_order(sizes, 3)
    assert len({tuple(random_order(sizes, seed)) for seed in range(5)}) == 5


@pytest.mark.parametrize("keep", [-0.1, 0.51, 1.0, True])
def test_a_fraction_outside_0_to_half_is_one_line_naming_the_field(keep: float) -> None:
    with pytest.raises(SpecError, match=r"keep_16bit .* is outside \[0, 0.5\]") as err:
        QuantSpec("nf4-dq", keep_16bit=keep)
    assert "\n" not in str(err.value)


def test_keep_16bit_on_mode_none_is_refused_and_zero_is_allowed() -> None:
    with pytest.raises(SpecError, match="keep_16bit 0.1 needs a quantized mode") as err:
        TrialConfig(quant=QuantSpec("none", keep_16bit=0.1))
    assert "when: {quantization: nf4-dq}" in str(err.value) and "\n" not in str(err.value)
    TrialConfig(quant=QuantSpec("none", keep_16bit=0.0))
    TrialConfig(quant=QuantSpec("int8", keep_16bit=0.1))


def test_a_skip_list_reaches_bitsandbytes_and_no_list_leaves_the_plain_config() -> None:
    """An empty skip list must not become `llm_int8_skip_modules: []`: transformers 5 would then drop its default
    skips (the output head) and quantize the head too."""
    import torch

    assert quantization_config("nf4-dq", torch.bfloat16).llm_int8_skip_modules is None
    assert "llm_int8_skip_modules" not in quantization_kwargs("nf4-dq")
    kept = ("lm_head", "model.layers.0.mlp.down_proj")
    assert quantization_config("nf4-dq", torch.bfloat16, kept).llm_int8_skip_modules == list(kept)
    assert quantization_kwargs("int8", skip=kept)["llm_int8_skip_modules"] == list(kept)


# ---- on tiny-llama ------------------------------------------------------------------------------------------------


def _config(quant: QuantSpec, adapter_dir: str | None = None) -> TrialConfig:
    return TrialConfig(model=ModelSpec("tiny-llama"), quant=quant, lora=LoraSpec(r=4, alpha=8.0),
                       train=TrainSpec(learning_rate=5e-3, max_steps=3, batch_size=4),
                       data=DataSpec(eval_size=8, train_size=32), adapter_dir=adapter_dir)


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["nf4-dq", "int8"])
def test_keep_0_is_the_plain_mode_bit_for_bit(mode: str, tmp_path: Path) -> None:
    """The same quantized checkpoint (its key unchanged), and the same losses, per-example scores and trained adapter
    as the plain mode, whatever rule and seed a zero fraction names."""
    from safetensors.torch import load_file

    from harness.trial.models import quantized_checkpoint
    from harness.trial.run import TrialCache, run_trial

    cache = TrialCache()
    path = cache.checkpoint("tiny-llama")
    assert quantized_checkpoint(path, mode, "cpu", ()) == quantized_checkpoint(path, mode, "cpu")
    plain = run_trial(_config(QuantSpec(mode), str(tmp_path / "plain")), cache)
    zero = run_trial(_config(QuantSpec(mode, keep_16bit=0.0, keep_16bit_rule="random", keep_16bit_seed=7),
                             str(tmp_path / "zero")), cache)
    assert plain.status == zero.status == "complete", (plain.reason, zero.reason)
    assert zero.kept_16bit_modules == [] and zero.kept_16bit_fraction == 0.0 and zero.kept_16bit_added_mb == 0.0
    assert zero.eval_loss == plain.eval_loss and zero.history == plain.history
    assert zero.per_example == plain.per_example and zero.weights == plain.weights
    a, b = (load_file(str(tmp_path / name / "adapter_model.safetensors")) for name in ("plain", "zero"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["nf4-dq", "int8"])
def test_kept_layers_are_plain_16_bit_linears_and_every_other_target_is_quantized(mode: str) -> None:
    import bitsandbytes as bnb
    import torch
    from peft.tuners.lora import LoraLayer

    from harness.runtime.devices import compute_dtype
    from harness.trial.models import load_base_model
    from harness.trial.run import TrialCache, attach_adapter

    cache = TrialCache()
    config = _config(QuantSpec(mode, keep_16bit=0.3))
    kept = cache.kept_layers(config, "cpu")
    assert kept.modules and 0 < kept.fraction <= 0.3
    base = load_base_model(cache.checkpoint("tiny-llama"), mode, "cpu", None, kept.modules)
    model = attach_adapter(base, config)
    quantized = bnb.nn.Linear8bitLt if mode == "int8" else bnb.nn.Linear4bit
    wrapped = {name.removeprefix("base_model.model."): module for name, module in model.named_modules()
               if isinstance(module, LoraLayer)}
    assert set(kept.modules) <= set(wrapped) and len(wrapped) == 14  # every linear of 2 layers is a target
    for name, layer in wrapped.items():
        inner = layer.get_base_layer()
        if name in kept.modules:
            assert type(inner) is torch.nn.Linear, name
            assert inner.weight.dtype == compute_dtype("cpu") and not inner.weight.requires_grad, name
        else:
            assert isinstance(inner, quantized), (name, type(inner))
    assert type(base.lm_head) is torch.nn.Linear  # the head stays unquantized, as in the plain mode
    # It trains: a backward pass reaches the adapters of kept and quantized layers alike.
    data = cache.prepared(config)
    batch = data.eval_batches[0]
    model.train()
    model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss.backward()
    for name, layer in wrapped.items():
        grad = layer.lora_B["default"].weight.grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.integration
def test_the_sensitivity_choice_is_a_function_of_the_calibration_batch_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.trial.sensitivity as sensitivity
    from harness.trial.models import cache_dir
    from harness.trial.run import TrialCache

    cache = TrialCache()
    config = _config(QuantSpec("nf4-dq", keep_16bit=0.3))
    data = cache.prepared(config)
    path = cache.checkpoint("tiny-llama")
    batch = sensitivity.calibration_batch(data.tokenized.train, data.tokenizer.pad_token_id)
    again = sensitivity.calibration_batch(data.tokenized.train, data.tokenizer.pad_token_id)
    assert batch.input_ids.equal(again.input_ids) and batch.input_ids.shape[0] == sensitivity.CALIBRATION_SIZE
    first, second = (sensitivity.measure(path, "nf4-dq", "cpu", batch) for _ in range(2))
    assert first == second and len(first["scores"]) == 14
    assert len(set(first["scores"].values())) == 14  # every layer measured on its own
    chosen = cache.kept_layers(config, "cpu")
    assert chosen.modules == choose_kept(first["sizes"], by_sensitivity(first["scores"]), 0.3)
    assert list(chosen.scores) == list(chosen.modules) and list(chosen.scores.values()) == sorted(
        chosen.scores.values(), reverse=True)
    assert list((cache_dir() / "sensitivity").glob("nf4-dq-*.json"))
    monkeypatch.setattr(sensitivity, "measure", lambda *a, **k: pytest.fail("measured again instead of cached"))
    assert TrialCache().kept_layers(config, "cpu") == chosen  # a new process reads the cached scores
    other = dataclasses.replace(config, data=DataSpec(eval_size=8, train_size=48))
    with pytest.raises(pytest.fail.Exception):  # another training split is another calibration batch
        TrialCache().kept_layers(other, "cpu")


@pytest.mark.integration
def test_the_random_control_is_reproducible_from_its_seed_and_differs_between_seeds() -> None:
    from harness.trial.run import TrialCache

    def kept(seed: int) -> tuple[str, ...]:
        return TrialCache().kept_layers(_config(QuantSpec("nf4-dq", keep_16bit=0.3, keep_16bit_rule="random",
                                                          keep_16bit_seed=seed)), "cpu").modules

    assert kept(0) == kept(0)
    assert len({kept(seed) for seed in range(4)}) > 1


@pytest.mark.integration
def test_a_pinned_list_is_kept_as_given() -> None:
    from harness.trial.run import TrialCache

    pinned = ("model.layers.1.mlp.down_proj",)
    choice = TrialCache().kept_layers(_config(QuantSpec("nf4", keep_16bit=0.3, kept_modules=pinned)), "cpu")
    assert choice.modules == pinned and 0 < choice.fraction < 0.3
    with pytest.raises(ValueError, match="not a quantizable linear layer"):
        TrialCache().kept_layers(_config(QuantSpec("nf4", keep_16bit=0.3, kept_modules=("lm_head",))), "cpu")


def test_the_shipped_space_has_five_arms_each_at_three_learning_rates() -> None:
    from harness.config.space import describe_optional, load_space, quant_fields

    points = load_space(Path(__file__).parents[2] / "search_spaces" / "dynamic_4bit.yaml").points()
    arms = {(p["quantization"], p.get("keep_16bit"), p.get("keep_16bit_rule")) for p in points}
    assert arms == {("none", None, None), ("nf4-dq", 0.0, None), ("nf4-dq", 0.05, None),
                    ("nf4-dq", 0.1, "sensitivity"), ("nf4-dq", 0.1, "random")}
    assert len(points) == 15
    random = next(p for p in points if p.get("keep_16bit_rule") == "random")
    assert quant_fields(random) == {"keep_16bit": 0.1, "keep_16bit_rule": "random"}
    assert describe_optional(random) == ["keep0.1", "random"]
    assert describe_optional({"keep_16bit": 0.0, "keep_16bit_rule": "random"}) == ["keep0"]
