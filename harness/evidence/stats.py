"""Small-sample statistics for confirmation runs: mean, spread, Student-t confidence intervals.

A confirmed config has a handful of seeds (3 to 5), so intervals use the t distribution. Two configs are
compared with Welch's t interval (unequal variances, unpaired) and, when they ran on the same seeds (a seed
fixes the data order and the adapter initialisation: common random numbers), with the paired t interval over
the per-seed differences, which removes the seed effect both share. The t quantile is scipy's (checked in the
tests against printed tables).
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """Mean of n values with its sample standard deviation and a t-based CI of the mean."""

    n: int
    mean: float
    std: float | None
    """Sample standard deviation (n - 1); None for a single value."""
    ci_low: float | None
    ci_high: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        return {"n": self.n, "mean": self.mean, "std": self.std, "ci95": [self.ci_low, self.ci_high]
                if self.ci_low is not None else None}


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) with a 95% CI; `relative` divides by mean(b).

    The CI is Welch's over seeds, widened by the held-out set's sampling noise when per-example scores
    are known (`combined_difference`): `seed_half` and `example_half` are the two half-widths."""

    diff: float
    ci_low: float | None
    ci_high: float | None
    reference: float
    seed_half: float | None = None
    """Half-width of Welch's interval over seeds (training noise); None with one value on a side."""
    example_half: float | None = None
    """Half-width of the paired bootstrap over held-out examples (eval-set noise); None when not known."""
    pairs: int | None = None
    """Seeds both sides ran on, when the seed part is the paired t over per-seed differences (None: Welch)."""
    diff_std: float | None = None
    """Sample standard deviation of the per-seed differences (paired analysis only)."""

    @property
    def analysis(self) -> str:
        """`paired` (t over per-seed differences) or `welch` (unpaired), for the read-outs to say."""
        return "paired" if self.pairs is not None else "welch"

    @property
    def half(self) -> float | None:
        """Half-width of the CI (None when there is none)."""
        return None if self.ci_low is None or self.ci_high is None else (self.ci_high - self.ci_low) / 2

    @property
    def distinguishable(self) -> bool | None:
        """Whether the CI excludes zero; None when there are too few values to say."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return self.ci_low > 0 or self.ci_high < 0

    def relative(self) -> tuple[float, float | None, float | None]:
        """The difference and its CI as fractions of the reference mean."""
        scale = abs(self.reference) or 1.0
        low = None if self.ci_low is None else self.ci_low / scale
        high = None if self.ci_high is None else self.ci_high / scale
        return self.diff / scale, low, high


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    """Mean, sample std and the t confidence interval of the mean."""
    if not values:
        raise ValueError("summarize needs at least one value")
    n, mean = len(values), sum(values) / len(values)
    if n == 1:
        return Summary(1, mean, None, None, None)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def welch(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Difference:
    """Welch's t interval for mean(a) - mean(b); no interval when either side has one value."""
    sa, sb = summarize(a), summarize(b)
    diff = sa.mean - sb.mean
    if sa.std is None or sb.std is None:
        return Difference(diff, None, None, sb.mean)
    va, vb = sa.std ** 2 / sa.n, sb.std ** 2 / sb.n
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Difference(diff, diff, diff, sb.mean)
    df = (va + vb) ** 2 / (va ** 2 / (sa.n - 1) + vb ** 2 / (sb.n - 1))
    half = t_quantile(0.5 + confidence / 2, df) * se
    return Difference(diff, diff - half, diff + half, sb.mean)


