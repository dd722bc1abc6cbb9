"""Which trial adapters a sweep keeps: the best trial's (`best_adapter`) or, with several objectives,
the Pareto front's (`adapters/trial-N`). Safe with several workers writing to one output folder.

Each worker moves its finished trial's adapter into place and then reconciles the folder with the
study's current best trials, all under one lock file: without it, a worker that read the best trials
a moment before another worker's new best arrived would delete that fresh adapter.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from harness.runtime.locking import file_lock

LOCK_NAME = ".adapters.lock"
"""In the output folder, beside adapters/ (which holds nothing but adapter folders)."""


TASK_METRICS_ATTR = "task_metrics_after"
"""Study user attr: the task metrics `--task-metrics top-K` scored on the best trials' adapters after the sweep."""


def top_trials(study: Any, top: int) -> list[Any]:
    """The `top` best completed search trials of a single-objective study, best first (confirmation re-runs
    left out), by its objective's direction."""
    import optuna

    from harness.config.objectives import ranked

    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.values and t.user_attrs.get("confirmation_of") is None]
    return ranked(done, study.directions[0].name.lower(), lambda t: t.values[0])[:top]


def keep_adapter(study: Any, out_dir: Path, number: int, completed: bool, single_objective: bool,
                 top: int = 1) -> None:
    """Keep trial `number`'s adapter if it completed; drop the adapters of trials no longer the best (with
    `top` > 1 in a single-objective study, no longer among the `top` best: --task-metrics top-K scores them)."""
    adapters = out_dir / "adapters"
    tmp = adapters / f".trial-{number}"
    with file_lock(out_dir / LOCK_NAME):
        if completed and tmp.exists():
            os.replace(tmp, adapters / f"trial-{number}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            best = {t.number for t in study.best_trials}  # read under the lock, after this trial was told
        except ValueError:
            best = set()
        keep = best | ({t.number for t in top_trials(study, top)} if single_objective and top > 1 else set())
        for folder in adapters.glob("trial-*"):
            if int(folder.name.split("-")[1]) not in keep:
                shutil.rmtree(folder, ignore_errors=True)
        if single_objective and best:
            link_best(adapters, out_dir / "best_adapter", min(best))


def drop_partial(out_dir: Path, number: int) -> None:
    """Remove the half-written adapter of a trial whose worker was lost."""
    adapters = out_dir / "adapters"
    with file_lock(out_dir / LOCK_NAME):
        shutil.rmtree(adapters / f".trial-{number}", ignore_errors=True)


def link_best(adapters: Path, link: Path, number: int) -> None:
    """`best_adapter` points at the best trial's adapter folder (a relative symlink, replaced atomically)."""
    target = adapters / f"trial-{number}"
    if not target.exists():
        return
    tmp = link.with_name(f".best_adapter.{os.getpid()}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(target, link.parent))
    if link.is_dir() and not link.is_symlink():
        # A copied study folder (`cp -r`, shutil.copytree) turns the link into a real folder, which a
        # symlink cannot replace atomically; it is a copy of a kept adapter, so it can go.
        shutil.rmtree(link)
    os.replace(tmp, link)
