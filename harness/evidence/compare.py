"""LoRA vs QLoRA (or any categorical axis, `--by`): per group, what a study found about quality, memory and time.

Groups are quantization modes by default; `--by use_dora` (or several axes, `--by
init_lora_weights,use_dora`) groups by those axes' values instead (harness.evidence.grouping), each group
compared with the one at the axes' defaults exactly as modes are compared with 16-bit LoRA.

Reads a StudyView (the study alone). Quality claims rest on confirmation trials when there are any:
the best search trial of a mode was picked for being good, so its own value is biased (the
winner's curse); its confirmation re-runs with fresh seeds are not, and they carry the mean, spread
and confidence interval. A confirmation seed that diverged or failed counts against its config.
Intervals hold both noises: training (over seeds) and which examples were held out (a paired
bootstrap over the per-example scores). Configs confirmed on the same seeds (a seed fixes the data order
and the adapter initialisation: common random numbers) are compared seed by seed (paired t), beside the
unpaired Welch figures, with the ratio of the two widths; every comparison says whether it is resolved
at `--resolution` (harness.evidence.sequential) and, if not, about how many seeds would resolve it. One
table never mixes devices. Without confirmation the report says the numbers are single trials.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from harness.search.edges import study_edge_warnings
from harness.evidence.grouping import BY_MODE, Grouping, grouping
from harness.trial.quantization import mode_label
from harness.search.readout import (SEQUENTIAL_ATTR, StudyView, TrialRow, alone_rows, merge_sequential,
                                    packed_note, small_eval_note)
from harness.config.errors import SpecError
from harness.config.model import QUANTIZATION_MODES
from harness.evidence.sequential import METHOD, judge, look, look_level, parse_resolution
from harness.evidence.stats import (Difference, Summary, combined_difference, examples_half, mean_examples,
                                    paired_bootstrap_half, summarize)

REFERENCE = "none"
"""The mode every other mode is compared with: LoRA on the unquantized base."""


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
    """Over the completed confirmation trials only (None before any completed)."""
    task_metric: Summary | None
    values: tuple[float, ...] = ()
    statuses: tuple[str, ...] = ()
    """The status of every finished confirmation run (complete, diverged, failed, oom, pruned)."""
    runs: tuple[TrialRow, ...] = ()
    """The completed confirmation runs."""

    @property
    def diverged(self) -> int:
        return sum(s == "diverged" for s in self.statuses)

    @property
    def failed(self) -> int:
        return sum(s in ("failed", "oom", "pruned") for s in self.statuses)

    def against(self) -> str | None:
        """"1 of 3 seeds diverged" (and failed ones), or None when every seed completed."""
        parts = [f"{n} of {len(self.statuses)} seeds {word}" for n, word in ((self.diverged, "diverged"),
                                                                           (self.failed, "failed")) if n]
        return "; ".join(parts) or None


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
    """Median over completed trials of the larger of the training and eval peaks. CUDA: max allocated;
    CPU: peak resident memory of the trial process."""
    weights_mb: float | None
    """Memory of the base model's weights in this mode."""
    seconds_per_step: float | None
    tokens_per_second: float | None
    confirmed: ConfirmedConfig | None = None
    diverged: int = 0
    train_peak_mb: float | None = None
    eval_peak_mb: float | None = None
    weights: dict[str, Any] = field(default_factory=dict)
    """The weight-memory breakdown (weights.weight_breakdown) of this mode's base model."""
    untuned: float | None = None
    """The untuned base model's objective in this mode (the cost of quantizing, before any training)."""
    untuned_missing: str | None = None
    compute_dtype: str | None = None
    best_params: dict[str, Any] | None = None
    """The params of the group's best search trial."""
    name: str | None = None
    """The group's label when grouped by other axes than quantization (Grouping.label)."""

    def quality(self) -> float | None:
        """The confirmed mean when there is one, else the best single trial."""
        if self.confirmed is not None and self.confirmed.objective is not None:
            return self.confirmed.objective.mean
        return self.best

    @property
    def label(self) -> str:
        return self.name or mode_label(self.mode, self.compute_dtype)


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
    """Per mode vs the reference: the objective difference (relative, with CI) and memory/time ratios."""
    notes: list[str] = field(default_factory=list)
    setup: list[str] = field(default_factory=list)
    """What the numbers are about: model and source precision, device, budget, dtype, optimizer, eval set."""
    costs: list[str] = field(default_factory=list)
    """Per mode: the quantization cost before training and how much of it LoRA recovered."""
    device: str | None = None
    edge_warnings: list[str] = field(default_factory=list)
    """Each mode's best config shown whose value of a numeric axis lies at the edge of the searched range
    (harness.search.edges), naming the modes it holds for."""
    by: tuple[str, ...] = BY_MODE
    """The axes the trials are grouped by (`modes` are their groups)."""
    reference: str = REFERENCE
    """The key of the group every other group is compared with."""
    leader: dict[str, Any] | None = None
    """The best group against the runner-up (both confirmed on shared seeds): paired_against's fields plus
    `top` and `runner_up` (group keys) and a `headline`."""
    resolution: str = "1%"
    """A comparison is resolved when its interval excludes zero or is at most this wide on each side (a
    percent of the reference, or the objective's units)."""
    max_seeds: int | None = None
    """Set by sequential confirmation: paired intervals are at the look's level (harness.evidence.sequential),
    not a fixed 95%."""

    @property
    def by_mode(self) -> bool:
        """Grouped by quantization mode: the LoRA vs QLoRA comparison."""
        return tuple(self.by) == BY_MODE

    @property
    def title(self) -> str:
        """`LoRA vs QLoRA`, or `Compared by <axes>`: the heading of comparison.md and of the report's section."""
        return "LoRA vs QLoRA" if self.by_mode else f"Compared by {', '.join(self.by)}"

    def to_dict(self) -> dict[str, Any]:
        data = {"study": self.study, "objective": self.objective,
                "direction": "minimize" if self.minimize else "maximize", "task_metric": self.task_metric,
                "device": self.device, "by": list(self.by), "reference": self.reference, "setup": self.setup,
                "resolution": self.resolution, "sequential": {"max_seeds": self.max_seeds, "method": METHOD}
                if self.max_seeds else None,
                "baseline": self.baseline, "headlines": self.headlines, "quantization_costs": self.costs,
                "notes": self.notes, "edge_warnings": self.edge_warnings, "top_vs_runner_up": self.leader,
                "modes": [_mode_dict(m) for m in self.modes], "vs_reference": self.differences}
        if self.by_mode:
            data["vs_16bit"] = self.differences  # the name it always had
        return data


