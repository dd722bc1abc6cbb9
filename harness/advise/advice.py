"""The statistics and the read-out of `harness advise` (issue 12): retrieval, fine-tuning or both, measured
on the study's own held-out questions.

Input: each arm's per-question scores (one list per task metric, the questions in one order for every arm),
its per-question latency and prompt tokens, and its peak memory. Output: a plain dict (rag_vs_finetune.json)
with each metric's mean and 95% interval per arm, the paired differences that answer the user's questions
with their intervals, the share of its score an arm keeps when retrieval fails, and verdict sentences that
say only what those intervals support; plus its markdown. Intervals are percentile bootstraps over
questions, paired: every arm is resampled with the same questions, so a difference's interval holds only the
noise of which questions were asked. Nothing here loads a model or retrieves.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.evidence.stats import BOOTSTRAP_RESAMPLES, CONFIDENCE

ARMS: dict[str, tuple[str, str, str]] = {
    "base": ("base", "off", "the untuned model, the question alone"),
    "rag": ("base", "top-k", "the untuned model with the top-k retrieved passages"),
    "finetuned": ("finetuned", "off", "the fine-tuned adapter, the question alone"),
    "finetuned+rag": ("finetuned", "top-k", "the fine-tuned adapter with the top-k retrieved passages"),
    "rag:empty": ("base", "empty", "rag when retrieval returns nothing (the RAG prompt with an empty context)"),
    "rag:wrong": ("base", "wrong", "rag when retrieval returns wrong passages (the top-k of another fact)"),
    "finetuned+rag:empty": ("finetuned", "empty", "finetuned+rag when retrieval returns nothing"),
    "finetuned+rag:wrong": ("finetuned", "wrong", "finetuned+rag when retrieval returns wrong passages"),
}
"""Arm -> (which model, what retrieval gives it, one line). The four arms first, then the robustness arms."""

MAIN_ARMS = ("base", "rag", "finetuned", "finetuned+rag")

COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("rag", "base", "what retrieval adds to the untuned model"),
    ("finetuned", "base", "what fine-tuning adds to the untuned model"),
    ("rag", "finetuned", "retrieval alone vs fine-tuning alone"),
    ("finetuned+rag", "rag", "what fine-tuning adds on top of retrieval"),
    ("finetuned+rag", "finetuned", "what retrieval adds on top of fine-tuning"),
    ("rag:wrong", "base", "wrong passages vs no retrieval at all, untuned model"),
    ("finetuned+rag:wrong", "finetuned", "wrong passages vs no retrieval at all, fine-tuned model"),
)
"""(a, b, what a - b answers): the paired differences every report lists."""

FAILURES = (("rag", "rag:empty"), ("rag", "rag:wrong"), ("finetuned+rag", "finetuned+rag:empty"),
            ("finetuned+rag", "finetuned+rag:wrong"))
"""(arm, the same arm with failed retrieval): the score kept is failed / arm."""

INTERVAL = (f"95% percentile bootstrap over questions ({BOOTSTRAP_RESAMPLES} resamples, seed 0; paired: every "
            "arm resampled with the same questions); greedy decoding, so there is no sampling noise to add")


@dataclass
class ArmResult:
    """One arm measured on the held-out questions (every list in the questions' order)."""

    name: str
    scores: dict[str, list[float]]
    """Task metric -> each question's score."""
    latencies: list[float]
    """Seconds per question: retrieval plus generating the answer alone (batch of one)."""
    prompt_tokens: list[int]
    """Tokens of each question's whole prompt as the model saw it (chat template included)."""
    added_tokens: list[int]
    """Tokens retrieval added to each prompt (0 for an arm without retrieval)."""
    peak_memory_mb: float | None = None
    truncated: int = 0
    """Prompts whose first passage was cut to fit the context budget."""
    samples: list[dict[str, str]] = field(default_factory=list)


def _resample_counts(n: int, resamples: int, seed: int) -> Any:
    """How often each of n questions is drawn in each bootstrap resample (resamples x n, seeded): one matrix
    serves every arm and metric, so the resamples are paired."""
    import numpy as np

    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)


