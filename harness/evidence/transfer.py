"""Which config transfers: the regret matrix of a cross-evaluation (`harness defaults`) and the minimax choice.

Pure functions on numbers. A cell is one study's model, data, budget and evaluation settings; every candidate
config (the top configs of every study, per quantization mode) ran in every cell on the same seeds, so within
a cell any two candidates are compared seed by seed (paired). A candidate's regret in a cell is its paired
relative difference from the cell's best candidate of the same mode, oriented so that a positive regret is a
loss: (candidate - best) / |best| for a loss, the other way round for a score. The choice per mode is the
candidate whose worst cell costs least (RULE).

A relative difference is ill-conditioned where tuning drives the loss near zero (a classification cell whose
best eval loss is 0.006 nats makes 0.005 nats a regret of +80%), so every entry also gives the absolute
difference (`diff`) and the share of the cell's tuning gain it gives up (`gain_lost`: the difference over the
distance from the untuned model's value in that mode to the cell's best), a scale that means the same in every
cell. The rule stays on the relative regret.

The published defaults ran in every cell too, on the same seeds, as references: never a cell's best and never
chosen, each has its regret against the cell's best of its mode and its paired difference from its mode's
choice (`versus_choice`, positive: the reference is worse), whose verdict says whether the choice beats it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.config.objectives import better_sign, ranked
from harness.evidence.sequential import DEFAULT_RESOLUTION, look
from harness.evidence.stats import Examples, examples_half, mean_examples

RULE = ("per quantization mode, the candidate with the smallest worst-cell regret (minimax), ties to the smaller "
        "mean regret over the cells; regret in a cell = the candidate's paired relative difference in the "
        "objective from that cell's best candidate of the same mode (positive: worse), over the seeds both ran; "
        "a candidate without a completed run in a cell counts as infinitely bad there")


@dataclass(frozen=True)
class Runs:
    """One candidate's completed runs in one cell."""

    by_seed: dict[int, float]
    """The objective by training seed."""
    examples: dict[int, Examples] = field(default_factory=dict)
    """Per seed, the per-example scores and weights on the cell's held-out split (the held-out bootstrap)."""

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.by_seed.values()) if self.by_seed else None


def minimax_order(matrix: Mapping[str, Mapping[str, float | None]]) -> list[str]:
    """Candidates best first under RULE: the smallest worst-cell regret, ties to the smaller mean regret; a
    missing regret (None: no completed run in that cell) is +inf. `matrix[candidate][cell]`."""
    def key(name: str) -> tuple[float, float, str]:
        values = [math.inf if v is None else float(v) for v in matrix[name].values()]
        if not values:
            return math.inf, math.inf, name
        return max(values), statistics.fmean(values), name

    return sorted(matrix, key=key)


def choose(matrix: Mapping[str, Mapping[str, float | None]]) -> str | None:
    """The minimax candidate (minimax_order's first), or None when no candidate has a finite worst cell."""
    order = minimax_order(matrix)
    if not order or math.isinf(worst(matrix[order[0]])):
        return None
    return order[0]


def worst(row: Mapping[str, float | None]) -> float:
    """A candidate's worst-cell regret (+inf when a cell is missing)."""
    return max((math.inf if v is None else float(v) for v in row.values()), default=math.inf)


def mean_regret(row: Mapping[str, float | None]) -> float:
    values = [math.inf if v is None else float(v) for v in row.values()]
    return statistics.fmean(values) if values else math.inf


def regret_entry(mine: Runs, best: Runs, direction: str, resolution: str | None = None,
                 max_seeds: int | None = None) -> dict[str, Any]:
    """The relative regret of `mine` against the cell's best, paired over the seeds both ran, with its interval
    (paired t over seeds and the held-out bootstrap, in quadrature; at the look's level in a sequential run)
    and whether it is resolved (harness.evidence.sequential.judge: the interval excludes zero, or is narrower
    than the resolution)."""
    shared = sorted(set(mine.by_seed) & set(best.by_seed))
    if not shared:
        return {"value": None, "ci95": None, "pairs": 0, "resolved": False, "phrase": "no seed in common"}
    a, b = ({s: r.by_seed[s] for s in shared} for r in (mine, best))
    half = None
    if all(s in mine.examples and s in best.examples for s in shared):
        half = examples_half(mean_examples([mine.examples[s] for s in shared]),
                             mean_examples([best.examples[s] for s in shared]))
    diff, verdict = look(a, b, half, resolution, max_seeds)
    sign = better_sign(direction)
    rel, low, high = diff.relative()
    ci = None if low is None or high is None else sorted([sign * low, sign * high])
    return {"value": sign * rel, "ci95": ci, "pairs": len(shared), "resolved": verdict.resolved,
            "phrase": verdict.phrase(), "diff": sign * diff.diff}


