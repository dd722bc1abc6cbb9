"""What a study can optimize, in which direction, and what \"best first\" means: the one home of ranking."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TypeVar

from harness.config.errors import check

# objective name -> direction. Metrics of the trial result that a study can optimize.
OBJECTIVES: dict[str, str] = {
    "eval_loss": "minimize",
    "perplexity": "minimize",
    "peak_memory_mb": "minimize",
    "train_seconds": "minimize",
    "tokens_per_second": "maximize",
}
# Task metrics (scored on generated answers; see harness.metrics) that a study can optimize.
TASK_METRICS: dict[str, str] = {"exact_match": "maximize", "accuracy": "maximize", "rouge_l": "maximize",
                                "token_f1": "maximize", "contains_answer": "maximize"}


def direction_of(objective: str) -> str:
    """`minimize` or `maximize`: the direction a study optimizes an objective in."""
    return OBJECTIVES.get(objective, TASK_METRICS.get(objective, "maximize"))


T = TypeVar("T")


def better_sign(direction: str) -> float:
    """+1 when lower values are better (`minimize`), -1 when higher are (`maximize`): a value times this
    sign is smallest for the best."""
    check(direction in ("minimize", "maximize"), f"direction must be minimize or maximize, got {direction!r}")
    return 1.0 if direction == "minimize" else -1.0


def ranked(items: Iterable[T], direction: str, value: Callable[[T], float | None] | None = None) -> list[T]:
    """Items best first under an objective's direction (`minimize` / `maximize`), by `value(item)` (the
    item itself when no `value` is given). Items without a value go last; ties keep their order. The one
    home of "best first": every table, pick and plan that ranks configs goes through here."""
    sign = better_sign(direction)
    get = value or (lambda item: item)  # type: ignore[assignment,return-value]

    def key(item: T) -> tuple[int, float]:
        score = get(item)
        return (1, 0.0) if score is None or score != score else (0, sign * float(score))

    return sorted(items, key=key)


def perplexity(eval_loss: float) -> float:
    """exp of the mean token loss (nats), capped at e^50 so a diverged run stays a finite number."""
    return math.exp(min(float(eval_loss), 50.0))
