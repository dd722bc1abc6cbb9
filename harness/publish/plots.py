"""The figures of a study report: one PNG per function, drawn with matplotlib's Agg backend.

Each `plot_*` function writes its PNG and returns None, or writes nothing and returns a one-line
reason why the figure was skipped (the report lists it). Colours are fixed per quantization mode,
so a mode looks the same in every figure of every report. Units: eval loss in nats per token,
memory in MiB (2**20 bytes), time in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.trial import quantization
from harness.search.readout import StudyView, TrialRow
from harness.config.objectives import TASK_METRICS

DPI = 110
"""Dots per inch of every saved PNG (a 9 x 5 inch figure is about 1000 x 550 pixels)."""

MODE_COLORS: dict[str, str] = {"none": "#1f77b4", "int8": "#ff7f0e", "nf4": "#2ca02c", "nf4-dq": "#17becf",
                               "fp4": "#d62728", "fp4-dq": "#9467bd"}
OTHER_COLOR = "#7f7f7f"
"""Colour of a mode this module does not know (a future one)."""

_UNITS: dict[str, str] = {"eval_loss": "nats per token", "train_loss": "nats per token",
                          "perplexity": "exp of nats per token", "peak_memory_mb": "MiB", "base_model_mb": "MiB",
                          "train_seconds": "s",
                          "tokens_per_second": "tokens/s", "learning_rate": "log scale"}
_NAMES: dict[str, str] = {"eval_loss": "eval loss", "train_loss": "training loss", "peak_memory_mb": "peak memory",
                          "base_model_mb": "base-model weights", "train_seconds": "train time",
                          "tokens_per_second": "throughput", "learning_rate": "learning rate",
                          "lora_alpha_ratio": "lora_alpha / lora_r"}
SLICE_PARAMS = ("learning_rate", "lora_r", "lora_alpha", "lora_dropout")
"""The parameters the slice figure shows, when they vary."""


def mode_label(mode: str, view: StudyView | None = None) -> str:
    """The legend name of a quantization mode (quantization.mode_label's long form; "none" says fp32 when
    the trials' base was fp32: a CPU without native bf16)."""
    return quantization.mode_label(mode, _compute_dtype(view) if view is not None else None, legend=True)


def _compute_dtype(view: StudyView) -> str | None:
    return next((str(r.result["compute_dtype"]) for r in view.rows if r.result.get("compute_dtype")), None)


def caption(view: StudyView) -> str:
    """What every figure is about: model and source precision, device, budget, seeds (STYLE 17)."""
    devices = view.devices()
    seeds = sorted({r.seed for r in view.rows if r.finished and r.seed is not None})
    source = view.source
    return (f"{source['label']}; {', '.join(devices) or 'device not recorded'}; "
            f"{view.sweep.get('max_steps', '?')} steps per trial; seeds {', '.join(map(str, seeds)) or '?'}; "
            f"{view.n_eval if view.n_eval is not None else '?'} held-out examples; intervals 95%")


def mode_color(mode: str) -> str:
    return MODE_COLORS.get(mode, OTHER_COLOR)


def axis_label(metric: str, minimize: bool | None = None) -> str:
    """A metric's axis label with its unit, e.g. "eval loss (nats per token, lower is better)"."""
    unit = _UNITS.get(metric) or ("score from 0 to 1" if metric in TASK_METRICS else "")
    hint = "" if minimize is None else ("lower is better" if minimize else "higher is better")
    inside = ", ".join(part for part in (unit, hint) if part)
    return f"{_NAMES.get(metric, metric)} ({inside})" if inside else _NAMES.get(metric, metric)


def row_value(row: TrialRow, objective: str) -> float | None:
    """The objective of a trial: its Optuna value, else its recorded result, else its last intermediate."""
    if row.values:
        return float(row.values[0])
    value = row.metric(objective)
    if value is None and row.intermediate and objective == "eval_loss":
        value = row.intermediate[max(row.intermediate)]
    return value if value is not None and math.isfinite(value) else None


def quality_metric(view: StudyView) -> tuple[str, bool]:
    """The quality axis of the memory figure and whether lower is better: the objective, unless the
    objective is itself a cost (memory, time, throughput), then eval loss."""
    if view.objective in ("peak_memory_mb", "train_seconds", "tokens_per_second"):
        return "eval_loss", True
    return view.objective, view.minimize


def modes_in(rows: Sequence[TrialRow]) -> list[str]:
    """The quantization modes present, in the canonical order (none, int8, nf4, ...)."""
    present = {r.quantization for r in rows}
    return [m for m in MODE_COLORS if m in present] + sorted(present - set(MODE_COLORS))


def varying_params(rows: Sequence[TrialRow], names: Sequence[str]) -> list[str]:
    """The names (in the given order) whose value differs between at least two rows."""
    return [n for n in names if len({repr(r.params.get(n)) for r in rows if n in r.params}) > 1]


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; set here, not at import, so importing harness never touches it
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, view: StudyView) -> None:
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.text(0.01, 0.01, caption(view), fontsize=7, color="#444444", ha="left", va="bottom")
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)


