"""Paired comparisons over shared seeds, whether a comparison is resolved, and sequential confirmation's
stopping rule (harness.evidence.stats.paired / combined_paired, harness.evidence.sequential)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from helpers import assert_one_line_error, run_cli
from harness.config.errors import SpecError
from harness.evidence.sequential import (judge, look, look_confidence, parse_resolution, rescale_half,
                                         seeds_needed, spent)
from harness.evidence.stats import combined_paired, paired, welch


def test_paired_t_and_the_combined_interval_against_hand_computed_values() -> None:
    a, b = {1: 2.0, 2: 3.0, 3: 4.5, 9: 7.0}, {1: 1.5, 2: 2.0, 3: 3.0}  # seed 9 has no partner: left out
    d = paired(a, b)
    # differences 0.5, 1.0, 1.5: mean 1.0, sd 0.5; t(0.975, 2) = 4.302653 (printed tables)
    assert d.diff == pytest.approx(1.0) and d.diff_std == pytest.approx(0.5) and d.pairs == 3
    assert d.reference == pytest.approx(6.5 / 3)
    assert d.half == pytest.approx(4.302653 * 0.5 / math.sqrt(3), rel=1e-6)
    assert d.analysis == "paired" and welch([2.0, 3.0, 4.5], [1.5, 2.0, 3.0]).analysis == "welch"
    c = combined_paired(a, b, example_half=0.3)
    assert c.half == pytest.approx(math.sqrt((4.302653 * 0.5 / math.sqrt(3)) ** 2 + 0.09), rel=1e-6)
    assert (c.seed_half, c.example_half) == (pytest.approx(d.half), 0.3)
    one = combined_paired({1: 2.0}, {1: 1.0}, example_half=0.3)  # one shared seed: eval-set noise only
    assert one.half == pytest.approx(0.3) and one.seed_half is None
    with pytest.raises(ValueError):
        paired({1: 1.0}, {2: 1.0})


def test_a_shared_seed_effect_hides_a_real_difference_from_welch_but_not_from_the_paired_analysis() -> None:
    rng = random.Random(0)
    seed_effect = {s: rng.gauss(0, 0.5) for s in range(1, 6)}  # a lucky data order helps both configs
    a = {s: 2.50 + seed_effect[s] + rng.gauss(0, 0.005) for s in seed_effect}
    b = {s: 2.55 + seed_effect[s] + rng.gauss(0, 0.005) for s in seed_effect}
    unpaired = welch(list(a.values()), list(b.values()))
    assert unpaired.distinguishable is False
    together = paired(a, b)
    assert together.distinguishable and together.ci_high < 0
    assert together.diff == pytest.approx(unpaired.diff)  # same difference, the paired interval is far narrower
    assert unpaired.half / together.half > 20


def test_resolution_parses_percent_and_units_and_refuses_nonsense() -> None:
    assert parse_resolution("1%") == (0.01, True)
    assert parse_resolution("0.02") == (0.02, False)
    assert parse_resolution(None) == (0.01, True)
    for bad in ("abc", "0", "-1%", "inf"):
        with pytest.raises(SpecError, match="--resolution"):
            parse_resolution(bad)


def test_a_verdict_is_resolved_by_excluding_zero_or_by_being_narrow_and_says_what_more_seeds_would_do() -> None:
    different = combined_paired({1: 1.0, 2: 1.1, 3: 1.2}, {1: 2.0, 2: 2.1, 3: 2.15}, 0.01)
    assert judge(different, 0.001, 3).kind == "different"
    tight = combined_paired({1: 2.000, 2: 2.101, 3: 2.199}, {1: 2.001, 2: 2.100, 3: 2.200}, 0.005)
    v = judge(tight, 0.02, 3)
    assert (v.resolved, v.kind) == (True, "within") and "no difference beyond" in v.phrase()
    loose = combined_paired({1: 2.00, 2: 2.15, 3: 2.05}, {1: 2.05, 2: 2.05, 3: 2.10}, 0.005)
    v = judge(loose, 0.02, 3)
    assert not v.resolved and v.needed is not None and v.needed > 3
    # the estimate is what it says: at `needed` seeds with the same spread, the fixed-level interval fits
    needed_half = math.hypot(2 * loose.diff_std / math.sqrt(v.needed), 0.005)  # t ~ 2 at that many seeds
    assert needed_half < 0.02 * 1.1
    assert seeds_needed(loose.diff_std, 0.005, 0.02, v.needed - 1) is not None
    assert f"({v.needed - 3} more)" in v.phrase()
    floor = judge(combined_paired({1: 2.00, 2: 2.15, 3: 2.05}, {1: 2.05, 2: 2.05, 3: 2.10}, 0.03), 0.02, 3)
    assert floor.floor and "more held-out examples" in floor.phrase()
    assert judge(paired({1: 1.0}, {1: 2.0}), 0.01, 1).kind == "unknown"


def test_alpha_spending_spends_exactly_alpha_over_the_looks() -> None:
    assert spent(0.0) == 0.0 and spent(1.0) == pytest.approx(0.05)
    levels = [look_confidence(n, 10) for n in range(2, 11)]
    assert sum(1 - c for c in levels) == pytest.approx(0.05)
    assert all(0.95 < c < 1 for c in levels)
    assert rescale_half(1.0, 0.95, 0.95) == pytest.approx(1.0) and rescale_half(1.0, 0.95, 0.99) > 1.3
    with pytest.raises(ValueError):
        look_confidence(1, 10)


def _sequential(rng: random.Random, true_diff: float, max_seeds: int, resolution: float,
                fixed_95: bool = False) -> tuple[str, int]:
    """Add seeds one at a time until the look resolves the comparison or the cap is reached."""
    a: dict[int, float] = {}
    b: dict[int, float] = {}
    for seed in range(1, max_seeds + 1):
        shared = rng.gauss(0, 0.05)
        a[seed], b[seed] = 2.5 + true_diff + shared + rng.gauss(0, 0.02), 2.5 + shared + rng.gauss(0, 0.02)
        if seed < 2:
            continue
        _, verdict = look(a, b, None, resolution, None if fixed_95 else max_seeds)
        if verdict.resolved:
            return verdict.kind, seed
    return "unresolved", max_seeds


def test_sequential_confirmation_stops_early_on_a_large_difference_and_runs_to_the_cap_on_none() -> None:
    rng = random.Random(1)
    kind, seeds = _sequential(rng, true_diff=0.3, max_seeds=10, resolution=1e-9)
    assert kind == "different" and seeds <= 4
    ends = [_sequential(rng, true_diff=0.0, max_seeds=10, resolution=1e-9) for _ in range(20)]
    assert sum(end == ("unresolved", 10) for end in ends) >= 18, ends  # a false stop has at most a 5% chance


def test_sequential_false_positive_rate_on_a_null_simulation_stays_at_the_nominal_level() -> None:
    rng = random.Random(2)
    runs = 1000
    false = sum(_sequential(rng, 0.0, 10, 1e-9)[0] == "different" for _ in range(runs))
    assert false / runs <= 0.05, false
    # the same looks at a fixed 95% each would not hold the level: the test can tell the difference
    naive = sum(_sequential(rng, 0.0, 10, 1e-9, fixed_95=True)[0] == "different" for _ in range(runs))
    assert naive / runs > 0.08, naive


@pytest.mark.integration  # starts the command line
@pytest.mark.parametrize("args, needles", [
    (["compare", "--confirm-until", "never"], ["--confirm-until 'never' is not a rule", "resolved"]),
    (["compare", "--resolution", "abc"], ["--resolution 'abc' is not a number", "1%"]),
    (["validate", "--steps", "40", "--resolution", "0%"], ["--resolution must be above zero"]),
    (["compare", "--confirm-until", "resolved", "--confirm-seeds", "3"], ["--confirm-until and --confirm-seeds"]),
    (["import", "missing/trials.jsonl", "--model", "tiny-llama"], ["missing/trials.jsonl: no such file"]),
])
def test_bad_sequential_and_import_flags_are_one_line_with_exit_2(args: list[str], needles: list[str],
                                                                   tmp_path: Path) -> None:
    assert_one_line_error(run_cli(*args, "--study", "s", "--out", str(tmp_path), cwd=tmp_path), *needles)


def test_records_of_sequential_confirmation_merge_to_the_largest_cap_and_the_last_resolution() -> None:
    from harness.search.readout import merge_sequential

    assert merge_sequential(None, {}, {"max_seeds": None, "resolution": "2%"}) is None  # no cap: not sequential
    assert merge_sequential({"max_seeds": 6, "resolution": "1%"}, {"max_seeds": 4, "resolution": None}) == \
        {"max_seeds": 6, "resolution": "1%"}
    assert merge_sequential({"max_seeds": 4, "resolution": "1%"}, None, {"max_seeds": 10, "resolution": "0.02"}) == \
        {"max_seeds": 10, "resolution": "0.02"}
