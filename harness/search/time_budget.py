"""`--time-budget DURATION`: no trial starts that is predicted to end past the budget.

Optuna's `timeout` only looks at the time already spent, so the trial it lets start last overruns the budget
by up to a whole trial. Here a trial (or a pack of `--pack K` trials) starts only when the time spent so far
plus its predicted wall time fits. The prediction is measured once this process has finished a trial (the
mean wall time per trial of its own trials, packs shared out among their members); before that it is the
planner's (harness.search.planning: steps x predicted step seconds + a stated per-trial overhead).

The budget belongs to one invocation: it counts from the start of this `harness sweep` or `harness worker`,
is not stored in the study, and a resume or a joining worker runs under its own (none unless given).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.search.planning import plan_sweep

CLOCK: Callable[[], float] = time.monotonic
"""The budget's clock, in seconds (a module attribute, so tests can put a fake in its place)."""
NOT_STARTED = "not started: the time budget ran out first (retried by the next run)"
"""The reason recorded for a trial claimed for a pack's free place that the budget then left no time to run."""


@dataclass
class TimeBudget:
    """One invocation's wall-time budget, and the trial times it predicts from."""

    seconds: float
    """The budget: wall time this invocation may take, in seconds."""
    clock: Callable[[], float] = field(default_factory=lambda: CLOCK)
    predicted_trial_seconds: float | None = None
    """The planner's prediction of one trial's wall time (None: not asked yet, or no prediction)."""
    started: float = field(init=False, default=0.0)
    """The clock when the invocation started: when the budget was made."""
    _measured: list[tuple[float, int]] = field(init=False, default_factory=list, repr=False)
    """(seconds, trials) of each trial or pack this process ran."""

    def __post_init__(self) -> None:
        self.started = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def ran(self, seconds: float, trials: int) -> None:
        """This process ran `trials` trials (one, or a pack's members) in `seconds` of wall time."""
        if trials > 0:
            self._measured.append((seconds, trials))

    @property
    def measured(self) -> bool:
        """Whether a trial of this process has finished (then the prediction is measured, not planned)."""
        return bool(self._measured)

    def trial_seconds(self) -> float | None:
        """One trial's predicted wall time: the measured mean once a trial finished, else the planner's."""
        if self._measured:
            return sum(s for s, _ in self._measured) / sum(n for _, n in self._measured)
        return self.predicted_trial_seconds

    def allows(self, trials: int = 1) -> bool:
        """Whether `trials` trials started now (one after another, or as a pack) are predicted to end within the
        budget; with no prediction at all, whether any time is left."""
        spent, per_trial = self.elapsed(), self.trial_seconds() or 0.0
        return spent < self.seconds and spent + per_trial * trials <= self.seconds

    def summary(self, trials: int, stopped: bool) -> dict[str, Any]:
        """What the sweep says at its end (SweepOutcome.time_budget): the budget, the trials this invocation ran,
        how long it took, whether the budget stopped it and the trial time it predicted."""
        return {"seconds": self.seconds, "trials": trials, "elapsed_seconds": round(self.elapsed(), 1),
                "stopped": stopped, "trial_seconds": self.trial_seconds(), "measured": self.measured}


def planned_trial_seconds(spec: Any, space: Any, runner: Any, trial_config: Callable[..., Any],
                          note: Callable[[str], None]) -> float | None:
    """One trial's wall time as the planner predicts it (harness.search.planning.plan_sweep: steps x predicted
    step time + a stated overhead, mean over the space's config shapes, fitted to the memory budget if any), its
    probes run in `runner`'s worker, the configs built by `trial_config` (harness.search.preparing's); None, with
    a warning, when a probe fails (the budget then stops only when no time is left, until a trial has finished)."""
    from harness.search.runner import ProbeFailed

    try:
        plan = plan_sweep(spec, space, spec.train.max_memory_mb, runner.predictor(), trial_config)
    except ProbeFailed as failed:
        note(f"warning: --time-budget has no prediction of a trial's time ({failed}); trials start while time is "
             "left until one has finished")
        return None
    note(f"time budget: one trial predicted at ~{minutes(plan['estimated_trial_seconds'])} (the planner's, in "
         f"{plan['planning_seconds']:.0f} s) until one has finished")
    return float(plan["estimated_trial_seconds"])


def minutes(seconds: float) -> str:
    """`12.5 min`, or `40 s` under a minute."""
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def stop_note(budget: TimeBudget, trials: int, ran: int) -> str:
    """The progress line when the budget stops the sweep before `trials` more trials would start."""
    per_trial = budget.trial_seconds()
    what = f"the next {'pack of ' + str(trials) + ' trials' if trials > 1 else 'trial'}"
    if per_trial is None:
        why = f"no time is left of the budget of {minutes(budget.seconds)}"
    else:
        source = "measured mean" if budget.measured else "planner's prediction"
        why = (f"{what} (~{minutes(per_trial * trials)}, the {source}) would end past the budget of "
               f"{minutes(budget.seconds)} ({minutes(max(0.0, budget.seconds - budget.elapsed()))} left)")
    return f"time budget: stopping after {ran} trial{'s' if ran != 1 else ''} in {minutes(budget.elapsed())}: {why}"


def end_line(summary: dict[str, Any]) -> str:
    """The line `harness sweep` ends with under a budget: trials run, time taken, and what stopped it."""
    ran = summary["trials"]
    head = (f"time budget {minutes(summary['seconds'])}: {ran} trial{'s' if ran != 1 else ''} ran within it in "
            f"{minutes(summary['elapsed_seconds'])}")
    if not summary["stopped"]:
        return head + " (every trial asked for)"
    if summary["trial_seconds"] is None:
        return head + "; the budget stopped the sweep (no time left)"
    source = "measured" if summary["measured"] else "predicted"
    return (head + f"; the budget stopped the sweep: one more trial (~{minutes(summary['trial_seconds'])}, "
            f"{source}) would have ended past it; run the same command again to go on")
