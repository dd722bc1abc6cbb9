"""The planning decision: what fits a memory budget, what is fitted, what is infeasible, and how long a sweep
takes (`harness sweep --plan`).

The predictions come from harness.trial.memory_plan (probes and the memory model); this module only decides.
A config predicted over the budget is fitted where it can be without changing what it trains: micro-batch
halved and gradient accumulation doubled while the micro-batch is even (the effective batch, and so the
result, stays the same), then gradient checkpointing (the same loss and gradients, a longer step). Whatever
still does not fit is infeasible: it ends before any model loads, with a one-line reason naming the prediction
and the budget.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass
from typing import Any, Callable

from harness.config.trial import TrialConfig

Predictor = Callable[[TrialConfig], Any]
"""config -> a harness.trial.memory_plan.Prediction (peak_memory_mb, step_seconds)."""

TRIAL_OVERHEAD_SECONDS = 15.0
"""Per trial, beyond its training steps: loading the base model, the final evaluation and start-up. A stated
assumption (CPU, SmolLM2-sized models), replaced by measured times once trials finish (the progress line)."""


@dataclass(frozen=True)
class Planned:
    """One trial config after the planning decision."""

    config: TrialConfig
    """What will train: the config as sampled, or as fitted."""
    peak_memory_mb: float
    """The predicted training peak."""
    step_seconds: float
    fit: dict[str, Any] | None = None
    """What fitting changed: {setting: [from, to], ..., "why": ...}; None when nothing changed."""
    infeasible: str | None = None
    """The one-line reason when no fitted config fits; then nothing loads."""
    eval_peak_mb: float | None = None
    """The predicted peak of the final evaluation (None: the probe did not measure it)."""

    @property
    def fits(self) -> bool:
        return self.infeasible is None


def _phase_over(prediction: Any, budget_mb: float) -> str | None:
    """`training` or `evaluation`, whichever predicted peak passes the budget (training first); None: both fit."""
    if prediction.peak_memory_mb > budget_mb:
        return "training"
    return "evaluation" if (prediction.eval_peak_mb or 0.0) > budget_mb else None


def fit_to_budget(config: TrialConfig, budget_mb: float | None, predict: Predictor, note: str = "") -> Planned:
    """`config` as it will run under `budget_mb` (None: no budget, nothing changes); `note` follows the
    budget in the reasons (where the budget came from, when it is a share of one). Training is fitted first
    (micro-batch, then checkpointing), then the final evaluation (its scoring and generation batches halved:
    the held-out loss is token-weighted per example, so it does not depend on them)."""
    first = predict(config)
    if budget_mb is None or _phase_over(first, budget_mb) is None:
        return Planned(config, first.peak_memory_mb, first.step_seconds, eval_peak_mb=first.eval_peak_mb)
    current, prediction = config, first
    while prediction.peak_memory_mb > budget_mb and current.train.batch_size % 2 == 0:
        current = _with_train(current, batch_size=current.train.batch_size // 2,
                              grad_accum=current.train.grad_accum * 2)
        prediction = predict(current)
    if prediction.peak_memory_mb > budget_mb and not current.train.gradient_checkpointing:
        current = _with_train(current, gradient_checkpointing=True)
        prediction = predict(current)
    while ((prediction.eval_peak_mb or 0.0) > budget_mb
           and max(current.eval.batch_size, current.eval.generate_batch_size) > 1):
        current = _with_eval(current, batch_size=max(1, current.eval.batch_size // 2),
                             generate_batch_size=max(1, current.eval.generate_batch_size // 2))
        prediction = predict(current)
    why = (f"predicted {_phase_over(first, budget_mb)} peak {first.trial_peak_mb:,.0f} MiB > budget "
           f"{budget_mb:,.0f} MiB{note}")
    phase = _phase_over(prediction, budget_mb)
    if phase is not None:
        return Planned(config, prediction.peak_memory_mb, prediction.step_seconds, None,
                       f"infeasible: predicted {phase} peak {prediction.trial_peak_mb:,.0f} MiB even at micro-batch "
                       f"{current.train.batch_size} x {current.train.grad_accum} with gradient checkpointing "
                       f"{'on' if current.train.gradient_checkpointing else 'off'} and eval batch "
                       f"{current.eval.batch_size}, over the budget of {budget_mb:,.0f} MiB{note}",
                       prediction.eval_peak_mb)
    return Planned(current, prediction.peak_memory_mb, prediction.step_seconds, _changes(config, current, why),
                   eval_peak_mb=prediction.eval_peak_mb)


GIVEN_BUDGET = "--max-memory-mb"
"""The budget source of a plan whose budget the user gave (nothing more to say about it)."""
AVAILABLE_MARGIN = 0.10
"""Without --max-memory-mb, `--plan` plans against the device's available memory less this share (headroom for
the sweep's own process, the OS and other programs)."""