def legend_outside(ax: Any) -> None:
    """The legend to the right of the axes, where it can hide no data point."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _baseline_line(ax: Any, view: StudyView, metric: str, horizontal: bool = True) -> None:
    """The untuned base model as a dashed black line, and in each quantized mode of the study as a
    dotted line in that mode's colour (the cost of quantizing before any training)."""
    draw = ax.axhline if horizontal else ax.axvline
    value = view.baseline("none", metric)
    if value is not None:
        draw(value, color="black", linestyle="--", linewidth=1, label=f"untuned base model ({value:.5g})")
    for mode in modes_in(view.rows):
        quantized = view.baseline(mode, metric) if mode != "none" else None
        if quantized is not None:
            draw(quantized, color=mode_color(mode), linestyle=":", linewidth=1.2,
                 label=f"untuned, {mode} ({quantized:.5g})")


def plot_history(view: StudyView, path: Path) -> str | None:
    """Objective per trial number: completed trials as dots coloured by quantization, pruned ones as
    crosses at their last reported value, failed ones as black crosses along the bottom edge, the
    best-so-far as a step line and the untuned base model as a dashed line."""
    points = [(r, row_value(r, view.objective)) for r in view.rows if r.finished]
    if not any(v is not None for _, v in points):
        return "no finished trial has an objective value yet"
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 5))
    done = [(r, v) for r, v in points if r.state == "COMPLETE" and v is not None]
    for mode in modes_in([r for r, _ in done]):
        xs, ys = zip(*[(r.number, v) for r, v in done if r.quantization == mode])
        ax.scatter(xs, ys, s=36, color=mode_color(mode), label=mode_label(mode, view), zorder=3)
    _draw_pruned_and_failed(ax, points)
    _best_so_far(ax, done, view)
    _baseline_line(ax, view, view.objective)
    ax.set(title=f"Optimization history of study {view.name!r}", xlabel="trial number",
           ylabel=axis_label(view.objective, view.minimize))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    save_figure(fig, path, view)
    return None


def _draw_pruned_and_failed(ax: Any, points: list[tuple[TrialRow, float | None]]) -> None:
    pruned = [(r.number, v, mode_color(r.quantization)) for r, v in points if r.state == "PRUNED" and v is not None]
    if pruned:
        xs, ys, colors = zip(*pruned)
        ax.scatter(xs, ys, marker="x", s=36, color=colors, alpha=0.8, zorder=3)
        ax.scatter([], [], marker="x", s=36, color="#555555", label="pruned (last reported value)")
    failed = [r.number for r, v in points if r.state == "FAIL" or (r.state == "PRUNED" and v is None)]
    if failed:
        # x in data coordinates, y at the bottom edge of the axes: a failed trial has no value to plot.
        ax.scatter(failed, [0.02] * len(failed), marker="X", s=50, color="black", zorder=4,
                   transform=ax.get_xaxis_transform(), label="no value: failed or out of memory")


def _best_so_far(ax: Any, done: list[tuple[TrialRow, float]], view: StudyView) -> None:
    if not done:
        return
    ordered = sorted((r.number, v) for r, v in done)
    best: list[float] = []
    for _, value in ordered:
        best.append(value if not best else view.ranked((best[-1], value), float)[0])
    ax.step([n for n, _ in ordered], best, where="post", color="#444444", linewidth=1.5, label="best so far")


def plot_importance(importances: dict[str, float], view: StudyView, path: Path) -> None:
    """Horizontal bars of fANOVA importances (they sum to 1), the most important on top."""
    plt = pyplot()
    names = sorted(importances, key=importances.get)
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(names) + 1.6))
    bars = ax.barh([_NAMES.get(n, n) for n in names], [importances[n] for n in names], color="#4c72b0")
    ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=9)
    ax.set_xlim(0, max(1.0, max(importances.values()) * 1.15))
    objective = view.objective
    ax.set(title=f"Parameter importance for {_NAMES.get(objective, objective)} (fANOVA, seed 0)",
           xlabel="share of the objective's variance explained (importances sum to 1)")
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path, view)


