"""Does a short-budget ranking hold at the real training budget? The statistics of a validation (issue 11):
configs re-trained at the long budget, compared with their short-budget values. Pure functions on numbers;
the long runs themselves are ordinary trials of a linked study.

Directions are a study's (`minimize` / `maximize`); every difference is oriented so that a positive regret
is a loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.config.objectives import better_sign, ranked
from harness.evidence.sequential import judge, look, look_level
from harness.evidence.stats import Difference, combined_difference, examples_half, mean_examples, summarize


NOT_VALIDATED = ("validated: false means every number here comes from the study's short trials; a ranking at that "
                 "budget can change at the hundreds or thousands of steps a real fine-tune runs (short-horizon "
                 "bias), so re-train the top configs at your budget with `harness validate` before relying on it")
"""What an unvalidated recommendation means (recommended.yaml's evidence, recommend's printout, the report)."""


@dataclass(frozen=True)
class ConfigRuns:
    """One validated config: its objective values at the short budget (the study's search and confirmation
    trials; empty for a published default the study never ran) and at the long budget."""

    params: dict[str, Any]
    source: str
    """`search`, or the published default's name."""
    short: tuple[float, ...]
    long: tuple[float, ...]
    long_by_seed: dict[int, float] = field(default_factory=dict)
    """The long-budget values by training seed (every validated config runs the same seeds: paired)."""
    long_examples: dict[int, tuple[list[float], list[float]]] = field(default_factory=dict)
    """Per seed, the long run's per-example scores and weights on the held-out split (for the bootstrap)."""

    def summary(self, budget: str) -> dict[str, Any] | None:
        values = self.short if budget == "short" else self.long
        return summarize(values).to_dict() if values else None


def _mean(values: tuple[float, ...]) -> float | None:
    return sum(values) / len(values) if values else None


def rank_agreement(configs: list[ConfigRuns]) -> dict[str, Any]:
    """Spearman's rho and Kendall's tau between the short-budget and the long-budget means, over the configs
    with both (a published default the study never ran has no short-budget value). None below 3 configs."""
    from scipy import stats

    both = [c for c in configs if c.short and c.long]
    result: dict[str, Any] = {"n": len(both), "spearman": None, "kendall": None}
    if len(both) < 3:
        return result
    short = [_mean(c.short) for c in both]
    long = [_mean(c.long) for c in both]
    rho = stats.spearmanr(short, long).statistic
    tau = stats.kendalltau(short, long).statistic
    result["spearman"] = None if rho != rho else float(rho)
    result["kendall"] = None if tau != tau else float(tau)
    return result


def _eval_half(a: ConfigRuns, b: ConfigRuns, seeds: list[int] | None = None) -> float | None:
    """The held-out bootstrap's half-width of a against b, each averaged over its long runs (those of `seeds`)."""
    if seeds is None and (len(a.long_examples) != len(a.long) or len(b.long_examples) != len(b.long)):
        return None  # some runs without per-example scores: the average would not be the mean's
    a_runs, b_runs = ([c.long_examples[s] for s in (seeds if seeds is not None else c.long_examples)
                       if s in c.long_examples] for c in (a, b))
    return examples_half(mean_examples(a_runs), mean_examples(b_runs))


def difference(a: ConfigRuns, b: ConfigRuns, resolution: str | None = None,
               max_seeds: int | None = None) -> dict[str, Any]:
    """mean(a.long) - mean(b.long) with a 95% interval holding the seed spread and the held-out set's noise
    (paired bootstrap over examples): paired over the seeds both ran on (t over per-seed differences) when
    they share two or more, with the unpaired (Welch) interval beside it and the ratio of the widths; and
    whether it is resolved at `resolution` (harness.evidence.sequential; `max_seeds`: a sequential validation
    capped there, whose paired intervals are at the look's level)."""
    unpaired = combined_difference(list(a.long), list(b.long), _eval_half(a, b))
    shared = sorted(set(a.long_by_seed) & set(b.long_by_seed))
    if len(shared) >= 2:
        pair = {s: a.long_by_seed[s] for s in shared}, {s: b.long_by_seed[s] for s in shared}
        used, verdict = look(*pair, _eval_half(a, b, shared), resolution, max_seeds)
        paired: Difference | None = used
    else:
        paired, used = None, unpaired
        verdict = judge(used, resolution, len(a.long))
    width = None
    if paired is not None and paired.half and unpaired.half:
        width = unpaired.half / paired.half
    return {"diff": used.diff, "ci95": None if used.ci_low is None else [used.ci_low, used.ci_high],
            "analysis": used.analysis, "pairs": len(shared) if paired else None,
            "confidence": look_level(len(shared), max_seeds) if paired else 0.95,
            "unpaired_ci95": None if unpaired.ci_low is None else [unpaired.ci_low, unpaired.ci_high],
            "width_ratio": width, "eval_noise_half": used.example_half, "distinguishable": used.distinguishable,
            "resolved": verdict.resolved, "verdict": verdict.to_dict(),
            "phrase": verdict.phrase()}


