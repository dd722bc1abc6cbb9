"""Is a comparison resolved, how many seeds would resolve it, and when may sequential confirmation stop.

A comparison (a config against a reference, both run on the same seeds) is **resolved** when its interval
excludes zero (a real difference) or is narrower than the resolution asked for (`--resolution`: the
difference is pinned down to within +/- that much, so any effect left is smaller than the user cares about).

Sequential confirmation (`--confirm-until resolved --max-seeds N`) looks after every added seed, so a
fixed 95% interval would be wrong more often than 5% of the time (every look is another chance of a false
"real difference"). The per-look levels come from an alpha-spending function (Lan & DeMets 1983,
Biometrika 70(3):659-663) of the Pocock type, alpha(t) = alpha * ln(1 + (e - 1) t), over the information
fraction t = n / N: the look at n seeds may spend alpha(n/N) - alpha((n-1)/N) (the look at two seeds also
the part of one seed, where no interval exists). The union bound (Bonferroni) over the looks keeps the
chance of any false "real difference" at or below alpha whatever the correlation between looks and however
many of them are taken, so stopping at the first resolved look is valid; it is conservative, the price of
holding with t intervals at 2 to 10 seeds. tests/evidence/test_sequential.py checks the rate on a
simulated null.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from harness.config.errors import SpecError
from harness.evidence.stats import CONFIDENCE, Difference, combined_paired, t_quantile

METHOD = ("Pocock-type alpha spending over the seeds (Lan & DeMets 1983), each look at its increment, "
          "Bonferroni over the looks")

DEFAULT_RESOLUTION = "1%"


def spent(fraction: float, alpha: float = 1 - CONFIDENCE) -> float:
    """alpha spent by information fraction `fraction` (0..1): alpha * ln(1 + (e - 1) t)."""
    t = min(max(fraction, 0.0), 1.0)
    return alpha * math.log(1 + (math.e - 1) * t)


def look_confidence(n: int, max_seeds: int, confidence: float = CONFIDENCE) -> float:
    """The confidence level of the interval at the look after `n` seeds (2 <= n <= max_seeds) of a sequential
    confirmation capped at `max_seeds`; their alphas add up to 1 - confidence at the cap."""
    if not 2 <= n <= max_seeds:
        raise ValueError(f"a look needs 2 <= n <= max_seeds, got n={n}, max_seeds={max_seeds}")
    alpha = 1 - confidence
    before = 0.0 if n == 2 else spent((n - 1) / max_seeds, alpha)
    return 1 - (spent(n / max_seeds, alpha) - before)


def look_level(n: int, max_seeds: int | None) -> float:
    """The level of the interval after `n` seeds: the look's (`look_confidence`) in a sequential confirmation
    capped at `max_seeds` (a cap below n counts as n), else the fixed 95%."""
    return look_confidence(n, max(max_seeds, n)) if max_seeds and n >= 2 else CONFIDENCE


def rescale_half(half: float, confidence: float, to: float) -> float:
    """A normal-theory half-width at `confidence` rescaled to confidence `to` (for the held-out bootstrap,
    which is computed at 95%)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf
    return half * z(0.5 + to / 2) / z(0.5 + confidence / 2)


def parse_resolution(text: str | float | None, where: str = "--resolution") -> tuple[float, bool]:
    """`1%` -> (0.01, relative), `0.02` -> (0.02, absolute, in the objective's units)."""
    raw = str(DEFAULT_RESOLUTION if text is None else text).strip()
    relative = raw.endswith("%")
    try:
        value = float(raw[:-1]) / 100 if relative else float(raw)
    except ValueError:
        raise SpecError(f"{where} {raw!r} is not a number: give it in the objective's units (0.02) or as a "
                        "percent of the reference (1%)") from None
    if not value > 0 or math.isinf(value):
        raise SpecError(f"{where} must be above zero, got {raw!r}")
    return value, relative


@dataclass(frozen=True)
class Verdict:
    """Whether a comparison is resolved at a resolution, and if not how many seeds would resolve it."""

    resolved: bool
    kind: str
    """`different` (the interval excludes zero), `within` (narrower than +/- the resolution), `unresolved`,
    or `unknown` (no interval: too few seeds)."""
    seeds: int
    """Seeds the comparison rests on (pairs when paired)."""
    resolution: float
    """In the objective's units."""
    half: float | None
    needed: int | None = None
    """For an unresolved one: seeds in all that would likely resolve it (from the measured spread of the
    per-seed differences; a planning figure, at a fixed 95% level); None when more seeds cannot."""
    floor: bool = False
    """The held-out set's noise alone is wider than the resolution: more seeds cannot resolve it, a larger
    held-out split can."""
    example_half: float | None = None
    """The held-out set's part of the half-width (at the interval's level)."""
    relative_to: float | None = None
    """The reference mean a resolution given in percent is a share of (None: given in objective units)."""

    def phrase(self) -> str:
        """`resolved: a real difference`, `resolved within +/-0.6%`, `not resolved at +/-1.0%: about 16 seeds in
        all would resolve it (13 more)`; amounts in percent when the resolution was given in percent."""
        def amount(x: float) -> str:
            return f"{100 * x / abs(self.relative_to):.1f}%" if self.relative_to else f"{x:.4g}"

        if self.kind == "different":
            return "resolved: a real difference"
        if self.kind == "within":
            return f"resolved: no difference beyond ±{amount(self.half or 0.0)}"
        text = f"not resolved at ±{amount(self.resolution)}"
        if self.floor:
            noise = f" (±{amount(self.example_half)})" if self.example_half is not None else ""
            return text + f": the held-out set's noise alone{noise} is wider; more held-out examples, not more " \
                          "seeds, would resolve it"
        if self.needed is not None:
            return text + f": about {self.needed} seeds in all would resolve it ({self.needed - self.seeds} more)"
        return text + ": too few seeds to estimate how many more it needs"

    def to_dict(self) -> dict[str, object]:
        return {"resolved": self.resolved, "kind": self.kind, "seeds": self.seeds, "resolution": self.resolution,
                "half": self.half, "seeds_needed": self.needed, "eval_set_floor": self.floor}


