"""LoRA vs QLoRA: per quantization mode, what a study found about quality, memory and time.

Reads a StudyView (the study alone). Quality claims rest on confirmation trials when there are any:
the best search trial of a mode was picked for being good, so its own value is biased (the
winner's curse); its confirmation re-runs with fresh seeds are not, and they carry the mean, spread
and confidence interval. Without confirmation the report says the numbers are single trials.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.readout import StudyView, TrialRow
from harness.spec import QUANTIZATION_MODES
from harness.stats import Difference, Summary, summarize, welch

REFERENCE = "none"
"""The mode every other mode is compared with: 16-bit LoRA."""
MODE_NAMES = {"none": "16-bit LoRA", "int8": "int8", "nf4": "nf4", "nf4-dq": "nf4-dq", "fp4": "fp4",
              "fp4-dq": "fp4-dq"}


@dataclass(frozen=True)
class ConfirmedConfig:
    """The best config of one mode and its confirmation re-runs (fresh seeds, same params)."""

    mode: str
    source: int
    """Number of the search trial whose params were confirmed."""
    params: dict[str, Any]
    source_value: float
    seeds: tuple[int, ...]
    objective: Summary | None
    """Over the confirmation trials only (None before any completed)."""
    task_metric: Summary | None
    values: tuple[float, ...] = ()


@dataclass(frozen=True)
class ModeSummary:
    """One row of the comparison table."""

    mode: str
    trials: int
    completed: int
    pruned: int
    failed: int
    oom: int
    best: float | None
    median: float | None
    best_task: float | None
    median_task: float | None
    peak_memory_mb: float | None
    """Median over completed trials. CUDA: max allocated; CPU: peak resident memory of the trial process."""
    weights_mb: float | None
    """Memory of the base model's weights in this mode."""
    seconds_per_step: float | None
    tokens_per_second: float | None
    confirmed: ConfirmedConfig | None = None

    def quality(self) -> float | None:
        """The confirmed mean when there is one, else the best single trial."""
        if self.confirmed is not None and self.confirmed.objective is not None:
            return self.confirmed.objective.mean
        return self.best


