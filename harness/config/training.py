"""The short fine-tune's settings (optimizer, schedule, batch, steps), named as in
transformers.TrainingArguments where a name exists."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from harness.config.budget import memory_budget
from harness.config.errors import check, positive

Scheduler = Literal["cosine", "linear", "constant", "warmup_stable_decay"]
SCHEDULERS: tuple[str, ...] = get_args(Scheduler)


@dataclass(frozen=True)
class TrainSpec:
    """The short fine-tune. Field names follow transformers.TrainingArguments where one exists."""

    learning_rate: float = 2e-4
    """Peak learning rate of AdamW (after warm-up)."""
    max_steps: int = 30
    """Optimizer steps per trial."""
    batch_size: int = 8
    """Sequences per micro-batch (per_device_train_batch_size)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step: effective batch = batch_size * grad_accum."""
    warmup_ratio: float = 0.05
    """Fraction of max_steps spent warming the learning rate up from 0."""
    weight_decay: float = 0.01
    """AdamW weight decay on the adapter weights."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 turns clipping off."""
    scheduler: Scheduler = "cosine"
    """Learning-rate shape after the warm-up (transformers' lr_scheduler_type): cosine or linear decay to 0,
    constant (flat at the peak after the warm-up: transformers' `constant_with_warmup`; warmup_ratio 0 for none)
    or warmup_stable_decay (flat, then transformers' default cosine decay to 0 over the last decay_ratio of the
    steps)."""
    decay_ratio: float = 0.1
    """warmup_stable_decay only: the fraction of max_steps spent decaying to 0 at the end."""
    loraplus_lr_ratio: float = 1.0
    """LoRA+: the B matrices learn at learning_rate x this ratio (peft's create_loraplus_optimizer); 1 is plain
    LoRA (one learning rate for A and B)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass instead of keeping them (transformers'
    non-reentrant checkpointing): a lower training peak for a longer step, the same loss and gradients."""
    max_memory_mb: float | None = None
    """The peak memory (MiB, the meter trials use) a trial may reach (`--max-memory-mb`): a config predicted over
    it is fitted (micro-batch halved and accumulation doubled, then gradient checkpointing) or ends `infeasible`
    before its model loads (harness.search.planning). None: no budget. Pinned in a study like every setting here."""
    seed: int = 0
    """Seeds adapter initialisation, dropout and batch order."""
    eval_every: int = 0
    """Report an intermediate eval loss every k optimizer steps (0: only at the end)."""
    eval_at: tuple[int, ...] = ()
    """Report intermediate eval losses after exactly these optimizer steps (a successive-halving rung
    schedule) instead of every `eval_every`; steps at or past max_steps are not intermediate."""

    def __post_init__(self) -> None:
        positive("learning_rate", self.learning_rate)
        check(self.learning_rate < 1.0, f"learning_rate {self.learning_rate} is too large (expected < 1)")
        for name in ("max_steps", "batch_size", "grad_accum"):
            value = getattr(self, name)
            check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                   f"{name} must be a positive integer, got {value!r}")
        check(isinstance(self.gradient_checkpointing, bool),
              f"gradient_checkpointing must be true or false, got {self.gradient_checkpointing!r}")
        memory_budget(self.max_memory_mb, "max_memory_mb")
        check(0.0 <= self.warmup_ratio < 1.0, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        check(self.weight_decay >= 0.0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        check(self.max_grad_norm >= 0.0, f"max_grad_norm must be >= 0, got {self.max_grad_norm!r}")
        check(self.scheduler != "constant_with_warmup",
               "scheduler constant_with_warmup: write constant (harness's constant keeps the warmup_ratio warm-up; "
               "recommended.yaml names it constant_with_warmup for transformers)")
        check(self.scheduler in SCHEDULERS, f"scheduler {self.scheduler!r} is not one of {', '.join(SCHEDULERS)}")
        check(isinstance(self.decay_ratio, (int, float)) and 0.0 < self.decay_ratio <= 1.0,
               f"decay_ratio must be in (0, 1], got {self.decay_ratio!r}")
        check(self.scheduler != "warmup_stable_decay" or self.warmup_ratio + self.decay_ratio <= 1.0,
               f"warmup_ratio {self.warmup_ratio} + decay_ratio {self.decay_ratio} exceed the run "
               "(warmup_stable_decay needs their sum <= 1)")
        positive("loraplus_lr_ratio", self.loraplus_lr_ratio)
        check(self.loraplus_lr_ratio >= 1.0,
               f"loraplus_lr_ratio must be >= 1 (B learns ratio times faster than A; 1 is plain LoRA), "
               f"got {self.loraplus_lr_ratio!r}")
        check(isinstance(self.eval_every, int) and self.eval_every >= 0,
               f"eval_every must be a non-negative integer, got {self.eval_every!r}")
        steps = tuple(self.eval_at) if isinstance(self.eval_at, (list, tuple)) else (self.eval_at,)
        check(all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in steps)
              and list(steps) == sorted(set(steps)),
              f"eval_at must be increasing positive step numbers, got {self.eval_at!r}")
        object.__setattr__(self, "eval_at", steps)

    def evaluates_at(self, step: int) -> bool:
        """Whether an intermediate evaluation follows optimizer step `step` (never the last one, which the
        final evaluation scores)."""
        if step >= self.max_steps:
            return False
        if self.eval_at:
            return step in self.eval_at
        return bool(self.eval_every) and step % self.eval_every == 0

    @property
    def warmup_steps(self) -> int:
        """Warm-up length in optimizer steps (rounded up, as TrainingArguments does)."""
        return math.ceil(self.max_steps * self.warmup_ratio)

    @property
    def decay_steps(self) -> int:
        """warmup_stable_decay: the steps of the final decay (rounded up)."""
        return math.ceil(self.max_steps * self.decay_ratio)
