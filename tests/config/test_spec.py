"""harness.config: every config type refuses its bad values with a one-line error naming the field."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from harness.config.dataset import DataSpec
from harness.config.errors import SpecError
from harness.config.evaluation import EvalSpec
from harness.config.hashing import stable_hash
from harness.config.lora import LoraSpec
from harness.config.model import QUANTIZATION_MODES, ModelSpec, QuantSpec
from harness.config.objectives import OBJECTIVES
from harness.config.sweep import SweepSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig
from harness.trial.result import TrialResult


def _refuses(build: Any, *names: str) -> str:
    """Build must raise a one-line SpecError that mentions every one of `names`."""
    with pytest.raises(SpecError) as info:
        build()
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    return message


def test_defaults_build_and_match_the_literature() -> None:
    config = TrialConfig()
    assert config.model.name == "smollm2-135m"
    assert config.quant.mode == "none"
    assert (config.lora.r, config.lora.alpha, config.lora.dropout, config.lora.targets) == (16, 32.0, 0.0, "all-linear")
    assert config.train.learning_rate == 2e-4
    assert config.train.weight_decay == 0.01
    assert SweepSpec().objectives == ("eval_loss",)


def test_configs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        LoraSpec().r = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"r": 0}, "lora_r"),
        ({"r": -4}, "lora_r"),
        ({"r": 2.5}, "lora_r"),
        ({"r": True}, "lora_r"),
        ({"alpha": 0}, "lora_alpha"),
        ({"alpha": -1.0}, "lora_alpha"),
        ({"dropout": 1.0}, "lora_dropout"),
        ({"dropout": -0.1}, "lora_dropout"),
        ({"targets": "all linear"}, "target_modules"),
    ],
)
def test_lora_spec_rejects(kwargs: dict[str, Any], field: str) -> None:
    message = _refuses(lambda: LoraSpec(**kwargs), field)
    if field == "target_modules":
        assert "all-linear" in message and "attention" in message  # the fix: the allowed presets


def test_lora_spec_accepts_its_edges() -> None:
    spec = LoraSpec(r=1, alpha=0.5, dropout=0.0, targets="attention")
    assert (spec.r, spec.alpha, spec.targets) == (1, 0.5, "attention")
    assert LoraSpec(dropout=0.99).dropout == 0.99


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": -1e-4}, "learning_rate"),
        ({"learning_rate": 1.0}, "learning_rate"),
        ({"learning_rate": 3.0}, "learning_rate"),
        ({"max_steps": 0}, "max_steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"grad_accum": 0}, "grad_accum"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"warmup_ratio": -0.1}, "warmup_ratio"),
        ({"weight_decay": -0.01}, "weight_decay"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"scheduler": "exponential"}, "scheduler"),
        ({"eval_every": -1}, "eval_every"),
    ],
)
def test_train_spec_rejects(kwargs: dict[str, Any], field: str) -> None:
    _refuses(lambda: TrainSpec(**kwargs), field)


@pytest.mark.parametrize(
    "max_steps, ratio, expected",
    [(30, 0.05, 2), (100, 0.05, 5), (20, 0.05, 1), (10, 0.0, 0), (7, 0.5, 4), (3, 0.01, 1)],
)
def test_warmup_steps_round_up(max_steps: int, ratio: float, expected: int) -> None:
    assert TrainSpec(max_steps=max_steps, warmup_ratio=ratio).warmup_steps == expected


@pytest.mark.parametrize("mode", ["nf8", "NF4", "4bit", "", "none "])
def test_quant_spec_rejects_unknown_modes(mode: str) -> None:
    message = _refuses(lambda: QuantSpec(mode=mode), "quantization", repr(mode))
    assert "nf4-dq" in message  # lists the allowed modes


@pytest.mark.parametrize("mode", QUANTIZATION_MODES)
def test_quant_spec_accepts_every_mode(mode: str) -> None:
    assert QuantSpec(mode=mode).mode == mode


def test_model_data_eval_specs_reject() -> None:
    _refuses(lambda: ModelSpec(name="  "), "model")
    _refuses(lambda: DataSpec(max_seq_len=4), "max_seq_len")
    _refuses(lambda: DataSpec(eval_fraction=0.0), "eval_fraction")
    _refuses(lambda: DataSpec(eval_size=0), "eval_size")
    _refuses(lambda: DataSpec(train_size=-1), "train_size")
    _refuses(lambda: EvalSpec(batch_size=0), "batch_size")
    _refuses(lambda: EvalSpec(generate_batch_size=0), "generate_batch_size")
    _refuses(lambda: EvalSpec(generate_batch_size=True), "generate_batch_size")


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"sampler": "cmaes"}, "sampler"),
        ({"pruner": "successive"}, "pruner"),
        ({"wandb": "on"}, "wandb"),
        ({"objectives": ("bleu",)}, "bleu"),
        ({"objectives": ()}, "objectives"),
        ({"objectives": ("eval_loss", "eval_loss")}, "objectives"),
        ({"objectives": ("eval_loss", "peak_memory_mb"), "pruner": "median"}, "pruner"),
        ({"study": "a/b"}, "study"),
        ({"study": ""}, "study"),
        ({"trials": 0}, "trials"),
        ({"max_steps": 0}, "max_steps"),
        ({"pack": 0}, "pack"),
        ({"pack": True}, "pack"),
    ],
)
def test_sweep_spec_rejects(kwargs: dict[str, Any], field: str) -> None:
    _refuses(lambda: SweepSpec(**kwargs), field)


def test_sweep_spec_multi_objective_without_pruner() -> None:
    spec = SweepSpec(objectives=("eval_loss", "peak_memory_mb", "tokens_per_second"))
    assert spec.directions == ["minimize", "minimize", "maximize"]
    assert set(OBJECTIVES) >= set(spec.objectives)


def test_sweep_spec_default_paths() -> None:
    spec = SweepSpec(study="exp1")
    assert spec.out_dir == "experiments/exp1"
    assert spec.storage_url == "sqlite:///experiments/exp1/study.db"


def test_sweep_spec_out_moves_the_default_storage() -> None:
    spec = SweepSpec(study="exp1", out="/tmp/runs/x")
    assert spec.out_dir == "/tmp/runs/x"
    assert spec.storage_url == "sqlite:////tmp/runs/x/study.db"
    relative = SweepSpec(study="exp1", out="runs/x")
    assert relative.storage_url == "sqlite:///runs/x/study.db"


def test_sweep_spec_explicit_storage_wins() -> None:
    url = "postgresql://u@host/db"
    assert SweepSpec(study="exp1", out="runs/x", storage=url).storage_url == url


def test_trial_config_round_trips_through_json() -> None:
    config = TrialConfig(
        model=ModelSpec("tiny-llama"),
        quant=QuantSpec("nf4-dq"),
        lora=LoraSpec(r=8, alpha=16.0, dropout=0.05, targets="attention"),
        train=TrainSpec(learning_rate=3e-4, max_steps=12, warmup_ratio=0.1, scheduler="linear", seed=3),
        data=DataSpec(max_seq_len=64, train_size=100),
        eval=EvalSpec(batch_size=4),
        adapter_dir="out/adapter",
    )
    data = json.loads(json.dumps(config.to_dict()))
    assert data["quant"] == {"mode": "nf4-dq", "keep_16bit": 0.0, "keep_16bit_rule": "sensitivity",
                             "keep_16bit_seed": 0, "kept_modules": None}
    assert data["lora"]["r"] == 8
    assert TrialConfig.from_dict(data) == config
    kept = dataclasses.replace(config, quant=QuantSpec("nf4-dq", keep_16bit=0.1, kept_modules=("model.layers.0.mlp.up_proj",)))
    assert TrialConfig.from_dict(json.loads(json.dumps(kept.to_dict()))) == kept  # the pinned list: a JSON list back


def test_trial_config_from_partial_dict_uses_defaults() -> None:
    config = TrialConfig.from_dict({"lora": {"r": 4}})
    assert config.lora.r == 4
    assert config.lora.alpha == LoraSpec().alpha
    assert config.train == TrainSpec()


def test_trial_config_from_dict_validates() -> None:
    _refuses(lambda: TrialConfig.from_dict({"quant": {"mode": "int4"}}), "quantization")


def test_trial_result_from_dict_ignores_unknown_keys() -> None:
    result = TrialResult(status="complete", eval_loss=1.5, steps=10, metrics={"exact_match": 0.25})
    data = {**result.to_dict(), "future_field": 42, "number": 7}
    assert TrialResult.from_dict(data) == result
    assert TrialResult.from_dict({"status": "oom", "reason": "CUDA out of memory"}).reason == "CUDA out of memory"


def test_stable_hash_is_stable_and_key_order_insensitive() -> None:
    a = {"lora_r": 16, "lr": 2e-4, "nested": {"x": 1, "y": [1, 2]}}
    b = {"nested": {"y": [1, 2], "x": 1}, "lr": 2e-4, "lora_r": 16}
    assert stable_hash(a) == stable_hash(b)
    assert stable_hash(a) == stable_hash(json.loads(json.dumps(a)))
    assert len(stable_hash(a)) == 16
    assert stable_hash(a) != stable_hash({**a, "lora_r": 32})
    assert stable_hash({"y": [1, 2]}) != stable_hash({"y": [2, 1]})  # list order matters
    # Pinned: the hash is stored in studies, so it must not change between releases or machines.
    assert stable_hash({"b": [1, 2], "a": 1}) == "e6f20bdc3757e5e7"
