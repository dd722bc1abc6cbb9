"""One sweep: ask the study for params, run the trial in the supervised worker, tell the result,
append trials.jsonl, log to W&B, keep the best adapter. Ctrl-C leaves everything resumable.

Several of these loops may run on one study at once (`--workers N`, `harness worker` on other
machines): each claims its next trial under the claim lock (recover lost trials, count, ask), keeps a
heartbeat going while the trial runs, and stops when the study holds its target number of trials.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.search import tracking
from harness.search.exits import Interrupted
from harness.config.experiment import spec_to_dict
from harness.trial.models import (cache_dir, check_rank_fits, checkpoint_path, is_converted, load_tokenizer, model_dims,
                                  resolve_model)
from harness.search.progress import SweepProgress, describe_params
from harness.search.pruning import study_schedule
from harness.search.readout import ALONE_NOTE, baseline_of, baseline_scores, small_eval_note
from harness.search.records import STATE_OF_STATUS, append_record, build_record
from harness.runtime.devices import THREADS_ENV
from harness.runtime.redaction import redact_values
from harness.search.lr_range import (ATTR as LR_RANGE_ATTR, auto_reason, lr_axis, narrow_space, range_test_params,
                                     study_record)
from harness.search.warmstart import WarmConfig, enqueue_warm_start, warm_configs
from harness.search.runner import BaselineReply, TrialRunner, needs_fresh_worker
from harness.trial.source import describe_source
from harness.config.space import SearchSpace, check_points, lora_fields, suggest, train_fields
from harness.config.errors import SpecError
from harness.config.lora import LoraSpec
from harness.config.model import ModelSpec, QuantSpec
from harness.config.objectives import ranked
from harness.config.sweep import SweepSpec
from harness.config.trial import TrialConfig
from harness.trial.result import TrialResult
from harness.search.adapters import TASK_METRICS_ATTR, drop_partial, keep_adapter, top_trials
from harness.search.artifacts import store_kept_adapters
from harness.search.recovery import (Heartbeat, claim_lock, counted, heartbeat, heartbeat_enabled, owner_attrs,
                                     recover, watchable)
from harness.search.study import check_split, open_study, resolve_url

FAIL_FAST = 3
"""Stop the sweep when this many first trials all fail for the same reason."""
FAULTS_ENV = "HARNESS_INJECT_FAULTS"
"""Test hook: `0:raise,2:kill` makes the 1st trial of this run raise and the 3rd's process die;
`2.0:die` kills worker 2 itself (SIGKILL) in the middle of its 1st trial; `base:kill` kills the process
scoring the first untuned baseline once, `base:killall` at every attempt."""
WAIT_SECONDS = 1.0
"""How often a worker whose target is met looks again at trials other workers are still running."""


class SweepInterrupted(Interrupted):
    """Ctrl-C: the trial in flight was recorded as failed ("interrupted") and the study is resumable."""


@dataclass
class SweepOutcome:
    """What a finished sweep tells the CLI."""

    study: str
    out_dir: Path
    storage: str
    records: list[dict[str, Any]] = field(default_factory=list)
    study_attrs: dict[str, Any] = field(default_factory=dict)
    """The study's user attrs when the sweep ended (its untuned baselines among them)."""
    best: dict[str, Any] | None = None
    pareto: list[dict[str, Any]] = field(default_factory=list)
    """With several objectives: the Pareto-optimal trials (number, values, params)."""

    def baseline(self, metric: str, mode: str = "none") -> float | None:
        """The untuned base model's `metric` in a mode (readout.baseline_of), None when not scored."""
        return baseline_of(self.study_attrs, mode, metric)


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
        model=ModelSpec(spec.model), quant=QuantSpec(params["quantization"]),
        lora=LoraSpec(r=int(params["lora_r"]), alpha=float(params["lora_alpha"]),
                      dropout=float(params["lora_dropout"]), targets=params["target_modules"],
                      **lora_fields(params)),
        train=train, data=dataclasses.replace(spec.data_spec, name=spec.data),
        eval=spec.eval if metrics is None else dataclasses.replace(spec.eval, metrics=metrics),
        adapter_dir=adapter_dir, fault=fault)


