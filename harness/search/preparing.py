"""Before a trial trains: every check of the sweep's inputs that can fail on bad input (done before the
study exists), the full config of one trial from the sweep's settings and its sampled params, the record
of which held-out examples intermediate evaluations score, and the test hook that injects faults."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from harness.config.errors import SpecError
from harness.config.lora import LoraSpec
from harness.config.model import ModelSpec, QuantSpec
from harness.config.space import SearchSpace, check_points, lora_fields, quant_fields, train_fields
from harness.config.sweep import SweepSpec
from harness.config.trial import TrialConfig
from harness.search.lr_range import lr_axis
from harness.search.progress import SweepProgress
from harness.search.pruning import study_schedule
from harness.search.warmstart import WarmConfig, warm_configs
from harness.trial.models import (cache_dir, check_rank_fits, checkpoint_path, is_converted, load_tokenizer, model_dims,
                                  resolve_model)
from harness.trial.source import describe_source

FAULTS_ENV = "HARNESS_INJECT_FAULTS"
"""Test hook: `0:raise,2:kill` makes the 1st trial of this run raise and the 3rd's process die;
`2.0:die` kills worker 2 itself (SIGKILL) in the middle of its 1st trial; `base:kill` kills the process
scoring the first untuned baseline once, `base:killall` at every attempt."""


def trial_config(spec: SweepSpec, params: dict[str, Any], *, adapter_dir: str | None = None,
                 fault: str | None = None, metrics: tuple[str, ...] | None = None,
                 seed: int | None = None, training: dict[str, Any] | None = None,
                 variant: dict[str, Any] | None = None) -> TrialConfig:
    """The full config of one trial: the sweep's fixed settings plus the sampled params
    (`metrics`: the task metrics resolved for this sweep, see `prepare`; `seed`: the training seed,
    the sweep's unless the trial was enqueued with its own, as confirmation trials are; `training`:
    TrainSpec overrides an enqueued trial carries, as a published default's schedule in a validation;
    `variant`: values of optional axes that are not axes of this study's space, as a validated DoRA config
    carries into `harness validate`'s linked study)."""
    params = {**(variant or {}), **params}
    train = dataclasses.replace(spec.train, **(training or {}))
    train = dataclasses.replace(train, learning_rate=float(params["learning_rate"]), max_steps=spec.max_steps,
                                seed=spec.seed if seed is None else int(seed), **train_fields(params))
    schedule = study_schedule(spec)
    if schedule is not None:  # intermediate evaluations exactly where the pruner reads them
        train = dataclasses.replace(train, eval_at=tuple(schedule["eval_steps"]))
    return TrialConfig(
        model=ModelSpec(spec.model), quant=QuantSpec(params["quantization"], **quant_fields(params)),
        lora=LoraSpec(r=int(params["lora_r"]), alpha=float(params["lora_alpha"]),
                      dropout=float(params["lora_dropout"]), targets=params["target_modules"],
                      **lora_fields(params)),
        train=train, data=dataclasses.replace(spec.data_spec, name=spec.data),
        eval=spec.eval if metrics is None else dataclasses.replace(spec.eval, metrics=metrics),
        adapter_dir=adapter_dir, fault=fault)


def injected_faults(worker: int = 0) -> dict[int, str]:
    """Injected faults by trial index in this run; `W.I:fault` applies to worker W only."""
    faults = {}
    for item in os.environ.get(FAULTS_ENV, "").split(","):
        if ":" in item and not item.startswith("base:"):
            key, fault = item.split(":", 1)
            who, _, index = key.rpartition(".")
            if not who or int(who) == worker:
                faults[int(index)] = fault
    return faults


def baseline_fault() -> str | None:
    """The injected fault of the process scoring the untuned baselines (`base:kill`, `base:killall`), if any."""
    return next((i.split(":", 1)[1] for i in os.environ.get(FAULTS_ENV, "").split(",") if i.startswith("base:")),
                None)



@dataclass(frozen=True)
class Prepared:
    """What `prepare` found out about the sweep's inputs."""

    metrics: tuple[str, ...]
    """The task metrics to score: the eval spec's (else the data's defaults) plus task objectives."""
    split_hash: str
    """The held-out split's hash (a resumed study must have the same)."""
    n_eval: int
    """Held-out examples every trial is scored on."""
    source: dict[str, Any]
    """The base model's label and the precision of its source weights (harness.trial.source.SourceInfo)."""
    warm: list[WarmConfig] = field(default_factory=list)
    """Configs to enqueue as the first trials (--warm-start)."""
    warm_skipped: dict[str, str] = field(default_factory=dict)
    """Warm-start configs the space cannot express, with the reason."""


def prepare(spec: SweepSpec, space: SearchSpace, progress: SweepProgress) -> Prepared:
    """Everything that can fail on bad input, done before the study exists or a model trains."""
    from harness.data import load_examples, tokenize_splits
    from harness.metrics import check_metric_names

    check_points(space, lambda params: trial_config(spec, params))  # every combination must be able to train
    model = resolve_model(spec.model)
    if not is_converted(model):
        progress.note(f"converting {model.name} ({model.location}) into a cached checkpoint under "
                      f"{cache_dir()} (once)...")
    path = checkpoint_path(model)
    check_rank_fits(space, model_dims(path), spec.model)
    data_spec = dataclasses.replace(spec.data_spec, name=spec.data)
    splits = load_examples(data_spec)
    tokenized = tokenize_splits(splits, load_tokenizer(path), data_spec)  # chat template, truncation: fail here
    metrics = splits.metrics if spec.eval.metrics is None else spec.eval.metrics
    metrics = tuple(dict.fromkeys([*metrics, *spec.task_objectives]))
    if spec.task_objectives and splits.max_new_tokens == 0 and not spec.eval.max_new_tokens:
        raise SpecError(f"objective {spec.task_objectives[0]} needs generated answers, but {spec.data} is plain "
                        "text with nothing to answer; use --objectives eval_loss")
    check_metric_names(metrics)
    if spec.lr_range_test:
        lr_axis(space)  # refuses a fixed learning rate before anything trains
    warm, skipped = warm_configs(space, spec)
    return Prepared(metrics, splits.split_hash, len(tokenized.eval), describe_source(model).to_dict(), warm, skipped)


def keep_intermediate_subset(study: Any, spec: SweepSpec, prepared: Prepared) -> None:
    """Record which held-out examples the study's intermediate evaluations score (user attr
    `intermediate_subset`: size, of, indices), or refuse a resume whose trials would score others."""
    from harness.data import intermediate_subset

    subset = {"size": spec.eval.intermediate_size, "of": prepared.n_eval,
              "indices": list(intermediate_subset(prepared.n_eval, spec.eval.intermediate_size, prepared.split_hash))}
    stored = study.user_attrs.get("intermediate_subset")
    if stored is None:
        study.set_user_attr("intermediate_subset", subset)
    elif stored != subset:
        raise SpecError(f"study {spec.study!r} cannot be resumed: its intermediate evaluations scored held-out "
                        f"examples {stored['indices'][:5]}... and this run would score {subset['indices'][:5]}...; "
                        "use a new --study name or the harness version that created it")

