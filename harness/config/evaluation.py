"""How the held-out split is scored: how many examples, and how many generated answers for task metrics."""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.errors import check


@dataclass(frozen=True)
class EvalSpec:
    """How the held-out split is scored."""

    batch_size: int = 16
    """Sequences per eval forward pass."""
    metrics: tuple[str, ...] | None = None
    """Task metrics scored on generated answers; None: the data's defaults (a built-in task's own,
    or chosen from the file's format); () turns generation off."""
    generate_size: int = 32
    """Generate answers for this many held-out examples (the first ones of the eval split)."""
    max_new_tokens: int = 0
    """Generation budget per answer in tokens; 0: the data's default."""
    generate_batch_size: int = 16
    """Prompts per generation batch. One batch of the 32 default prompts generates about 25% faster than two of
    16 (SmolLM2-135M, bf16, 2 CPU cores), but on a CPU the process's peak resident memory then rises by about
    780 MiB in 16-bit mode (the allocator's high-water mark, which is what a CPU trial's peak records), which
    would hide the training peak a LoRA vs QLoRA comparison is about: 16 keeps both where they were. Greedy
    answers do not depend on it beyond rounding."""
    samples: int = 5
    """Generated samples kept per trial (trials.jsonl and a W&B table)."""
    intermediate_size: int = 16
    """Held-out examples each intermediate evaluation (the ones a pruner reads)
    scores, loss only: a subset drawn from the split's hash, the same for every trial of a study; 0: the
    whole split. The final evaluation of a trial always scores the whole split and generates."""

    def __post_init__(self) -> None:
        for name in ("batch_size", "generate_batch_size"):
            value = getattr(self, name)
            check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                  f"eval {name} must be a positive integer, got {value!r}")
        if self.metrics is not None:
            metrics = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
            check(all(isinstance(m, str) and m for m in metrics), f"eval metrics must be names, got {metrics!r}")
            object.__setattr__(self, "metrics", metrics)
        for name in ("generate_size", "max_new_tokens", "samples", "intermediate_size"):
            value = getattr(self, name)
            check(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                   f"eval {name} must be a non-negative integer, got {value!r}")