def plot_params(view: StudyView, path: Path) -> str | None:
    """One subplot per varying numeric parameter (learning rate on a log axis, rank, alpha, dropout)
    against the objective of completed trials, coloured by quantization."""
    rows = view.completed()
    names = varying_params(rows, SLICE_PARAMS)
    if not names:
        return f"none of {', '.join(SLICE_PARAMS)} varies across the completed trials"
    plt = pyplot()
    cols = len(names) if len(names) <= 3 else 2  # four panels as 2 x 2, not one very wide row
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.8 * cols + 2.6, 3.6 * nrows + 0.6), sharey=True,
                             squeeze=False)
    for ax, name in zip(axes.flat, names):
        for mode in modes_in(rows):
            mine = [r for r in rows if r.quantization == mode and name in r.params]
            ax.scatter([float(r.params[name]) for r in mine], [row_value(r, view.objective) for r in mine],
                       s=36, color=mode_color(mode), label=mode_label(mode, view), alpha=0.85)
        if name == "learning_rate":
            ax.set_xscale("log")
        ax.set_xlabel(axis_label(name))
        ax.grid(alpha=0.3)
    for row_axes in axes:
        row_axes[0].set_ylabel(axis_label(view.objective, view.minimize))
    legend_outside(axes[0][-1])
    fig.suptitle("Effect of each varying parameter on the objective (completed trials)")
    save_figure(fig, path, view)
    return None


def plot_memory_quality(view: StudyView, path: Path) -> str | None:
    """Quality against peak memory (left) and against the base model's weight memory (right),
    coloured by quantization, each with its Pareto front (less memory and better quality) as a step
    line through circled points. On a CPU the peak is the whole trial process's resident memory,
    so the weight panel is where the quantization saving shows."""
    metric, minimize = quality_metric(view)
    panels = [(name, [(r, r.metric(name), _quality(r, view, metric)) for r in view.completed()])
              for name in ("peak_memory_mb", "base_model_mb")]
    panels = [(name, [(r, m, q) for r, m, q in pts if m is not None and q is not None]) for name, pts in panels]
    panels = [(name, pts) for name, pts in panels if pts]
    if not panels:
        return "no completed trial recorded both peak memory and " + _NAMES.get(metric, metric)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), squeeze=False)
    for ax, (name, points) in zip(axes[0], panels):
        for mode in modes_in([r for r, _, _ in points]):
            mine = [(m, q) for r, m, q in points if r.quantization == mode]
            ax.scatter(*zip(*mine), s=40, color=mode_color(mode), label=mode_label(mode, view), zorder=3)
        front = pareto_front([(m, q) for _, m, q in points], minimize)
        ax.step(*zip(*front), where="post", color="black", linewidth=1, zorder=2, label="Pareto front")
        ax.scatter(*zip(*front), s=160, facecolors="none", edgecolors="black", linewidths=1.2, zorder=4)
        what = "peak memory of the trial" if name == "peak_memory_mb" else "base-model weight memory"
        ax.set(title=f"Quality against {what}", xlabel=axis_label(name), ylabel=axis_label(metric, minimize))
        ax.grid(alpha=0.3)
    legend_outside(axes[0][-1])
    save_figure(fig, path, view)
    return None


def _quality(row: TrialRow, view: StudyView, metric: str) -> float | None:
    return row_value(row, metric) if metric == view.objective else row.metric(metric)


def pareto_front(points: Sequence[tuple[float, float]], minimize: bool) -> list[tuple[float, float]]:
    """The (memory, quality) points no other point beats on both, by increasing memory."""
    better: Callable[[float, float], bool] = (lambda a, b: a < b) if minimize else (lambda a, b: a > b)
    front: list[tuple[float, float]] = []
    for memory, quality in sorted(points, key=lambda p: (p[0], p[1] if minimize else -p[1])):
        if not front or better(quality, front[-1][1]):
            front.append((memory, quality))
    return front