def build_comparison(view: StudyView, device: str | None = None, by: Grouping | None = None,
                     resolution: str | None = None, max_seeds: int | None = None) -> Comparison:
    """Per-group summaries (quantization modes unless `by` says otherwise), confirmed configs and the headline
    of each group against the reference group, each saying whether it is resolved at `resolution` (default
    1%; `max_seeds`: the intervals of a sequential confirmation capped there; a study whose confirmations
    were added sequentially is always read at its looks' levels, harness.evidence.confirm.record_sequential).
    Trials of several devices are never mixed: name one with `device` (SpecError otherwise)."""
    by = by or grouping(None, view.sweep)
    # confirmations added sequentially: read at the looks' levels (a resolution given here wins)
    sequential = merge_sequential(view.attrs.get(SEQUENTIAL_ATTR), {"max_seeds": max_seeds, "resolution": resolution})
    if sequential:
        max_seeds, resolution = sequential["max_seeds"], resolution or sequential["resolution"]
    parse_resolution(resolution)
    view, device = _one_device(view, device)
    metric = view.task_metric
    modes = [_summarize_mode(view, key, metric, by) for key in _groups(view, by)]
    comparison = Comparison(view.name, view.objective, view.minimize, metric, modes, view.baseline("none"),
                            device=device, setup=_setup(view, device, modes, by), by=by.axes,
                            reference=by.reference, resolution=str(resolution or "1%"), max_seeds=max_seeds)
    reference = next((m for m in modes if m.mode == by.reference and m.quality() is not None), None)
    for mode in modes:
        if mode.mode != by.reference and mode.quality() is not None and reference is not None:
            comparison.differences[mode.mode] = _against(mode, reference, view, by, comparison)
            comparison.headlines.append(_headline(mode, reference, comparison.differences[mode.mode], view))
            cost = _cost_sentence(mode, reference, comparison.differences[mode.mode], view) if by.by_mode else None
            if cost:
                comparison.costs.append(cost)
    comparison.leader = _leader(modes, view, comparison)
    if comparison.leader is not None:
        comparison.headlines.append(comparison.leader["headline"])
    comparison.notes += _notes(view, modes, reference, by)
    comparison.edge_warnings = _edge_warnings(view, modes, by)
    return comparison


