"""A pack of trials from configs to results: `run_pack` is to `harness.trial.pack` what `run_trial` is to
`harness.trial.train`.

One copy of the base model is loaded, every config gets its own adapter (`pack.attach_pack`), `pack.train_pack`
trains them together, and then each member is scored, generates and is saved exactly as a trial alone is
(`pack.only` routes every row through that member's adapter). The result is one `TrialResult` per config, in
order, each marked with the pack's size: its peak memory and seconds are the pack's.

Like `run_trial`, never raises for a bad trial: a member that diverges leaves the pack and is reported
`diverged`, one the pruner stops after an intermediate evaluation leaves it as `pruned`, a member whose scoring
fails is `failed` alone, and a failure of the pack itself (loading, out of
memory) fails every member with its reason. Knows nothing of Optuna or W&B.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from harness.config.errors import one_line
from harness.config.trial import TrialConfig
from harness.runtime.devices import pick_device
from harness.trial.models import load_base_model
from harness.trial.pack import (Member, MemberOutcome, attach_pack, member_name, member_params, only, save_member,
                                train_pack)
from harness.trial.result import TrialResult
from harness.trial.run import (Measured, MemoryMeter, TrialCache, failure_of, fault_hook, measured_for,
                               per_example_scores, prepare_once, release_memory, score_task, training_epochs)
from harness.trial.scoring import eval_loss
from harness.trial.weights import weight_breakdown


def run_pack(configs: Sequence[TrialConfig], cache: TrialCache | None = None,
             on_step: Callable[[int, dict[int, float]], None] | None = None,
             on_eval: Callable[[int, int, float], bool] | None = None) -> list[TrialResult]:
    """Train `configs` as one pack and score each member as a trial alone is scored; one result per config.
    The configs must be able to share a pack (`pack.refusal` is None): the caller splits them first.
    `on_step(step, {member index: loss})` hears of every finished step; `on_eval(member, step, eval loss)` of
    each intermediate evaluation (on the intermediate subset, as a trial alone), and returns True to prune that
    member: it is reported `pruned` with its last intermediate score, as a pruned trial alone is."""
    cache = cache or TrialCache()
    device = pick_device()
    meter = MemoryMeter(device)
    measured = [measured_for(config, device) for config in configs]
    try:
        for config in configs:
            prepare_once(config, cache, device)
        meter.reset()
        return _run(configs, cache, device, meter, measured, on_step, on_eval)
    except Exception as err:  # the pack itself failed: every member fails with the reason
        status, reason = failure_of(err)
        return [TrialResult(status=status, reason=reason, peak_memory_mb=meter.peak_mb(), pack_size=len(configs),
                            **m.described()) for m in measured]
    finally:
        release_memory(device)


def _run(configs: Sequence[TrialConfig], cache: TrialCache, device: str, meter: MemoryMeter,
         measured: list[Measured], on_step: Callable[[int, dict[int, float]], None] | None,
         on_eval: Callable[[int, int, float], bool] | None) -> list[TrialResult]:
    first = configs[0]
    data = cache.prepared(first)
    started = time.perf_counter()
    base = load_base_model(cache.checkpoint(first.model.name), first.quant.mode, device, first.data.max_seq_len)
    weights = weight_breakdown(base)
    model = attach_pack(base, configs)
    load_seconds = time.perf_counter() - started
    frozen = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    for index, m in enumerate(measured):
        m.weights, m.load_seconds = weights, load_seconds
        m.trainable_params = sum(p.numel() for p in member_params(model, member_name(index)))
        m.total_params = frozen + m.trainable_params
    hooks = [fault_hook(config.fault) for config in configs]

    def loss_hook(member: int, step: int, loss: float) -> float:
        hook = hooks[member]
        return hook(step, loss) if hook is not None else loss

    def intermediate(member: int, step: int) -> bool:
        """Score one member on the intermediate subset, as run_trial's on_eval does for a trial alone."""
        m = measured[member]
        with only(model, member_name(member)):
            score = eval_loss(model, data.intermediate_batches, device)
        m.history.append({"step": step, "eval_loss": score.loss, "eval_examples": data.intermediate_examples})
        m.last_eval, m.last_eval_examples = score, data.intermediate_examples
        m.intermediate_seconds += score.seconds
        return bool(on_eval is not None and on_eval(member, step, score.loss))

    members = [Member(config, training_epochs(cache.prepared(config), config)) for config in configs]
    outcomes = train_pack(model, members, device, data.tokenizer.pad_token_id,
                          loss_hook=loss_hook if any(hooks) else None, on_step=on_step,
                          on_eval=intermediate if on_eval is not None else None)
    train_peak = meter.peak_mb()
    meter.reset()
    results = [_score_member(model, index, config, outcome, data, device, measured[index], len(configs))
               for index, (config, outcome) in enumerate(zip(configs, outcomes))]
    eval_peak = meter.peak_mb()
    peak = max((p for p in (train_peak, eval_peak) if p is not None), default=None)
    return [dataclasses.replace(r, peak_memory_mb=peak, train_peak_memory_mb=train_peak, eval_peak_memory_mb=eval_peak)
            for r in results]