def paired(a: Mapping[int, float], b: Mapping[int, float], confidence: float = CONFIDENCE) -> Difference:
    """The paired t interval of mean(a) - mean(b) over the seeds both ran on (`a` and `b` map seed -> value).

    The difference is taken seed by seed, so an effect a seed has on both configs (a lucky data order, a
    good initialisation) cancels; `reference` is b's mean over the shared seeds. No interval below two
    shared seeds."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("a paired comparison needs at least one seed both configs ran on")
    diffs = [a[s] - b[s] for s in seeds]
    reference = sum(b[s] for s in seeds) / len(seeds)
    d = summarize(diffs, confidence)
    return Difference(d.mean, d.ci_low, d.ci_high, reference, seed_half=None if d.ci_low is None else
                      (d.ci_high - d.ci_low) / 2, pairs=len(seeds), diff_std=d.std)  # type: ignore[operator]


@functools.lru_cache(maxsize=4096)
def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with df (real, > 0) degrees of freedom."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    from scipy import stats  # lazy: scipy.stats is slow to import and only seed read-outs need it

    return float(stats.t.ppf(p, df))


BOOTSTRAP_RESAMPLES = 4000


def paired_bootstrap_half(a: Sequence[float], b: Sequence[float], weights: Sequence[float] | None = None,
                          confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES,
                          seed: int = 0) -> float:
    """Half-width of the percentile interval of weighted-mean(a) - weighted-mean(b) when the held-out
    examples are resampled with replacement, the same examples for both sides (paired: a and b are
    per-example scores on one eval set). Measures how much the difference owes to which examples were
    held out. Seeded, so a report is reproducible."""
    import numpy as np

    a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_.shape != b_.shape or a_.size == 0:
        raise ValueError(f"paired bootstrap needs per-example scores of equal length, got {a_.size} and {b_.size}")
    w = np.ones_like(a_) if weights is None else np.asarray(weights, dtype=float)
    counts = np.random.default_rng(seed).multinomial(a_.size, np.full(a_.size, 1.0 / a_.size), size=resamples)
    totals = counts @ w
    diffs = (counts @ (w * (a_ - b_))) / np.where(totals > 0, totals, 1.0)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return float(high - low) / 2


Examples = tuple[list[float], list[float]]
"""Per held-out example: the scores, and the weights that make their weighted mean the objective."""


def mean_examples(found: Sequence[Examples | None]) -> Examples | None:
    """Per-example scores averaged over runs scored on one eval set (they line up example by example), with
    the first run's weights; None when a run has none or their lengths differ."""
    if not found or any(f is None for f in found) or len({len(f[0]) for f in found}) != 1:  # type: ignore[index]
        return None
    columns = zip(*(f[0] for f in found))  # type: ignore[index]
    return [statistics.fmean(c) for c in columns], found[0][1]  # type: ignore[index]


def examples_half(a: Examples | None, b: Examples | None) -> float | None:
    """`paired_bootstrap_half` of a's per-example scores against b's; None when either is missing or they
    were not scored on the same examples with the same weights."""
    if a is None or b is None or len(a[0]) != len(b[0]) or a[1] != b[1]:
        return None
    return paired_bootstrap_half(a[0], b[0], a[1])


def combined_difference(a: Sequence[float], b: Sequence[float], example_half: float | None,
                        confidence: float = CONFIDENCE) -> Difference:
    """mean(a) - mean(b) over seeds with a CI that holds both noises: Welch's half-width over seeds
    (training noise; the seeds were all scored on the same examples, so it cannot see eval-set noise)
    and the paired bootstrap's half-width over examples, added in quadrature (independent sources).
    With one value on a side only the eval-set part is known, and the CI says only that much."""
    seeds = welch(a, b, confidence)
    seed_half = None if seeds.ci_high is None else (seeds.ci_high - seeds.ci_low) / 2
    if example_half is None:
        return replace(seeds, seed_half=seed_half)
    half = math.sqrt((seed_half or 0.0) ** 2 + example_half ** 2)
    return Difference(seeds.diff, seeds.diff - half, seeds.diff + half, seeds.reference, seed_half, example_half)


def combined_paired(a: Mapping[int, float], b: Mapping[int, float], example_half: float | None,
                    confidence: float = CONFIDENCE) -> Difference:
    """As `combined_difference`, with the seed part from the paired t over the shared seeds (`paired`);
    `example_half` should come from the same seeds' per-example scores."""
    seeds = paired(a, b, confidence)
    if example_half is None:
        return seeds
    half = math.sqrt((seeds.seed_half or 0.0) ** 2 + example_half ** 2)
    return replace(seeds, ci_low=seeds.diff - half, ci_high=seeds.diff + half, example_half=example_half)