def _edge_warnings(view: StudyView, modes: list[ModeSummary], by: Grouping) -> list[str]:
    """Edge-of-range warnings for each mode's best config (the confirmed one when there is one), each
    line once with the modes whose best config it holds for."""
    found: dict[str, list[str]] = {}
    for mode in modes:
        params = mode.confirmed.params if mode.confirmed else next(
            (r.params for r in _evidence_rows(mode, view, by)), None)
        for line in study_edge_warnings(view, params) if params is not None else []:
            found.setdefault(line, []).append(mode.label)
    joiner = "; " if any(", " in label for label in (one for labels in found.values() for one in labels)) else ", "
    return [f"{line} (best config of {joiner.join(labels)})" for line, labels in found.items()]


def _one_device(view: StudyView, device: str | None) -> tuple[StudyView, str | None]:
    devices = view.devices()
    if device is not None:
        if device not in devices:
            raise SpecError(f"no finished trial of study {view.name!r} ran on {device!r} (devices: "
                            f"{', '.join(repr(d) for d in devices) or 'none'})")
        return view.on_device(device), device
    if len(devices) > 1:
        counts = ", ".join(f"{d!r}: {sum(r.device_name == d for r in view.rows if r.ran)} trials" for d in devices)
        raise SpecError(f"trials of study {view.name!r} ran on {len(devices)} devices ({counts}); memory and time "
                        "are not comparable across them: pass --device with one of these names")
    return view, devices[0] if devices else None


def _groups(view: StudyView, by: Grouping) -> list[str]:
    """The groups present, the reference first (quantization modes in their usual order)."""
    seen = {by.key(row.params) for row in view.rows}
    if by.by_mode:
        return [m for m in QUANTIZATION_MODES if m in seen] + sorted(seen - set(QUANTIZATION_MODES))
    return [k for k in [by.reference] if k in seen] + sorted(seen - {by.reference})


def _summarize_mode(view: StudyView, mode: str, metric: str | None, by: Grouping) -> ModeSummary:
    rows = [r for r in view.rows if by.key(r.params) == mode and r.finished]
    search = [r for r in rows if r.confirmation_of is None]
    done = [r for r in rows if r.state == "COMPLETE" and r.values is not None]
    objective = [r.values[0] for r in done if r.values]  # type: ignore[index]
    task = [v for v in (r.metric(metric) for r in done) if v is not None] if metric else []
    alone = alone_rows(done)  # memory and time: the runs that trained alone, when some trained in packs
    return ModeSummary(
        mode=mode, trials=len(rows), completed=len(done),
        pruned=sum(r.state == "PRUNED" and r.status != "diverged" for r in rows),
        failed=sum(r.state == "FAIL" and r.status != "oom" for r in rows), oom=sum(r.status == "oom" for r in rows),
        diverged=sum(r.status == "diverged" for r in rows),
        best=next(iter(view.ranked(objective, float)), None), median=_median(objective),
        best_task=max(task) if task else None, median_task=_median(task),
        peak_memory_mb=_median([r.metric("peak_memory_mb") for r in alone]),
        train_peak_mb=_median([r.metric("train_peak_memory_mb") for r in alone]),
        eval_peak_mb=_median([r.metric("eval_peak_memory_mb") for r in alone]),
        weights_mb=_median([r.metric("base_model_mb") for r in done]),
        weights=_weights(view, mode, done),
        seconds_per_step=_median([r.seconds_per_step for r in alone]),
        tokens_per_second=_median([r.metric("tokens_per_second") for r in alone]),
        confirmed=_confirmed(view, [r for r in search if r.state == "COMPLETE"], rows, metric),
        untuned=view.baseline(mode) if by.by_mode else None,
        untuned_missing=view.baseline_missing(mode) if by.by_mode else None,
        compute_dtype=next((str(r.result["compute_dtype"]) for r in done if r.result.get("compute_dtype")), None),
        best_params=next((r.params for r in view.ranked(r for r in done if r.confirmation_of is None)), None),
        name=None if by.by_mode else by.label(rows[0].params if rows else {}))


