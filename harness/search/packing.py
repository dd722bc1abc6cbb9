"""Packs of trials (`--pack K`): claim up to K trials, split them into packs that may share one copy of the
base model (harness.trial.pack.plan_packs), train each pack in the trial worker and record each member as it
leaves, refilling a place a member left early. Functions of the running `Sweep` (harness.search.sweep)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Protocol

from harness.config.sweep import SweepSpec
from harness.config.trial import TrialConfig
from harness.search import tracking
from harness.search.outcome import SweepInterrupted
from harness.search.progress import SweepProgress, describe_params
from harness.search.readout import ALONE_NOTE, INTERRUPTED
from harness.search.recovery import heartbeat
from harness.search.runner import TrialRunner, needs_fresh_worker
from harness.trial.result import TrialResult

Claimed = tuple[Any, int, str | None]
"""A claimed trial: the Optuna trial, its position in this run, its injected test fault."""


class Sweep(Protocol):
    """What packs use of the running harness.search.sweep.Sweep (typed here: importing it would be a cycle)."""

    spec: SweepSpec
    study: Any
    runner: TrialRunner
    progress: SweepProgress
    out_dir: Path
    wandb_mode: str
    held: list[Claimed]

    def claim_next(self) -> Claimed | None: ...
    def configure(self, trial: Any, fault: str | None) -> tuple[dict[str, Any], TrialConfig]: ...
    def one_trial(self, trial: Any, position: int, fault: str | None = None, *,
                  prepared: tuple[dict[str, Any], TrialConfig] | None = None, pack_note: str | None = None) -> None: ...
    def finish_trial(self, trial: Any, params: dict[str, Any], config: TrialConfig | None, result: TrialResult,
                     seconds: float, run: Any) -> None: ...
    def should_prune(self, trial: Any, payload: dict[str, Any]) -> bool: ...
    def grid_done(self) -> bool: ...
    def has_time_for(self, trials: int) -> bool: ...


def claim_pack(sweep: Sweep, held: list[Claimed]) -> list[Claimed]:
    """Claim trials until `--pack` of them (`held` ones included) may share a pack (fewer when the target is
    near), with every run enqueued to train alone that came first (user attr `alone`: they take no place
    in the pack)."""
    claimed: list[Claimed] = []
    while sum(not c[0].user_attrs.get("alone") for c in [*held, *claimed]) < sweep.spec.pack:
        one = sweep.claim_next()
        if one is None:
            break
        claimed.append(one)
    return claimed


def packed_trials(sweep: Sweep, claimed: list[Claimed]) -> None:
    """Claimed trials trained in packs (harness.trial.pack.plan_packs splits them by mode and targets; a
    trial that cannot share a pack runs alone, its record saying why). Ctrl-C records every member of the
    pack in flight as interrupted and stops the sweep."""
    from harness.trial.pack import plan_packs

    try:
        with contextlib.ExitStack() as beating:  # every claimed trial beats while it waits for its turn
            for trial, _, _ in claimed:
                beating.enter_context(heartbeat(sweep.study, trial._trial_id))
            configured = [(trial, position, *sweep.configure(trial, fault)) for trial, position, fault in claimed]
            for trial, position, params, config in [c for c in configured if c[0].user_attrs.get("alone")]:
                sweep.one_trial(trial, position, prepared=(params, config), pack_note=ALONE_NOTE)
            configured = [c for c in configured if not c[0].user_attrs.get("alone")]
            for planned, why in plan_packs([config for _, _, _, config in configured]):
                for members in _within_budget(sweep, [configured[i][3] for i in planned]):
                    if len(members) == 1:
                        trial, position, params, config = configured[planned[members[0]]]
                        note = why if len(planned) == 1 else (f"trains alone: a pack of {len(planned)} is "
                                                              "predicted over the memory budget")
                        sweep.one_trial(trial, position, prepared=(params, config), pack_note=note)
                    else:
                        _one_pack(sweep, [configured[planned[i]] for i in members], beating)
    except (KeyboardInterrupt, SweepInterrupted) as stop:
        # Claimed trials not yet run (waiting their turn, or held by a refill) are recorded as interrupted
        # too, so a resumed sweep retries nothing twice; those that ran recorded themselves.
        sweep.runner.close(kill=True)
        left = _interrupt_unfinished(sweep, [trial for trial, _, _ in [*claimed, *sweep.held]])
        if isinstance(stop, SweepInterrupted):
            raise
        raise SweepInterrupted(f"interrupted before trials {', '.join(f'#{n}' for n in left)} started; they are "
                               "recorded as failed and the study can be resumed with the same command") from None


def _budget(sweep: Sweep, config: TrialConfig) -> float | None:
    """The memory budget of one pack on this device: the study's, shared by the workers on the device."""
    from harness.search.planning import share_of

    return share_of(config.train.max_memory_mb, sweep.runner.sharing)


