"""Confirmation runs: the top configs of each quantization mode re-run with fresh seeds.

They are ordinary trials of the same study, enqueued with the source trial's params fixed and the
user attrs ``confirmation_of`` (the source trial's number) and ``seed`` (the training seed the
sweep uses for them). Planning is idempotent: a seed already run (or waiting) is not enqueued again,
so `--confirm-seeds 3` after `--confirm-seeds 2` adds one seed per config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.readout import StudyView
from harness.spec import SpecError


@dataclass(frozen=True)
class Confirmation:
    """One enqueued re-run: the source trial's params with a fresh training seed."""

    source: int
    params: dict[str, Any]
    seed: int


def confirmation_seeds(base_seed: int, k: int, used: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """K seeds after the sweep's seed, skipping every seed in `used` (already run for the config)."""
    seeds, candidate = [], base_seed + 1
    while len(seeds) < k:
        if candidate not in used:
            seeds.append(candidate)
        candidate += 1
    return seeds


def plan_confirmations(view: StudyView, seeds: int, top: int = 1) -> list[Confirmation]:
    """Re-runs still missing for the `top` best completed search trials of each mode. A config gets
    `seeds` confirmation runs in all (finished, running or waiting ones count; failed ones, such as an
    interrupted run, are planned again), each with a seed never run before for the same params (a
    resumed or duplicated config may already have run some seeds: a repeat would not be fresh evidence)."""
    if seeds < 1 or top < 1:
        raise SpecError(f"--confirm-seeds and --confirm-top must be >= 1, got {seeds} and {top}")
    sign = 1 if view.minimize else -1
    search = [r for r in view.search_rows() if r.state == "COMPLETE" and r.values]
    if not search:
        raise SpecError(f"study {view.name!r} has no completed trials to confirm")
    base = int(view.sweep.get("seed", 0))
    plans = []
    for mode in dict.fromkeys(r.quantization for r in search):
        best = sorted((r for r in search if r.quantization == mode), key=lambda r: sign * r.values[0])[:top]
        for source in best:
            have = [r for r in view.rows if r.confirmation_of == source.number and r.state != "FAIL"]
            used = {r.seed for r in view.rows if r.params == source.params and r.state != "FAIL" and r.seed is not None}
            missing = confirmation_seeds(base, max(0, seeds - len(have)), used)
            plans += [Confirmation(source.number, source.params, s) for s in missing]
    return plans


def enqueue(study: Any, plans: list[Confirmation]) -> None:
    """Add the planned re-runs to the study's queue; the next sweep (or worker) on it runs them first."""
    for plan in plans:
        study.enqueue_trial(plan.params, user_attrs={"confirmation_of": plan.source, "seed": plan.seed})