def _weights(view: StudyView, mode: str, done: list[TrialRow]) -> dict[str, Any]:
    """The breakdown recorded with the trials (identical for every trial of a mode), else the baseline's."""
    for row in done:
        if row.weights:
            return row.weights
    return view.baseline_weights(mode) if mode in view.baseline_modes() else {}


def _confirmed(view: StudyView, search: list[TrialRow], rows: list[TrialRow], metric: str | None
               ) -> ConfirmedConfig | None:
    """The best confirmed config of a mode: the search trial with re-runs whose mean is best."""
    candidates = []
    for source in search:
        runs = [r for r in rows if r.confirmation_of == source.number and not r.interrupted]
        if not runs:
            continue
        done = [r for r in runs if r.state == "COMPLETE" and r.values]
        values = tuple(r.values[0] for r in done)  # type: ignore[index]
        task = [v for v in (r.metric(metric) for r in done) if v is not None] if metric else []
        candidates.append(ConfirmedConfig(
            mode=source.quantization, source=source.number, params=source.params,
            source_value=source.values[0] if source.values else float("nan"),
            seeds=tuple(r.seed for r in runs if r.seed is not None), objective=summarize(values) if values else None,
            task_metric=summarize(task) if task else None, values=values,
            statuses=tuple(str(r.status or r.state.lower()) for r in runs), runs=tuple(done)))
    scored = [c for c in candidates if c.objective is not None]
    if not scored:
        return candidates[0] if candidates else None
    return view.ranked(scored, lambda c: c.objective.mean)[0]  # type: ignore[union-attr]


def _evidence_rows(mode: ModeSummary, view: StudyView, by: Grouping) -> list[TrialRow]:
    """The trials a mode's quality rests on: its completed confirmation runs, else its best trial."""
    if mode.confirmed is not None and mode.confirmed.runs:
        return list(mode.confirmed.runs)
    done = [r for r in view.rows if by.key(r.params) == mode.mode and r.confirmation_of is None
            and r.state == "COMPLETE" and r.values]
    return view.ranked(done)[:1]


def _values(mode: ModeSummary) -> list[float]:
    if mode.confirmed is not None and mode.confirmed.values:
        return list(mode.confirmed.values)
    return [mode.best] if mode.best is not None else []


def example_scores(per_example: dict[str, list[float]], objective: str) -> tuple[list[float], list[float]] | None:
    """(scores, weights) of the objective per held-out example, or None when it does not decompose:
    eval_loss is token-weighted, a task metric is a plain mean over the generated examples."""
    if objective == "eval_loss" and per_example.get("loss") and per_example.get("tokens"):
        return list(per_example["loss"]), [float(t) for t in per_example["tokens"]]
    if per_example.get(objective):
        values = list(per_example[objective])
        return values, [1.0] * len(values)
    return None


def eval_noise_half(a_rows: list[TrialRow], b_rows: list[TrialRow], objective: str) -> float | None:
    """Half-width of the paired bootstrap over held-out examples of a's score minus b's, each averaged over
    its runs (None when the per-example scores are not recorded or the eval sets differ)."""
    a, b = ([example_scores(r.per_example, objective) for r in rows] for rows in (a_rows, b_rows))
    return examples_half(mean_examples(a), mean_examples(b))


def _by_seed(mode: ModeSummary) -> dict[int, TrialRow]:
    """The completed confirmation runs of a group's confirmed config, by seed."""
    runs = mode.confirmed.runs if mode.confirmed is not None else ()
    return {r.seed: r for r in runs if r.seed is not None and r.values}


