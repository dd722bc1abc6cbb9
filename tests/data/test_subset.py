"""The intermediate evaluations' subset of the held-out split: a function of the split alone."""

from __future__ import annotations

from harness.data import intermediate_subset


def test_the_subset_is_drawn_from_the_split_hash_and_the_same_every_time() -> None:
    subset = intermediate_subset(64, 16, "0123456789abcdef")
    assert subset == intermediate_subset(64, 16, "0123456789abcdef")
    assert len(subset) == len(set(subset)) == 16 and list(subset) == sorted(subset)
    assert all(0 <= i < 64 for i in subset)
    assert subset != tuple(range(16)), "a seeded sample, not the first examples (the eval split is length-sorted)"
    assert subset != intermediate_subset(64, 16, "fedcba9876543210"), "another split draws another subset"


def test_size_zero_or_the_whole_split_means_every_example() -> None:
    assert intermediate_subset(8, 0, "ab") == tuple(range(8))
    assert intermediate_subset(8, 8, "ab") == tuple(range(8))
    assert intermediate_subset(8, 20, "ab") == tuple(range(8))
