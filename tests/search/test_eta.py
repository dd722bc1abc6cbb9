"""The progress line's time left: after every finished trial, the trials still to run x the measured wall time
per finished trial (packs and the gaps between trials included)."""

from __future__ import annotations

import io

from rich.console import Console

from harness.search.progress import SweepProgress, step_bar


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


def test_a_log_gets_a_step_line_a_minute_with_the_trials_time_left() -> None:
    """Off a terminal (a log file) a long trial prints a plain step line at most once a minute, with the trial's
    time left from its measured step rate (loading left out); a trial shorter than a minute prints none."""
    now = [0.0]
    out = io.StringIO()
    progress = SweepProgress(2, 40, Console(file=out, width=300), clock=lambda: now[0])
    progress.start_trial(1, 0, {"quantization": "nf4", "lora_r": 8, "learning_rate": 1e-4})
    now[0] += 30.0  # loading: not part of the step rate
    progress.step(1, 3.0)
    for step in range(2, 16):  # 2 s a step
        now[0] += 2.0
        progress.step(step, 2.5)
    assert out.getvalue() == "", "a step line before a minute had passed"
    now[0] += 2.0
    progress.step(16, 2.4)  # 60 s since the trial started; 15 steps in 30 s, 24 to go
    lines = out.getvalue().splitlines()
    assert lines == ["trial 1/2 (#0) nf4 r8 a- lr1.0e-04  step 16/40  loss 2.4000  ~48 s left in this trial"], lines
    for step in range(17, 40):
        now[0] += 2.0
        progress.step(step, 2.3)
    assert len(out.getvalue().splitlines()) == 1, "a second line within the minute"


def test_the_live_line_shows_a_step_bar() -> None:
    now = [0.0]
    progress = SweepProgress(1, 40, Console(file=io.StringIO(), width=300), clock=lambda: now[0])
    shown: list[str] = []

    class Live:
        def update(self, text: object) -> None:
            shown.append(str(text))

        def stop(self) -> None:
            pass

    progress.start_trial(1, 0, {"quantization": "none", "lora_r": 8, "learning_rate": 1e-4})
    progress._live = Live()
    progress.step(1, 3.0)
    now[0] += 30.0
    progress.step(11, 2.0)  # 3 s a step, 29 to go
    assert shown[-1].endswith("step 11/40 [######--------------]  loss 2.0000  ~1.4 min left in this trial")
    assert step_bar(40, 40).endswith("[" + "#" * 20 + "]") and step_bar(3, 0) == "step 3"
