"""The held-out examples an intermediate evaluation scores: a seeded subset, the same for every trial.

A pruner compares trials by their intermediate eval losses, so they must all score the same examples; the
subset is drawn from the eval split's own hash (`Splits.split_hash`), so every trial of a study, and a
study resumed later (whose split hash is checked on resume), draws the same one without storing it first.
The final evaluation of a trial always scores the whole split.
"""

from __future__ import annotations

import random


def intermediate_subset(count: int, size: int, split_hash: str) -> tuple[int, ...]:
    """Positions (ascending) in an eval split of `count` examples of the `size` examples an intermediate
    evaluation scores; all of them when `size` is 0 or not smaller than `count`."""
    if size <= 0 or size >= count:
        return tuple(range(count))
    return tuple(sorted(random.Random(int(split_hash, 16)).sample(range(count), size)))