def regret(configs: list[ConfigRuns], direction: str, resolution: str | None = None,
           max_seeds: int | None = None) -> dict[str, Any]:
    """The short-budget winner (best short mean among the study's own configs) against the best config at the
    long budget (every validated config, published defaults included): the long-budget objective lost by
    trusting the short budget, with its 95% interval (`difference`: paired over the shared seeds, with the
    held-out bootstrap), and whether the winner held (not distinguishable from the best; None when one side
    has a single seed)."""
    searched = [c for c in configs if c.short and c.long]
    scored = [c for c in configs if c.long]
    if not searched or not scored:
        raise ValueError("regret needs a config with both short- and long-budget values")
    winner = ranked(searched, direction, lambda c: _mean(c.short))[0]
    best = ranked(scored, direction, lambda c: _mean(c.long))[0]
    sign = better_sign(direction)
    if best is winner:
        return {"value": 0.0, "ci95": [0.0, 0.0], "winner": winner.params, "best": best.params,
                "best_source": best.source, "winner_held": True, "resolved": True,
                "phrase": "resolved: the winner is the best"}
    d = difference(winner, best, resolution, max_seeds)
    oriented = (lambda ci: None if ci is None else sorted([sign * ci[0], sign * ci[1]]))
    held = None if d["distinguishable"] is None else not d["distinguishable"]
    return {"value": sign * d["diff"], "ci95": oriented(d["ci95"]), "unpaired_ci95": oriented(d["unpaired_ci95"]),
            "analysis": d["analysis"], "pairs": d["pairs"], "width_ratio": d["width_ratio"],
            "confidence": d["confidence"],
            "resolved": d["resolved"], "phrase": d["phrase"], "winner": winner.params, "best": best.params,
            "best_source": best.source, "winner_held": held}


ROW_KEYS = ("diff", "ci95", "analysis", "pairs", "unpaired_ci95", "width_ratio", "resolved", "phrase", "confidence")
"""What validation.json keeps of a `difference` for the runner-up and for each published default."""


def runner_up(configs: list[ConfigRuns], direction: str, resolution: str | None = None,
              max_seeds: int | None = None) -> dict[str, Any] | None:
    """The second-best config at the long budget against the best (every validated config, published defaults
    included): the runner-up's mean minus the best's with its interval (`difference`), and whether that is
    resolved. It says whether the recommendation is distinguishable from the next choice, which the regret
    (zero when the short-budget winner is also the best) cannot. None below two configs with long runs."""
    scored = [c for c in configs if c.long]
    if len(scored) < 2:
        return None
    best, second = ranked(scored, direction, lambda c: _mean(c.long))[:2]
    d = difference(second, best, resolution, max_seeds)
    return {"source": second.source, "params": second.params, **{k: d[k] for k in (*ROW_KEYS, "distinguishable")}}


def versus_defaults(recommended: ConfigRuns, defaults: list[ConfigRuns], direction: str,
                    resolution: str | None = None, max_seeds: int | None = None) -> list[dict[str, Any]]:
    """Each published default against the recommended config at the long budget: the default's mean minus the
    recommended mean with its 95% interval (`difference`), and which is better when the interval excludes zero."""
    out = []
    for default in defaults:
        if not default.long or not recommended.long:
            out.append({"name": default.source, "diff": None, "ci95": None, "verdict": "not run", "resolved": False,
                        "phrase": "not resolved: not run"})
            continue
        d = difference(default, recommended, resolution, max_seeds)
        if d["distinguishable"] is None:
            verdict = "too few seeds to tell"
        elif not d["distinguishable"]:
            verdict = "not distinguishable"
        else:
            better = d["diff"] * better_sign(direction) < 0
            verdict = "default better" if better else "recommended better"
        out.append({"name": default.source, **{k: d[k] for k in ROW_KEYS}, "verdict": verdict})
    return out


