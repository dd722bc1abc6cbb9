"""What both sides of benchmarks/vs_trainer.py run: the search space, the fixed training settings and
the numerics (autocast) of each comparison variant. Imported by the parent and by the peer child.
"""

from __future__ import annotations

import json
from typing import Any

# The search space both sides sample, in harness's axis order (lora_r, learning_rate, quantization):
# with the same seeded TPE sampler both then draw the same values in the random start-up trials.
LORA_R_CHOICES = [8, 16]
ALPHA_RATIO = 2  # lora_alpha = 2 * r on both sides
LR_LOW, LR_HIGH = 1e-4, 1e-3  # log-uniform; --lr-low / --lr-high widen it for both sides
QUANT_CHOICES = ["none", "nf4-dq"]
TPE_STARTUP_TRIALS = 4  # as harness.search.study.make_sampler

# Fixed training settings, given to harness (experiment file) and Trainer (TrainingArguments) alike.
WARMUP_RATIO = 0.05
WEIGHT_DECAY = 0.01
SCHEDULER = "cosine"
MAX_GRAD_NORM = 1.0
EVAL_BATCH_SIZE = 16  # harness EvalSpec default

# Comparison variants: how the peer's numerics are set against harness's.
VARIANTS: dict[str, str] = {
    "equal": "the peer runs harness's numerics on this device (CPU: no autocast; CUDA: bf16 autocast)",
    "peer-autocast": "the peer with TrainingArguments(bf16=True), i.e. accelerate's bf16 autocast, as a Trainer "
                     "user would usually set it (the benchmark's default before issue 9)",
}


def harness_autocast(device: str) -> str:
    """The autocast harness trains and scores under: bf16 on CUDA, none on CPU, where the model computes in
    its compute dtype (see `_accumulate` in harness/trial/train.py and `eval_loss` in harness/trial/scoring.py)."""
    return "bf16" if device == "cuda" else "off"


def peer_autocast(variant: str, device: str) -> str:
    """The peer's autocast (`off` or `bf16`) in a comparison variant on a device."""
    if variant == "equal":
        return harness_autocast(device)
    if variant == "peer-autocast":
        return "bf16"
    raise ValueError(f"unknown variant {variant!r} (expected one of {', '.join(VARIANTS)})")


def space_yaml(lr: tuple[float, float] = (LR_LOW, LR_HIGH)) -> str:
    """The search space as harness search-space YAML (lora_dropout 0 and all-linear are its defaults), its
    learning-rate axis log-uniform over `lr`."""
    return "\n".join([
        "description: benchmarks/vs_trainer.py space (harness vs Trainer.hyperparameter_search)",
        "axes:",
        f"  lora_r: {{choices: {json.dumps(LORA_R_CHOICES)}}}",
        f"  lora_alpha: {{ratio: {ALPHA_RATIO}}}",
        f"  learning_rate: {{low: {lr[0]!r}, high: {lr[1]!r}, log: true}}",
        f"  quantization: {{choices: [{', '.join(QUANT_CHOICES)}]}}",
        "  lora_dropout: 0.0",
        "  target_modules: all-linear", ""])


def experiment_yaml(batch_size: int) -> str:
    """The training settings harness has no flag for, pinned to what the peer is given. Task metrics
    (generated answers) are off: the peer scores eval loss only, so harness does too."""
    return (f"train: {{batch_size: {batch_size}, warmup_ratio: {WARMUP_RATIO}, weight_decay: {WEIGHT_DECAY}, "
            f"scheduler: {SCHEDULER}, max_grad_norm: {MAX_GRAD_NORM}, grad_accum: 1}}\n"
            "eval: {metrics: []}\n")


def sample_params(trial: Any, lr: tuple[float, float] = (LR_LOW, LR_HIGH)) -> dict[str, Any]:
    """The peer's draw: same names, distributions and order as harness.config.space.suggest (the learning rate
    log-uniform over `lr`). Optuna returns the same value when a trial suggests the same name twice, so hp_space
    and model_init may both call this."""
    return {"lora_r": trial.suggest_categorical("lora_r", LORA_R_CHOICES),
            "learning_rate": trial.suggest_float("learning_rate", lr[0], lr[1], log=True),
            "quantization": trial.suggest_categorical("quantization", QUANT_CHOICES)}


def short_params(params: dict[str, Any]) -> dict[str, Any]:
    """The four params both sides record, as harness names them (alpha as a float, like harness)."""
    out = {k: params[k] for k in ("lora_r", "lora_alpha", "learning_rate", "quantization") if k in params}
    if "lora_alpha" not in out and "lora_r" in out:
        out["lora_alpha"] = float(ALPHA_RATIO * out["lora_r"])
    return out