def _faults(worker: int = 0) -> dict[int, str]:
    """Injected faults by trial index in this run; `W.I:fault` applies to worker W only."""
    faults = {}
    for item in os.environ.get(FAULTS_ENV, "").split(","):
        if ":" in item and not item.startswith("base:"):
            key, fault = item.split(":", 1)
            who, _, index = key.rpartition(".")
            if not who or int(who) == worker:
                faults[int(index)] = fault
    return faults


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


def objective_values(spec: SweepSpec, result: TrialResult) -> list[float] | None:
    """The values to tell the study, or None when one is missing or not finite."""
    values = [result.metrics.get(name) if name in spec.task_objectives else getattr(result, name)
              for name in spec.objectives]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values]


class Sweep:
    """The claim-run-tell loop of one `harness sweep` (or worker) process."""

    def __init__(self, spec: SweepSpec, space: SearchSpace, progress: SweepProgress | None = None,
                 role: Role = Role()) -> None:
        self.spec, self.space, self.role = spec, space, role
        self.out_dir = Path(spec.out_dir)
        self.progress = progress or SweepProgress(spec.trials, spec.max_steps)
        self.runner = TrialRunner()
        self.study: Any = None
        self.outcome = SweepOutcome(spec.study, self.out_dir, spec.storage_url)
        self.wandb_mode = tracking.resolve_mode(spec.wandb)
        self.metrics: tuple[str, ...] = ()
        self.target = self.base = 0
        self._own: list[dict[str, Any]] = []  # records of the trials this process ran (fail-fast looks at them)
        self._waiting = False
        self._held: list[tuple[Any, int, str | None]] = []  # claimed by a pack's refill, not placed: claimed next
        self._faults = _faults(role.worker)  # test faults by this process's claim order
        self._claims = 0  # trials this process claimed (test faults are keyed by this order)
        self._baselines_pending = False  # untuned baselines to score after the first trial (prepare_study)

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
        if self._missing_baselines():
            self.runner.start()  # a parent that leaves the trials to its workers still scores the baselines
        with claim_lock(self.study, self.out_dir):
            recover(self.study, self.on_lost)
            start = counted(self.study)
        self._baselines_pending = defer_baselines and bool(self._missing_baselines())
        if self._baselines_pending:
            self.progress.note("the untuned base model is scored after the first trial (its scores are cached on "
                               "this machine: a later study on the same model, data and settings reads them)")
        else:
            self._baseline()
        self._narrow_learning_rate()
        warm, skipped = self._in_space(prepared.warm, prepared.warm_skipped)
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
            if self._grid_done() and not self._held:
                self.progress.note(f"the grid is exhausted after {len(self.study.trials)} trials; stopping")
                return
            claimed, self._held = self._held, []  # trials a pack's refill claimed but could not place come first
            claimed += self._claim_pack(claimed) if self.spec.pack > 1 else [c for c in [self._claim_next()] if c]
            if not claimed:
                if self._others_running():
                    time.sleep(WAIT_SECONDS)
                    continue
                return
            if len(claimed) == 1:
                alone = None
                if self.spec.pack > 1:
                    alone = (ALONE_NOTE if claimed[0][0].user_attrs.get("alone") else
                             "the only trial left to claim (the study's target was near)")
                self._one_trial(*claimed[0], pack_note=alone)
            else:
                self._packed_trials(claimed)
            self._score_pending_baselines()
            self._stop_if_broken()

    def recover_lost(self) -> None:
        """Under the claim lock, fail and record every trial whose worker was lost, enqueueing its retry."""
        with claim_lock(self.study, self.out_dir):
            recover(self.study, self.on_lost)

    def close(self) -> None:
        self.progress.stop()
        self.runner.close(kill=True)

    def finish(self) -> SweepOutcome:
        self.outcome.best = self._best()
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
        reasons = {_reason_kind(r) for r in first}
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

    def _grid_done(self) -> bool:
        """The grid is covered and no enqueued trial (a confirmation run, say) is waiting."""
        import optuna

        sampler = self.study.sampler
        if not (hasattr(sampler, "is_exhausted") and sampler.is_exhausted(self.study)):
            return False
        return not self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))

    def score_top_trials(self) -> None:
        """--task-metrics top-K: score the task metrics of the K best completed trials on their saved adapters
        (those not scored yet: a resumed sweep goes on where it stopped), into the study's user attr
        `task_metrics_after` {trial number: metrics, seconds, per_example, samples}, saved after each trial."""
        top = self.spec.task_metrics_top
        if top is None or not self.metrics:
            return
        scored = dict(self.study.user_attrs.get(TASK_METRICS_ATTR) or {})
        for trial in top_trials(self.study, top):
            if str(trial.number) in scored:
                continue
            adapter = self.out_dir / "adapters" / f"trial-{trial.number}"
            if not adapter.is_dir():
                self.progress.note(f"warning: trial #{trial.number} has no saved adapter ({adapter}); its task "
                                   "metrics are not scored")
                continue
            stored = TrialConfig.from_dict(trial.user_attrs["config"])
            config = dataclasses.replace(stored, adapter_dir=None, eval=dataclasses.replace(
                stored.eval, generate_size=self.spec.eval.generate_size, metrics=self.metrics))
            self.progress.note(f"task metrics of trial #{trial.number} (top {top} by {self.spec.objectives[0]}), "
                               "on its saved adapter...")
            reply = self.runner.task_metrics(config, str(adapter))
            if "error" in reply:
                self.progress.note(f"warning: task metrics of trial #{trial.number} not scored: {reply['error']}")
                continue
            scored[str(trial.number)] = reply
            self.study.set_user_attr(TASK_METRICS_ATTR, scored)
            shown = ", ".join(f"{k} {v:.3f}" for k, v in reply["metrics"].items())
            self.progress.note(f"trial #{trial.number}: {shown} ({reply['seconds']:.0f} s)")

    def _score_pending_baselines(self) -> None:
        if self._baselines_pending:
            self._baselines_pending = False
            self._baseline()

    def _missing_baselines(self) -> list[str]:
        """Quantization modes whose untuned base model is not scored yet: 16-bit and every mode of the space."""
        scored = self.study.user_attrs.get("baseline_by_mode") or {}
        return [m for m in dict.fromkeys(["none", *self.space.quantization_modes()]) if m not in scored]

    def _baseline(self) -> None:
        """Score the untuned base model once per study in every mode (the cost of quantizing before any
        training), retrying once in a fresh worker if the process dies; a mode that cannot be scored is
        recorded as missing with its reason, and the trials go on."""
        missing = self._missing_baselines()
        if missing:
            self.progress.note(f"scoring the untuned base model on the held-out split in {', '.join(missing)} "
                               "(once per study; a score this machine has cached is read back)...")
        for mode in missing:
            reply = self._score_base(mode)
            by_mode = dict(self.study.user_attrs.get("baseline_by_mode") or {})
            by_mode[mode] = _baseline_entry(reply)
            self.study.set_user_attr("baseline_by_mode", by_mode)
            if reply.score is None or reply.held_out is None:
                self.progress.note(f"warning: untuned base model in {mode} not scored: {reply.error}")
                continue
            score = reply.score
            if reply.cached:
                self.progress.note(f"untuned base model ({mode}): read from this machine's baseline cache")
            self.study.set_user_attr(f"baseline_per_example_{mode}", score.per_example or {})
            if mode == "none":
                self.study.set_user_attr("baseline_eval_loss", score.eval_loss)
                self.study.set_user_attr("baseline_metrics", score.metrics)
                self.study.set_user_attr("baseline_samples", score.samples)
            for key, value in dataclasses.asdict(reply.held_out).items():
                self.study.set_user_attr(key, value)
        self._report_baseline()

    def _narrow_learning_rate(self) -> None:
        """--lr-range-test: run a range test per quantization mode once per study (or take the study's stored
        one) and search the learning rate in the range it supports from here on (harness.search.lr_range)."""
        stored = self.study.user_attrs.get(LR_RANGE_ATTR)
        if stored is None:
            wanted = self.spec.lr_range_test
            if wanted is None:  # the default: on where it can pay, in a new study
                why = auto_reason(self.space, self.spec.sampler)
                if why is None or self.study.get_trials(deepcopy=False):
                    return
                self.progress.note(f"{why}, so one learning-rate range test per quantization mode narrows it first "
                                   "(--no-lr-range-test skips it)")
            elif not wanted:
                return
            elif self.study.get_trials(deepcopy=False):
                raise SpecError(f"--lr-range-test: study {self.spec.study!r} already has trials that searched the "
                                "whole learning-rate axis; a range test must come before the first trial: use a "
                                "new --study name")
            stored = self._range_tests()
            self.study.set_user_attr(LR_RANGE_ATTR, stored)
        self.space = narrow_space(self.space, *stored["range"])
        for mode, entry in stored["modes"].items():
            self.progress.note(f"learning-rate range test ({mode}): {len(entry['losses'])} of {entry['steps']} steps "
                               f"in {entry['seconds']:.0f} s; [{entry['range'][0]:.3g}, {entry['range'][1]:.3g}]: "
                               f"{entry['reason']}")
        self.progress.note(f"learning_rate searched in [{stored['range'][0]:.3g}, {stored['range'][1]:.3g}] "
                           f"(the space's axis: [{stored['axis'][0]:.3g}, {stored['axis'][1]:.3g}])")

    def _range_tests(self) -> dict[str, Any]:
        low, high = lr_axis(self.space).bounds()
        curves = {}
        for mode in self.space.quantization_modes():
            self.progress.note(f"learning-rate range test ({mode}): {self.spec.max_steps} steps, the rate rising "
                               f"from {low:.3g} to {high:.3g} (once per study)...")
            config = trial_config(self.spec, {**range_test_params(self.space, mode), "learning_rate": low},
                                  metrics=self.metrics)
            curve = self.runner.range_test(config, low, high, self.spec.max_steps)
            if curve.error and needs_fresh_worker(TrialResult(status="failed", reason=curve.error)):
                self.runner.restart()
            curves[mode] = curve
        return study_record(self.space, curves)

    def _in_space(self, warm: list[WarmConfig], skipped: dict[str, str]) -> tuple[list[WarmConfig], dict[str, str]]:
        """The warm-start configs whose learning rate the (maybe range-tested) space still holds."""
        axis = self.space.axes["learning_rate"]
        low, high = axis.bounds()
        kept = [w for w in warm if axis.holds(w.params["learning_rate"])]
        gone = {w.label: f"learning_rate {w.params['learning_rate']:g} is outside the range-tested range "
                         f"[{low:.3g}, {high:.3g}]" for w in warm if w not in kept}
        return kept, {**skipped, **gone}

    def _score_base(self, mode: str) -> BaselineReply:
        defaults = {"quantization": mode, "lora_r": 1, "lora_alpha": 1.0, "learning_rate": 1e-4,
                    "lora_dropout": 0.0, "target_modules": "all-linear"}
        config = trial_config(self.spec, defaults, metrics=self.metrics)
        fault = next((i.split(":", 1)[1] for i in os.environ.get(FAULTS_ENV, "").split(",") if i.startswith("base:")),
                     None)
        reply = self.runner.baseline(dataclasses.replace(config, fault="kill" if fault else None))
        broken = reply.error is not None and needs_fresh_worker(TrialResult(status="failed", reason=reply.error))
        if reply.died or broken:  # a fault, not bad input: once more in a fresh process
            self.progress.note(f"scoring the untuned base model ({mode}) failed ({reply.error}); "
                               "retrying once in a fresh worker")
            self.runner.restart()
            reply = self.runner.baseline(dataclasses.replace(config, fault="kill" if fault == "killall" else None))
        return reply

    def _report_baseline(self) -> None:
        attrs = self.outcome.study_attrs = dict(self.study.user_attrs)
        for mode in attrs.get("baseline_by_mode") or {}:
            scores = baseline_scores(attrs, mode)
            if scores is None:
                continue
            metrics = "".join(f", {k} {v:.3f}" for k, v in scores.items() if k != "eval_loss")
            self.progress.note(f"untuned base model ({mode}): eval_loss {scores['eval_loss']:.4f}{metrics}")
        truncated = f"; {attrs['truncated']} examples truncated to max_seq_len" if attrs.get("truncated") else ""
        self.progress.note(f"held-out split: {attrs.get('n_eval')} examples ({attrs.get('data_source')}){truncated}")

    def _claim_next(self) -> tuple[Any, int, str | None] | None:
        """Claim one trial (`_claim`) with its test fault (HARNESS_INJECT_FAULTS, by this worker's claim order);
        None when there is none to claim."""
        trial, position = self._claim()
        if trial is None:
            return None
        self._claims += 1
        return trial, position, self._faults.get(self._claims - 1)

    def _claim_pack(self, held: list[tuple[Any, int, str | None]]) -> list[tuple[Any, int, str | None]]:
        """Claim trials until `--pack` of them (`held` ones included) may share a pack (fewer when the target is
        near), with every run enqueued to train alone that came first (user attr `alone`: they take no place
        in the pack)."""
        claimed: list[tuple[Any, int, str | None]] = []
        while sum(not c[0].user_attrs.get("alone") for c in [*held, *claimed]) < self.spec.pack:
            one = self._claim_next()
            if one is None:
                break
            claimed.append(one)
        return claimed

    def _configure(self, trial: Any, fault: str | None) -> tuple[dict[str, Any], TrialConfig]:
        """A claimed trial's sampled params and its config, stored in the trial."""
        params = suggest(trial, self.space)
        tmp_adapter = self.out_dir / "adapters" / f".trial-{trial.number}"
        config = trial_config(self.spec, params, adapter_dir=str(tmp_adapter), fault=fault,
                              metrics=self.metrics, seed=trial.user_attrs.get("seed"),
                              training=trial.user_attrs.get("training"),
                              variant=trial.user_attrs.get("variant"))
        if self.spec.task_metrics != "all":  # no answers generated now (--task-metrics top-K / none)
            config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, generate_size=0))
        trial.set_user_attr("config", config.to_dict())
        return params, config

    def _packed_trials(self, claimed: list[tuple[Any, int, str | None]]) -> None:
        """Claimed trials trained in packs (harness.trial.pack.plan_packs splits them by mode and targets; a
        trial that cannot share a pack runs alone, its record saying why). Ctrl-C records every member of the
        pack in flight as interrupted and stops the sweep."""
        from harness.trial.pack import plan_packs

        try:
            with contextlib.ExitStack() as beating:  # every claimed trial beats while it waits for its turn
                for trial, _, _ in claimed:
                    beating.enter_context(heartbeat(self.study, trial._trial_id))
                configured = [(trial, position, *self._configure(trial, fault)) for trial, position, fault in claimed]
                for trial, position, params, config in [c for c in configured if c[0].user_attrs.get("alone")]:
                    self._one_trial(trial, position, prepared=(params, config), pack_note=ALONE_NOTE)
                configured = [c for c in configured if not c[0].user_attrs.get("alone")]
                for members, why in plan_packs([config for _, _, _, config in configured]):
                    if len(members) == 1:
                        trial, position, params, config = configured[members[0]]
                        self._one_trial(trial, position, prepared=(params, config), pack_note=why)
                    else:
                        self._one_pack([configured[i] for i in members], beating)
        except (KeyboardInterrupt, SweepInterrupted) as stop:
            # Claimed trials not yet run (waiting their turn, or held by a refill) are recorded as interrupted
            # too, so a resumed sweep retries nothing twice; those that ran recorded themselves.
            self.runner.close(kill=True)
            left = self._interrupt_unfinished([trial for trial, _, _ in [*claimed, *self._held]])
            if isinstance(stop, SweepInterrupted):
                raise
            raise SweepInterrupted(f"interrupted before trials {', '.join(f'#{n}' for n in left)} started; they are "
                                   "recorded as failed and the study can be resumed with the same command") from None

    def _interrupt_unfinished(self, trials: list[Any]) -> list[int]:
        """Record every one of these claimed trials that is still running as interrupted; their numbers."""
        import optuna

        left = []
        for trial in trials:
            if self.study._storage.get_trial(trial._trial_id).state == optuna.trial.TrialState.RUNNING:
                self._finish(trial, {}, None, TrialResult(status="failed", reason="interrupted by user (Ctrl-C)"),
                             0.0, tracking.TrialRun(None))
                left.append(trial.number)
        self._held = []
        return left

    def _one_pack(self, members: list[tuple[Any, int, dict[str, Any], TrialConfig]], beating: Any) -> None:
        """Train one pack; each member is recorded as it leaves. When a member leaves early (pruned, diverged),
        the next trial takes its place if it may share the pack; one that may not (another mode, or a run to
        train alone) is held for the next claim, and no more are claimed for this pack."""
        from harness.trial.pack import refusal

        started = time.perf_counter()
        members = list(members)  # refills are appended
        places, recorded = len(members), set()
        self.progress.start_pack([(position, trial.number, params) for trial, position, params, _ in members])

        def record(index: int, result: TrialResult) -> None:
            if index in recorded:
                return
            recorded.add(index)
            trial, position, params, config = members[index]
            run = tracking.start_trial_run(study=self.spec.study, number=trial.number, config=config.to_dict(),
                                           params=params, mode=self.wandb_mode, study_dir=self.out_dir)
            for entry in result.history:
                if "loss" in entry:
                    run.log({"train/loss": entry["loss"], "train/lr": entry["lr"]}, step=int(entry["step"]))
                elif "eval_loss" in entry and int(entry["step"]) < config.train.max_steps:
                    run.log({"eval/loss": entry["eval_loss"]}, step=int(entry["step"]))
            self.progress.name_trial(position, trial.number, params)
            self._finish(trial, params, config, result, time.perf_counter() - started, run)
            if len(recorded) < len(members):
                self.progress.continue_pack()

        def refill() -> TrialConfig | None:
            if self._held or self._grid_done():
                return None
            claimed = self._claim_next()
            if claimed is None:
                return None
            trial, position, fault = claimed
            beating.enter_context(heartbeat(self.study, trial._trial_id))
            params, config = self._configure(trial, fault)
            if trial.user_attrs.get("alone") or refusal([members[0][3], config]) is not None:
                self._held.append(claimed)
                return None
            members.append((trial, position, params, config))
            self.progress.note(f"  trial {position}/{self.progress.total} (#{trial.number}) {describe_params(params)} "
                               "takes the place a member left")
            return config

        try:
            results = self.runner.run_pack(
                [config for _, _, _, config in members],
                on_step=lambda p: self.progress.step(p["step"], min(p["losses"].values())),
                on_eval=lambda p: self._should_prune(members[p["member"]][0], p),
                on_result=record, refill=refill)
        except KeyboardInterrupt:
            self.runner.close(kill=True)
            waiting = [m for index, m in enumerate(members) if index not in recorded]
            for trial, position, params, config in waiting:
                self.progress.name_trial(position, trial.number, params)
                self._finish(trial, params, config, TrialResult(status="failed", reason="interrupted by user (Ctrl-C)",
                                                                pack_size=places),
                             time.perf_counter() - started, tracking.TrialRun(None))
            raise SweepInterrupted(f"interrupted during the pack of trials "
                                   f"{', '.join(str(t.number) for t, _, _, _ in waiting)}; they are recorded as "
                                   "failed and the study can be resumed with the same command") from None
        if any(needs_fresh_worker(result) for result in results):
            self.runner.restart()
        for index, result in enumerate(results):
            record(index, result)

    def _one_trial(self, trial: Any, position: int, fault: str | None = None, *,
                   prepared: tuple[dict[str, Any], TrialConfig] | None = None, pack_note: str | None = None) -> None:
        """Run a claimed trial with a heartbeat going; Ctrl-C records it as interrupted and stops the sweep.
        `prepared`: its params and config, when the caller configured it already (a pack that could not be)."""
        started = time.perf_counter()
        params: dict[str, Any] = {}
        config: TrialConfig | None = None
        run = tracking.TrialRun(None)
        try:
            params, config = prepared if prepared is not None else self._configure(trial, fault)
            run = tracking.start_trial_run(study=self.spec.study, number=trial.number, config=config.to_dict(),
                                           params=params, mode=self.wandb_mode, study_dir=self.out_dir)
            self.progress.start_trial(position, trial.number, params)
            with heartbeat(self.study, trial._trial_id):
                result = self.runner.run(config, on_step=lambda p: self._on_step(run, p, fault),
                                         on_eval=lambda p: self._on_eval(trial, run, p))
        except KeyboardInterrupt:  # a second Ctrl-C while this is recorded exits at once (cli.main)
            self.runner.close(kill=True)
            result = TrialResult(status="failed", reason="interrupted by user (Ctrl-C)")
            self._finish(trial, params, config, result, time.perf_counter() - started, run)
            raise SweepInterrupted(f"interrupted during trial {trial.number}; it is recorded as failed and the "
                                   "study can be resumed with the same command") from None
        if needs_fresh_worker(result):
            self.runner.restart()  # a fresh process after running out of memory or any (sticky) CUDA error
        if pack_note is not None:
            result = dataclasses.replace(result, pack_note=pack_note)
        self._finish(trial, params, config, result, time.perf_counter() - started, run)

    def _on_step(self, run: Any, payload: dict[str, Any], fault: str | None = None) -> None:
        if fault == "die":  # test hook: this worker dies in the middle of a trial, as a preempted machine would
            os.kill(os.getpid(), signal.SIGKILL)
        self.progress.step(payload["step"], payload["loss"])
        run.log({"train/loss": payload["loss"], "train/lr": payload["lr"], "train/tokens": payload["tokens"]},
                step=payload["step"])

    def _on_eval(self, trial: Any, run: Any, payload: dict[str, Any]) -> bool:
        """Log an intermediate eval and ask the pruner."""
        run.log({"eval/loss": payload["eval_loss"]}, step=payload["step"])
        return self._should_prune(trial, payload)

    def _should_prune(self, trial: Any, payload: dict[str, Any]) -> bool:
        """Report an intermediate eval ({step, eval_loss}) to the study and ask the pruner; a confirmation run is
        never pruned (it is evidence for a config already chosen, and a pruned seed would bias its mean)."""
        confirming = trial.user_attrs.get("confirmation_of") is not None
        if len(self.spec.objectives) > 1 or not math.isfinite(payload["eval_loss"]) or confirming:
            return False
        trial.report(payload["eval_loss"], payload["step"])
        return self.spec.pruner != "none" and trial.should_prune()

    def _finish(self, trial: Any, params: dict[str, Any], config: TrialConfig | None, result: TrialResult,
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


def _reason_kind(record: dict[str, Any]) -> str | None:
    """A failure's reason with numbers removed (so 'loss nan at step 3' and 'at step 5' match);
    None for a trial that completed or that the pruner stopped (not a failure)."""
    reason = record.get("error")
    if record["state"] == "COMPLETE" or not reason or reason.startswith("pruned at step"):
        return None
    return re.sub(r"[-+]?\d[\d.e+-]*", "#", reason)


RECORDED_ATTRS = ("confirmation_of", "training", "variant", "sequential")
"""A trial's enqueued user attrs its trials.jsonl record carries too (`harness import` rebuilds them)."""


def status_attrs(result: TrialResult) -> dict[str, str]:
    """A finished trial's user attrs `status` (complete, pruned, diverged, oom, failed) and, when it did not
    complete, `reason` (one line): plain strings, as optuna-dashboard shows them in its trial table."""
    return {"status": result.status, **({"reason": str(result.reason)} if result.reason is not None else {})}


def result_summary(result: TrialResult) -> dict[str, Any]:
    """The scalar results of a trial and its weight-memory breakdown, for the study's user attrs and W&B
    (per-example scores go to their own user attr, the history and samples to trials.jsonl)."""
    data = result.to_dict()
    data.pop("history", None)
    metrics = data.pop("metrics", {}) or {}
    return {**{k: v for k, v in data.items() if not isinstance(v, (dict, list))}, **metrics,
            "weights": result.weights}


def _baseline_entry(reply: BaselineReply) -> dict[str, Any]:
    """One mode's untuned baseline as the study stores it (`baseline_by_mode`): scores and weight memory,
    or the reason it is missing."""
    if reply.score is None:
        return {"eval_loss": None, "missing": reply.error}
    score = reply.score
    return {"eval_loss": score.eval_loss, "metrics": score.metrics or {}, "weights": score.weights or {},
            "tokens": score.tokens, "cached": reply.cached}


def _interrupt_on_sigterm() -> Any:
    """SIGTERM (a preempted machine, a batch scheduler) stops the sweep like Ctrl-C: the trial in flight is
    recorded as interrupted. Returns the previous handler (None when not in the main thread)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)