def mode_matrix(cells: Mapping[str, Mapping[str, Runs]], names: list[str], direction: str,
                resolution: str | None = None, max_seeds: int | None = None,
                references: list[str] | None = None, baselines: Mapping[str, float] | None = None) -> dict[str, Any]:
    """One mode's regret matrix: for each cell its best candidate (best mean over its seeds) and every
    candidate's regret against it; each candidate's worst and mean regret; the order and choice under RULE;
    for each of `references` (runs in `cells` too, never candidates) its regret against each cell's best and
    its paired difference from the choice, with a verdict per cell. `baselines`: the untuned model's value per
    cell in this mode, for each entry's `gain_lost`."""
    regret: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in names}
    bests: dict[str, str | None] = {}
    for cell, runs in cells.items():
        present = [n for n in names if n in runs and runs[n].by_seed]
        best = ranked(present, direction, lambda n: runs[n].mean)[0] if present else None
        bests[cell] = best
        for name in names:
            if best is None or name not in present:
                regret[name][cell] = {"value": None, "ci95": None, "pairs": 0, "resolved": False,
                                      "phrase": "no completed run", "mean": None}
            elif name == best:
                regret[name][cell] = {"value": 0.0, "ci95": [0.0, 0.0], "pairs": len(runs[name].by_seed),
                                      "resolved": True, "phrase": "the cell's best", "mean": runs[name].mean}
            else:
                regret[name][cell] = {**regret_entry(runs[name], runs[best], direction, resolution, max_seeds),
                                      "mean": runs[name].mean}
    for cell, best in bests.items():
        gap = _gap(cells[cell][best].mean if best else None, (baselines or {}).get(cell))
        for name, row in regret.items():
            row[cell]["gain_lost"] = 0.0 if name == best and gap is not None else _share(row[cell].get("diff"), gap)
    values = {n: {c: e["value"] for c, e in row.items()} for n, row in regret.items()}
    order = minimax_order(values)
    choice = choose(values)
    refs = list(references or [])
    against_best = {r: {cell: _against(runs.get(r), runs.get(bests[cell]) if bests[cell] else None, direction,
                                       resolution, max_seeds) for cell, runs in cells.items()} for r in refs}
    versus = {r: {cell: _against(runs.get(r), runs.get(choice) if choice else None, direction, resolution,
                                 max_seeds) for cell, runs in cells.items()} for r in refs}
    for cell, best in bests.items():
        gap = _gap(cells[cell][best].mean if best else None, (baselines or {}).get(cell))
        for table in (against_best, versus):
            for row in table.values():
                row[cell]["gain_lost"] = _share(row[cell].get("diff"), gap)
    gains = {n: [row[c]["gain_lost"] for c in row] for n, row in regret.items()}
    matrix = {"candidates": names, "cells": list(cells), "best": bests, "regret": regret,
              "worst": {n: _finite(worst(values[n])) for n in names},
              "mean": {n: _finite(mean_regret(values[n])) for n in names},
              "median": {n: _finite(median_regret(values[n])) for n in names},
              "worst_gain_lost": {n: None if None in g or not g else max(g) for n, g in gains.items()},
              "order": order, "choice": choice, "references": refs, "reference_regret": against_best,
              "versus_choice": versus}
    matrix["out_of_contention"] = out_of_contention(matrix)
    return matrix


def _gap(best: float | None, baseline: float | None) -> float | None:
    """The cell's tuning gain in this mode: the distance from the untuned model's value to the cell's best."""
    if best is None or baseline is None or not math.isfinite(baseline) or baseline == best:
        return None
    return abs(baseline - best)


def _share(diff: float | None, gap: float | None) -> float | None:
    return None if diff is None or gap is None else diff / gap


