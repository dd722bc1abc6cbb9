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
from harness.trial.pack import (Member, MemberOutcome, attach_pack, drop_member, member_name, member_params, only,
                                refusal, save_member, train_pack)
from harness.trial.result import TrialResult
from harness.data.encode import prompt_template
from harness.trial.run import (Measured, MemoryMeter, TrialCache, failure_of, fault_hook, kept_memory, measured_for,
                               per_example_scores, prepare_once, release_memory, score_intermediate, score_task,
                               training_epochs)
from harness.trial.scoring import eval_loss
from harness.trial.weights import weight_breakdown


def run_pack(configs: Sequence[TrialConfig], cache: TrialCache | None = None,
             on_step: Callable[[int, dict[int, float]], None] | None = None,
             on_eval: Callable[[int, int, float], bool] | None = None,
             on_result: Callable[[int, TrialResult], None] | None = None,
             refill: Callable[[], TrialConfig | None] | None = None) -> list[TrialResult]:
    """Train `configs` as one pack and score each member as a trial alone is scored; one result per member, in
    order of their indices. The configs must be able to share a pack (`pack.refusal` is None): the caller
    splits them first. `on_step(tick, {member index: loss})` hears of every packed step; `on_eval(member, step,
    eval loss)` of each intermediate evaluation (on the intermediate subset, as a trial alone), and returns True
    to prune that member: it is reported `pruned` with its last intermediate score, as a pruned trial alone is.
    `on_result(member, result)` hears of each member's result as soon as it leaves the pack (scored, saved);
    when a member leaves early (pruned, diverged), `refill()` may give the config of a trial to take its place
    (index len(configs), then the next...; it must share the pack), trained from its own first step.

    Memory: each result's `train_peak_memory_mb` is the pack's high-water mark up to its leaving, its
    `eval_peak_memory_mb` that of its own scoring."""
    cache = cache or TrialCache()
    device = pick_device()
    meter = MemoryMeter(device)
    configs = list(configs)  # refills are appended
    places = len(configs)
    measured = [measured_for(config, device) for config in configs]
    results: dict[int, TrialResult] = {}
    try:
        for config in configs:
            prepare_once(config, cache, device)
        meter.reset()
        _run(configs, cache, device, meter, measured, results, on_step, on_eval, on_result, refill)
    except Exception as err:  # the pack itself failed: every member still in it fails with the reason
        status, reason = failure_of(err)
        for k, m in enumerate(measured):
            if k not in results:
                results[k] = TrialResult(status=status, reason=reason, peak_memory_mb=meter.peak_mb(),
                                         pack_size=places, **m.described())
    finally:
        release_memory(device)
    return [results[k] for k in range(len(measured))]


def _run(configs: list[TrialConfig], cache: TrialCache, device: str, meter: MemoryMeter, measured: list[Measured],
         results: dict[int, TrialResult], on_step: Callable[[int, dict[int, float]], None] | None,
         on_eval: Callable[[int, int, float], bool] | None, on_result: Callable[[int, TrialResult], None] | None,
         refill: Callable[[], TrialConfig | None] | None) -> None:
    first = configs[0]
    places = len(configs)
    data = cache.prepared(first)
    started = time.perf_counter()
    kept = cache.kept_layers(first, device)  # members share the quantization spec (pack.shared), so the kept layers
    base = load_base_model(cache.checkpoint(first.model.name), first.quant.mode, device, first.data.max_seq_len,
                           kept.modules)
    kept_mb = kept_memory(base, kept, first.quant.mode)
    for one in measured:  # the family may override attention_for's rule (Gemma 3: eager)
        one.attention, one.prompt_template = base.config._attn_implementation, prompt_template(data.tokenizer)
        one.kept, one.kept_mb = kept, kept_mb
    weights = weight_breakdown(base)
    model = attach_pack(base, configs)
    load_seconds = time.perf_counter() - started
    hooks = [fault_hook(config.fault) for config in configs]
    high = 0.0  # the pack's memory high-water mark so far (MiB)

    def loss_hook(member: int, step: int, loss: float) -> float:
        hook = hooks[member]
        return hook(step, loss) if hook is not None else loss

    def intermediate(member: int, step: int) -> bool:
        """Score one member on the intermediate subset, as run_trial does a trial alone."""
        with only(model, member_name(member)):
            score = score_intermediate(model, cache.prepared(configs[member]), device, measured[member], step)
        return bool(on_eval is not None and on_eval(member, step, score.loss))

    def leave(member: int, outcome: MemberOutcome) -> None:
        """Score, generate and save a member as it leaves, then free its adapter."""
        nonlocal high
        m = measured[member]
        m.weights, m.load_seconds = weights, load_seconds
        m.trainable_params = sum(p.numel() for p in member_params(model, member_name(member)))
        m.total_params = frozen + m.trainable_params
        train_peak = high = max(high, meter.peak_mb() or 0.0)
        meter.reset()
        result = _score_member(model, member, configs[member], outcome, cache.prepared(configs[member]), device, m,
                               places)
        eval_peak = meter.peak_mb()
        meter.reset()
        high = max(high, eval_peak or 0.0)
        results[member] = dataclasses.replace(result, peak_memory_mb=high or None,
                                              train_peak_memory_mb=train_peak or None, eval_peak_memory_mb=eval_peak)
        if len(model.peft_config) > 1:  # peft keeps at least one adapter
            drop_member(model, member)
        if on_result is not None:
            on_result(member, results[member])

    def next_member() -> Member | None:
        config = refill() if refill is not None else None
        if config is None:
            return None
        why = refusal([first, config])
        if why is not None:
            raise ValueError(f"a refill must share the pack: {why}")
        prepare_once(config, cache, device)
        configs.append(config)
        measured.append(measured_for(config, device))
        hooks.append(fault_hook(config.fault))
        return Member(config, training_epochs(cache.prepared(config), config))

    frozen = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    members = [Member(config, training_epochs(cache.prepared(config), config)) for config in configs]
    train_pack(model, members, device, data.tokenizer.pad_token_id, loss_hook=loss_hook, on_step=on_step,
               on_eval=intermediate if on_eval is not None else None, on_leave=leave,
               refill=next_member if refill is not None else None)


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