def judge(diff: Difference, resolution: str | float | None, seeds: int) -> Verdict:
    """Resolved or not at `resolution` (`parse_resolution`: a percent of the difference's reference mean, or
    objective units; default 1%), and the seeds an unresolved one would need."""
    amount, relative = parse_resolution(resolution)
    relative_to = diff.reference if relative else None
    resolution = amount * abs(diff.reference) if relative else amount
    verdict = functools.partial(Verdict, seeds=seeds, resolution=resolution, relative_to=relative_to)
    half = diff.half
    if half is None:
        return verdict(resolved=False, kind="unknown", half=None)
    if diff.distinguishable:
        return verdict(resolved=True, kind="different", half=half)
    if half <= resolution:
        return verdict(resolved=True, kind="within", half=half)
    example = diff.example_half or 0.0
    if example >= resolution:
        return verdict(resolved=False, kind="unresolved", half=half, floor=True, example_half=example)
    needed = seeds_needed(diff.diff_std, example, max(resolution, abs(diff.diff)), seeds)
    return verdict(resolved=False, kind="unresolved", half=half, needed=needed)


def seeds_needed(diff_std: float | None, example_half: float, target: float, have: int,
                 confidence: float = CONFIDENCE, cap: int = 1000) -> int | None:
    """The fewest seeds whose interval (paired t over seeds with spread `diff_std`, plus the held-out
    noise `example_half` in quadrature) is at most `target` wide on each side; None without a spread."""
    if diff_std is None or diff_std <= 0 or example_half >= target:
        return None
    room = math.sqrt(target ** 2 - example_half ** 2)
    n = max(have + 1, 2)
    while n <= cap:
        if t_quantile(0.5 + confidence / 2, n - 1) * diff_std / math.sqrt(n) <= room:
            return n
        n += 1
    return None


def look(a: Mapping[int, float], b: Mapping[int, float], example_half: float | None,
         resolution: str | float | None, max_seeds: int | None = None) -> tuple[Difference, Verdict]:
    """The paired comparison of a against b (seed -> value) and its verdict (`judge`). With `max_seeds` (sequential
    confirmation) the interval is at the look's level (`look_confidence`), else at 95%; `example_half` is
    the held-out bootstrap's 95% half-width, rescaled to the look's level."""
    n = len(set(a) & set(b))
    confidence = look_level(n, max_seeds)
    half = None if example_half is None else rescale_half(example_half, CONFIDENCE, confidence)
    diff = combined_paired(a, b, half, confidence)
    return diff, judge(diff, resolution, n)


T = TypeVar("T")

SEEDS_PER_ROUND = 2


def until_resolved(round_: Callable[[int, set[str] | None], tuple[T, set[str], int]], max_seeds: int,
                   resolution: str | None, say: Callable[[str], None], what: str, unit: str) -> T:
    """The loop of a sequential confirmation or validation (`what`): 2 seeds for every member, then 2 more at a
    time for the members (`unit`s: groups, configs) of the comparisons still unresolved, until none is left or
    `max_seeds` are spent. `round_(seeds, grow)` runs what is missing up to `seeds` seeds for the members in
    `grow` (None: every member) and returns its result, the members of unresolved comparisons and the fewest
    seeds any of them has."""
    if max_seeds < 2:
        raise SpecError(f"--max-seeds must be at least 2 (a paired interval needs two seeds), got {max_seeds}")
    seeds, grow = SEEDS_PER_ROUND, None
    while True:
        result, grow, have = round_(seeds, grow)
        if not grow:
            # not "after N seeds": the members of comparisons resolved at an earlier look (or an earlier run of
            # the command) kept fewer seeds than the last look's; the read-out gives each comparison's pairs
            say(f"sequential {what}: every comparison is resolved at ±{resolution or DEFAULT_RESOLUTION} (each "
                f"comparison's seeds are in the read-out)")
            return result
        if have >= max_seeds:
            say(f"sequential {what}: {max_seeds} seeds spent (--max-seeds); {len(grow)} {unit}(s) still in an "
                "unresolved comparison: the read-out says how many seeds each would need")
            return result
        seeds = min(max(seeds, have) + SEEDS_PER_ROUND, max_seeds)
        say(f"sequential {what}: {len(grow)} {unit}(s) in an unresolved comparison after {have} seeds; "
            f"adding seeds up to {seeds}")