BEATS, LOSES, EVEN, OPEN = "default better", "published better", "no difference beyond the resolution", "unresolved"
"""The verdicts of a published default against its mode's choice in one cell (from the reference's side)."""


def _against(mine: Runs | None, other: Runs | None, direction: str, resolution: str | None,
             max_seeds: int | None) -> dict[str, Any]:
    """regret_entry of `mine` against `other` with the verdict of the comparison, or a 'not run' entry."""
    if mine is None or not mine.by_seed or other is None or not other.by_seed:
        return {"value": None, "ci95": None, "pairs": 0, "resolved": False, "phrase": "no completed run",
                "mean": mine.mean if mine else None, "verdict": "not run"}
    entry = {**regret_entry(mine, other, direction, resolution, max_seeds), "mean": mine.mean}
    return {**entry, "verdict": verdict_of(entry)}


def verdict_of(entry: Mapping[str, Any]) -> str:
    """A reference's paired difference from the choice (positive: the reference is worse) in words: BEATS when its
    interval lies above zero, LOSES below, EVEN when resolved across zero, OPEN otherwise."""
    ci = entry.get("ci95")
    if entry.get("value") is None or not ci:
        return "not run"
    if ci[0] > 0:
        return BEATS
    if ci[1] < 0:
        return LOSES
    return EVEN if entry.get("resolved") else OPEN


def median_regret(row: Mapping[str, float | None]) -> float:
    """The median over the cells (the issue's "within 2% of each cell's tuned best" is a median); +inf when a
    cell is missing."""
    values = [math.inf if v is None else float(v) for v in row.values()]
    return math.inf if not values or math.inf in values else statistics.median(values)


def _finite(value: float) -> float | None:
    return None if math.isinf(value) or math.isnan(value) else value


def out_of_contention(matrix: dict[str, Any]) -> list[str]:
    """The candidates that can no longer be the choice, whatever more seeds say about their other cells: in some
    cell their regret's interval lies wholly above the top of the choice's worst-cell interval (so their worst
    regret exceeds the choice's, at the intervals' level). A sequential run adds no seeds to their comparisons
    (racing: the seeds go to the candidates still in contention). None while the choice, or an interval of it,
    is missing."""
    choice = matrix.get("choice")
    if choice is None:
        return []
    tops = [e["ci95"][1] if e.get("ci95") else None for e in matrix["regret"][choice].values()]
    if not tops or None in tops:
        return []
    bound = max(tops)
    return sorted(name for name, row in matrix["regret"].items() if name != choice and any(
        e["value"] is not None and e.get("ci95") and e["ci95"][0] > bound for e in row.values()))


def _open_comparisons(matrix: dict[str, Any]) -> list[tuple[set[str], str, dict[str, Any]]]:
    """A mode matrix's unresolved comparisons, each with the configs on its two sides and its cell: a candidate
    still in contention and its cell's best; a reference and the mode's choice."""
    out = []
    gone = set(matrix.get("out_of_contention") or ())
    for name, row in matrix["regret"].items():
        if name in gone:
            continue
        for cell, entry in row.items():
            if entry["value"] is not None and not entry["resolved"]:
                out.append(({name, matrix["best"][cell]}, cell, entry))
    for name, row in (matrix.get("versus_choice") or {}).items():
        for cell, entry in row.items():
            if entry["value"] is not None and not entry["resolved"]:
                out.append(({name, matrix["choice"]}, cell, entry))
    return out


def unresolved(matrix: dict[str, Any]) -> set[str]:
    """The configs on either side of an unresolved comparison of a mode's matrix: a candidate and its cell's
    best, a reference and the mode's choice."""
    return set().union(*(names for names, _, _ in _open_comparisons(matrix)))


def unresolved_by_cell(matrix: dict[str, Any]) -> dict[str, set[str]]:
    """Per cell, the configs on either side of its unresolved comparisons: where a sequential run adds seeds (a
    comparison is within one cell, so a config open in one cell gets no seeds in the others)."""
    out: dict[str, set[str]] = {}
    for names, cell, _ in _open_comparisons(matrix):
        out.setdefault(cell, set()).update(names)
    return out


def fewest_pairs(matrix: dict[str, Any], default: int) -> int:
    """The fewest seeds any unresolved comparison of a mode's matrix has (`default` when none is open)."""
    return min((entry["pairs"] for _, _, entry in _open_comparisons(matrix)), default=default)