def validation_doc(objective: str, direction: str, short_steps: int, long_steps: int,
                   configs: list[ConfigRuns], resolution: str | None = None,
                   max_seeds: int | None = None) -> dict[str, Any]:
    """validation.json: every config's short and long summaries, the rank agreement, the regret of the
    short-budget winner, the config to recommend (the best long-budget mean over every validated config,
    published defaults included), the runner-up against it and each published default against it."""
    agreement = rank_agreement(configs)
    scored = [c for c in configs if c.long]
    searched = [c for c in scored if c.short]
    loss = regret(configs, direction, resolution, max_seeds) if searched else {"value": None, "ci95": None, "best_source": None,
                                                         "winner_held": None}
    best = ranked(scored, direction, lambda c: _mean(c.long))[0] if scored else None
    defaults = [c for c in configs if c.source != "search" and c is not best]
    return {
        "objective": objective, "direction": direction, "short_steps": short_steps, "long_steps": long_steps,
        "configs": [{"params": c.params, "source": c.source, "short": c.summary("short"), "long": c.summary("long")}
                    for c in configs],
        "spearman": {"value": agreement["spearman"], "n": agreement["n"]},
        "kendall": {"value": agreement["kendall"], "n": agreement["n"]},
        "regret": {k: loss.get(k) for k in ("value", "ci95", "best_source", "analysis", "pairs", "unpaired_ci95",
                                            "width_ratio", "resolved", "phrase", "confidence")},
        "winner_held": loss["winner_held"],
        "short_winner": loss.get("winner"),
        "recommended": None if best is None else {"params": best.params, "source": best.source},
        "runner_up": runner_up(configs, direction, resolution, max_seeds),
        "defaults": versus_defaults(best, defaults, direction, resolution, max_seeds) if best is not None else [],
        "resolution": resolution or "1%", "sequential": {"max_seeds": max_seeds} if max_seeds else None,
    }


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _interval(ci: list[float] | None, digits: int = 4) -> str:
    return "-" if not ci else f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _describe(params: dict[str, Any]) -> str:
    return (f"{params.get('quantization')}, r {params.get('lora_r')}, alpha {float(params.get('lora_alpha', 0)):g}, "
            f"lr {float(params.get('learning_rate', 0)):.3g}, dropout {params.get('lora_dropout')}, "
            f"{params.get('target_modules')}")


def _how(d: dict[str, Any]) -> str:
    """`95% CI [a, b], paired over 2 seeds; unpaired [c, d]: 1.8x narrower` (or the unpaired interval alone)."""
    level = f"{100 * (d.get('confidence') or 0.95):.1f}".rstrip("0").rstrip(".")
    text = f"{level}% CI {_interval(d.get('ci95'))}"
    if d.get("analysis") == "paired":
        text += f", paired over {d['pairs']} seeds; unpaired {_interval(d.get('unpaired_ci95'))}"
        if d.get("width_ratio"):
            text += f": the pairing narrows it {d['width_ratio']:.1f}x"
    return text


def headline(doc: dict[str, Any]) -> str:
    """One sentence: at which budget it was validated, whether the short-budget winner held, the correlation."""
    held = {True: "held", False: "did NOT hold", None: "cannot be judged (one seed a side)"}[doc["winner_held"]]
    regret_ = doc["regret"]["value"]
    rho = doc["spearman"]["value"]
    best = (doc.get("recommended") or {}).get("source")
    return (f"validated at {doc['long_steps']} steps: the {doc['short_steps']}-step winner {held}"
            + ("" if regret_ is None else f" (regret {regret_:.4f} {doc['objective']})")
            + ("" if rho is None else f"; Spearman {rho:.2f} over {doc['spearman']['n']} configs")
            + (f"; the best at {doc['long_steps']} steps is the published default {best}"
               if best and best != "search" else ""))


