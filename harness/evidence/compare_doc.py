"""The LoRA vs QLoRA comparison as documents: `comparison.md` (the tables, headlines and notes; report.md embeds
the same markdown) and `comparison.json` (harness.evidence.compare.Comparison.to_dict)."""

from __future__ import annotations

import json
from pathlib import Path

from harness.evidence.compare import Comparison, ModeSummary
from harness.evidence.grouping import BY_MODE
from harness.evidence.sequential import METHOD


def comparison_markdown(c: Comparison) -> str:
    """The comparison tables and headlines as markdown (report.md embeds it too)."""
    arrow = "lower is better" if c.minimize else "higher is better"
    task = c.task_metric or "task metric"
    lines = [f"- {line}" for line in c.setup] + [""]
    lines += [f"Objective: `{c.objective}` ({arrow}). Intervals are 95% and hold both the seed spread and the "
              "held-out set's sampling noise (paired bootstrap over examples); configs confirmed on the same seeds "
              "are compared seed by seed (paired t over the per-seed differences: a seed fixes the data order and "
              "the adapter initialisation), with the unpaired (Welch) interval beside it. A comparison is resolved "
              f"when its interval excludes zero or is at most ±{c.resolution} wide"
              + (f"; sequential confirmation up to {c.max_seeds} seeds: intervals at each look's level ({METHOD})"
                 if c.max_seeds else "") + ". Memory: peak during training and "
              "during the final eval + generation (CUDA: max allocated; CPU: peak resident memory of the trial "
              "process); weights: the base model's weights in that mode.", ""]
    lines += [f"- {h}" for h in c.headlines] + ([""] if c.headlines else [])
    lines += [f"- {h}" for h in c.costs] + ([""] if c.costs else [])
    by_mode = c.by_mode
    header = ["mode" if by_mode else ", ".join(c.by), "trials", "done", "pruned", "diverged", "failed", "oom",
              f"untuned {c.objective}" if by_mode else "best lr", f"best {c.objective}", "median",
              "confirmed mean ± std (n)", f"best {task}", "train peak MiB", "eval peak MiB", "weights MiB", "s/step",
              "tokens/s"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for m in c.modes:
        lines.append("| " + " | ".join([
            m.label, str(m.trials), str(m.completed), str(m.pruned), str(m.diverged), str(m.failed),
            str(m.oom), _fmt(m.untuned, 4) if by_mode else _best_lr(m), _fmt(m.best, 4), _fmt(m.median, 4),
            _confirmed_cell(m), _fmt(m.best_task, 3), _fmt(m.train_peak_mb, 0), _fmt(m.eval_peak_mb, 0),
            _fmt(m.weights_mb, 0), _fmt(m.seconds_per_step, 2), _fmt(m.tokens_per_second, 0)]) + " |")
    if not by_mode:
        lines += ["", "best lr: the learning rate of the confirmed config (else of the best trial) of each group."]
        return _tail(lines, c)
    lines += ["", "Weight memory by kind (MiB): the quantized linear weights, their quantization constants, and "
              "every other parameter (embedding, norms) with its dtype.", "",
              "| mode | quantized weights | constants | other parameters | total |", "|---|---|---|---|---|"]
    for m in c.modes:
        w = m.weights
        other = ", ".join(f"{v:.1f} {k}" for k, v in (w.get("other_by_dtype") or {}).items()) or "-"
        lines.append(f"| {m.label} | {_fmt(w.get('quantized_mb'), 1)} | {_fmt(w.get('constants_mb'), 1)} | {other} "
                     f"| {_fmt(w.get('total_mb'), 1)} |")
    return _tail(lines, c)


def _tail(lines: list[str], c: Comparison) -> str:
    """The untuned baseline, the notes and the edge-of-range warnings under the tables."""
    if c.baseline is not None:
        lines += ["", f"Untuned base model (unquantized): {c.objective} {c.baseline:.4f}."]
    lines += [""] + [f"Note: {n}" for n in c.notes]
    if c.edge_warnings:
        lines += ["", "**Edge of the searched range:**", ""] + [f"- {w}" for w in c.edge_warnings]
    return "\n".join(lines).rstrip() + "\n"


def _confirmed_cell(m: ModeSummary) -> str:
    s = m.confirmed.objective if m.confirmed else None
    if s is None:
        return "-"
    spread = f" ± {s.std:.4f}" if s.std is not None else ""
    against = m.confirmed.against() if m.confirmed else None
    return f"{s.mean:.4f}{spread} ({s.n}, trial #{m.confirmed.source})" + (f"; {against}" if against else "")  # type: ignore[union-attr]


def _best_lr(m: ModeSummary) -> str:
    params = m.confirmed.params if m.confirmed else m.best_params
    return f"{float(params['learning_rate']):.1e}" if params and "learning_rate" in params else "-"


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def comparison_stem(by: tuple[str, ...]) -> str:
    """`comparison` by quantization; `comparison_by_<axis>[+<axis>...]` by other axes (both can sit side by side)."""
    return "comparison" if tuple(by) == BY_MODE else "comparison_by_" + "+".join(by)


def write_comparison(c: Comparison, out_dir: Path) -> tuple[Path, Path]:
    """`comparison.md` and `comparison.json` (by quantization) or `comparison_by_<axes>.*` under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = comparison_stem(c.by)
    md, js = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    md.write_text(f"# {c.title}: study {c.study}\n\n" + comparison_markdown(c))
    js.write_text(json.dumps(c.to_dict(), indent=2, default=str) + "\n")
    return md, js
