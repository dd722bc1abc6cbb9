"""One sweep: ask the study for params, run the trial in the supervised worker, tell the result,
append trials.jsonl, log to W&B, keep the best adapter. Ctrl-C leaves everything resumable.

Several of these loops may run on one study at once (`--workers N`, `harness worker` on other
machines): each claims its next trial under the claim lock (recover lost trials, count, ask), keeps a
heartbeat going while the trial runs, and stops when the study holds its target number of trials.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.experiment import spec_to_dict
from harness.config.errors import SpecError
from harness.config.objectives import ranked
from harness.config.space import SearchSpace, suggest
from harness.config.sweep import SweepSpec
from harness.config.trial import TrialConfig
from harness.runtime.devices import THREADS_ENV
from harness.runtime.redaction import redact_values
from harness.search import packing, side_runs, tracking
from harness.search.adapters import drop_partial, keep_adapter
from harness.search.kept_pins import pinned, record_pin
from harness.search.artifacts import store_kept_adapters
from harness.search.outcome import (RECORDED_ATTRS, SweepInterrupted, SweepOutcome, objective_values, reason_kind,
                                    result_summary, status_attrs)
from harness.search.preparing import (FAULTS_ENV, Prepared, injected_faults, keep_intermediate_subset, prepare,
                                      trial_config)
from harness.search.progress import SweepProgress
from harness.search.pruning import study_schedule
from harness.search.readout import ALONE_NOTE, INTERRUPTED, small_eval_note
from harness.search.records import STATE_OF_STATUS, append_record, build_record
from harness.search.recovery import (Heartbeat, claim_lock, counted, heartbeat, heartbeat_enabled, owner_attrs,
                                     recover, retry, watchable)
from harness.search.runner import TrialRunner, needs_fresh_worker
from harness.search.study import check_split, open_study, resolve_url
from harness.search.time_budget import NOT_STARTED, TimeBudget, planned_trial_seconds, stop_note
from harness.search.warmstart import enqueue_warm_start
from harness.trial.result import TrialResult

__all__ = ["FAULTS_ENV", "RECORDED_ATTRS", "Prepared", "Role", "Sweep", "SweepInterrupted", "SweepOutcome",
           "objective_values", "prepare", "result_summary", "status_attrs", "trial_config"]
"""Besides the loop itself, the names other modules import from here (their homes: outcome, preparing)."""

FAIL_FAST = 3
"""Stop the sweep when this many first trials all fail for the same reason."""
WAIT_SECONDS = 1.0
"""How often a worker whose target is met looks again at trials other workers are still running."""


@dataclass(frozen=True)
class Role:
    """How this process takes part in a study."""

    worker: int = 0
    """0: the only process of this sweep; 1..N: one of the `--workers N` (shown as [wN], picks its faults)."""
    target: int | None = None
    """Stop when the study holds this many counted trials (see recovery.counted); None: as many as it
    held at the start plus `--trials`."""
    base: int | None = None
    """Counted trials when the sweep started (progress shows trial k of target - base); None: counted now."""
    heartbeat: Heartbeat | None = None
    """Heartbeat settings for a new study (an existing study's stored ones win); None: the defaults."""
    seed_offset: int = 0
    """Added to the sampler seed so parallel workers do not sample the same params."""
    parallel: bool = False
    """One of several processes running the study's trials at once (`--workers N`, `harness worker`): TPE
    then takes the trials the others are running for badly scored ones (constant liar), not piling onto them."""
    time_budget: float | None = None
    """--time-budget in seconds, for this invocation only (harness.search.time_budget); None: no budget."""
    sharing: int = 1
    """How many of this sweep's workers run trials on this process's device at once: a memory budget counts
    them all (each trial gets a 1/sharing share). A `harness worker` joining from elsewhere: 1."""


class Sweep:
    """The claim-run-tell loop of one `harness sweep` (or worker) process."""

    def __init__(self, spec: SweepSpec, space: SearchSpace, progress: SweepProgress | None = None,
                 role: Role = Role()) -> None:
        self.spec, self.space, self.role = spec, space, role
        self.out_dir = Path(spec.out_dir)
        self.progress = progress or SweepProgress(spec.trials, spec.max_steps)
        self.runner = TrialRunner(sharing=role.sharing)
        self.study: Any = None
        self.outcome = SweepOutcome(spec.study, self.out_dir, spec.storage_url)
        self.wandb_mode = tracking.resolve_mode(spec.wandb)
        self.metrics: tuple[str, ...] = ()
        self.target = self.base = 0
        self._own: list[dict[str, Any]] = []  # records of the trials this process ran (fail-fast looks at them)
        self._waiting = False
        self.held: list[tuple[Any, int, str | None]] = []  # claimed by a pack's refill, not placed: claimed next
        self._faults = injected_faults(role.worker)  # test faults by this process's claim order
        self._claims = 0  # trials this process claimed (test faults are keyed by this order)
        self._baselines_pending = False  # untuned baselines to score after the first trial (prepare_study)
        self.budget = TimeBudget(role.time_budget) if role.time_budget is not None else None  # counts from here
        self._budget_stopped = self._planned = False

    def run(self) -> SweepOutcome:
        previous = _interrupt_on_sigterm()
        try:
            self.prepare_study(defer_baselines=True)
            self.loop()
            self._score_pending_baselines()  # no trial ran (the target was met): still every baseline
            if self.role.worker == 0 and not self.role.parallel:
                self.score_top_trials()
        finally:
            self.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return self.finish()

    def prepare_study(self, *, start_runner: bool = True, defer_baselines: bool = False) -> None:
        """Validate, open (or create) the study, recover lost trials, score the baselines once, fix the target.
        `start_runner`: start the trial process first, so that its imports (seconds: torch, transformers, peft)
        overlap with checking the inputs and the bookkeeping (False for a parent that leaves the trials to its
        workers). Bad input stops it at once: the one-line error is not kept waiting. `defer_baselines`: a baseline
        the machine has not cached is scored after this process's first trial, so it does not delay the first
        result (the process that runs the trials; a parent of workers scores them first)."""
        if start_runner:
            self.runner.start()
        try:
            prepared = prepare(self.spec, self.space, self.progress)
        except BaseException:
            self.runner.close(kill=True)
            raise
        self.metrics = prepared.metrics
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.wandb_mode != "disabled":
            tracking.configure_dirs(self.out_dir)
        self.study = open_study(self.spec, self.space, heartbeat=self.role.heartbeat,
                                seed_offset=self.role.seed_offset, parallel=self.role.parallel)
        self.outcome.storage = resolve_url(self.spec.storage_url)
        check_split(self.study, prepared.split_hash, self.spec.study)
        note = small_eval_note(prepared.n_eval)  # after every check of the input: an error stays one line
        if note:
            self.progress.note(f"warning: {note}")
        if "sweep" not in self.study.user_attrs:
            self.study.set_user_attr("sweep", redact_values(spec_to_dict(self.spec)))  # no password kept
        if self.spec.pruner != "none":
            keep_intermediate_subset(self.study, self.spec, prepared)
            self.study.set_user_attr("pruning_schedule", study_schedule(self.spec))
        if "model_source" not in self.study.user_attrs:
            self.study.set_user_attr("model_source", prepared.source)
        self.progress.note(f"base model: {prepared.source['label']}; source weights: {prepared.source['precision']}")
        if side_runs.missing_baselines(self):
            self.runner.start()  # a parent that leaves the trials to its workers still scores the baselines
        with claim_lock(self.study, self.out_dir):
            recover(self.study, self.on_lost)
            start = counted(self.study)
        self._baselines_pending = defer_baselines and bool(side_runs.missing_baselines(self))
        if self._baselines_pending:
            self.progress.note("the untuned base model is scored after the first trial (its scores are cached on "
                               "this machine: a later study on the same model, data and settings reads them)")
        else:
            side_runs.score_baselines(self)
        side_runs.narrow_learning_rate(self)
        warm, skipped = side_runs.in_space(self, prepared.warm, prepared.warm_skipped)
        with claim_lock(self.study, self.out_dir):
            enqueue_warm_start(self.study, warm, skipped, self.progress.note)
        self.base = self.role.base if self.role.base is not None else start
        self.target = self.role.target if self.role.target is not None else start + self.spec.trials
        if self.role.target is None:
            self.study.set_user_attr("target_trials", self.target)  # what `harness worker` joins to reach
        self.progress.total = max(0, self.target - self.base)

    def loop(self) -> None:
        """Claim, run and tell trials until the study holds the target, waiting for lost ones to come back."""
        while True:
            if self.grid_done() and not self.held:
                self.progress.note(f"the grid is exhausted after {len(self.study.trials)} trials; stopping")
                return
            if not self._time_for_next():
                return
            claimed, self.held = self.held, []  # trials a pack's refill claimed but could not place come first
            if self.spec.pack > 1:
                claimed += packing.claim_pack(self, claimed)
            else:
                claimed += [c for c in [self.claim_next()] if c]
            if not claimed:
                if self._others_running():
                    time.sleep(WAIT_SECONDS)
                    continue
                return
            started, ran = (self.budget.elapsed() if self.budget else 0.0), len(self._own)
            if len(claimed) == 1:
                alone = None
                if self.spec.pack > 1:
                    alone = (ALONE_NOTE if claimed[0][0].user_attrs.get("alone") else
                             "the only trial left to claim (the study's target was near)")
                self.one_trial(*claimed[0], pack_note=alone)
            else:
                packing.packed_trials(self, claimed)
            if self.budget is not None:  # measured: what the next trial is predicted to take from now on
                self.budget.ran(self.budget.elapsed() - started, len(self._own) - ran)
            self._score_pending_baselines()
            self._stop_if_broken()

    def has_time_for(self, trials: int) -> bool:
        """--time-budget: whether `trials` trials started now are predicted to end within it (True: no budget).
        Before this process has finished a trial the prediction is the planner's, asked once."""
        if self.budget is None:
            return True
        if not self.budget.measured and self.budget.predicted_trial_seconds is None and not self._planned:
            self._planned = True
            self.budget.predicted_trial_seconds = planned_trial_seconds(self.spec, self.space, self.runner,
                                                                        trial_config, self.progress.note)
        return self.budget.allows(trials)

    def _time_for_next(self) -> bool:
        """Whether the next claim (a trial, or a pack of --pack trials) may start under --time-budget; when not,
        say so, and release the trials a pack's refill claimed but could not place (failed as not started, each
        retried by the next run). Nothing to claim any more is not the budget's stop."""
        if self.budget is None:
            return True
        left = self.target - counted(self.study)
        if not self.held and left <= 0:
            return True
        trials = len(self.held) if self.held else min(self.spec.pack, left)
        if self.has_time_for(trials):
            return True
        self._budget_stopped = True
        self.progress.note(stop_note(self.budget, trials, len(self._own)))
        for trial, _, _ in self.held:
            self.finish_trial(trial, {}, None, TrialResult(status="failed", reason=NOT_STARTED), 0.0,
                              tracking.TrialRun(None))
            retry(self.study, self.study._storage.get_trial(trial._trial_id))
        self.held = []
        return False

    def recover_lost(self) -> None:
        """Under the claim lock, fail and record every trial whose worker was lost, enqueueing its retry."""
        with claim_lock(self.study, self.out_dir):
            recover(self.study, self.on_lost)

    def close(self) -> None:
        self.progress.stop()
        self.runner.close(kill=True)

    def finish(self) -> SweepOutcome:
        self.outcome.best = self._best()
        if self.budget is not None and self.outcome.time_budget is None:
            self.outcome.time_budget = self.budget.summary(len(self._own), self._budget_stopped)
        if len(self.spec.objectives) > 1:
            self._store_pareto()
        if self.role.worker == 0:  # the sweep's own process (or the parent of its workers): once, at the end
            warning = store_kept_adapters(self.study, self.out_dir)
            if warning:
                self.progress.note(f"warning: {warning}")
        return self.outcome

    def _claim(self) -> tuple[Any, int]:
        """Under the claim lock: recover lost trials, then ask for a trial if the target is not met yet
        (a WAITING trial, such as a retry or a confirmation run, comes first)."""
        with claim_lock(self.study, self.out_dir):
            recover(self.study, self.on_lost)
            done = counted(self.study)
            if done >= self.target:
                return None, 0
            with warnings.catch_warnings():  # "heartbeat is supposed to be used with optimize": we keep it ourselves
                warnings.simplefilter("ignore", UserWarning)
                trial = self.study.ask()
            beating = heartbeat_enabled(self.study)
            if beating:
                self.study._storage.record_heartbeat(trial._trial_id)
            trial.set_user_attr("owner", owner_attrs(beating))
        return trial, done + 1 - self.base

    def _others_running(self) -> bool:
        """The target is met, but trials other workers run could still be lost and come back for a retry:
        wait while any of them is one this worker could detect (heartbeats, or its worker on this host)."""
        import optuna

        running = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        watched = [t for t in running if watchable(self.study, t)]
        if watched and not self._waiting:
            self._waiting = True
            self.progress.note(f"waiting for {len(watched)} trial(s) other workers are running "
                               f"(#{', #'.join(str(t.number) for t in watched)}): a lost one is retried here")
        return bool(watched)

    def on_lost(self, trial: Any, reason: str, retry: int | None) -> None:
        """Record a trial whose worker was lost (`recovery.recover`'s hook; the claim lock makes this worker
        the only one to do so): trials.jsonl, this run's records, and a progress line."""
        drop_partial(self.out_dir, trial.number)
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_start else 0.0
        record = self._record(trial.number, trial.params, trial.user_attrs.get("config", {}),
                              TrialResult(status="failed", reason=reason), seconds,
                              worker=trial.user_attrs.get("owner"), retried_as=retry)
        self.progress.note(f"trial #{trial.number} FAIL ({record['error']}); "
                           + (f"retried as trial #{retry}" if retry is not None else "not retried again"))

    def _stop_if_broken(self) -> None:
        """Fail fast: when the first FAIL_FAST trials of this run all failed for the same reason,
        the config is broken (not unlucky): stop and say so rather than burn the whole budget."""
        first = self._own[:FAIL_FAST]
        if len(first) < FAIL_FAST or len(self._own) > FAIL_FAST:
            return
        reasons = {reason_kind(r) for r in first}
        if len(reasons) == 1 and None not in reasons:
            raise SpecError(f"the first {FAIL_FAST} trials all failed with the same reason ({first[-1]['error']}); "
                            "stopping the sweep: fix the model, data or search space and run it again")

    def _store_pareto(self) -> None:
        front = sorted(self.study.best_trials, key=lambda t: t.values)
        self.outcome.pareto = [{"number": t.number, "values": dict(zip(self.spec.objectives, t.values)),
                                "params": t.params} for t in front]
        self.study.set_user_attr("pareto_front", [t.number for t in front])
        (self.out_dir / "pareto.json").write_text(json.dumps(
            {"objectives": dict(zip(self.spec.objectives, self.spec.directions)), "trials": self.outcome.pareto},
            indent=2))

    def grid_done(self) -> bool:
        """The grid is covered and no enqueued trial (a confirmation run, say) is waiting."""
        import optuna

        sampler = self.study.sampler
        if not (hasattr(sampler, "is_exhausted") and sampler.is_exhausted(self.study)):
            return False
        return not self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))

    def score_top_trials(self) -> None:
        """--task-metrics top-K: score the K best trials' task metrics on their saved adapters (side_runs)."""
        side_runs.score_top_trials(self)

    def _score_pending_baselines(self) -> None:
        if self._baselines_pending:
            self._baselines_pending = False
            side_runs.score_baselines(self)

    def claim_next(self) -> tuple[Any, int, str | None] | None:
        """Claim one trial (`_claim`) with its test fault (HARNESS_INJECT_FAULTS, by this worker's claim order);
        None when there is none to claim."""
        trial, position = self._claim()
        if trial is None:
            return None
        self._claims += 1
        return trial, position, self._faults.get(self._claims - 1)

    def configure(self, trial: Any, fault: str | None) -> tuple[dict[str, Any], TrialConfig]:
        """A claimed trial's sampled params and its config, stored in the trial."""
        params = suggest(trial, self.space)
        tmp_adapter = self.out_dir / "adapters" / f".trial-{trial.number}"
        config = trial_config(self.spec, params, adapter_dir=str(tmp_adapter), fault=fault,
                              metrics=self.metrics, seed=trial.user_attrs.get("seed"),
                              training=trial.user_attrs.get("training"),
                              variant=trial.user_attrs.get("variant"))
        config = pinned(config, self.study.user_attrs)  # keep_16bit: the layers an earlier trial of the spec kept
        if self.spec.task_metrics != "all":  # no answers generated now (--task-metrics top-K / none)
            config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, generate_size=0))
        trial.set_user_attr("config", config.to_dict())
        return params, config

    def one_trial(self, trial: Any, position: int, fault: str | None = None, *,
                  prepared: tuple[dict[str, Any], TrialConfig] | None = None, pack_note: str | None = None) -> None:
        """Run a claimed trial with a heartbeat going; Ctrl-C records it as interrupted and stops the sweep.
        `prepared`: its params and config, when the caller configured it already (a pack that could not be)."""
        started = time.perf_counter()
        params: dict[str, Any] = {}
        config: TrialConfig | None = None
        run = tracking.TrialRun(None)
        try:
            params, config = prepared if prepared is not None else self.configure(trial, fault)
            run = tracking.start_trial_run(study=self.spec.study, number=trial.number, config=config.to_dict(),
                                           params=params, mode=self.wandb_mode, study_dir=self.out_dir)
            self.progress.start_trial(position, trial.number, params)
            with heartbeat(self.study, trial._trial_id):
                result = self.runner.run(config, on_step=lambda p: self._on_step(run, p, fault),
                                         on_eval=lambda p: self._on_eval(trial, run, p))
        except KeyboardInterrupt:  # a second Ctrl-C while this is recorded exits at once (cli.main)
            self.runner.close(kill=True)
            result = TrialResult(status="failed", reason=INTERRUPTED)
            self.finish_trial(trial, params, config, result, time.perf_counter() - started, run)
            raise SweepInterrupted(f"interrupted during trial {trial.number}; it is recorded as failed and the "
                                   "study can be resumed with the same command") from None
        if needs_fresh_worker(result):
            self.runner.restart()  # a fresh process after running out of memory or any (sticky) CUDA error
        if pack_note is not None:
            result = dataclasses.replace(result, pack_note=pack_note)
        self.finish_trial(trial, params, config, result, time.perf_counter() - started, run)

    def _on_step(self, run: Any, payload: dict[str, Any], fault: str | None = None) -> None:
        if fault == "die":  # test hook: this worker dies in the middle of a trial, as a preempted machine would
            os.kill(os.getpid(), signal.SIGKILL)
        self.progress.step(payload["step"], payload["loss"])
        run.log({"train/loss": payload["loss"], "train/lr": payload["lr"], "train/tokens": payload["tokens"]},
                step=payload["step"])

    def _on_eval(self, trial: Any, run: Any, payload: dict[str, Any]) -> bool:
        """Log an intermediate eval and ask the pruner."""
        run.log({"eval/loss": payload["eval_loss"]}, step=payload["step"])
        return self.should_prune(trial, payload)

    def should_prune(self, trial: Any, payload: dict[str, Any]) -> bool:
        """Report an intermediate eval ({step, eval_loss}) to the study and ask the pruner; a confirmation run is
        never pruned (it is evidence for a config already chosen, and a pruned seed would bias its mean)."""
        confirming = trial.user_attrs.get("confirmation_of") is not None
        if len(self.spec.objectives) > 1 or not math.isfinite(payload["eval_loss"]) or confirming:
            return False
        trial.report(payload["eval_loss"], payload["step"])
        return self.spec.pruner != "none" and trial.should_prune()

    def finish_trial(self, trial: Any, params: dict[str, Any], config: TrialConfig | None, result: TrialResult,
                     seconds: float, run: Any) -> None:
        import optuna

        values = objective_values(self.spec, result) if result.status == "complete" else None
        if result.status == "complete" and values is None:
            result = dataclasses.replace(result, status="failed", reason="objective value missing or not finite")
        # A diverged trial is PRUNED for Optuna (so TPE learns the region is bad) with status `diverged`.
        state = getattr(optuna.trial.TrialState, STATE_OF_STATUS[result.status])
        try:
            for key, value in status_attrs(result).items():
                trial.set_user_attr(key, value)
            trial.set_user_attr("result", result_summary(result))
            if result.per_example:
                trial.set_user_attr("per_example", result.per_example)
            self.study.tell(trial, values, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker heard no heartbeat for longer than the grace period, failed this trial as lost
            # and enqueued its retry; that retry stands for it, so this result is dropped, not recorded twice.
            drop_partial(self.out_dir, trial.number)
            run.finish(result_summary(result), failed=True)
            self.progress.note(f"trial #{trial.number} was taken for lost by another worker and is retried; "
                               "this run's result is dropped (raise --grace-period if this repeats)")
            return
        record = self._record(trial.number, params, config.to_dict() if config else {}, result, seconds,
                              worker=self._worker_info(), **{k: trial.user_attrs.get(k) for k in RECORDED_ATTRS})
        self._own.append(record)
        record_pin(self.study, config, result)
        keep_adapter(self.study, self.out_dir, trial.number, result.status == "complete",
                     len(self.spec.objectives) == 1, top=self.spec.task_metrics_top or 1)
        run.log_table("samples", result.samples)
        run.finish(result_summary(result), failed=result.status != "complete")
        self.progress.end_trial(record, self._best_value())

    def _worker_info(self) -> dict[str, Any]:
        """Who ran a trial, for its record: host, pid, worker index, GPU and CPU threads it was given, and the
        hub kernels its process loaded (`[]`: every kernel came with the installed packages)."""
        return {**owner_attrs(heartbeat_enabled(self.study)), "worker": self.role.worker,
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "threads": os.environ.get(THREADS_ENV),
                "torch_threads": (self.runner.process or {}).get("torch_threads"),
                "hub_kernels": (self.runner.process or {}).get("hub_kernels")}

    def _record(self, number: int, params: dict[str, Any], config: dict[str, Any], result: TrialResult,
                seconds: float, **extra: Any) -> dict[str, Any]:
        record = build_record(study=self.spec.study, number=number, params=params, config=config,
                              result=result, seconds=seconds)
        record.update({k: v for k, v in extra.items() if v is not None})
        append_record(self.out_dir / "trials.jsonl", record)
        self.outcome.records.append(record)
        return record

    def _best_value(self) -> float | None:
        best = self._best()
        return best["values"][0] if best else None

    def _best(self) -> dict[str, Any] | None:
        try:
            trials = self.study.best_trials
        except ValueError:
            return None
        if not trials:
            return None
        trial = ranked(trials, self.spec.directions[0], lambda t: t.values[0])[0]
        return {"number": trial.number, "values": trial.values, "params": trial.params}



def _interrupt_on_sigterm() -> Any:
    """SIGTERM (a preempted machine, a batch scheduler) stops the sweep like Ctrl-C: the trial in flight is
    recorded as interrupted. Returns the previous handler (None when not in the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)