def defaults_doc(objective: str, direction: str, steps: int, cells: list[dict[str, Any]],
                 candidates: list[dict[str, Any]], runs: Mapping[str, Mapping[str, Runs]],
                 resolution: str | None = None, max_seeds: int | None = None,
                 references: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """defaults.json: the cells, the candidates, the references (published defaults), per mode the regret matrix
    with intervals, the choice and each reference against it, and the rule. `runs[cell][name]`; `candidates` and
    `references` each with at least `name` and `mode`; a cell's `untuned` ({mode: the untuned model's value})
    gives the entries' `gain_lost`."""
    references = list(references or [])
    modes: dict[str, Any] = {}
    for mode in dict.fromkeys(c["mode"] for c in candidates):
        names = [c["name"] for c in candidates if c["mode"] == mode]
        refs = [r["name"] for r in references if r["mode"] == mode and r["name"] not in names]
        untuned = {c["name"]: (c.get("untuned") or {}).get(mode) for c in cells}
        modes[mode] = mode_matrix({cell: {n: r for n, r in cell_runs.items() if n in names or n in refs}
                                   for cell, cell_runs in runs.items()}, names, direction, resolution, max_seeds,
                                  refs, untuned)
    return {"objective": objective, "direction": direction, "steps": steps, "rule": RULE,
            "resolution": resolution or DEFAULT_RESOLUTION,
            "sequential": {"max_seeds": max_seeds} if max_seeds else None,
            "cells": cells, "candidates": candidates, "references": references, "modes": modes,
            "choice": {mode: m["choice"] for mode, m in modes.items()}}


def _share_text(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.2f}%"


def _cell_text(entry: dict[str, Any]) -> str:
    if entry["value"] is None:
        return "not run"
    ci = entry.get("ci95")
    text = _pct(entry["value"])
    if ci and entry["value"] != 0.0:
        text += f" [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"
    text += "" if entry["resolved"] else " (unresolved)"
    if entry.get("diff") is not None:  # the absolute difference and its share of the cell's tuning gain
        gain = entry.get("gain_lost")
        text += f"; {entry['diff']:+.4f}" + ("" if gain is None else f", {100 * gain:.1f}% of the gain")
    return text


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """What `harness defaults` prints: the rule, then per mode the choice with its worst and mean regret."""
    lines = [f"rule: {doc['rule']}"]
    by_name = {c["name"]: c for c in doc["candidates"]}
    for mode, m in doc["modes"].items():
        choice = m["choice"]
        if choice is None:
            lines.append(f"{mode}: no candidate completed in every cell; no default chosen")
            continue
        p = by_name[choice]["params"]
        lines.append(f"{mode}: {choice} (r {p.get('lora_r')}, alpha {float(p.get('lora_alpha', 0)):g}, lr "
                     f"{float(p.get('learning_rate', 0)):.3g}): worst-cell regret {_pct(m['worst'][choice])}, "
                     f"median {_pct(m['median'][choice])}, mean {_pct(m['mean'][choice])} over {len(m['cells'])} "
                     f"cells; at most {_share_text(m.get('worst_gain_lost', {}).get(choice))} of a cell's tuning gain")
        for ref in m.get("references") or []:
            verdicts = [e["verdict"] for e in m["versus_choice"][ref].values()]
            lines.append(f"  vs published {ref}: {choice} better in {verdicts.count(BEATS)} of {len(verdicts)} "
                         f"cells (resolved), published better in {verdicts.count(LOSES)}, "
                         f"{len(verdicts) - verdicts.count(BEATS) - verdicts.count(LOSES)} neither")
    return lines


def _references_markdown(doc: dict[str, Any], mode: str, m: dict[str, Any]) -> list[str]:
    """A mode's published defaults in every cell: regret against the cell's best, and against the choice with the
    verdict."""
    refs = m.get("references") or []
    if not refs:
        return []
    by_name = {r["name"]: r for r in doc.get("references") or []}
    out = ["", f"### The published {mode} defaults in the same cells, on the same seeds", "",
           f"Each cell: regret against the cell's best {mode} candidate; then its paired difference from the "
           f"choice ({m['choice'] or 'none chosen'}; positive: the published default is worse) and the verdict.", "",
           "| published default | config | " + " | ".join(m["cells"]) + " |", "|---|---|" + "---|" * len(m["cells"])]
    for name in refs:
        p = by_name.get(name, {}).get("params", {})
        training = by_name.get(name, {}).get("training") or {}
        config = (f"r {p.get('lora_r')}, alpha {float(p.get('lora_alpha', 0)):g}, lr "
                  f"{float(p.get('learning_rate', 0)):.3g}, {p.get('target_modules')}"
                  + (f", dropout {p.get('lora_dropout')}" if p.get("lora_dropout") else "")
                  + "".join(f", {k} {v}" for k, v in training.items()))
        texts = []
        for cell in m["cells"]:
            best, vs = m["reference_regret"][name][cell], m["versus_choice"][name][cell]
            texts.append("not run" if best["value"] is None else
                         f"{_cell_text(best)}; vs choice {_cell_text(vs)}: {vs['verdict']}")
        out.append(f"| {name} | {config} | " + " | ".join(texts) + " |")
    return out


def defaults_markdown(doc: dict[str, Any], command: str, plot: str | None) -> str:
    """defaults.md: what was measured, the rule, and per mode the full regret matrix with the choice."""
    out = ["# Default configs that transfer", "",
           f"Written by `{command}`. Every candidate (each study's top configs per quantization mode) was trained "
           f"in every cell (each study's model, data, {doc['steps']}-step budget and evaluation settings) on the "
           "cell's shared seeds, so comparisons within a cell are paired by seed.", "",
           f"**Rule:** {doc['rule']}.", "",
           f"Intervals: paired t over the shared seeds and the held-out bootstrap, as a share of the cell's best "
           f"(95% unless sequential); resolved at ±{doc['resolution']}. After each: the absolute difference in "
           f"{doc['objective']} and its share of the cell's tuning gain (the distance from the untuned model to the "
           "cell's best in that mode): where tuning drives the loss near zero a tiny difference is a large relative "
           "one, and the share reads the same in every cell.", "", "## Cells", "",
           "| cell | model | data | seeds | held-out examples | untuned model | linked study |",
           "|---|---|---|---|---:|---|---|"]
    for c in doc["cells"]:
        untuned = ", ".join(f"{mode} {value:.4f}" for mode, value in (c.get("untuned") or {}).items()
                            if value is not None) or "-"
        out.append(f"| {c['name']} | {c.get('model')} | {c.get('data')} | {', '.join(map(str, c.get('seeds') or []))} "
                   f"| {c.get('held_out_examples')} | {untuned} | {c.get('linked_study')} |")
    by_name = {c["name"]: c for c in doc["candidates"]}
    for mode, m in doc["modes"].items():
        out += ["", f"## {mode}: regret against each cell's best", "",
                "| candidate | config | " + " | ".join(m["cells"]) + " | worst | median | mean | worst share of "
                "the gain |", "|---|---|" + "---|" * len(m["cells"]) + "---:|---:|---:|---:|"]
        gone = set(m.get("out_of_contention") or ())
        for name in m["order"]:
            p = by_name[name]["params"]
            mark = " **(chosen)**" if name == m["choice"] else " (out of contention)" if name in gone else ""
            config = (f"r {p.get('lora_r')}, alpha {float(p.get('lora_alpha', 0)):g}, lr "
                      f"{float(p.get('learning_rate', 0)):.3g}, {p.get('target_modules')}")
            cells = " | ".join(_cell_text(m["regret"][name][c]) for c in m["cells"])
            out.append(f"| {name}{mark} | {config} | {cells}"
                       + f" | {_pct(m['worst'][name])} | {_pct(m['median'][name])} | {_pct(m['mean'][name])} | "
                       + f"{_share_text(m.get('worst_gain_lost', {}).get(name))} |")
        out += ["", f"Each cell's best: " + ", ".join(f"{c}: {b}" for c, b in m["best"].items())]
        if gone:
            out += ["", f"Out of contention ({len(gone)}): in some cell the regret's interval lies wholly above "
                    "the top of the choice's worst-cell interval, so more seeds could not make it the choice; a "
                    "sequential run adds no seeds to its comparisons, which may stay unresolved."]
        out += _references_markdown(doc, mode, m)
    if plot:
        out += ["", f"![regret by candidate and cell]({plot})"]
    return "\n".join(out) + "\n"