def available_budget(available_mb: float) -> tuple[float, str]:
    """The budget `--plan` uses when none is given, and where it came from (said in the plan)."""
    budget = available_mb * (1 - AVAILABLE_MARGIN)
    return budget, (f"this device's available memory, {available_mb:,.0f} MiB, less a {AVAILABLE_MARGIN:.0%} margin "
                    "(pass --max-memory-mb M to plan and run under a budget)")


def share_of(budget_mb: float | None, sharing: int) -> float | None:
    """A trial's part of the budget when `sharing` trials run on one device at once (`--workers N` on one
    device): the budget counts them all, so each gets an equal share."""
    return None if budget_mb is None else budget_mb / max(1, sharing)


def pack_peak(predictions: list[Any]) -> float:
    """A pack's predicted peak: the runtime and the base weights once (members share the base), and for every
    member place the largest member's adapter state and activations, so that any member that takes a free
    place (a refill no larger than the largest) keeps it within the same figure."""
    largest = max(p.adapter_mb + p.activations_mb for p in predictions)
    first = predictions[0]
    return first.overhead_mb + first.weights_mb + len(predictions) * largest


def packs_within(members: list[TrialConfig], budget_mb: float | None,
                 predict: Predictor | None) -> list[list[int]]:
    """The members of one planned pack, split so that each part's predicted pack peak fits `budget_mb`: in
    order, a part takes members while it fits. A member that does not fit even alone is a part of its own (it
    trains alone, where it is fitted or found infeasible). No budget: one part, unchanged."""
    if budget_mb is None or predict is None or len(members) < 2:
        return [list(range(len(members)))]
    predictions = [predict(config) for config in members]
    parts: list[list[int]] = []
    for index in range(len(members)):
        if parts and pack_peak([predictions[i] for i in [*parts[-1], index]]) <= budget_mb:
            parts[-1].append(index)
        else:
            parts.append([index])
    return parts


def _with_train(config: TrialConfig, **changes: Any) -> TrialConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))


def _with_eval(config: TrialConfig, **changes: Any) -> TrialConfig:
    return dataclasses.replace(config, eval=dataclasses.replace(config.eval, **changes))


FITTED_SETTINGS = (("train", "batch_size", "batch_size"), ("train", "grad_accum", "grad_accum"),
                   ("train", "gradient_checkpointing", "gradient_checkpointing"),
                   ("eval", "batch_size", "eval_batch_size"), ("eval", "generate_batch_size", "generate_batch_size"))
"""What fitting may change: (config section, field, its name in a trial's `fit` record)."""


def _changes(before: TrialConfig, after: TrialConfig, why: str) -> dict[str, Any]:
    fit: dict[str, Any] = {}
    for section, name, recorded in FITTED_SETTINGS:
        old, new = getattr(getattr(before, section), name), getattr(getattr(after, section), name)
        if old != new:
            fit[recorded] = [old, new]
    fit["why"] = why
    return fit


def shape_configs(spec: Any, space: Any,
                  trial_config: Callable[[Any, dict[str, Any]], TrialConfig]) -> list[TrialConfig]:
    """One config per quantization mode, checkpointing setting and batch shape the space can sample (the other
    axes at their defaults or the space's first choice: they do not change the shape, rank aside, which is
    taken at its largest); `trial_config(spec, params)` builds a trial's config (harness.search.sweep's)."""

    def choices(name: str, default: Any) -> list[Any]:
        axis = space.axes.get(name)
        if axis is None:
            return [default]
        if axis.kind == "choices":
            return list(axis.choices)
        return sorted({axis.low, axis.high}) if not axis.integer else sorted({int(axis.low), int(axis.high)})

    base = {"learning_rate": spec.train.learning_rate, "lora_r": space.max_rank(),
            "lora_dropout": 0.0, "target_modules": choices("target_modules", "all-linear")[0]}
    configs = []
    for mode, ckpt, batch, accum in itertools.product(
            choices("quantization", "none"), choices("gradient_checkpointing", spec.train.gradient_checkpointing),
            choices("batch_size", spec.train.batch_size), choices("grad_accum", spec.train.grad_accum)):
        params = {**base, "quantization": mode, "lora_alpha": 2.0 * base["lora_r"],
                  "gradient_checkpointing": ckpt, "batch_size": int(batch), "grad_accum": int(accum)}
        configs.append(trial_config(spec, params))
    return configs


