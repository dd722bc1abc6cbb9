"""The runs a study makes besides its trials: the untuned base model scored once per study in every mode,
the learning-rate range tests that narrow the space before the first trial (--lr-range-test), and the task
metrics of the top trials scored on their saved adapters at the end (--task-metrics top-K). Functions of the
running `Sweep` (harness.search.sweep): they use its runner, study and progress line."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol

from harness.config.errors import SpecError
from harness.config.space import SearchSpace
from harness.config.sweep import SweepSpec
from harness.config.trial import TrialConfig
from harness.search.adapters import TASK_METRICS_ATTR, top_trials
from harness.search.lr_range import (ATTR as LR_RANGE_ATTR, auto_reason, lr_axis, narrow_space, range_test_params,
                                     study_record)
from harness.search.outcome import SweepOutcome
from harness.search.preparing import baseline_fault, trial_config
from harness.search.progress import SweepProgress
from harness.search.readout import baseline_scores
from harness.search.runner import BaselineReply, TrialRunner, needs_fresh_worker
from harness.search.warmstart import WarmConfig
from harness.trial.result import TrialResult


class Sweep(Protocol):
    """What these runs use of the running harness.search.sweep.Sweep (typed here: importing it would be a cycle)."""

    spec: SweepSpec
    space: SearchSpace
    """The search space; the range test narrows its learning-rate axis."""
    study: Any
    runner: TrialRunner
    progress: SweepProgress
    out_dir: Path
    outcome: SweepOutcome
    metrics: tuple[str, ...]


def score_top_trials(sweep: Sweep) -> None:
    """--task-metrics top-K: score the task metrics of the K best completed trials on their saved adapters
    (those not scored yet: a resumed sweep goes on where it stopped), into the study's user attr
    `task_metrics_after` {trial number: metrics, seconds, per_example, samples}, saved after each trial."""
    top = sweep.spec.task_metrics_top
    if top is None or not sweep.metrics:
        return
    scored = dict(sweep.study.user_attrs.get(TASK_METRICS_ATTR) or {})
    for trial in top_trials(sweep.study, top):
        if str(trial.number) in scored:
            continue
        adapter = sweep.out_dir / "adapters" / f"trial-{trial.number}"
        if not adapter.is_dir():
            sweep.progress.note(f"warning: trial #{trial.number} has no saved adapter ({adapter}); its task "
                                "metrics are not scored")
            continue
        stored = TrialConfig.from_dict(trial.user_attrs["config"])
        config = dataclasses.replace(stored, adapter_dir=None, eval=dataclasses.replace(
            stored.eval, generate_size=sweep.spec.eval.generate_size, metrics=sweep.metrics))
        sweep.progress.note(f"task metrics of trial #{trial.number} (top {top} by {sweep.spec.objectives[0]}), "
                            "on its saved adapter...")
        reply = sweep.runner.task_metrics(config, str(adapter))
        if "error" in reply:
            sweep.progress.note(f"warning: task metrics of trial #{trial.number} not scored: {reply['error']}")
            continue
        scored[str(trial.number)] = reply
        sweep.study.set_user_attr(TASK_METRICS_ATTR, scored)
        shown = ", ".join(f"{k} {v:.3f}" for k, v in reply["metrics"].items())
        sweep.progress.note(f"trial #{trial.number}: {shown} ({reply['seconds']:.0f} s)")


def missing_baselines(sweep: Sweep) -> list[str]:
    """Quantization modes whose untuned base model is not scored yet: 16-bit and every mode of the space."""
    scored = sweep.study.user_attrs.get("baseline_by_mode") or {}
    return [m for m in dict.fromkeys(["none", *sweep.space.quantization_modes()]) if m not in scored]


def score_baselines(sweep: Sweep) -> None:
    """Score the untuned base model once per study in every mode (the cost of quantizing before any
    training), retrying once in a fresh worker if the process dies; a mode that cannot be scored is
    recorded as missing with its reason, and the trials go on."""
    missing = missing_baselines(sweep)
    if missing:
        sweep.progress.note(f"scoring the untuned base model on the held-out split in {', '.join(missing)} "
                            "(once per study; a score this machine has cached is read back)...")
    for mode in missing:
        reply = _score_base(sweep, mode)
        by_mode = dict(sweep.study.user_attrs.get("baseline_by_mode") or {})
        by_mode[mode] = _baseline_entry(reply)
        sweep.study.set_user_attr("baseline_by_mode", by_mode)
        if reply.score is None or reply.held_out is None:
            sweep.progress.note(f"warning: untuned base model in {mode} not scored: {reply.error}")
            continue
        score = reply.score
        if reply.cached:
            sweep.progress.note(f"untuned base model ({mode}): read from this machine's baseline cache")
        sweep.study.set_user_attr(f"baseline_per_example_{mode}", score.per_example or {})
        if mode == "none":
            sweep.study.set_user_attr("baseline_eval_loss", score.eval_loss)
            sweep.study.set_user_attr("baseline_metrics", score.metrics)
            sweep.study.set_user_attr("baseline_samples", score.samples)
        for key, value in dataclasses.asdict(reply.held_out).items():
            sweep.study.set_user_attr(key, value)
    _report_baseline(sweep)


def narrow_learning_rate(sweep: Sweep) -> None:
    """--lr-range-test: run a range test per quantization mode once per study (or take the study's stored
    one) and search the learning rate in the range it supports from here on (harness.search.lr_range)."""
    stored = sweep.study.user_attrs.get(LR_RANGE_ATTR)
    if stored is None:
        wanted = sweep.spec.lr_range_test
        if wanted is None:  # the default: on where it can pay, in a new study
            why = auto_reason(sweep.space, sweep.spec.sampler)
            if why is None or sweep.study.get_trials(deepcopy=False):
                return
            sweep.progress.note(f"{why}, so one learning-rate range test per quantization mode narrows it first "
                                "(--no-lr-range-test skips it)")
        elif not wanted:
            return
        elif sweep.study.get_trials(deepcopy=False):
            raise SpecError(f"--lr-range-test: study {sweep.spec.study!r} already has trials that searched the "
                            "whole learning-rate axis; a range test must come before the first trial: use a "
                            "new --study name")
        stored = _range_tests(sweep)
        sweep.study.set_user_attr(LR_RANGE_ATTR, stored)
    sweep.space = narrow_space(sweep.space, *stored["range"])
    for mode, entry in stored["modes"].items():
        sweep.progress.note(f"learning-rate range test ({mode}): {len(entry['losses'])} of {entry['steps']} steps "
                            f"in {entry['seconds']:.0f} s; [{entry['range'][0]:.3g}, {entry['range'][1]:.3g}]: "
                           f"{entry['reason']}")
    sweep.progress.note(f"learning_rate searched in [{stored['range'][0]:.3g}, {stored['range'][1]:.3g}] "
                        f"(the space's axis: [{stored['axis'][0]:.3g}, {stored['axis'][1]:.3g}])")


def _range_tests(sweep: Sweep) -> dict[str, Any]:
    low, high = lr_axis(sweep.space).bounds()
    curves = {}
    for mode in sweep.space.quantization_modes():
        sweep.progress.note(f"learning-rate range test ({mode}): {sweep.spec.max_steps} steps, the rate rising "
                            f"from {low:.3g} to {high:.3g} (once per study)...")
        config = trial_config(sweep.spec, {**range_test_params(sweep.space, mode), "learning_rate": low},
                              metrics=sweep.metrics)
        curve = sweep.runner.range_test(config, low, high, sweep.spec.max_steps)
        if curve.error and needs_fresh_worker(TrialResult(status="failed", reason=curve.error)):
            sweep.runner.restart()
        curves[mode] = curve
    return study_record(sweep.space, curves)


def in_space(sweep: Sweep, warm: list[WarmConfig],
             skipped: dict[str, str]) -> tuple[list[WarmConfig], dict[str, str]]:
    """The warm-start configs whose learning rate the (maybe range-tested) space still holds."""
    axis = sweep.space.axes["learning_rate"]
    low, high = axis.bounds()
    kept = [w for w in warm if axis.holds(w.params["learning_rate"])]
    gone = {w.label: f"learning_rate {w.params['learning_rate']:g} is outside the range-tested range "
                     f"[{low:.3g}, {high:.3g}]" for w in warm if w not in kept}
    return kept, {**skipped, **gone}


def _score_base(sweep: Sweep, mode: str) -> BaselineReply:
    defaults = {"quantization": mode, "lora_r": 1, "lora_alpha": 1.0, "learning_rate": 1e-4,
                "lora_dropout": 0.0, "target_modules": "all-linear"}
    config = trial_config(sweep.spec, defaults, metrics=sweep.metrics)
    fault = baseline_fault()
    reply = sweep.runner.baseline(dataclasses.replace(config, fault="kill" if fault else None))
    broken = reply.error is not None and needs_fresh_worker(TrialResult(status="failed", reason=reply.error))
    if reply.died or broken:  # a fault, not bad input: once more in a fresh process
        sweep.progress.note(f"scoring the untuned base model ({mode}) failed ({reply.error}); "
                            "retrying once in a fresh worker")
        sweep.runner.restart()
        reply = sweep.runner.baseline(dataclasses.replace(config, fault="kill" if fault == "killall" else None))
    return reply


def _report_baseline(sweep: Sweep) -> None:
    attrs = sweep.outcome.study_attrs = dict(sweep.study.user_attrs)
    for mode in attrs.get("baseline_by_mode") or {}:
        scores = baseline_scores(attrs, mode)
        if scores is None:
            continue
        metrics = "".join(f", {k} {v:.3f}" for k, v in scores.items() if k != "eval_loss")
        sweep.progress.note(f"untuned base model ({mode}): eval_loss {scores['eval_loss']:.4f}{metrics}")
    truncated = f"; {attrs['truncated']} examples truncated to max_seq_len" if attrs.get("truncated") else ""
    sweep.progress.note(f"held-out split: {attrs.get('n_eval')} examples ({attrs.get('data_source')}){truncated}")


def _baseline_entry(reply: BaselineReply) -> dict[str, Any]:
    """One mode's untuned baseline as the study stores it (`baseline_by_mode`): scores and weight memory,
    or the reason it is missing."""
    if reply.score is None:
        return {"eval_loss": None, "missing": reply.error}
    score = reply.score
    return {"eval_loss": score.eval_loss, "metrics": score.metrics or {}, "weights": score.weights or {},
            "tokens": score.tokens, "cached": reply.cached}

