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


def confirmation_seeds(base_seed: int, k: int) -> list[int]:
    """K seeds different from the search trials' seed (they all ran with the sweep's seed)."""
    return [base_seed + 1 + i for i in range(k)]


def plan_confirmations(view: StudyView, seeds: int, top: int = 1) -> list[Confirmation]:
    """Re-runs still missing for the `top` best completed search trials of each mode."""
    if seeds < 1 or top < 1:
        raise SpecError(f"--confirm-seeds and --confirm-top must be >= 1, got {seeds} and {top}")
    sign = 1 if view.minimize else -1
    search = [r for r in view.search_rows() if r.state == "COMPLETE" and r.values]
    if not search:
        raise SpecError(f"study {view.name!r} has no completed trials to confirm")
    wanted = confirmation_seeds(int(view.sweep.get("seed", 0)), seeds)
    plans = []
    for mode in dict.fromkeys(r.quantization for r in search):
        best = sorted((r for r in search if r.quantization == mode), key=lambda r: sign * r.values[0])[:top]
        for source in best:
            have = {r.seed for r in view.rows if r.confirmation_of == source.number and r.state != "FAIL"}
            plans += [Confirmation(source.number, source.params, s) for s in wanted if s not in have]
    return plans


def enqueue(study: Any, plans: list[Confirmation]) -> None:
    """Add the planned re-runs to the study's queue; the next sweep (or worker) on it runs them first."""
    for plan in plans:
        study.enqueue_trial(plan.params, user_attrs={"confirmation_of": plan.source, "seed": plan.seed})