def verdict_lines(doc: dict[str, Any]) -> list[str]:
    """What the validation shows, in sentences that say only what the intervals support."""
    short, long, objective = doc["short_steps"], doc["long_steps"], doc["objective"]
    lines = []
    rho, n = doc["spearman"]["value"], doc["spearman"]["n"]
    if rho is None:
        lines.append(f"rank agreement: not computed ({n} configs with both budgets; it needs 3)")
    else:
        tau = doc["kendall"]["value"]
        lines.append(f"rank agreement between {short}-step and {long}-step means over {n} configs: Spearman "
                     f"{rho:.2f}, Kendall {_num(tau, 2)} (1 = the same order; with so few configs a single swap "
                     "moves these a lot)")
    held, regret_ = doc["winner_held"], doc["regret"]
    if regret_["value"] is None:
        lines.append("regret: not computed (no searched config completed at the long budget)")
    elif held is True and regret_["value"] == 0.0:
        lines.append(f"the {short}-step winner is also the best at {long} steps")
    elif held is True:
        lines.append(f"the {short}-step winner is not distinguishable from the best at {long} steps: regret "
                     f"{regret_['value']:.4f} {objective} ({_how(regret_)}); {regret_.get('phrase', '')}".rstrip("; "))
    elif held is False:
        lines.append(f"the {short}-step winner did NOT hold: at {long} steps it is worse than the best "
                     f"({regret_['best_source']}) by {regret_['value']:.4f} {objective} ({_how(regret_)}); "
                     f"{regret_.get('phrase', '')}".rstrip("; "))
    else:
        lines.append(f"regret {regret_['value']:.4f} {objective}; too few seeds for an interval")
    recommended = doc.get("recommended")
    if recommended:
        lines.append(f"best at {long} steps: {recommended['source']} ({_describe(recommended['params'])})")
    second = doc.get("runner_up")
    if second and second.get("diff") is not None:
        lines.append(f"runner-up at {long} steps: {second['source']} ({_describe(second['params'])}) minus the best: "
                     f"{second['diff']:+.4f} {objective} ({_how(second)}); {second.get('phrase', '')}".rstrip("; "))
    for row in doc["defaults"]:
        if row["diff"] is None:
            lines.append(f"published default {row['name']}: {row['verdict']}")
        else:
            lines.append(f"published default {row['name']} minus the best: {row['diff']:+.4f} {objective} "
                         f"({_how(row)}): {row['verdict']}; {row.get('phrase', '')}".rstrip("; "))
    return lines


def validation_markdown(doc: dict[str, Any], command: str, plot: str | None) -> str:
    """validation.md: what was measured, the table of configs at both budgets and the verdicts."""
    short, long, objective = doc["short_steps"], doc["long_steps"], doc["objective"]
    out = [f"# Validation of {doc.get('study', '?')} at {long} steps", "",
           f"Written by `{command}`. The study's trials ran {short} optimizer steps each; here its top configs and "
           f"the field's published defaults are re-trained from scratch at {long} steps (a fresh schedule over "
           f"{long} steps, warm-up and decay scaled to it), as trials of the linked study "
           f"`{doc.get('linked_study', '?')}`{_continued(doc)}.", "",
           f"- model: {doc.get('model')} (source weights: {doc.get('source_precision')})",
           f"- data: {doc.get('data')}; {doc.get('held_out_examples')} held-out examples",
           f"- devices: {', '.join(doc.get('devices') or []) or 'not recorded'}; seeds at {long} steps: "
           f"{', '.join(map(str, doc.get('seeds') or [])) or '-'}",
           f"- objective: {objective} ({doc['direction']}); a config's interval is the 95% t interval over its "
           "seeds; a difference's holds the seed spread and the held-out set's noise (paired bootstrap over "
           "examples): paired over the seeds both configs ran on (every config runs the same seeds: a seed fixes "
           "the data order and the adapter initialisation), with the unpaired (Welch) interval beside it; a "
           "difference is resolved when its interval excludes zero or is at most ±1% of the reference wide",
           "", "## Verdict", ""]
    out += [f"- {line}" for line in verdict_lines(doc)]
    out += ["", "## Configs", "",
            f"| source | config | {short} steps: mean | 95% CI | n | {long} steps: mean | 95% CI | n |",
            "|---|---|---:|---|---:|---:|---|---:|"]
    for c in doc["configs"]:
        s, l_ = c["short"] or {}, c["long"] or {}
        out.append(f"| {c['source']} | {_describe(c['params'])} | {_num(s.get('mean'))} | {_interval(s.get('ci95'))} "
                   f"| {s.get('n', 0)} | {_num(l_.get('mean'))} | {_interval(l_.get('ci95'))} | {l_.get('n', 0)} |")
    skipped = doc.get("skipped_defaults") or {}
    if skipped:
        out += ["", "Published defaults that could not run on this model:", ""]
        out += [f"- {name}: {reason}" for name, reason in skipped.items()]
    if doc.get("failed_runs"):
        out += ["", "Long runs that did not complete (not in the means above):", ""]
        out += [f"- {line}" for line in doc["failed_runs"]]
    sources = {p["source"]: p.get("note") for p in doc.get("plan") or [] if p["source"] != "search"}
    if sources:
        out += ["", "Sources of the published defaults:", ""]
        out += [f"- {name}: {note}" for name, note in sources.items()]
    if plot:
        out += ["", f"![short vs long budget]({plot})"]
    return "\n".join(out) + "\n"


def _continued(doc: dict[str, Any]) -> str:
    """The continuation studies holding some of the runs (configs outside the linked study's space), if any."""
    later = doc.get("continuation_studies") or []
    return f" and its continuation{'s' if len(later) > 1 else ''} {', '.join(f'`{n}`' for n in later)}" if later else ""
