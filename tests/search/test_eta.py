"""The progress line's time left: after every finished trial, the trials still to run x the measured wall time
per finished trial (packs and the gaps between trials included)."""

from __future__ import annotations

import io

from rich.console import Console

from harness.search.progress import SweepProgress


def _record() -> dict:
    return {"state": "COMPLETE", "eval_loss": 1.0, "peak_memory_mb": 500.0, "tokens_per_second": 100.0,
            "wall_seconds": 30.0}


def test_time_left_follows_measured_trial_times() -> None:
    now = [1000.0]
    out = io.StringIO()
    progress = SweepProgress(4, 10, Console(file=out, width=300), clock=lambda: now[0])
    assert progress.eta_text() == ""  # nothing measured yet
    progress.start_trial(1, 0, {"quantization": "none", "lora_r": 8, "learning_rate": 1e-4})
    now[0] += 120.0
    progress.end_trial(_record(), 1.0)
    assert out.getvalue().strip().endswith("~6.0 min left")  # 3 left x 120 s
    progress.start_trial(2, 1, {"quantization": "none", "lora_r": 8, "learning_rate": 1e-4})
    now[0] += 40.0  # faster: the estimate follows the measured mean (160 s / 2 trials)
    progress.end_trial(_record(), 1.0)
    assert out.getvalue().strip().endswith("~2.7 min left")
    now[0] += 45.0
    progress.end_trial(_record(), 1.0)
    assert out.getvalue().strip().endswith("~1.1 min left")  # 205 s / 3 x 1 left
    progress.end_trial(_record(), 1.0)
    assert "left" not in out.getvalue().strip().splitlines()[-1]  # the last trial: nothing left to estimate
