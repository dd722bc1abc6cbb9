"""What one trial is made of: the sweep's fixed settings plus the sampled params -> a TrialConfig; the
checks that fail on bad input before any model trains; the objective values a result tells the study."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from harness.models import cache_dir, checkpoint_path, is_converted, load_tokenizer, model_dims, resolve_model
from harness.progress import SweepProgress
from harness.space import SearchSpace, check_rank_fits
from harness.spec import LoraSpec, ModelSpec, QuantSpec, SpecError, SweepSpec, TrialConfig, TrialResult

FAULTS_ENV = "HARNESS_INJECT_FAULTS"
"""Test hook: `0:raise,2:kill` makes the 1st trial of this run raise and the 3rd's process die;
`2.0:die` kills worker 2 itself (SIGKILL) in the middle of its 1st trial."""


def trial_config(spec: SweepSpec, params: dict[str, Any], *, adapter_dir: str | None = None,
                 fault: str | None = None, metrics: tuple[str, ...] | None = None,
                 seed: int | None = None) -> TrialConfig:
    """The full config of one trial: the sweep's fixed settings plus the sampled params
    (`metrics`: the task metrics resolved for this sweep, see `prepare`; `seed`: the training seed,
    the sweep's unless the trial was enqueued with its own, as confirmation trials are)."""
    train = dataclasses.replace(spec.train, learning_rate=float(params["learning_rate"]),
                                max_steps=spec.max_steps, seed=spec.seed if seed is None else int(seed))
    if spec.pruner != "none" and train.eval_every == 0:
        train = dataclasses.replace(train, eval_every=max(1, spec.max_steps // 5))
    return TrialConfig(
        model=ModelSpec(spec.model), quant=QuantSpec(params["quantization"]),
        lora=LoraSpec(r=int(params["lora_r"]), alpha=float(params["lora_alpha"]),
                      dropout=float(params["lora_dropout"]), targets=params["target_modules"]),
        train=train, data=dataclasses.replace(spec.data_spec, name=spec.data),
        eval=spec.eval if metrics is None else dataclasses.replace(spec.eval, metrics=metrics),
        adapter_dir=adapter_dir, fault=fault)


def faults(worker: int = 0) -> dict[int, str]:
    """Injected faults by trial index in this run; `W.I:fault` applies to worker W only."""
    faults = {}
    for item in os.environ.get(FAULTS_ENV, "").split(","):
        if ":" in item:
            key, fault = item.split(":", 1)
            who, _, index = key.rpartition(".")
            if not who or int(who) == worker:
                faults[int(index)] = fault
    return faults


def prepare(spec: SweepSpec, space: SearchSpace, progress: SweepProgress) -> tuple[str, ...]:
    """Everything that can fail on bad input, done before the study exists or a model trains.
    Returns the task metrics to score: the eval spec's (else the data's defaults) plus task objectives."""
    from harness.data import load_examples, tokenize_splits
    from harness.metrics import check_metric_names

    model = resolve_model(spec.model)
    if not is_converted(model):
        progress.note(f"converting {model.name} ({model.location}) into a cached checkpoint under "
                      f"{cache_dir()} (once)...")
    path = checkpoint_path(model)
    check_rank_fits(space, model_dims(path), spec.model)
    data_spec = dataclasses.replace(spec.data_spec, name=spec.data)
    splits = load_examples(data_spec)
    tokenize_splits(splits, load_tokenizer(path), data_spec)  # chat template, truncation: fail here, not later
    metrics = splits.metrics if spec.eval.metrics is None else spec.eval.metrics
    metrics = tuple(dict.fromkeys([*metrics, *spec.task_objectives]))
    if spec.task_objectives and splits.max_new_tokens == 0 and not spec.eval.max_new_tokens:
        raise SpecError(f"objective {spec.task_objectives[0]} needs generated answers, but {spec.data} is plain "
                        "text with nothing to answer; use --objectives eval_loss")
    check_metric_names(metrics)
    return metrics


def objective_values(spec: SweepSpec, result: TrialResult) -> list[float] | None:
    """The values to tell the study, or None when one is missing or not finite."""
    values = [result.metrics.get(name) if name in spec.task_objectives else getattr(result, name)
              for name in spec.objectives]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values]