def plot_curves(view: StudyView, path: Path) -> str | None:
    """Intermediate eval loss per step when any trial reported one (completed solid, pruned dashed),
    else the per-step training loss (lightly smoothed), coloured by quantization."""
    rows = [r for r in view.rows if r.finished]
    if shows_intermediate(view):
        curves = [(r, _eval_curve(r)) for r in rows if r.intermediate]
        metric, what = "eval_loss", "Intermediate eval loss during training (what the pruner saw)"
    else:
        curves = [(r, smooth(_train_losses(r))) for r in rows]
        curves = [(r, c) for r, c in curves if c]
        metric, what = "train_loss", "Training loss per step (exponential moving average, weight 0.3 on the new step)"
    if not curves:
        return "no trial recorded intermediate eval losses or per-step training losses"
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 5))
    many = len(curves) > 12  # then thin lines per trial and a thick mean per mode, or nothing reads
    for row, curve in curves:
        ax.plot(*zip(*curve), color=mode_color(row.quantization), alpha=0.25 if many else 0.8,
                linewidth=0.8 if many else 1.3, linestyle="-" if row.state == "COMPLETE" else "--")
    if many:
        _mode_means(ax, curves)
        what += "\nthin: one trial each; thick: the mean over each mode's completed trials"
    _curve_legend(ax, [r for r, _ in curves], view)
    if metric == "eval_loss":
        _baseline_line(ax, view, "eval_loss")
    ax.set(title=what, xlabel="optimizer step", ylabel=axis_label(metric, True))
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    legend_outside(ax)
    save_figure(fig, path, view)
    return None


def _mode_means(ax: Any, curves: list[tuple[TrialRow, list[tuple[float, float]]]]) -> None:
    """A thick line per mode: the mean of its completed trials' curves at every step they share."""
    for mode in modes_in([r for r, _ in curves]):
        mine = [dict(c) for r, c in curves if r.quantization == mode and r.state == "COMPLETE"]
        steps = sorted(set.intersection(*(set(c) for c in mine))) if mine else []
        if steps:
            ax.plot(steps, [sum(c[s] for c in mine) / len(mine) for s in steps], color=mode_color(mode),
                    linewidth=2.6, zorder=5)


def shows_intermediate(view: StudyView) -> bool:
    """Whether the curves figure shows intermediate eval losses (else training losses)."""
    return any(r.intermediate for r in view.rows if r.finished)


def _eval_curve(row: TrialRow) -> list[tuple[float, float]]:
    """Intermediate eval losses by step, ended with the final eval loss of a completed trial."""
    curve = [(float(step), value) for step, value in sorted(row.intermediate.items())]
    steps, final = row.metric("steps"), row.metric("eval_loss")
    if row.state == "COMPLETE" and steps is not None and final is not None and steps > curve[-1][0]:
        curve.append((steps, final))
    return curve


def _curve_legend(ax: Any, rows: list[TrialRow], view: StudyView) -> None:
    """Legend proxies: one colour per mode, one line style per state (not one entry per trial)."""
    for mode in modes_in(rows):
        ax.plot([], [], color=mode_color(mode), linewidth=2, label=mode_label(mode, view))
    if any(r.state == "PRUNED" for r in rows):
        ax.plot([], [], color="#444444", linestyle="-", label="completed trial")
        ax.plot([], [], color="#444444", linestyle="--", label="pruned or failed trial")


def _train_losses(row: TrialRow) -> list[tuple[float, float]]:
    return [(float(h["step"]), float(h["loss"])) for h in row.history
            if isinstance(h.get("loss"), (int, float)) and "step" in h and math.isfinite(h["loss"])]


def smooth(points: list[tuple[float, float]], weight: float = 0.3) -> list[tuple[float, float]]:
    """Exponential moving average of (step, value) points: new = weight * value + (1 - weight) * old."""
    out: list[tuple[float, float]] = []
    for step, value in points:
        out.append((step, value if not out else weight * value + (1 - weight) * out[-1][1]))
    return out


def _save_with_caption(fig: Any, path: Path, text: str) -> None:
    """Save a figure drawn from a report doc (no StudyView for `_save`) with its caption line underneath."""
    import textwrap

    fig.tight_layout(rect=(0, 0.07, 1, 1))
    width = max(60, int(fig.get_figwidth() * 19))  # about the characters of 7-point text across the figure
    fig.text(0.01, 0.01, textwrap.fill(text, width), fontsize=7, color="#444444", ha="left", va="bottom")
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)


