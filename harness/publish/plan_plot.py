"""The planner checked against the trials: predicted against measured peak memory and seconds per optimizer step.

A trial that ran under a memory budget (`--max-memory-mb`) carries the planner's prediction
(`predicted_peak_memory_mb`, `predicted_step_seconds`, harness.search.planning) beside what it measured. The
prediction of the training peak is set against `train_peak_memory_mb` (the whole trial's peak where a trial
recorded no training peak of its own), that of the final evaluation (`predicted_eval_peak_memory_mb`) against
`eval_peak_memory_mb`. Errors are relative: (predicted - measured) / measured.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from harness.publish.plots import legend_outside, mode_color, mode_label, modes_in, pyplot, save_figure
from harness.search.readout import StudyView, TrialRow

MEMORY_GOAL = 0.15
"""Issue 40's goal for peak memory on a CPU: within +-15% of the measured peak (resident memory)."""
STEP_GOAL = 0.20
"""Issue 40's goal for the step time: within +-20%."""


@dataclass(frozen=True)
class PredictionCheck:
    """One quantity's predictions against measurements over a study's completed trials."""

    name: str
    """`peak memory`, `evaluation peak` or `s/step`."""
    points: tuple[tuple[TrialRow, float, float], ...]
    """(trial, predicted, measured), measured > 0."""
    goal: float
    """The relative error the prediction should stay within."""

    @property
    def errors(self) -> list[float]:
        return [(predicted - measured) / measured for _, predicted, measured in self.points]

    @property
    def within_goal(self) -> int:
        return sum(abs(error) <= self.goal for error in self.errors)

    def summary(self) -> str:
        """One line: how many within the goal, the median and worst relative error."""
        errors = self.errors
        worst = max(errors, key=abs)
        return (f"{self.name}: {self.within_goal} of {len(errors)} trials within ±{self.goal:.0%}; median error "
                f"{statistics.median(errors):+.1%}, worst {worst:+.1%}")


def measured_train_peak(row: TrialRow) -> float | None:
    return row.metric("train_peak_memory_mb") or row.metric("peak_memory_mb")


def prediction_checks(view: StudyView) -> list[PredictionCheck]:
    """Peak memory and s/step, each over the completed trials that recorded both a prediction and a measurement
    (none: an empty list). Packed trials are left out: their peak is the pack's, their prediction one config's."""
    rows = [r for r in view.completed() if r.pack_size == 1]
    checks = []
    for name, predicted_key, measure, goal in (
            ("peak memory", "predicted_peak_memory_mb", measured_train_peak, MEMORY_GOAL),
            ("evaluation peak", "predicted_eval_peak_memory_mb", lambda row: row.metric("eval_peak_memory_mb"),
             MEMORY_GOAL),
            ("s/step", "predicted_step_seconds", lambda row: row.seconds_per_step, STEP_GOAL)):
        points = []
        for row in rows:
            predicted, measured = row.metric(predicted_key), measure(row)
            if predicted is not None and measured:
                points.append((row, predicted, measured))
        if points:
            checks.append(PredictionCheck(name, tuple(points), goal))
    return checks


def plot_prediction(view: StudyView, path: Path) -> str | None:
    """Predicted (x) against measured (y), one panel per quantity, coloured by quantization mode, with the line
    of a perfect prediction and the goal's band around it; the panel's title gives the error summary."""
    checks = prediction_checks(view)
    if not checks:
        return "no completed trial recorded a planner prediction (trials record one under --max-memory-mb)"
    plt = pyplot()
    fig, axes = plt.subplots(1, len(checks), figsize=(6.5 * len(checks), 5), squeeze=False)
    for ax, check in zip(axes[0], checks):
        for mode in modes_in([row for row, _, _ in check.points]):
            mine = [(p, m) for row, p, m in check.points if row.quantization == mode]
            ax.scatter(*zip(*mine), s=40, color=mode_color(mode), label=mode_label(mode, view), zorder=3)
        values = [v for _, p, m in check.points for v in (p, m)]
        low, high = min(values) * 0.8, max(values) * 1.2
        line = [low, high]
        ax.plot(line, line, color="black", linewidth=1, label="measured = predicted")
        ax.fill_between(line, [v / (1 + check.goal) for v in line], [v / (1 - check.goal) for v in line],
                        color="black", alpha=0.07, label=f"within ±{check.goal:.0%}")
        unit = "MiB" if check.name == "peak memory" else "s"
        ax.set(xlim=line, ylim=line, xlabel=f"predicted {check.name} ({unit})",
               ylabel=f"measured {check.name} ({unit})", title=check.summary())
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    legend_outside(axes[0][-1])
    save_figure(fig, path, view)
    return None


def prediction_section(view: StudyView) -> str:
    """The report's section on the planner: its figure and each quantity's summary line."""
    lines = "\n".join(f"- {check.summary()}" for check in prediction_checks(view))
    return "\n\n".join([
        "## Planner: predicted against measured", "![Planner: predicted against measured](prediction.png)",
        "Trials that ran under a memory budget carry the planner's prediction, made before the trial loaded "
        "anything, beside what they measured (the training peak: on a CPU the process's resident memory; "
        "seconds per optimizer step). The band is the planner's goal; a point above it was under-predicted.",
        lines])
