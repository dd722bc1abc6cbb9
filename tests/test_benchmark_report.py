"""The vs_trainer benchmark's accounting of packed trials (benchmarks/vs_trainer_report.py): a pack's training
time counts once, not once per member."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from vs_trainer_report import step_seconds, train_share, twin_differences, twin_line  # noqa: E402


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


def _run(number: int, lr: float, loss: float | None, state: str = "COMPLETE") -> dict:
    return {"number": number, "state": state, "eval_loss": loss,
            "params": {"lora_r": 8, "lora_alpha": 16.0, "learning_rate": lr, "quantization": "none"}}


def test_twin_differences_pair_only_the_same_trial_run_by_both_sides() -> None:
    harness = [_run(0, 1e-4, 2.70), _run(1, 5e-4, 2.60), _run(2, 3e-4, 2.90), _run(3, 2e-4, None, "PRUNED"),
               _run(4, 9e-4, 2.50)]
    peer = [_run(0, 1e-4, 2.75), _run(1, 5e-4, 2.58), _run(2, 7e-4, 2.80), _run(3, 2e-4, 2.65)]
    # 0 and 1 pair; 2 has other parameters, 3 was pruned on harness's side, 4 the peer never ran
    assert twin_differences(harness, peer) == pytest.approx([-0.05, 0.02])
    line = twin_line("equal", [[-0.05, 0.02], [], [0.07]])
    assert "3 pairs" in line and "median 0.050" in line and "max 0.070" in line
    assert "mean by seed -0.015, n/a, +0.070" in line
    assert "none" in twin_line("equal", [[], []])
