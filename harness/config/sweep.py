"""SweepSpec: one sweep (which study, on what, how many trials, where results go) and the settings a
resumed study must keep."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from harness.config.dataset import DataSpec
from harness.config.errors import check
from harness.config.evaluation import EvalSpec
from harness.config.objectives import OBJECTIVES, TASK_METRICS, direction_of
from harness.config.paths import study_out_dir, study_storage_url
from harness.config.training import TrainSpec

_UNPINNED = {("train", "learning_rate"), ("train", "max_steps"), ("train", "seed"), ("train", "eval_every"),
             ("train", "eval_at"), ("data_options", "name"), ("eval", "generate_batch_size")}
"""Settings a resumed study may change: sampled per trial, given elsewhere, or not measured."""


SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband", "asha")
WANDB_MODES = ("auto", "offline", "online", "disabled")


@dataclass(frozen=True)
class SweepSpec:
    """One sweep: which study, on what, how many trials, where results go. Flags override YAML."""

    study: str = "default"
    """Study name; outputs go to experiments/<study>/ unless `out` says otherwise."""
    model: str = "smollm2-135m"
    data: str = "stdlib-qa"
    space: str = "default"
    """A search-space file, or the name of one in search_spaces/ (`default`, `lora_vs_qlora`, `tiny`)."""
    trials: int = 8
    """How many more finished trials to run (a resumed study adds this many)."""
    max_steps: int = 30
    seed: int = 0
    out: str | None = None
    storage: str | None = None
    """Any Optuna storage URL; default sqlite:///<out>/study.db."""
    wandb: str = "auto"
    """`auto` (online when an API key is set, else offline), offline, online or disabled."""
    sampler: str = "tpe"
    pruner: str = "none"
    objectives: tuple[str, ...] = ("eval_loss",)
    warm_start: str = "none"
    """`none`, `defaults` (the published defaults the space can express are the first trials) or the name of
    a study in the same storage (its best completed configs are)."""
    task_metrics: str = "all"
    """Which trials score the task metrics (generated answers): `all` (each in its final evaluation), `top-K`
    (none while the sweep runs; the K best completed trials, on their saved adapters, when it ends) or `none`.
    Only `all` when an objective is a task metric."""
    pack: int = 1
    """Trials trained at once on one copy of the base model (harness.trial.pack): this process claims up to
    `pack` trials, and those of one quantization mode and target set train together. 1: one at a time."""
    lr_range_test: bool | None = None
    """Before the search, narrow the learning-rate axis with one range test per quantization mode
    (harness.search.lr_range). None (the default): only where it can pay, a new study whose learning rate is a
    sampled range of two decades or more (harness.search.lr_range.auto_reason)."""
    from_config: str | None = None
    """The Axolotl, LLaMA-Factory or TRL file the sweep started from (`--from-config`), for `recommend --format
    same`."""
    from_format: str | None = None
    """Its tool: axolotl, llamafactory or trl."""
    from_values: dict[str, Any] | None = None
    """Every key the sweep read from that file, with its value as read."""
    train: TrainSpec = field(default_factory=TrainSpec)
    """Fixed training settings (learning_rate and max_steps are overridden per trial)."""
    data_spec: DataSpec = field(default_factory=DataSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)

    def __post_init__(self) -> None:
        check(isinstance(self.study, str) and self.study.strip() != "" and "/" not in self.study,
               f"study must be a name without '/', got {self.study!r}")
        check(isinstance(self.trials, int) and self.trials >= 1, f"trials must be >= 1, got {self.trials!r}")
        check(isinstance(self.max_steps, int) and self.max_steps >= 1,
               f"max_steps must be >= 1, got {self.max_steps!r}")
        check(self.sampler in SAMPLERS, f"sampler {self.sampler!r} is not one of {', '.join(SAMPLERS)}")
        check(isinstance(self.warm_start, str) and self.warm_start.strip() != "" and "/" not in self.warm_start,
              f"warm_start must be none, defaults or a study name, got {self.warm_start!r}")
        check(self.lr_range_test is None or isinstance(self.lr_range_test, bool),
              f"lr_range_test must be true or false (or left out: on for a learning-rate range of 100x or more), "
              f"got {self.lr_range_test!r}")
        check(not (self.lr_range_test is True and self.sampler == "grid"),
              "lr_range_test narrows the learning-rate axis, which a grid covers point by point; "
              "use --sampler tpe or random, or drop --lr-range-test")
        check(isinstance(self.pack, int) and not isinstance(self.pack, bool) and self.pack >= 1,
              f"pack must be a positive integer (trials trained at once), got {self.pack!r}")
        check(self.pruner in PRUNERS, f"pruner {self.pruner!r} is not one of {', '.join(PRUNERS)}")
        check(self.wandb in WANDB_MODES, f"wandb {self.wandb!r} is not one of {', '.join(WANDB_MODES)}")
        check(len(self.objectives) >= 1, "objectives must name at least one metric, e.g. eval_loss")
        for name in self.objectives:
            check(name in OBJECTIVES or name in TASK_METRICS,
                   f"objective {name!r} is not one of {', '.join([*OBJECTIVES, *TASK_METRICS])}")
        check(len(set(self.objectives)) == len(self.objectives), "objectives has duplicates")
        check(isinstance(self.task_metrics, str)
              and (self.task_metrics in ("all", "none") or re.fullmatch(r"top-[1-9]\d*", self.task_metrics) is not None),
              f"task_metrics must be all, none or top-K (e.g. top-3), got {self.task_metrics!r}")
        check(self.task_metrics == "all" or not self.task_objectives,
              f"objective {', '.join(self.task_objectives)} is a task metric, which every trial must score; "
              f"use --task-metrics all (or an objective such as eval_loss with --task-metrics {self.task_metrics})")
        check(self.pruner == "none" or len(self.objectives) == 1,
               "a pruner needs a single objective (Optuna cannot prune multi-objective studies); "
               "use --pruner none with several --objectives")
        check(self.pruner == "none" or self.objectives[0] in ("eval_loss", "perplexity"),
               f"a pruner judges trials on their intermediate eval loss, so it needs --objectives eval_loss, "
               f"not {self.objectives[0]}")

    @property
    def out_dir(self) -> str:
        return study_out_dir(self.study, self.out)

    @property
    def storage_url(self) -> str:
        return study_storage_url(self.study, self.storage, self.out)

    @property
    def directions(self) -> list[str]:
        return [direction_of(name) for name in self.objectives]

    def measured_settings(self) -> dict[str, Any]:
        """Every setting that changes what a trial measures, flattened (`train.batch_size`, ...): a resumed
        study must keep each of them, or its trials would not be one experiment. The learning rate is
        sampled per trial; intermediate evals (`train.eval_every`) no longer change what is measured."""
        flat: dict[str, Any] = {"model": self.model, "data": self.data, "max_steps": self.max_steps,
                                "seed": self.seed, "objectives": list(self.objectives)}
        for section, spec in (("train", self.train), ("data_options", self.data_spec), ("eval", self.eval)):
            for key, value in dataclasses.asdict(spec).items():
                if (section, key) in _UNPINNED:
                    continue
                flat[f"{section}.{key}"] = value
        return json.loads(json.dumps(flat))  # as the study stores it: tuples become lists

    @property
    def task_metrics_top(self) -> int | None:
        """K of `task_metrics: top-K`; None for all or none."""
        return int(self.task_metrics.split("-")[1]) if self.task_metrics.startswith("top-") else None

    @property
    def task_objectives(self) -> tuple[str, ...]:
        """Objectives that are task metrics (scored on generated answers)."""
        return tuple(name for name in self.objectives if name in TASK_METRICS)