def _score_member(model: Any, index: int, config: TrialConfig, outcome: MemberOutcome, data: Any, device: str,
                  measured: Measured, size: int) -> TrialResult:
    """One member's final evaluation, generation and saved adapter, as `run_trial` does them for a trial alone."""
    trained = outcome.outcome
    common = {**measured.described(), "pack_size": size, "steps": trained.steps, "train_tokens": trained.tokens,
              "train_seconds": trained.seconds, "train_loss": trained.final_loss, "load_seconds": measured.load_seconds,
              "trainable_params": measured.trainable_params, "total_params": measured.total_params,
              "tokens_per_second": trained.tokens / trained.seconds if trained.seconds else None,
              "intermediate_eval_seconds": measured.intermediate_seconds}
    history = _merged(outcome.history, measured.history)
    if outcome.stopped is not None:
        return TrialResult(status="diverged", reason=outcome.stopped.removeprefix("diverged: "), history=history,
                           **common)
    if outcome.pruned is not None:  # scored by its last intermediate evaluation, as a pruned trial alone is
        last = measured.last_eval
        return TrialResult(status="pruned", reason=outcome.pruned, eval_loss=last.loss if last else None,
                           perplexity=last.perplexity if last else None,
                           eval_examples=measured.last_eval_examples if last else None,
                           metrics={"base_model_mb": measured.weights["total_mb"]} if measured.weights else {},
                           history=history, **common)
    try:
        with only(model, member_name(index)):
            score = eval_loss(model, data.eval_batches, device)
            if not math.isfinite(score.loss):
                return TrialResult(status="diverged", reason=f"non-finite eval loss ({score.loss}) after step "
                                   f"{trained.steps}", history=history, **common)
            generated = score_task(model, data, config, device)
            if config.adapter_dir:
                save_member(model, member_name(index), config.adapter_dir)
    except Exception as err:  # this member failed; the others are scored on
        return TrialResult(status="failed", reason=one_line(err), history=history, **common)
    history = [*history, {"step": trained.steps, "eval_loss": score.loss, "eval_examples": len(data.tokenized.eval)}]
    return TrialResult(
        status="complete", eval_loss=score.loss, perplexity=score.perplexity, eval_examples=len(data.tokenized.eval),
        eval_seconds=score.seconds + (generated.seconds if generated else 0.0),
        generation_seconds=generated.seconds if generated else 0.0,
        metrics={**(generated.metrics if generated else {}), "base_model_mb": measured.weights["total_mb"]},
        history=history, adapter_dir=config.adapter_dir, samples=generated.samples if generated else [],
        per_example=per_example_scores(score, generated), **common)


def _merged(steps: list[dict[str, float]], evals: list[dict[str, float]]) -> list[dict[str, float]]:
    """A member's per-step entries and its intermediate evaluations in the order a trial alone records them
    (a step's eval after that step's entry)."""
    return sorted([*steps, *evals], key=lambda entry: (entry["step"], "eval_loss" in entry))