def _within_budget(sweep: Sweep, configs: list[TrialConfig]) -> list[list[int]]:
    """A planned pack split into parts whose predicted pack peak fits the memory budget (one part without
    one; harness.search.planning.packs_within)."""
    from harness.search.planning import packs_within

    budget = _budget(sweep, configs[0])
    return packs_within(configs, budget, sweep.runner.predictor() if budget is not None else None)


def _member_share(sweep: Sweep, config: TrialConfig) -> float:
    prediction = sweep.runner.predictor()(config)
    return prediction.adapter_mb + prediction.activations_mb


def _interrupt_unfinished(sweep: Sweep, trials: list[Any]) -> list[int]:
    """Record every one of these claimed trials that is still running as interrupted; their numbers."""
    import optuna

    left = []
    for trial in trials:
        if sweep.study._storage.get_trial(trial._trial_id).state == optuna.trial.TrialState.RUNNING:
            sweep.finish_trial(trial, {}, None, TrialResult(status="failed", reason=INTERRUPTED),
                               0.0, tracking.TrialRun(None))
            left.append(trial.number)
    sweep.held = []
    return left


def _one_pack(sweep: Sweep, members: list[tuple[Any, int, dict[str, Any], TrialConfig]], beating: Any) -> None:
    """Train one pack; each member is recorded as it leaves. When a member leaves early (pruned, diverged),
    the next trial takes its place if it may share the pack; one that may not (another mode, or a run to
    train alone) is held for the next claim, and no more are claimed for this pack."""
    from harness.trial.pack import refusal

    started = time.perf_counter()
    members = list(members)  # refills are appended
    places, recorded = len(members), set()
    budget = _budget(sweep, members[0][3])
    # Under a budget the pack was sized for this many MiB per member place (planning.pack_peak): a refill larger
    # than that would take the pack over it.
    place_mb = max(_member_share(sweep, m[3]) for m in members) if budget is not None else None
    sweep.progress.start_pack([(position, trial.number, params) for trial, position, params, _ in members])

    def record(index: int, result: TrialResult) -> None:
        if index in recorded:
            return
        recorded.add(index)
        trial, position, params, config = members[index]
        run = tracking.start_trial_run(study=sweep.spec.study, number=trial.number, config=config.to_dict(),
                                       params=params, mode=sweep.wandb_mode, study_dir=sweep.out_dir)
        for entry in result.history:
            if "loss" in entry:
                run.log({"train/loss": entry["loss"], "train/lr": entry["lr"]}, step=int(entry["step"]))
            elif "eval_loss" in entry and int(entry["step"]) < config.train.max_steps:
                run.log({"eval/loss": entry["eval_loss"]}, step=int(entry["step"]))
        sweep.progress.name_trial(position, trial.number, params)
        sweep.finish_trial(trial, params, config, result, time.perf_counter() - started, run)
        if len(recorded) < len(members):
            sweep.progress.continue_pack()

    def refill() -> TrialConfig | None:
        if sweep.held or sweep.grid_done() or not sweep.has_time_for(1):  # --time-budget: a member trains max_steps
            return None
        claimed = sweep.claim_next()
        if claimed is None:
            return None
        trial, position, fault = claimed
        beating.enter_context(heartbeat(sweep.study, trial._trial_id))
        params, config = sweep.configure(trial, fault)
        if (trial.user_attrs.get("alone") or refusal([members[0][3], config]) is not None
                or (place_mb is not None and _member_share(sweep, config) > place_mb)):
            sweep.held.append(claimed)
            return None
        members.append((trial, position, params, config))
        sweep.progress.note(f"  trial {position}/{sweep.progress.total} (#{trial.number}) {describe_params(params)} "
                            "takes the place a member left")
        return config

    try:
        results = sweep.runner.run_pack(
            [config for _, _, _, config in members],
            on_step=lambda p: sweep.progress.step(p["step"], min(p["losses"].values())),
            on_eval=lambda p: sweep.should_prune(members[p["member"]][0], p),
            on_result=record, refill=refill)
    except KeyboardInterrupt:
        sweep.runner.close(kill=True)
        waiting = [m for index, m in enumerate(members) if index not in recorded]
        for trial, position, params, config in waiting:
            sweep.progress.name_trial(position, trial.number, params)
            sweep.finish_trial(trial, params, config,
                               TrialResult(status="failed", reason=INTERRUPTED, pack_size=places),
                               time.perf_counter() - started, tracking.TrialRun(None))
        raise SweepInterrupted(f"interrupted during the pack of trials "
                               f"{', '.join(str(t.number) for t, _, _, _ in waiting)}; they are recorded as "
                               "failed and the study can be resumed with the same command") from None
    if any(needs_fresh_worker(result) for result in results):
        sweep.runner.restart()
    for index, result in enumerate(results):
        record(index, result)