def _interval(values: Any) -> list[float]:
    import numpy as np

    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def advice_doc(arms: dict[str, ArmResult], metrics: Sequence[str], primary: str, *,
               resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Every arm's metrics with intervals, cost and memory; the paired differences; the score kept when
    retrieval fails; the verdict. `primary` is the metric the verdict speaks of."""
    import numpy as np

    if not arms:
        raise ValueError("advice_doc needs at least one arm")
    if primary not in metrics:
        raise ValueError(f"primary metric {primary!r} is not one of {list(metrics)}")
    sizes = {len(arm.scores[m]) for arm in arms.values() for m in metrics}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"every arm needs one score per question for every metric, got lengths {sorted(sizes)}")
    n = sizes.pop()
    counts = _resample_counts(n, resamples, seed)
    # metric -> arm -> its mean in each resample
    means = {m: {name: counts @ np.asarray(arm.scores[m], dtype=float) / n for name, arm in arms.items()}
             for m in metrics}
    out_arms: dict[str, Any] = {}
    for name, arm in arms.items():
        model, retrieval, what = ARMS.get(name, ("?", "?", name))
        out_arms[name] = {
            "model": model, "retrieval": retrieval, "description": what,
            "metrics": {m: {"mean": _mean(arm.scores[m]), "ci95": _interval(means[m][name])} for m in metrics},
            "latency_median_s": statistics.median(arm.latencies) if arm.latencies else None,
            "latency_p90_s": float(np.percentile(arm.latencies, 90)) if arm.latencies else None,
            "prompt_tokens_mean": _mean(arm.prompt_tokens) if arm.prompt_tokens else None,
            "added_tokens_mean": _mean(arm.added_tokens) if arm.added_tokens else None,
            "peak_memory_mb": arm.peak_memory_mb, "truncated_prompts": arm.truncated, "samples": arm.samples,
        }
    differences = []
    for a, b, question in COMPARISONS:
        if a in arms and b in arms:
            for m in metrics:
                diff = out_arms[a]["metrics"][m]["mean"] - out_arms[b]["metrics"][m]["mean"]
                differences.append({"a": a, "b": b, "question": question, "metric": m, "diff": diff,
                                    "ci95": _interval(means[m][a] - means[m][b])})
    kept = []
    for arm, failed in FAILURES:
        if arm in arms and failed in arms:
            for m in metrics:
                whole = out_arms[arm]["metrics"][m]["mean"]
                ratio = means[m][failed] / np.where(means[m][arm] > 0, means[m][arm], np.nan)
                finite = ratio[np.isfinite(ratio)]
                kept.append({"arm": arm, "failed": failed, "metric": m,
                             "kept": out_arms[failed]["metrics"][m]["mean"] / whole if whole > 0 else None,
                             "ci95": _interval(finite) if finite.size else None})
    doc = {"metrics": list(metrics), "primary": primary, "questions": n, "interval": INTERVAL,
           "arms": out_arms, "differences": differences, "retention": kept}
    doc["verdict"] = verdict(doc)
    doc["best_arm"] = max((a for a in MAIN_ARMS if a in out_arms),
                          key=lambda a: out_arms[a]["metrics"][primary]["mean"], default=None)
    return doc


def by_retrieval_hit(doc: dict[str, Any], arms: dict[str, ArmResult], hits: Sequence[bool], *,
                     resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Each retrieval arm's metrics split by whether retrieval found the question's fact (`hits`, one per
    question): a miss the reader cannot fix is the retriever's to fix, a hit answered wrong is the reader's.
    arm -> metric -> {hit, miss}, each with its n, mean and bootstrap 95% interval over its own questions."""
    import numpy as np

    out: dict[str, Any] = {}
    for name in ("rag", "finetuned+rag"):
        if name not in arms:
            continue
        out[name] = {}
        for metric in doc["metrics"]:
            parts = {}
            for label, wanted in (("hit", True), ("miss", False)):
                values = np.asarray([v for v, h in zip(arms[name].scores[metric], hits) if h == wanted], dtype=float)
                if not values.size:
                    parts[label] = {"n": 0, "mean": None, "ci95": None}
                    continue
                counts = _resample_counts(values.size, resamples, seed)
                parts[label] = {"n": int(values.size), "mean": float(values.mean()),
                                "ci95": _interval(counts @ values / values.size)}
            out[name][metric] = parts
    return out


def hit_sentences(doc: dict[str, Any]) -> list[str]:
    """Where retrieval's score comes from: its metric when the fact was retrieved and when it was not."""
    metric, lines = doc["primary"].replace("_", " "), []
    for name, by_metric in (doc.get("by_retrieval_hit") or {}).items():
        hit, miss = by_metric[doc["primary"]]["hit"], by_metric[doc["primary"]]["miss"]
        if hit["n"] and miss["n"]:
            lines.append(f"{name} scores {hit['mean']:.3f} {metric} on the {hit['n']} questions whose fact was "
                         f"retrieved (95% CI {hit['ci95'][0]:.3f} to {hit['ci95'][1]:.3f}) and {miss['mean']:.3f} on "
                         f"the {miss['n']} whose fact was not ({miss['ci95'][0]:.3f} to {miss['ci95'][1]:.3f})")
    return lines


def _difference(doc: dict[str, Any], a: str, b: str) -> dict[str, Any] | None:
    return next((d for d in doc["differences"] if d["a"] == a and d["b"] == b and d["metric"] == doc["primary"]),
                None)


def _ci(interval: Sequence[float] | None) -> str:
    return "no interval" if not interval else f"95% CI {interval[0]:+.3f} to {interval[1]:+.3f}"


def _clear(d: dict[str, Any]) -> int:
    """+1: the interval is above zero; -1: below; 0: it holds zero (not distinguishable)."""
    low, high = d["ci95"]
    return 1 if low > 0 else -1 if high < 0 else 0


def _flipped(interval: Sequence[float]) -> list[float]:
    """The interval of b - a from that of a - b."""
    return [-interval[1], -interval[0]]


def verdict(doc: dict[str, Any]) -> list[str]:
    """Sentences that say only what the paired intervals support (STYLE: where an arm is not ahead, say so).
    Each difference is stated in the direction of the sentence, its interval with it."""
    metric = doc["primary"].replace("_", " ")
    lines = []
    versus = _difference(doc, "rag", "finetuned")
    if versus:
        sign, size, ci = _clear(versus), abs(versus["diff"]), versus["ci95"]
        lines.append(f"retrieval alone beats fine-tuning by {size:.3f} {metric} ({_ci(ci)})" if sign > 0
                     else f"fine-tuning beats retrieval alone by {size:.3f} {metric} ({_ci(_flipped(ci))})"
                     if sign < 0 else f"retrieval alone and fine-tuning alone are not distinguishable "
                     f"({versus['diff']:+.3f} {metric} for retrieval, {_ci(ci)})")
    for a, b, what in (("finetuned+rag", "rag", "fine-tuning"), ("finetuned+rag", "finetuned", "retrieval")):
        d = _difference(doc, a, b)
        if d:
            sign, ci = _clear(d), d["ci95"]
            other = "retrieval" if what == "fine-tuning" else "fine-tuning"
            lines.append(f"{what} adds {d['diff']:.3f} {metric} on top of {other} ({_ci(ci)})" if sign > 0
                         else f"{what} on top of {other} costs {-d['diff']:.3f} {metric} ({_ci(_flipped(ci))})"
                         if sign < 0 else f"{what} adds nothing distinguishable on top of {other} "
                         f"({d['diff']:+.3f} {metric}, {_ci(ci)})")
    for entry in doc["retention"]:
        whole = doc["arms"][entry["arm"]]["metrics"].get(doc["primary"])
        # An arm that scores nothing distinguishable from 0 has no score to keep: its share would say nothing.
        if entry["metric"] != doc["primary"] or entry["kept"] is None or not whole or whole["ci95"][0] <= 0:
            continue
        how = "returns nothing" if entry["failed"].endswith(":empty") else "returns wrong passages"
        ci = entry["ci95"]
        lines.append(f"when retrieval {how}, {entry['arm']} keeps {entry['kept']:.2f} of its {metric}"
                     + (f" (95% CI {ci[0]:.2f} to {ci[1]:.2f})" if ci else ""))
    for arm, plain in (("rag:wrong", "base"), ("finetuned+rag:wrong", "finetuned")):
        d = _difference(doc, arm, plain)
        if d and _clear(d) < 0:
            lines.append(f"wrong passages make the {ARMS[plain][0]} model worse than no retrieval at all "
                         f"({d['diff']:+.3f} {metric}, {_ci(d['ci95'])})")
    return lines


def _fmt(summary: dict[str, Any]) -> str:
    low, high = summary["ci95"]
    return f"{summary['mean']:.3f} ({low:.3f}-{high:.3f})"


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def advice_markdown(doc: dict[str, Any], command: str, plot: str | None) -> str:
    """rag_vs_finetune.md: what was measured on what, the arms, the retriever, the differences, the verdict."""
    metrics, ctx, retr = doc["metrics"], doc.get("context") or {}, doc.get("retriever") or {}
    adapter = ctx.get("adapter") or {}
    lines = [f"# Retrieval, fine-tuning or both? Study `{ctx.get('study')}`", "",
             f"- Model: {ctx.get('model')} (source weights: {ctx.get('source_precision')}), loaded in "
             f"quantization `{adapter.get('quantization')}`; device: {ctx.get('device')}",
             f"- Questions: {doc['questions']} held-out questions of {ctx.get('data_source')}; metrics "
             f"{', '.join(metrics)} (greedy, at most {ctx.get('max_new_tokens')} new tokens)",
             f"- Fine-tuned arm: adapter `{adapter.get('path')}`"
             + (f" (trial #{adapter['trial']}: {adapter.get('params_text')}, {ctx.get('max_steps')} steps)"
                if adapter.get("trial") is not None else ""),
             f"- Retrieval: {retr.get('name')} top {retr.get('k')} over {retr.get('passages')} passages "
             f"({retr.get('corpus')}); context budget {retr.get('context_budget_tokens')} tokens",
             f"- RAG prompt: the passages, best first, before the question in its user turn, after the line "
             f"\"{ctx.get('rag_instruction')}\"; `contains_answer` is scored beside the study's metrics (an untuned "
             "model that states the fact in a sentence scores 0 exact match)",
             f"- Intervals: {doc['interval']}", ""]
    if doc["verdict"]:
        lines += ["## Verdict", ""] + [f"- {line[0].upper()}{line[1:]}." for line in doc["verdict"]] + [""]
    lines += ["## Arms", "", "| arm | model | retrieval | " + " | ".join(f"{m} (95% CI)" for m in metrics)
              + " | median s/question | prompt tokens | added by retrieval | peak MiB |",
              "|---|---|---|" + "---|" * len(metrics) + "---|---|---|---|"]
    for name, arm in doc["arms"].items():
        lines.append(f"| {name} | {arm['model']} | {arm['retrieval']} | "
                     + " | ".join(_fmt(arm["metrics"][m]) for m in metrics)
                     + f" | {_num(arm['latency_median_s'], '.3f')} | {_num(arm['prompt_tokens_mean'], '.0f')} | "
                     f"{_num(arm['added_tokens_mean'], '.0f')} | {_num(arm['peak_memory_mb'], '.0f')} |")
    lines += ["", "Peak memory is " + (ctx.get("memory_note") or "as measured") + ".", ""]
    if retr:
        recall = retr.get("recall_at_k") or {}
        lines += ["## Retriever", "",
                  f"- Recall@k ({retr.get('recall_definition')}): "
                  + (", ".join(f"@{k} {v:.3f}" for k, v in recall.items()) if recall else "not measured"),
                  f"- Index: {retr.get('passages')} passages built in {retr.get('index_seconds', 0):.3f} s, "
                  f"{retr.get('index_bytes', 0) / 1024:.1f} KiB of scores; median retrieval "
                  f"{_num(retr.get('search_median_s'), '.4f')} s per question",
                  f"- Prompts whose first passage was cut to the context budget: {retr.get('truncated_prompts', 0)}",
                  ""]
    split = doc.get("by_retrieval_hit") or {}
    if split:
        lines += ["## Retrieval found the fact, or not", "",
                  "| arm | metric | fact in the top k: n, mean (95% CI) | fact not in the top k: n, mean (95% CI) |",
                  "|---|---|---|---|"]
        for name, by_metric in split.items():
            for metric, parts in by_metric.items():
                cells = [f"{p['n']}, " + ("-" if p["mean"] is None else _fmt(p)) for p in (parts["hit"], parts["miss"])]
                lines.append(f"| {name} | {metric} | {cells[0]} | {cells[1]} |")
        lines.append("")
    lines += ["## Paired differences", "", "| a - b | answers | metric | difference (95% CI) |", "|---|---|---|---|"]
    for d in doc["differences"]:
        lines.append(f"| {d['a']} - {d['b']} | {d['question']} | {d['metric']} | {d['diff']:+.3f} "
                     f"({d['ci95'][0]:+.3f} to {d['ci95'][1]:+.3f}) |")
    if doc["retention"]:
        lines += ["", "## When retrieval fails", "", "| arm | failure | metric | score kept (95% CI) |",
                  "|---|---|---|---|"]
        for r in doc["retention"]:
            kept = "-" if r["kept"] is None else f"{r['kept']:.2f}" + (
                f" ({r['ci95'][0]:.2f}-{r['ci95'][1]:.2f})" if r["ci95"] else "")
            lines.append(f"| {r['arm']} | {r['failed'].split(':')[1]} | {r['metric']} | {kept} |")
    if plot:
        lines += ["", f"![{doc['primary']} per arm]({plot})"]
    samples = [(name, s) for name, arm in doc["arms"].items() for s in arm["samples"][:1]]
    if samples:
        lines += ["", "## One answer per arm (the first question)", ""]
        for name, s in samples:
            lines.append(f"- **{name}**: `{s['prediction']!s:.80}` (reference `{s['reference']}`)")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def summary_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per arm (the W&B table)."""
    rows = []
    for name, arm in doc["arms"].items():
        row = {"arm": name, "model": arm["model"], "retrieval": arm["retrieval"]}
        for m, s in arm["metrics"].items():
            row.update({m: s["mean"], f"{m}_ci_low": s["ci95"][0], f"{m}_ci_high": s["ci95"][1]})
        row.update({"latency_median_s": arm["latency_median_s"], "prompt_tokens_mean": arm["prompt_tokens_mean"],
                    "added_tokens_mean": arm["added_tokens_mean"], "peak_memory_mb": arm["peak_memory_mb"]})
        rows.append(row)
    return rows
