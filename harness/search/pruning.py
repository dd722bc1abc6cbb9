"""Pruning within a quantization mode: a trial is only ever compared with trials of its own mode.

Quantized modes start from a higher loss (the base model lost precision), so one median across modes
prunes them first even when they end better: the comparison LoRA vs QLoRA would be decided by the
pruner, not by training. `PerModePruner` wraps any Optuna pruner and shows it a study that holds only
the search trials of the same mode (confirmation re-runs are never pruned and never count).

    >>> import optuna
    >>> pruner = PerModePruner(optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=4))
    >>> study = optuna.create_study(pruner=pruner)

A trial is never pruned on its first report (`PRUNE_FROM_REPORT`): early losses mostly reflect where a
mode starts and the learning-rate warm-up, not where it ends.
"""

from __future__ import annotations

from typing import Any

import optuna

PRUNE_FROM_REPORT = 2
"""The earliest intermediate report a trial can be pruned at (1-based)."""
STARTUP_TRIALS = 3
"""Completed search trials a mode needs before its trials can be pruned."""
GROUP_PARAM = "quantization"


def pruning_interval(max_steps: int, eval_every: int = 0) -> int:
    """Steps between intermediate evals when a pruner is on: the given one, else a fifth of the budget."""
    return eval_every or max(1, max_steps // 5)


def make_pruner(name: str, max_steps: int, eval_every: int = 0) -> Any:
    """`none`, `median` or `hyperband`, each applied within a quantization mode (see the module doc)."""
    if name == "none":
        return optuna.pruners.NopPruner()
    warmup = PRUNE_FROM_REPORT * pruning_interval(max_steps, eval_every)
    if name == "median":
        inner = optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=warmup)
    elif name == "hyperband":
        inner = optuna.pruners.HyperbandPruner(min_resource=min(warmup, max_steps), max_resource=max_steps)
    else:
        raise ValueError(f"unknown pruner {name!r}")
    return PerModePruner(inner)


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
