"""The short fine-tune: AdamW on the adapter weights for `max_steps` optimizer steps.

Knows nothing of Optuna or W&B: progress leaves through the `on_step` / `on_eval` callbacks,
whose return value says whether to stop (a pruner's decision, made elsewhere).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from harness.config.training import TrainSpec
from harness.runtime.devices import autocast_for
from harness.trial.head import token_losses

# A loss this many times the first step's loss (and above 20 nats) is treated as divergence.
EXPLODE_FACTOR = 4.0
EXPLODE_FLOOR = 20.0


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN, infinite or exploded; the trial is pruned with this reason."""


class StopTraining(Exception):
    """Raised by the loop when a callback asks to stop (the pruner said so)."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(reason)
        self.step = step


@dataclass
class StepInfo:
    """What one optimizer step did."""

    step: int
    loss: float
    lr: float
    tokens: int
    """Real (non-padding) tokens consumed by this step."""


@dataclass
class TrainOutcome:
    """What the training loop did: optimizer steps, real tokens, time and each step's loss."""

    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    """Wall time inside training steps only (intermediate evals excluded)."""
    losses: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float | None:
        tail = self.losses[-5:]
        return sum(tail) / len(tail) if tail else None


def batches_forever(make_epoch: Callable[[int], Sequence[Any]]) -> Iterator[Any]:
    """The training batches epoch after epoch (`make_epoch(e)` reshuffles per epoch), for as many steps as asked."""
    epoch = 0
    while True:
        batches = make_epoch(epoch)
        if not batches:
            raise ValueError("the training split produced no batches")
        yield from batches
        epoch += 1


def optimizer_name(device: str) -> str:
    """The optimizer every trial on this device uses, as a TrainingArguments `optim` value."""
    return "adamw_torch_fused" if device.startswith("cuda") else "adamw_torch"


def make_optimizer(model: Any, params: list[Any], spec: TrainSpec, device: str) -> Any:
    """AdamW with weight decay for every quantization mode, so that a LoRA vs QLoRA comparison differs
    in quantization alone: torch's fused AdamW on CUDA, its default AdamW on CPU (`optimizer_name`).
    With loraplus_lr_ratio > 1, LoRA+: peft's create_loraplus_optimizer puts the B matrices in groups
    that learn at learning_rate x ratio (the same AdamW underneath).

    QLoRA's paged AdamW is not used: it only pages optimizer states of >= 1e5 elements, so on small
    adapters it is plain AdamW by another code path, and using it for quantized modes only made the
    comparison differ in two things at once."""
    import torch

    kwargs = dict(weight_decay=spec.weight_decay, betas=(0.9, 0.999), eps=1e-8,
                  fused=optimizer_name(device) == "adamw_torch_fused")
    if spec.loraplus_lr_ratio != 1.0:
        from peft.optimizers import create_loraplus_optimizer

        return create_loraplus_optimizer(model, torch.optim.AdamW, lr=spec.learning_rate,
                                         loraplus_lr_ratio=spec.loraplus_lr_ratio, **kwargs)
    return torch.optim.AdamW(params, lr=spec.learning_rate, **kwargs)


SCHEDULER_NAMES = {"constant": "constant_with_warmup"}
"""harness scheduler -> transformers lr_scheduler_type: harness's `constant` keeps the warm-up."""


def scheduler_kwargs(spec: TrainSpec) -> dict[str, Any]:
    """The scheduler's own arguments (transformers' `lr_scheduler_kwargs`): WSD's decay length."""
    return {"num_decay_steps": spec.decay_steps} if spec.scheduler == "warmup_stable_decay" else {}


def make_scheduler(optimizer: Any, spec: TrainSpec) -> Any:
    """Linear warm-up over warmup_steps, then the chosen shape (transformers.get_scheduler)."""
    from transformers import get_scheduler

    return get_scheduler(SCHEDULER_NAMES.get(spec.scheduler, spec.scheduler), optimizer,
                         num_warmup_steps=spec.warmup_steps, num_training_steps=spec.max_steps,
                         scheduler_specific_kwargs=scheduler_kwargs(spec))


def check_loss(loss: float, first: float | None, step: int) -> None:
    """NonFiniteLoss when a step's loss is NaN, infinite or exploded against the first step's."""
    if not math.isfinite(loss):
        raise NonFiniteLoss(f"non-finite training loss ({loss}) at step {step}")
    if first is not None and loss > EXPLODE_FLOOR and loss > EXPLODE_FACTOR * first:
        raise NonFiniteLoss(f"training loss exploded to {loss:.3g} at step {step} (first step {first:.3g})")