def paired_against(mode: ModeSummary, reference: ModeSummary, view: StudyView, resolution: str | None,
                   max_seeds: int | None = None) -> dict[str, Any] | None:
    """The paired comparison of two confirmed configs over the seeds both ran on (per-seed differences,
    plus the held-out bootstrap of the same seeds' per-example scores) and its verdict; None when they share
    fewer than two seeds (studies confirmed before seeds were shared)."""
    a, b = _by_seed(mode), _by_seed(reference)
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:  # one pair has no seed spread to measure: the unpaired figures say more
        return None
    half = eval_noise_half([a[s] for s in shared], [b[s] for s in shared], view.objective)
    values = {s: a[s].values[0] for s in shared}, {s: b[s].values[0] for s in shared}  # type: ignore[index]
    diff, verdict = look(*values, half, resolution, max_seeds)
    rel, low, high = diff.relative()
    scale = abs(diff.reference) or 1.0
    return {"diff": diff.diff, "relative": rel, "relative_ci": [low, high] if low is not None else None,
            "pairs": diff.pairs, "seeds": shared, "diff_std": diff.diff_std,
            "seed_half_relative": None if diff.seed_half is None else diff.seed_half / scale,
            "eval_noise_half_relative": None if diff.example_half is None else diff.example_half / scale,
            "confidence": look_level(len(shared), max_seeds),
            "verdict": verdict.to_dict(), "phrase": verdict.phrase(), "resolved": verdict.resolved}


def _leader(modes: list[ModeSummary], view: StudyView, comparison: Comparison) -> dict[str, Any] | None:
    """The confirmed group with the best mean against the next best, paired over their shared seeds."""
    confirmed = [m for m in modes if m.confirmed is not None and m.confirmed.objective is not None]
    if len(confirmed) < 2:
        return None
    top, runner = view.ranked(confirmed, lambda m: m.quality())[:2]
    pair = paired_against(runner, top, view, comparison.resolution, comparison.max_seeds)
    if pair is None:
        return None
    low, high = (100 * v for v in pair["relative_ci"]) if pair["relative_ci"] else (float("nan"),) * 2
    level = f"{100 * pair['confidence']:.1f}".rstrip("0").rstrip(".")
    headline = (f"best group: {top.label}, ahead of {runner.label} by {100 * abs(pair['relative']):.1f}% "
                f"({level}% CI of the runner-up's difference {low:+.1f}% to {high:+.1f}%, paired over {pair['pairs']} "
                f"seeds); {pair['phrase']}.")
    return {**pair, "top": top.mode, "runner_up": runner.mode, "headline": headline}


def _unpaired_verdict(diff: Difference, resolution: str | None, seeds: int) -> dict[str, Any]:
    """Resolved or not from the unpaired (Welch) interval, for configs not confirmed on shared seeds."""
    verdict = judge(diff, resolution, seeds)
    phrase = verdict.phrase()
    if not verdict.resolved and verdict.kind != "unknown" and not verdict.floor:
        phrase = phrase.split(":")[0] + " (unpaired: confirm both on the same seeds, `--confirm-seeds`, to pair " \
                                        "them and estimate the seeds needed)"
    return {"verdict": verdict.to_dict(), "phrase": phrase, "resolved": verdict.resolved}


def _against(mode: ModeSummary, reference: ModeSummary, view: StudyView, by: Grouping,
             comparison: Comparison) -> dict[str, Any]:
    half = eval_noise_half(_evidence_rows(mode, view, by), _evidence_rows(reference, view, by), view.objective)
    diff: Difference = combined_difference(_values(mode), _values(reference), half)
    rel, low, high = diff.relative()
    scale = abs(diff.reference) or 1.0
    pair = (paired_against(mode, reference, view, comparison.resolution, comparison.max_seeds)
            if mode.confirmed and reference.confirmed else None)
    if pair is not None and pair["relative_ci"] and low is not None and pair["relative_ci"][1] > pair["relative_ci"][0]:
        pair["width_ratio"] = (high - low) / (pair["relative_ci"][1] - pair["relative_ci"][0])
    unpaired = _unpaired_verdict(diff, comparison.resolution, len(_values(mode)))
    return {"objective_diff": diff.diff, "relative": rel, "relative_ci95": [low, high] if low is not None else None,
            "analysis": "paired" if pair is not None else "welch", "paired": pair, "unpaired": unpaired,
            "resolved": (pair or unpaired)["resolved"],
            "seed_half_relative": None if diff.seed_half is None else diff.seed_half / scale,
            "eval_noise_half_relative": None if diff.example_half is None else diff.example_half / scale,
            "distinguishable": diff.distinguishable, "confirmed": bool(mode.confirmed and reference.confirmed),
            "better": (diff.diff < 0) == view.minimize and diff.diff != 0,
            "peak_memory_ratio": _ratio(mode.peak_memory_mb, reference.peak_memory_mb),
            "weights_ratio": _ratio(mode.weights_mb, reference.weights_mb),
            "time_ratio": _ratio(mode.seconds_per_step, reference.seconds_per_step),
            "untuned_diff": (None if mode.untuned is None or reference.untuned is None
                             else mode.untuned - reference.untuned),
            "untuned_eval_noise_half": _untuned_half(mode.mode, view) if by.by_mode else None}