def plot_validation(doc: dict[str, Any], path: Path) -> str | None:
    """Short vs long budget per validated config (harness.evidence.validation's doc): each config's short-budget mean
    (left) and long-budget mean (right) with 95% intervals over seeds, joined by a line (one colour per config,
    its quantization mode in the legend); published defaults the study never ran appear on the right only, as
    diamonds."""
    configs = [c for c in doc["configs"] if c["long"] or c["short"]]
    if not configs:
        return "no config has a completed run"
    plt = pyplot()
    colors = plt.get_cmap("tab10").colors
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for i, c in enumerate(configs):
        p = c["params"]
        label = (f"{c['source']}: {p.get('quantization')}, r {p.get('lora_r')}, alpha {float(p.get('lora_alpha', 0)):g}, "
                 f"lr {float(p.get('learning_rate', 0)):.2g}")
        xs, ys, errs = [], [], []
        for x, summary in ((0, c["short"]), (1, c["long"])):
            if summary:
                ci = summary.get("ci95")
                xs.append(x + (i - (len(configs) - 1) / 2) * 0.03)
                ys.append(summary["mean"])
                errs.append(0.0 if not ci else (ci[1] - ci[0]) / 2)
        ax.errorbar(xs, ys, yerr=errs, marker="o" if c["source"] == "search" else "D", capsize=3,
                    color=colors[i % len(colors)], label=label, linestyle="-" if len(xs) == 2 else "none")
    ax.set_xticks([0, 1], [f"{doc['short_steps']} steps (the study's trials)",
                           f"{doc['long_steps']} steps (validation, fresh runs)"])
    ax.set_xlim(-0.4, 1.4)
    ax.set_ylabel(axis_label(doc["objective"], doc["direction"] == "minimize"))
    ax.set_title("Does the short-budget ranking hold at the long budget? (95% intervals over seeds)")
    legend_outside(ax)
    caption_text = (f"{doc.get('model')} (source weights: {doc.get('source_precision')}); "
                    f"{', '.join(doc.get('devices') or []) or 'device not recorded'}; seeds "
                    f"{', '.join(map(str, doc.get('seeds') or [])) or '?'} at {doc['long_steps']} steps; "
                    f"{doc.get('held_out_examples')} held-out examples")
    _save_with_caption(fig, path, caption_text)
    return None


def plot_advice(doc: dict[str, Any], path: Path) -> str | None:
    """`harness advise` (harness.advise.advice's doc): per arm, the primary metric and (when scored and different) the
    lenient `contains_answer` beside it, each with its 95% interval over questions; grey the untuned model, blue
    the fine-tuned one; the failed-retrieval arms hatched."""
    metric, arms = doc["primary"], doc["arms"]
    if not arms:
        return "no arm was scored"
    shown = [metric] + [m for m in ("contains_answer",) if m in doc["metrics"] and m != metric]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 5.5))
    names = list(arms)
    colors = {"base": "#7f7f7f", "finetuned": "#1f77b4"}
    width = 0.8 / len(shown)
    for j, m in enumerate(shown):
        for x, name in enumerate(names):
            arm = arms[name]
            s = arm["metrics"][m]
            failed = arm["retrieval"] in ("empty", "wrong")
            at = x + (j - (len(shown) - 1) / 2) * width
            ax.bar(at, s["mean"], width * 0.95, color=colors.get(arm["model"], OTHER_COLOR),
                   alpha=(0.45 if failed else 0.9) * (1.0 if j == 0 else 0.55), hatch="//" if failed else None,
                   edgecolor="#333333", linestyle="-" if j == 0 else ":",
                   label=(m if x == 0 else None))
            ax.errorbar(at, s["mean"], yerr=[[s["mean"] - s["ci95"][0]], [s["ci95"][1] - s["mean"]]], color="black",
                        capsize=3)
            ax.text(at, s["ci95"][1] + 0.01, f"{s['mean']:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)), [n.replace(":", "\n") for n in names], fontsize=8)
    ax.set_ylabel("score from 0 to 1 (higher is better)")
    ax.set_ylim(0, max(1.0, max(a["metrics"][m]["ci95"][1] for a in arms.values() for m in shown) + 0.08))
    ax.set_title("Retrieval, fine-tuning or both? (grey: untuned model, blue: fine-tuned; hatched: retrieval failed)")
    if len(shown) > 1:
        ax.legend(title="left / right bar of each arm", fontsize=8, loc="upper left")
    ctx, retr = doc.get("context") or {}, doc.get("retriever") or {}
    _save_with_caption(fig, path, f"{ctx.get('model')} (source weights: {ctx.get('source_precision')}); "
                                  f"{ctx.get('device')}; {doc['questions']} held-out questions, greedy; "
                                  f"{retr.get('name')} top {retr.get('k')} of {retr.get('passages')} passages; 95% "
                                  "bootstrap intervals over questions")
    return None


def plot_lr_range(view: StudyView, path: Path) -> str | None:
    """The study's learning-rate range tests (--lr-range-test): smoothed training loss against the rate, one
    line per quantization mode (raw losses as faint dots), each mode's range shaded and the range the study
    searched between dashed lines."""
    record = view.attrs.get("lr_range_test")
    if not record or not any(entry.get("losses") for entry in record["modes"].values()):
        return "the study ran no learning-rate range test (harness sweep --lr-range-test)"
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 5))
    for mode, entry in record["modes"].items():
        if not entry.get("losses"):
            continue
        color = mode_color(mode)
        ax.scatter(entry["lrs"], entry["losses"], s=10, color=color, alpha=0.35)
        ax.plot(entry["lrs"], entry["smoothed"], color=color, linewidth=1.6, label=mode_label(mode, view))
        ax.axvspan(*entry["range"], color=color, alpha=0.08)
    for bound in record["range"]:
        ax.axvline(bound, color="black", linestyle="--", linewidth=1)
    low, high = record["range"]
    ax.set(xscale="log", xlabel="learning rate (rising every step)", ylabel=axis_label("train_loss", True),
           title=f"Learning-rate range test, {record['steps']} steps per mode: searched [{low:.3g}, {high:.3g}] "
                 f"of [{record['axis'][0]:.3g}, {record['axis'][1]:.3g}]")
    ax.grid(alpha=0.3)
    legend_outside(ax)
    save_figure(fig, path, view)
    return None


