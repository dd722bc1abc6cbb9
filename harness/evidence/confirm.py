"""Confirmation runs: the top configs of each quantization mode (or each group of `--by` axes) re-run with
fresh seeds.

They are ordinary trials of the same study, enqueued with the source trial's params fixed and the
user attrs ``confirmation_of`` (the source trial's number) and ``seed`` (the training seed the
sweep uses for them). Planning is idempotent: a seed already run (or waiting) is not enqueued again,
so `--confirm-seeds 3` after `--confirm-seeds 2` adds one seed per config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.evidence.grouping import Grouping, grouping
from harness.evidence.sequential import DEFAULT_RESOLUTION, until_resolved
from harness.search.readout import SEQUENTIAL_ATTR, StudyView, measured_alone, merge_sequential
from harness.config.errors import SpecError


@dataclass(frozen=True)
class Confirmation:
    """One enqueued re-run: the source trial's params with a fresh training seed."""

    source: int
    params: dict[str, Any]
    seed: int
    alone: bool = False
    """Trains alone although the confirmation packs (`--pack`): the config's one run whose peak memory and
    seconds are its own (harness.search.readout.ALONE_NOTE)."""


def confirmation_seeds(base_seed: int, k: int, used: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """K seeds after the sweep's seed, skipping every seed in `used` (already run for the config)."""
    seeds, candidate = [], base_seed + 1
    while len(seeds) < k:
        if candidate not in used:
            seeds.append(candidate)
        candidate += 1
    return seeds


def plan_confirmations(view: StudyView, seeds: int, top: int = 1, by: Grouping | None = None,
                       groups: set[str] | None = None, pack: int = 1) -> list[Confirmation]:
    """Re-runs still missing for the `top` best completed search trials of each mode (each group of `by`'s
    axes: `harness compare --by use_dora`). A config gets
    `seeds` confirmation runs in all (finished, running or waiting ones count; failed ones, such as an
    interrupted run, are planned again), each with a seed never run before for the same params (a
    resumed or duplicated config may already have run some seeds: a repeat would not be fresh evidence).
    Every config gets the same seeds (the sweep's seed + 1, + 2, ...), so configs are compared seed by seed.
    `groups`: only these groups' keys (sequential confirmation adds seeds where a comparison is unresolved).
    `pack` > 1: the runs will train in packs, so the first missing seed of a config none of whose confirmation
    runs trained alone (or waits to) is planned `alone`: its peak memory and seconds are the config's own."""
    if seeds < 1 or top < 1:
        raise SpecError(f"--confirm-seeds and --confirm-top must be >= 1, got {seeds} and {top}")
    search = [r for r in view.search_rows() if r.state == "COMPLETE" and r.values]
    if not search:
        raise SpecError(f"study {view.name!r} has no completed trials to confirm")
    base = int(view.sweep.get("seed", 0))
    by = by or grouping(None, view.sweep)
    plans = []
    for group in dict.fromkeys(by.key(r.params) for r in search):
        if groups is not None and group not in groups:
            continue
        best = view.ranked(r for r in search if by.key(r.params) == group)[:top]
        for source in best:
            have = [r for r in view.rows if r.confirmation_of == source.number and r.state != "FAIL"]
            used = {r.seed for r in view.rows if r.params == source.params and r.state != "FAIL" and r.seed is not None}
            missing = confirmation_seeds(base, max(0, seeds - len(have)), used)
            alone = pack > 1 and not measured_alone(have)
            plans += [Confirmation(source.number, source.params, s, alone=alone and i == 0)
                      for i, s in enumerate(missing)]
    return plans


def enqueue(study: Any, plans: list[Confirmation], sequential: dict[str, Any] | None = None) -> None:
    """Add the planned re-runs to the study's queue; the next sweep (or worker) on it runs them first.
    `sequential`: the {max_seeds, resolution} of a sequential confirmation, kept with each re-run."""
    for plan in plans:
        attrs: dict[str, Any] = {"confirmation_of": plan.source, "seed": plan.seed}
        if sequential:
            attrs["sequential"] = sequential
        if plan.alone:
            attrs["alone"] = True
        study.enqueue_trial(plan.params, user_attrs=attrs)


def run_confirmations(view: StudyView, seeds: int, top: int, out: str | None = None,
                      say: Callable[[str], None] = print, by: Grouping | None = None,
                      groups: set[str] | None = None, pack: int = 1, sequential: dict[str, Any] | None = None) -> None:
    """Enqueue the missing re-runs of the `top` configs of each mode (or group of `by`) and run every waiting
    trial with the study's own settings (in its storage, writing to its folder: `out`, else where it was
    created to)."""
    import optuna

    from harness.config.experiment import build_sweep_spec
    from harness.search.launch import run_sweep
    from harness.search.study import load_existing_study

    if not view.sweep:
        raise SpecError(f"study {view.name!r} was not created by `harness sweep`; cannot re-run its configs")
    study = load_existing_study(view.name, view.storage)
    plans = plan_confirmations(view, seeds, top, by, groups, pack)
    enqueue(study, plans, sequential)
    waiting = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
    if not waiting:
        say(f"confirmation: every config already has its {seeds} seeds")
        return
    each = "mode" if by is None or by.by_mode else f"group of {by.name}"
    which = f"each {each}" if groups is None else f"{len(groups)} group(s) with an unresolved comparison"
    alone = sum(p.alone for p in plans)
    say(f"confirmation: {waiting} re-runs (up to {seeds} seeds x the top {top} config(s) of {which})"
        + (f"; {alone} of them train alone, once per config, to measure its memory and seconds alone" if alone else ""))
    flags: dict[str, Any] = {"storage": view.storage, "trials": waiting, "out": str(view.out_dir(out)), "pack": pack}
    run_sweep(build_sweep_spec(view.sweep, flags, f"study {view.name}"))


def unresolved_groups(comparison: Any) -> set[str]:
    """The groups on either side of an unresolved comparison (each group against the reference, and the best
    group against the runner-up): where sequential confirmation adds seeds."""
    groups: set[str] = set()
    for group, d in comparison.differences.items():
        if not d["resolved"]:
            groups |= {group, comparison.reference}
    leader = comparison.leader
    if leader is not None and not leader["resolved"]:
        groups |= {leader["top"], leader["runner_up"]}
    return groups


def confirm_until_resolved(view: StudyView, max_seeds: int, resolution: str | None, top: int = 1,
                           out: str | None = None, say: Callable[[str], None] = print,
                           by: Grouping | None = None, pack: int = 1) -> StudyView:
    """Sequential confirmation (harness.evidence.sequential.until_resolved): every group's best config gets
    2 seeds, then 2 more at a time for the groups of the comparisons still unresolved, until all are resolved
    at `resolution` (the intervals at each look's level) or `max_seeds` are spent. Returns the study read back."""
    from harness.evidence.compare import build_comparison
    from harness.search.readout import open_view

    sequential = record_sequential(view, max_seeds, resolution)

    def round_(seeds: int, groups: set[str] | None) -> tuple[StudyView, set[str], int]:
        nonlocal view  # each round plans from the study as the previous round left it
        run_confirmations(view, seeds, top, out, say, by, groups, pack, sequential)
        view = open_view(view.name, view.storage, out)
        comparison = build_comparison(view, by=by, resolution=resolution, max_seeds=max_seeds)
        unresolved = unresolved_groups(comparison)
        have = min((m.confirmed.objective.n for m in comparison.modes
                    if m.mode in unresolved and m.confirmed and m.confirmed.objective), default=seeds)
        return view, unresolved, have

    return until_resolved(round_, max_seeds, resolution, say, "confirmation", "group")


def record_sequential(view: StudyView, max_seeds: int, resolution: str | None) -> dict[str, Any]:
    """Keep in the study that its confirmations are sequential, so that every later read-out (compare without
    `--confirm-until`, recommend, report) gives paired intervals at the looks' levels, not at 95%: a 95%
    interval after several looks would claim more than the runs show. The largest cap any sequential
    confirmation of the study used is kept (more looks, a stricter level at each: the conservative reading)."""
    from harness.search.study import load_existing_study

    study = load_existing_study(view.name, view.storage)
    kept = merge_sequential({"max_seeds": max_seeds, "resolution": DEFAULT_RESOLUTION},
                            study.user_attrs.get(SEQUENTIAL_ATTR), {"max_seeds": max_seeds, "resolution": resolution})
    study.set_user_attr(SEQUENTIAL_ATTR, kept)
    return kept
