"""Does a short-budget ranking hold at the real training budget? The statistics of a validation (issue 11):
configs re-trained at the long budget, compared with their short-budget values. Pure functions on numbers;
the long runs themselves are ordinary trials of a linked study.

Directions are a study's (`minimize` / `maximize`); every difference is oriented so that a positive regret
is a loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.spec import better_sign, ranked
from harness.stats import summarize, welch


@dataclass(frozen=True)
class ConfigRuns:
    """One validated config: its objective values at the short budget (the study's search and confirmation
    trials; empty for a published default the study never ran) and at the long budget."""

    params: dict[str, Any]
    source: str
    """`search`, or the published default's name."""
    short: tuple[float, ...]
    long: tuple[float, ...]

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


def regret(configs: list[ConfigRuns], direction: str) -> dict[str, Any]:
    """The short-budget winner (best short mean among the study's own configs) against the best config at the
    long budget (every validated config, published defaults included): the long-budget objective lost by
    trusting the short budget, with Welch's 95% interval over seeds, and whether the winner held (not
    distinguishable from the best; None when one side has a single seed)."""
    searched = [c for c in configs if c.short and c.long]
    scored = [c for c in configs if c.long]
    if not searched or not scored:
        raise ValueError("regret needs a config with both short- and long-budget values")
    winner = ranked(searched, direction, lambda c: _mean(c.short))[0]
    best = ranked(scored, direction, lambda c: _mean(c.long))[0]
    sign = better_sign(direction)
    if best is winner:
        return {"value": 0.0, "ci95": [0.0, 0.0], "winner": winner.params, "best": best.params,
                "best_source": best.source, "winner_held": True}
    diff = welch(winner.long, best.long)
    low, high = diff.ci_low, diff.ci_high
    interval = None if low is None or high is None else sorted([sign * low, sign * high])
    held = None if diff.distinguishable is None else not diff.distinguishable
    return {"value": sign * diff.diff, "ci95": interval, "winner": winner.params, "best": best.params,
            "best_source": best.source, "winner_held": held}


def versus_defaults(recommended: ConfigRuns, defaults: list[ConfigRuns], direction: str) -> list[dict[str, Any]]:
    """Each published default against the recommended config at the long budget: the default's mean minus the
    recommended mean with Welch's 95% interval, and which is better when the interval excludes zero."""
    out = []
    for default in defaults:
        if not default.long or not recommended.long:
            out.append({"name": default.source, "diff": None, "ci95": None, "verdict": "not run"})
            continue
        diff = welch(default.long, recommended.long)
        if diff.distinguishable is None:
            verdict = "too few seeds to tell"
        elif not diff.distinguishable:
            verdict = "not distinguishable"
        else:
            better = diff.diff * better_sign(direction) < 0
            verdict = "default better" if better else "recommended better"
        out.append({"name": default.source, "diff": diff.diff,
                    "ci95": None if diff.ci_low is None else [diff.ci_low, diff.ci_high], "verdict": verdict})
    return out


def validation_doc(objective: str, direction: str, short_steps: int, long_steps: int,
                   configs: list[ConfigRuns]) -> dict[str, Any]:
    """validation.json: every config's short and long summaries, the rank agreement, the regret of the
    short-budget winner and each published default against the long-budget best of the study's configs."""
    agreement = rank_agreement(configs)
    loss = regret(configs, direction)
    own = [c for c in configs if c.source == "search" and c.long]
    recommended = ranked(own, direction, lambda c: _mean(c.long))[0]
    defaults = [c for c in configs if c.source != "search"]
    return {
        "objective": objective, "direction": direction, "short_steps": short_steps, "long_steps": long_steps,
        "configs": [{"params": c.params, "source": c.source, "short": c.summary("short"), "long": c.summary("long")}
                    for c in configs],
        "spearman": {"value": agreement["spearman"], "n": agreement["n"]},
        "kendall": {"value": agreement["kendall"], "n": agreement["n"]},
        "regret": {k: loss[k] for k in ("value", "ci95", "best_source")},
        "winner_held": loss["winner_held"],
        "recommended": recommended.params,
        "defaults": versus_defaults(recommended, defaults, direction),
    }
