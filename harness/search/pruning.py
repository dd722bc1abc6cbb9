"""Pruning within a quantization mode: a trial is only ever compared with trials of its own mode.

Quantized modes start from a higher loss (the base model lost precision), so one median across modes
prunes them first even when they end better: the comparison LoRA vs QLoRA would be decided by the
pruner, not by training. `PerModePruner` wraps any Optuna pruner and shows it a study that holds only
the search trials of the same mode (confirmation re-runs are never pruned and never count).

    >>> import optuna
    >>> pruner = PerModePruner(optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=4))
    >>> study = optuna.create_study(pruner=pruner)

With `median` and `hyperband`, a trial is never pruned on its first report (`PRUNE_FROM_REPORT`): early
losses mostly reflect where a mode starts and the learning-rate warm-up, not where it ends. `asha` is
asynchronous successive halving (Optuna's SuccessiveHalvingPruner) on a rung schedule derived from the
budget (`asha_rungs`): a trial is evaluated only at the rungs and goes on past one only when its loss is in
the best third of its mode's trials that reached it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna

from harness.config.sweep import SweepSpec

PRUNE_FROM_REPORT = 2
"""The earliest intermediate report a trial can be pruned at (1-based)."""
STARTUP_TRIALS = 3
"""Completed search trials a mode needs before its trials can be pruned."""
GROUP_PARAM = "quantization"
ASHA_REDUCTION = 3
"""Successive halving keeps the best 1/3 at each rung; rungs are 3x apart."""


def pruning_interval(max_steps: int, eval_every: int = 0) -> int:
    """Steps between intermediate evals when a pruner is on: the given one, else a fifth of the budget."""
    return eval_every or max(1, max_steps // 5)


def asha_rungs(max_steps: int, warmup_steps: int = 0) -> tuple[int, ...]:
    """The steps after which `asha` evaluates a trial and may stop it: the first rung at a ninth of the
    budget but not inside the learning-rate warm-up, the next 3x later; a rung at or past the budget is
    not one (the final evaluation is). 20 steps (1 of warm-up): (2, 6); 30: (3, 9); 9: (1, 3)."""
    first = max(1, max_steps // ASHA_REDUCTION**2, warmup_steps)
    return tuple(step for step in (first, first * ASHA_REDUCTION) if step < max_steps)


def pruning_schedule(name: str, max_steps: int, eval_every: int = 0, warmup_steps: int = 0) -> dict[str, Any]:
    """What a study records of its pruner: the name, the steps of intermediate evaluations, and for
    `asha` its reduction factor (user attr `pruning_schedule`)."""
    if name == "asha":
        return {"pruner": name, "eval_steps": list(asha_rungs(max_steps, warmup_steps)),
                "reduction_factor": ASHA_REDUCTION}
    interval = pruning_interval(max_steps, eval_every)
    return {"pruner": name, "eval_steps": list(range(interval, max_steps, interval)),
            "prune_from_step": PRUNE_FROM_REPORT * interval}


def make_pruner(name: str, max_steps: int, eval_every: int = 0, warmup_steps: int = 0) -> Any:
    """`none`, `median`, `hyperband` or `asha`, each applied within a quantization mode (see the module doc)."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "asha":
        rungs = asha_rungs(max_steps, warmup_steps)
        return PerModePruner(optuna.pruners.SuccessiveHalvingPruner(
            min_resource=rungs[0] if rungs else max_steps, reduction_factor=ASHA_REDUCTION))
    warmup = PRUNE_FROM_REPORT * pruning_interval(max_steps, eval_every)
    if name == "median":
        inner = optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=warmup)
    elif name == "hyperband":
        inner = optuna.pruners.HyperbandPruner(min_resource=min(warmup, max_steps), max_resource=max_steps)
    else:
        raise ValueError(f"unknown pruner {name!r}")
    return PerModePruner(inner)


def _warmup_steps(spec: SweepSpec) -> int:
    return dataclasses.replace(spec.train, max_steps=spec.max_steps).warmup_steps


def study_schedule(spec: SweepSpec) -> dict[str, Any] | None:
    """The sweep's pruning schedule (`pruning_schedule`), None without a pruner."""
    if spec.pruner == "none":
        return None
    return pruning_schedule(spec.pruner, spec.max_steps, spec.train.eval_every, _warmup_steps(spec))


def study_pruner(spec: SweepSpec) -> Any:
    """The sweep's pruner, on the schedule `study_schedule` records."""
    return make_pruner(spec.pruner, spec.max_steps, spec.train.eval_every, _warmup_steps(spec))


class PerModePruner(optuna.pruners.BasePruner):
    """Delegates to `inner`, which sees only the search trials of the pruned trial's own mode."""

    def __init__(self, inner: optuna.pruners.BasePruner, param: str = GROUP_PARAM) -> None:
        self.inner, self.param = inner, param

    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if trial.user_attrs.get("confirmation_of") is not None:
            return False  # a confirmation seed is evidence, not a candidate: it always runs to the end
        group = trial.params.get(self.param)
        storage = _GroupStorage(study._storage, lambda t: _peer(t, self.param, group, trial.number))
        view = optuna.study.Study(study_name=study.study_name, storage=storage, sampler=study.sampler,
                                  pruner=self.inner)
        return self.inner.prune(view, trial)


def _peer(other: optuna.trial.FrozenTrial, param: str, group: Any, number: int) -> bool:
    """A trial the pruned one is compared with: itself, or a search trial of the same group."""
    if other.number == number:
        return True
    return other.params.get(param) == group and other.user_attrs.get("confirmation_of") is None


class _GroupStorage:
    """A read-through view of an Optuna storage whose trial lists hold only the trials `keep` accepts
    (writes, such as Hyperband's rung attributes, go to the real storage)."""

    def __init__(self, storage: Any, keep: Any) -> None:
        self._storage, self._keep = storage, keep

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None) -> list[Any]:
        return [t for t in self._storage.get_all_trials(study_id, deepcopy=deepcopy, states=states) if self._keep(t)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)
