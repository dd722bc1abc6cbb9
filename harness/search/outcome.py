"""What a sweep hands back and what a trial leaves in the study: the sweep's outcome, the values told to
Optuna, a trial's status attrs and scalar result summary, and how fail-fast compares failure reasons."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.sweep import SweepSpec
from harness.search.exits import Interrupted
from harness.search.readout import baseline_of
from harness.trial.result import TrialResult


class SweepInterrupted(Interrupted):
    """Ctrl-C: the trial in flight was recorded as failed ("interrupted") and the study is resumable."""


@dataclass
class SweepOutcome:
    """What a finished sweep tells the CLI."""

    study: str
    out_dir: Path
    storage: str
    records: list[dict[str, Any]] = field(default_factory=list)
    study_attrs: dict[str, Any] = field(default_factory=dict)
    """The study's user attrs when the sweep ended (its untuned baselines among them)."""
    best: dict[str, Any] | None = None
    pareto: list[dict[str, Any]] = field(default_factory=list)
    """With several objectives: the Pareto-optimal trials (number, values, params)."""
    time_budget: dict[str, Any] | None = None
    """Under --time-budget: the budget, the trials this run ran, how long it took and whether the budget stopped
    it (harness.search.time_budget.TimeBudget.summary); None without a budget."""

    def baseline(self, metric: str, mode: str = "none") -> float | None:
        """The untuned base model's `metric` in a mode (readout.baseline_of), None when not scored."""
        return baseline_of(self.study_attrs, mode, metric)



def objective_values(spec: SweepSpec, result: TrialResult) -> list[float] | None:
    """The values to tell the study, or None when one is missing or not finite."""
    values = [result.metrics.get(name) if name in spec.task_objectives else getattr(result, name)
              for name in spec.objectives]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values]



def reason_kind(record: dict[str, Any]) -> str | None:
    """A failure's reason with numbers removed (so 'loss nan at step 3' and 'at step 5' match);
    None for a trial that completed or that the pruner stopped (not a failure)."""
    reason = record.get("error")
    if record["state"] == "COMPLETE" or not reason or reason.startswith("pruned at step"):
        return None
    return re.sub(r"[-+]?\d[\d.e+-]*", "#", reason)


RECORDED_ATTRS = ("confirmation_of", "training", "variant", "sequential")
"""A trial's enqueued user attrs its trials.jsonl record carries too (`harness import` rebuilds them)."""


def status_attrs(result: TrialResult) -> dict[str, str]:
    """A finished trial's user attrs `status` (complete, pruned, diverged, oom, failed) and, when it did not
    complete, `reason` (one line): plain strings, as optuna-dashboard shows them in its trial table."""
    return {"status": result.status, **({"reason": str(result.reason)} if result.reason is not None else {})}


def result_summary(result: TrialResult) -> dict[str, Any]:
    """The scalar results of a trial and its weight-memory breakdown, for the study's user attrs and W&B
    (per-example scores go to their own user attr, the history and samples to trials.jsonl)."""
    data = result.to_dict()
    data.pop("history", None)
    metrics = data.pop("metrics", {}) or {}
    kept = {k: data[k] for k in ("kept_16bit_modules", "kept_16bit_skip_modules") if data.get(k)}  # keep_16bit
    return {**{k: v for k, v in data.items() if not isinstance(v, (dict, list))}, **metrics,
            "weights": result.weights, **kept}

