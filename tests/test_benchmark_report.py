"""The vs_trainer benchmark's accounting of packed trials (benchmarks/vs_trainer_report.py): a pack's training
time counts once, not once per member."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from vs_trainer_report import step_seconds, train_share  # noqa: E402


def _trial(mode: str, train_seconds: float, steps: int, pack_size: int | None = None) -> dict:
    trial = {"params": {"quantization": mode}, "train_seconds": train_seconds, "steps": steps}
    if pack_size is not None:
        trial["pack_size"] = pack_size
    return trial


def test_a_pack_counts_its_training_time_once() -> None:
    # three members of one pack, each recording the pack's 36 s; one trial alone; a peer trial (no pack_size)
    packed = [_trial("none", 36.0, 20, pack_size=3) for _ in range(3)]
    alone = _trial("nf4-dq", 17.0, 20, pack_size=1)
    peer = _trial("none", 21.0, 20)
    assert sum(train_share(t) for t in packed) == pytest.approx(36.0)
    assert train_share(alone) == 17.0 and train_share(peer) == 21.0
    assert step_seconds([*packed, alone]) == pytest.approx({"none": 36.0 / 60, "nf4-dq": 17.0 / 20})