def _untuned_half(mode: str, view: StudyView) -> float | None:
    a = example_scores(view.baseline_per_example(mode), view.objective)
    b = example_scores(view.baseline_per_example(REFERENCE), view.objective)
    if a is None or b is None or len(a[0]) != len(b[0]):
        return None
    return paired_bootstrap_half(a[0], b[0], a[1])


def _headline(mode: ModeSummary, reference: ModeSummary, d: dict[str, Any], view: StudyView) -> str:
    name, ref, rel = mode.label, reference.label, abs(d["relative"]) * 100
    pair = d.get("paired")
    if pair is not None:
        rel = abs(pair["relative"]) * 100
    better = (pair["diff"] < 0) == view.minimize if pair is not None else d["better"]
    quality = (f"{view.objective} {'better' if better else 'worse'} by {rel:.1f}%" if rel >= 0.05
               else f"the same {view.objective}")
    quality += _interval_text(d)
    parts = [f"{name} reaches {quality} than {ref}" if rel >= 0.05 else f"{name} reaches {quality}"]
    if d["peak_memory_ratio"] is not None:
        memory = f"at {100 * d['peak_memory_ratio']:.0f}% of its peak memory"
        if d["weights_ratio"] is not None:
            memory += f" ({100 * d['weights_ratio']:.0f}% of its weight memory)"
        parts.append(memory)
    if d["time_ratio"] is not None:
        parts.append(f"and {d['time_ratio']:.2f}x its time per step")
    sentence = " ".join(parts)
    if not d["confirmed"]:
        return sentence + "; not resolved: single trials, unconfirmed."
    seeds = pair["pairs"] if pair is not None else (
        mode.confirmed.objective.n if mode.confirmed and mode.confirmed.objective else 0)
    against = [c.against() for c in (mode.confirmed, reference.confirmed) if c is not None and c.against()]
    verdict = (pair or d["unpaired"])["phrase"] + ("" if pair is not None else f" at {seeds} seeds")
    return f"{sentence}; {verdict}" + "".join(f" ({a})" for a in against) + "."


def _interval_text(d: dict[str, Any]) -> str:
    """` (95% CI -1.8% to +0.4%, paired over 3 seeds; unpaired -4.6% to +3.2%: 1.7x narrower)`, or the unpaired
    interval alone."""
    pair, unpaired = d.get("paired"), d["relative_ci95"]
    span = "{:+.1f}% to {:+.1f}%".format
    if pair is None or not pair["relative_ci"]:
        return f" (95% CI {span(*(100 * v for v in unpaired))})" if unpaired else ""
    level = f"{100 * pair['confidence']:.1f}".rstrip("0").rstrip(".")
    text = f" ({level}% CI {span(*(100 * v for v in pair['relative_ci']))}, paired over {pair['pairs']} seeds"
    if pair["confidence"] != 0.95:
        text += " (sequential: the look's level)"
    if unpaired:
        text += f"; unpaired 95% CI {span(*(100 * v for v in unpaired))}"
        if pair.get("width_ratio"):
            text += f": the pairing narrows it {pair['width_ratio']:.1f}x"
    return text + ")"