def plot_regret(doc: dict[str, Any], path: Path) -> str | None:
    """`harness defaults` (harness.evidence.transfer's doc): per quantization mode, a heatmap of regret (percent
    of the cell's best candidate, positive worse) by candidate (rows, the minimax order, the choice first), then
    the mode's published defaults (trained in the same cells, marked), and cell (columns); a cell a config has no
    completed run in is grey."""
    import numpy as np

    modes = [(mode, m) for mode, m in doc["modes"].items() if m["order"]]
    if not modes:
        return "no candidate has a completed run"
    plt = pyplot()

    def rows_of(m: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        refs = m.get("references") or []
        return ([(f"{n} (chosen)" if n == m["choice"] else n, m["regret"][n]) for n in m["order"]]
                + [(f"{n} (published)", m["reference_regret"][n]) for n in refs])

    rows = sum(len(rows_of(m)) for _, m in modes)
    width = max(7.0, 3.5 + 1.8 * max(len(m["cells"]) for _, m in modes))
    fig, axes = plt.subplots(len(modes), 1, figsize=(width, 2.2 + 0.45 * rows + 1.2 * len(modes)), squeeze=False)
    for ax, (mode, m) in zip(axes[:, 0], modes):
        labelled = rows_of(m)
        grid = np.array([[np.nan if row[c]["value"] is None else 100 * row[c]["value"] for c in m["cells"]]
                         for _, row in labelled])
        cmap = plt.get_cmap("Reds").copy()
        cmap.set_bad("#cccccc")
        top = float(np.nanmax(grid)) if np.isfinite(grid).any() else 1.0
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=max(top, 1e-9), aspect="auto")
        for i in range(len(labelled)):
            for j in range(len(m["cells"])):
                value = grid[i, j]
                ax.text(j, i, "not run" if math.isnan(value) else f"{value:+.2f}%", ha="center", va="center",
                        fontsize=8, color="black" if math.isnan(value) or value < 0.6 * top else "white")
        if len(labelled) > len(m["order"]):
            ax.axhline(len(m["order"]) - 0.5, color="black", linewidth=1.5)
        ax.set_xticks(range(len(m["cells"])), m["cells"], fontsize=8, rotation=15, ha="right")
        ax.set_yticks(range(len(labelled)), [label for label, _ in labelled], fontsize=8)
        ax.set_title(f"{mode}: regret against each cell's best {mode} candidate", fontsize=10)
        fig.colorbar(image, ax=ax, label="regret, % of the cell's best")
    seeds = sorted({s for c in doc["cells"] for s in c.get("seeds") or []})
    caption_text = (f"{doc['objective']} at {doc['steps']} steps; models "
                    f"{', '.join(sorted({str(c.get('model')) for c in doc['cells']}))}; seeds "
                    f"{', '.join(map(str, seeds)) or '?'}; rows ordered by the rule: smallest worst cell first; "
                    "published defaults below the line (references, never chosen)")
    _save_with_caption(fig, path, caption_text)
    return None