@dataclass
class Comparison:
    """What `harness compare` writes: per-mode rows, confirmed configs and headline sentences."""

    study: str
    objective: str
    minimize: bool
    task_metric: str | None
    modes: list[ModeSummary]
    baseline: float | None
    headlines: list[str] = field(default_factory=list)
    differences: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per mode vs 16-bit LoRA: the objective difference (relative, with CI) and memory/time ratios."""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "objective": self.objective,
                "direction": "minimize" if self.minimize else "maximize", "task_metric": self.task_metric,
                "baseline": self.baseline, "headlines": self.headlines, "notes": self.notes,
                "modes": [_mode_dict(m) for m in self.modes], "vs_16bit": self.differences}


def build_comparison(view: StudyView) -> Comparison:
    """Per-mode summaries, confirmed configs and the headline of each mode against 16-bit LoRA."""
    metric = view.task_metric
    modes = [_summarize_mode(view, mode, metric) for mode in _modes(view)]
    baseline = view.baseline_eval_loss if view.objective == "eval_loss" else view.baseline_metrics.get(view.objective)
    comparison = Comparison(view.name, view.objective, view.minimize, metric, modes, baseline)
    reference = next((m for m in modes if m.mode == REFERENCE and m.quality() is not None), None)
    for mode in modes:
        if mode.mode != REFERENCE and mode.quality() is not None and reference is not None:
            comparison.differences[mode.mode] = _against(mode, reference, view)
            comparison.headlines.append(_headline(mode, reference, comparison.differences[mode.mode], view))
    if reference is None:
        comparison.notes.append("no completed 16-bit LoRA trial: modes are not compared against it")
    if not any(m.confirmed for m in modes):
        comparison.notes.append("unconfirmed: every number is a single trial (the best of a short sweep is partly "
                                "luck); run `harness compare --confirm-seeds 3` to re-run each mode's best config")
    return comparison


def _modes(view: StudyView) -> list[str]:
    seen = {row.quantization for row in view.rows}
    return [m for m in QUANTIZATION_MODES if m in seen] + sorted(seen - set(QUANTIZATION_MODES))


def _summarize_mode(view: StudyView, mode: str, metric: str | None) -> ModeSummary:
    rows = [r for r in view.rows if r.quantization == mode and r.finished]
    search = [r for r in rows if r.confirmation_of is None]
    done = [r for r in rows if r.state == "COMPLETE" and r.values is not None]
    objective = [r.values[0] for r in done if r.values]  # type: ignore[index]
    task = [v for v in (r.metric(metric) for r in done) if v is not None] if metric else []
    pick = min if view.minimize else max
    return ModeSummary(
        mode=mode, trials=len(rows), completed=len(done), pruned=sum(r.state == "PRUNED" for r in rows),
        failed=sum(r.state == "FAIL" and r.status != "oom" for r in rows), oom=sum(r.status == "oom" for r in rows),
        best=pick(objective) if objective else None, median=_median(objective),
        best_task=max(task) if task else None, median_task=_median(task),
        peak_memory_mb=_median([r.metric("peak_memory_mb") for r in done]),
        weights_mb=_median([r.metric("base_model_mb") for r in done]),
        seconds_per_step=_median([r.seconds_per_step for r in done]),
        tokens_per_second=_median([r.metric("tokens_per_second") for r in done]),
        confirmed=_confirmed(view, [r for r in search if r.state == "COMPLETE"], rows, metric))


def _confirmed(view: StudyView, search: list[TrialRow], rows: list[TrialRow], metric: str | None
               ) -> ConfirmedConfig | None:
    """The best confirmed config of a mode: the search trial with re-runs whose mean is best."""
    candidates = []
    for source in search:
        runs = [r for r in rows if r.confirmation_of == source.number]
        if not runs:
            continue
        done = [r for r in runs if r.state == "COMPLETE" and r.values]
        values = tuple(r.values[0] for r in done)  # type: ignore[index]
        task = [v for v in (r.metric(metric) for r in done) if v is not None] if metric else []
        candidates.append(ConfirmedConfig(
            mode=source.quantization, source=source.number, params=source.params,
            source_value=source.values[0] if source.values else float("nan"),
            seeds=tuple(r.seed for r in runs if r.seed is not None), objective=summarize(values) if values else None,
            task_metric=summarize(task) if task else None, values=values))
    scored = [c for c in candidates if c.objective is not None]
    if not scored:
        return candidates[0] if candidates else None
    sign = 1 if view.minimize else -1
    return min(scored, key=lambda c: sign * c.objective.mean)  # type: ignore[union-attr]


def _values(mode: ModeSummary) -> list[float]:
    if mode.confirmed is not None and mode.confirmed.values:
        return list(mode.confirmed.values)
    return [mode.best] if mode.best is not None else []


def _against(mode: ModeSummary, reference: ModeSummary, view: StudyView) -> dict[str, Any]:
    diff: Difference = welch(_values(mode), _values(reference))
    rel, low, high = diff.relative()
    return {"objective_diff": diff.diff, "relative": rel, "relative_ci95": [low, high] if low is not None else None,
            "distinguishable": diff.distinguishable, "confirmed": bool(mode.confirmed and reference.confirmed),
            "better": (diff.diff < 0) == view.minimize and diff.diff != 0,
            "peak_memory_ratio": _ratio(mode.peak_memory_mb, reference.peak_memory_mb),
            "weights_ratio": _ratio(mode.weights_mb, reference.weights_mb),
            "time_ratio": _ratio(mode.seconds_per_step, reference.seconds_per_step)}


def _headline(mode: ModeSummary, reference: ModeSummary, d: dict[str, Any], view: StudyView) -> str:
    name, rel = MODE_NAMES.get(mode.mode, mode.mode), abs(d["relative"]) * 100
    quality = (f"{view.objective} {'better' if d['better'] else 'worse'} by {rel:.1f}%" if rel >= 0.05
               else f"the same {view.objective}")
    if d["relative_ci95"]:
        low, high = (100 * v for v in d["relative_ci95"])
        quality += f" (95% CI {low:+.1f}% to {high:+.1f}%)"
    parts = [f"{name} reaches {quality} than 16-bit LoRA" if rel >= 0.05 else f"{name} reaches {quality}"]
    if d["peak_memory_ratio"] is not None:
        memory = f"at {100 * d['peak_memory_ratio']:.0f}% of its peak memory"
        if d["weights_ratio"] is not None:
            memory += f" ({100 * d['weights_ratio']:.0f}% of its weight memory)"
        parts.append(memory)
    if d["time_ratio"] is not None:
        parts.append(f"and {d['time_ratio']:.2f}x its time per step")
    sentence = " ".join(parts)
    if not d["confirmed"]:
        return sentence + "; single trials, unconfirmed."
    seeds = mode.confirmed.objective.n if mode.confirmed and mode.confirmed.objective else 0
    verdict = ("not distinguishable from 16-bit LoRA" if d["distinguishable"] is False
               else "a real difference" if d["distinguishable"] else "too few seeds to tell")
    return f"{sentence}; {verdict} at {seeds} seeds."


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _mode_dict(mode: ModeSummary) -> dict[str, Any]:
    data = {k: v for k, v in mode.__dict__.items() if k != "confirmed"}
    c = mode.confirmed
    data["confirmed"] = None if c is None else {
        "source_trial": c.source, "params": c.params, "source_value": c.source_value, "seeds": list(c.seeds),
        "objective": c.objective.to_dict() if c.objective else None,
        "task_metric": c.task_metric.to_dict() if c.task_metric else None, "values": list(c.values)}
    return data


def comparison_markdown(c: Comparison) -> str:
    """The comparison table and headlines as markdown (report.md embeds it too)."""
    arrow = "lower is better" if c.minimize else "higher is better"
    task = c.task_metric or "task metric"
    lines = [f"Objective: `{c.objective}` ({arrow}). Memory: peak during the trial (CUDA: max allocated; "
             "CPU: peak resident memory of the trial process); weights: the base model's weights in that mode.", ""]
    lines += [f"- {h}" for h in c.headlines] + ([""] if c.headlines else [])
    header = ["mode", "trials", "done", "pruned", "failed", "oom", f"best {c.objective}", "median",
              f"confirmed mean ± std (n)", f"best {task}", "peak MiB", "weights MiB", "s/step", "tokens/s"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in c.modes:
        lines.append("| " + " | ".join([
            MODE_NAMES.get(m.mode, m.mode), str(m.trials), str(m.completed), str(m.pruned), str(m.failed),
            str(m.oom), _fmt(m.best, 4), _fmt(m.median, 4), _confirmed_cell(m), _fmt(m.best_task, 3),
            _fmt(m.peak_memory_mb, 0), _fmt(m.weights_mb, 0), _fmt(m.seconds_per_step, 2),
            _fmt(m.tokens_per_second, 0)]) + " |")
    if c.baseline is not None:
        lines += ["", f"Untuned base model: {c.objective} {c.baseline:.4f}."]
    lines += [""] + [f"Note: {n}" for n in c.notes]
    return "\n".join(lines).rstrip() + "\n"


def _confirmed_cell(m: ModeSummary) -> str:
    s = m.confirmed.objective if m.confirmed else None
    if s is None:
        return "-"
    spread = f" ± {s.std:.4f}" if s.std is not None else ""
    return f"{s.mean:.4f}{spread} ({s.n}, trial #{m.confirmed.source})"  # type: ignore[union-attr]


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_comparison(c: Comparison, out_dir: Path) -> tuple[Path, Path]:
    """`comparison.md` and `comparison.json` under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "comparison.md", out_dir / "comparison.json"
    md.write_text(f"# LoRA vs QLoRA: study {c.study}\n\n" + comparison_markdown(c))
    js.write_text(json.dumps(c.to_dict(), indent=2, default=str) + "\n")
    return md, js