def _cost_sentence(mode: ModeSummary, reference: ModeSummary, d: dict[str, Any], view: StudyView) -> str | None:
    """What quantizing costs the untuned model, and how much of that gap remains after fine-tuning."""
    if d["untuned_diff"] is None:
        missing = mode.untuned_missing or reference.untuned_missing
        return f"{mode.label}: untuned baseline missing ({missing})" if missing else None
    before, after = d["untuned_diff"], d["objective_diff"]
    noise = d["untuned_eval_noise_half"]
    text = (f"{mode.label}: quantizing the untuned base changes {view.objective} by {before:+.4f}"
            + (f" (eval-set 95% CI ±{noise:.4f})" if noise is not None else "")
            + f"; after fine-tuning the gap to {reference.label} is {after:+.4f}")
    worse_before = before > 0 if view.minimize else before < 0
    if worse_before and abs(before) > (noise or 0.0):
        closed = 1 - after / before
        text += (f" (fine-tuning closed {100 * closed:.0f}% of it)" if closed <= 1 else
                 f" (fine-tuning closed all of it and {mode.label} ends ahead)")
    elif not worse_before or abs(before) <= (noise or 0.0):
        text += " (quantizing cost the untuned model nothing measurable on this eval set)"
    return text


def _setup(view: StudyView, device: str | None, modes: list[ModeSummary], by: Grouping) -> list[str]:
    source = view.source
    sweep = view.sweep
    dtype = next((m.compute_dtype for m in modes if m.compute_dtype), None)
    optimizer = next((r.result.get("optimizer") for r in view.rows if r.result.get("optimizer")), None)
    train = sweep.get("train") or {}
    lines = [f"Model: {source['label']}; source weights: {source.get('precision', 'not recorded')}.",
             f"Device: {device or 'not recorded'}; compute dtype {dtype or 'not recorded'}; optimizer "
             f"{optimizer or 'not recorded'} for every mode.",
             f"Budget: {sweep.get('max_steps', '?')} optimizer steps of {train.get('batch_size', '?')} x "
             f"{train.get('grad_accum', 1)} sequences per trial; data {sweep.get('data', '?')}; "
             f"{view.n_eval if view.n_eval is not None else '?'} held-out examples for every trial."]
    if not by.by_mode:
        quantized = sorted({r.quantization for r in view.rows if r.finished})
        reference = by.reference if len(by.axes) == 1 else f"{by.label({})} ({by.reference})"
        lines.append(f"Grouped by {by.name}; every group is compared with {reference}. Quantization of the "
                     f"trials: {', '.join(quantized) or 'none'}.")
    if source.get("four_bit_source"):
        lines.append("The source weights were already 4-bit: LoRA on the unquantized base is LoRA on 4-bit weights "
                     "stored in higher precision, and NF4/FP4 re-quantize weights that were 4-bit, so the differences "
                     "measure re-quantization error on top of the source's, not 16-bit vs 4-bit.")
    return lines


def _notes(view: StudyView, modes: list[ModeSummary], reference: ModeSummary | None, by: Grouping) -> list[str]:
    notes = []
    if reference is None and by.by_mode:
        notes.append("no completed LoRA trial on the unquantized base: modes are not compared against it")
    elif reference is None:
        notes.append(f"no completed trial at {by.label({})}: groups are not compared against it")
    if not any(m.confirmed for m in modes):
        flag = "" if by.by_mode else f" --by {','.join(by.axes)}"
        notes.append("unconfirmed: every number is a single trial (the best of a short sweep is partly "
                     f"luck); run `harness compare{flag} --confirm-seeds 3` to re-run each group's best config")
    for note in (small_eval_note(view.n_eval), packed_note(view.rows)):
        if note:
            notes.append(note)
    return notes


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _mode_dict(mode: ModeSummary) -> dict[str, Any]:
    data = {k: v for k, v in mode.__dict__.items() if k != "confirmed"}
    data["label"] = mode.label
    c = mode.confirmed
    data["confirmed"] = None if c is None else {
        "source_trial": c.source, "params": c.params, "source_value": c.source_value, "seeds": list(c.seeds),
        "objective": c.objective.to_dict() if c.objective else None,
        "task_metric": c.task_metric.to_dict() if c.task_metric else None, "values": list(c.values),
        "statuses": list(c.statuses), "diverged": c.diverged, "failed": c.failed}
    return data