def train(model: Any, make_epoch: Callable[[int], Sequence[Any]], spec: TrainSpec, device: str, *,
          on_step: Callable[[StepInfo], None] | None = None,
          on_eval: Callable[[int], bool] | None = None,
          loss_hook: Callable[[int, float], float] | None = None,
          lr_factor: Callable[[int], float] | None = None,
          defer_sync: bool | None = None) -> TrainOutcome:
    """Train the model's trainable (adapter) parameters for spec.max_steps optimizer steps.

    `make_epoch(e)` returns the batches of epoch e (reshuffled per epoch). `on_eval(step)` runs after the
    steps `spec.evaluates_at` names and returns True to stop (raises StopTraining). `loss_hook` lets tests
    inject a bad loss. `lr_factor(k)` replaces the scheduler: step k+1 runs at spec.learning_rate x
    lr_factor(k) (a learning-rate range test's rising rate). Raises NonFiniteLoss on NaN/inf or exploding loss.

    `defer_sync` (default: on CUDA): a step's loss is read on the host one step later, when the device has
    long computed it, so no step waits for the device to finish before the next is queued; the divergence
    check and `on_step` then run one step late (and before every intermediate eval and at the end), with the
    same values. Off (CPU, where nothing is asynchronous), every step is read and checked as it ends.
    """
    import torch

    defer = device.startswith("cuda") if defer_sync is None else defer_sync
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(model, params, spec, device)
    scheduler = (make_scheduler(optimizer, spec) if lr_factor is None
                 else torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor))
    batches = batches_forever(make_epoch)
    outcome = TrainOutcome()

    def settle(step: int, loss: Any, lr: float, tokens: int) -> None:
        value = float(loss)
        if loss_hook is not None:
            value = loss_hook(step, value)
        check_loss(value, outcome.losses[0] if outcome.losses else None, step)
        outcome.steps, outcome.tokens = step, outcome.tokens + tokens
        outcome.losses.append(value)
        if on_step is not None:
            on_step(StepInfo(step, value, lr, tokens))

    def elapsed(since: float) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()  # kernels run asynchronously: time the work, not its launch
        return time.perf_counter() - since

    pending: tuple[int, Any, float, int] | None = None
    model.train()
    clock = time.perf_counter()
    for step in range(1, spec.max_steps + 1):
        loss, tokens = _accumulate(model, [next(batches) for _ in range(spec.grad_accum)], device)
        if spec.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        lr = scheduler.get_last_lr()[0]
        if defer:
            if pending is not None:
                settle(*pending)
            pending = (step, loss, lr, tokens)
        else:
            outcome.seconds += elapsed(clock)
            settle(step, loss, lr, tokens)
            clock = time.perf_counter()
        if on_eval is not None and spec.evaluates_at(step):
            if pending is not None:
                outcome.seconds += elapsed(clock)
                settle(*pending)
                pending = None
            if on_eval(step):
                model.eval()
                raise StopTraining(step, f"pruned at step {step} by the study's pruner")
            model.train()
            clock = time.perf_counter()
    if pending is not None:
        outcome.seconds += elapsed(clock)
        settle(*pending)
    model.eval()
    return outcome


def _accumulate(model: Any, micro_batches: list[Any], device: str) -> tuple[Any, int]:
    """Forward/backward over micro-batches; the loss is the mean over all scored tokens of the step.

    Each micro-batch contributes its summed token losses over the step's scored tokens, so the step's
    loss and gradients are those of one batch holding every micro-batch (a micro-batch with no scored
    token adds nothing). The head runs only at the labelled positions where the model allows it
    (harness.trial.head)."""

    scored = max(sum(b.scored_tokens for b in micro_batches), 1)
    total: Any = 0.0
    tokens = 0
    for batch in micro_batches:
        with autocast_for(device):
            scores = token_losses(model, batch.input_ids.to(device), batch.attention_mask.to(device),
                                  batch.labels.to(device))
        weighted = scores.losses.sum() / scored
        weighted.backward()
        total = total + weighted.detach()  # a tensor: reading it on the host is the caller's choice
        tokens += batch.real_tokens
    return total, tokens