def plan_sweep(spec: Any, space: Any, budget_mb: float | None, predict: Predictor,
               trial_config: Callable[[Any, dict[str, Any]], TrialConfig],
               budget_source: str = GIVEN_BUDGET) -> dict[str, Any]:
    """`harness sweep --plan`'s answer: each config shape's prediction and decision, the budget and the sweep's
    estimated wall time (trials x (steps x mean step seconds over the feasible shapes + TRIAL_OVERHEAD_SECONDS)),
    and one trial's (`estimated_trial_seconds`: what --time-budget goes by before a trial has finished).
    Creates no storage and no study."""
    started = time.perf_counter()
    rows = []
    for config in shape_configs(spec, space, trial_config):
        planned = fit_to_budget(config, budget_mb, predict)
        rows.append({"quantization": config.quant.mode, "gradient_checkpointing": config.train.gradient_checkpointing,
                     "batch_size": config.train.batch_size, "grad_accum": config.train.grad_accum,
                     "max_seq_len": config.data.max_seq_len, "lora_r": config.lora.r,
                     "predicted_peak_memory_mb": round(planned.peak_memory_mb, 1),
                     "predicted_eval_peak_memory_mb": (round(planned.eval_peak_mb, 1)
                                                       if planned.eval_peak_mb is not None else None),
                     "predicted_step_seconds": round(planned.step_seconds, 4),
                     "fits": planned.fits, "fitted": planned.fit, "reason": planned.infeasible})
    feasible = [r["predicted_step_seconds"] for r in rows if r["fits"]]
    per_trial = (spec.max_steps * sum(feasible) / len(feasible) if feasible else 0.0) + TRIAL_OVERHEAD_SECONDS
    return {"model": spec.model, "space": spec.space, "trials": spec.trials, "max_steps": spec.max_steps,
            "configs": rows, "budget_mb": budget_mb, "budget_source": budget_source if budget_mb is not None else None,
            "estimated_total_seconds": round(spec.trials * per_trial, 1),
            "estimated_trial_seconds": round(per_trial, 1),
            "trial_overhead_seconds": TRIAL_OVERHEAD_SECONDS,
            "planning_seconds": round(time.perf_counter() - started, 1)}


def plan_lines(plan: dict[str, Any]) -> list[str]:
    """The plan as text, one line per config shape."""
    budget = f"{plan['budget_mb']:,.0f} MiB" if plan["budget_mb"] is not None else "none"
    source = plan.get("budget_source")
    if source and source != GIVEN_BUDGET:
        budget += f": {source}"
    lines = [f"plan: {plan['model']}, space {plan['space']}, {plan['trials']} trials x {plan['max_steps']} steps; "
             f"memory budget {budget}"]
    for row in plan["configs"]:
        shape = (f"  {row['quantization']:<7} ckpt {'on ' if row['gradient_checkpointing'] else 'off'} "
                 f"batch {row['batch_size']} x {row['grad_accum']} x {row['max_seq_len']} tokens, r {row['lora_r']}: "
                 f"{row['predicted_peak_memory_mb']:,.0f} MiB"
                 + (f" (evaluation {row['predicted_eval_peak_memory_mb']:,.0f} MiB)"
                    if row.get("predicted_eval_peak_memory_mb") is not None else "")
                 + f", {row['predicted_step_seconds']:.2f} s/step")
        if row["reason"]:
            shape += f" - {row['reason']}"
        elif row["fitted"]:
            shape += " - fitted: " + ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in row["fitted"].items() if k != "why")
        lines.append(shape)
    lines.append(f"estimated wall time: {plan['estimated_total_seconds'] / 60:.1f} min "
                 f"(steps x predicted step time + {plan['trial_overhead_seconds']:.0f} s per trial for loading and "
                 f"evaluation); planning (probes included) took {plan['planning_seconds']:.0f} s")
    return lines
