"""The statistics of a long-budget validation (issue 11) against hand-computed values, and the published
defaults file (each default says where it comes from and obeys the search-space rules)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from scipy import stats

from harness.config.defaults import load_defaults
from harness.config.errors import SpecError
from harness.config.training import TrainSpec
from harness.evidence.validation import (ConfigRuns, rank_agreement, regret, runner_up, validation_doc,
                                        verdict_lines, versus_defaults)


def _config(name: str, short: list[float], long: list[float], source: str = "search") -> ConfigRuns:
    return ConfigRuns({"name": name}, source, tuple(short), tuple(long))


def test_rank_agreement_against_hand_computed_values() -> None:
    # short means 1, 2, 3, 4; long means 1, 3, 2, 4: one swapped pair.
    configs = [_config("a", [1.0], [1.0]), _config("b", [2.0], [3.0]), _config("c", [3.0], [2.0]),
               _config("d", [4.0], [4.0])]
    agreement = rank_agreement(configs)
    assert agreement["n"] == 4
    assert agreement["spearman"] == pytest.approx(1 - 6 * 2 / (4 * (16 - 1)))  # 0.8
    assert agreement["kendall"] == pytest.approx((5 - 1) / 6)  # 5 concordant pairs, 1 discordant
    reversed_long = [_config(c.params["name"], list(c.short), [-v for v in c.long]) for c in configs]
    assert rank_agreement(reversed_long)["spearman"] == pytest.approx(-0.8)
    # A published default has no short-budget value and does not count; below 3 configs there is no correlation.
    assert rank_agreement(configs[:2] + [_config("x", [], [0.5], "peft-defaults")]) == \
        {"n": 2, "spearman": None, "kendall": None}


def test_regret_of_a_short_budget_winner_that_did_not_hold() -> None:
    winner = _config("w", [0.5, 0.6], [1.0, 1.2])  # best at the short budget
    best = _config("b", [0.8, 0.9], [0.9, 0.95])  # best at the long budget
    result = regret([winner, best], "minimize")
    assert result["value"] == pytest.approx(1.1 - 0.925)
    va, vb = 0.02 / 2, 0.00125 / 2  # sample variances / n
    df = (va + vb) ** 2 / (va ** 2 + vb ** 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert result["ci95"] == pytest.approx([0.175 - half, 0.175 + half])
    assert result["winner_held"] is True  # two seeds each: the interval is wide and includes 0
    tight = regret([_config("w", [0.5, 0.5], [1.0, 1.01]), _config("b", [0.8, 0.8], [0.9, 0.91])], "minimize")
    assert tight["winner_held"] is False and tight["ci95"][0] > 0


def test_regret_is_oriented_for_a_maximized_metric_and_zero_when_the_winner_held() -> None:
    winner = _config("w", [0.9, 0.9], [0.5, 0.52])
    best = _config("b", [0.6, 0.6], [0.7, 0.72])
    result = regret([winner, best], "maximize")
    assert result["value"] == pytest.approx(0.2) and result["ci95"][0] > 0 and result["winner_held"] is False
    held = regret([_config("w", [0.9], [0.8]), _config("b", [0.6], [0.7])], "maximize")
    assert held == {**held, "value": 0.0, "ci95": [0.0, 0.0], "winner_held": True}
    single = regret([_config("w", [0.5], [1.0]), _config("b", [0.8], [0.9])], "minimize")
    assert single["ci95"] is None and single["winner_held"] is None  # one seed a side: cannot say


def test_the_runner_up_is_the_second_best_long_mean_against_the_best() -> None:
    best = _config("b", [0.8, 0.9], [0.9, 0.95])
    second = _config("s", [0.5, 0.6], [1.0, 1.2], "unsloth-16bit")  # a published default may be the runner-up
    third = _config("t", [0.6, 0.7], [1.4, 1.5])
    result = runner_up([third, second, best], "minimize")
    assert result["source"] == "unsloth-16bit" and result["params"] == {"name": "s"}
    assert result["diff"] == pytest.approx(1.1 - 0.925)  # the runner-up minus the best
    va, vb = 0.02 / 2, 0.00125 / 2  # no shared seeds: Welch's interval, as for the regret above
    df = (va + vb) ** 2 / (va ** 2 + vb ** 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert result["ci95"] == pytest.approx([0.175 - half, 0.175 + half]) and result["resolved"] is False
    maximized = runner_up([third, second, best], "maximize")  # the best is t (1.45), the runner-up s (1.1)
    assert maximized["params"] == {"name": "s"} and maximized["diff"] == pytest.approx(1.1 - 1.45)
    assert runner_up([best, _config("x", [0.1], [])], "minimize") is None  # one config with long runs
    doc = validation_doc("eval_loss", "minimize", 40, 120, [third, second, best])
    assert doc["runner_up"]["params"] == {"name": "s"}
    assert any(line.startswith("runner-up at 120 steps: unsloth-16bit") and "+0.1750 eval_loss" in line
               for line in verdict_lines(doc))


def test_published_defaults_are_compared_with_welch_intervals() -> None:
    recommended = _config("r", [0.5, 0.5], [1.0, 1.02])
    worse = _config("d1", [], [1.5, 1.52], "unsloth-16bit")
    same = _config("d2", [], [0.9, 1.1], "peft-defaults")
    rows = versus_defaults(recommended, [worse, same], "minimize")
    assert rows[0]["name"] == "unsloth-16bit" and rows[0]["diff"] == pytest.approx(0.5)
    assert rows[0]["verdict"] == "recommended better" and rows[0]["ci95"][0] > 0
    assert rows[1]["verdict"] == "not distinguishable"
    doc = validation_doc("eval_loss", "minimize", 40, 180, [recommended, _config("s", [0.6, 0.6], [1.1, 1.1]),
                                                             _config("t", [0.7, 0.7], [1.2, 1.25]), worse])
    for key in ("short_steps", "long_steps", "configs", "spearman", "kendall", "regret", "winner_held", "defaults"):
        assert key in doc, key
    assert doc["configs"][3]["short"] is None and doc["configs"][0]["long"]["n"] == 2
    assert set(doc["configs"][0]["long"]) == {"mean", "std", "n", "ci95"}
    assert doc["spearman"] == {"value": pytest.approx(1.0), "n": 3}


def test_the_shipped_published_defaults_name_their_source_and_obey_the_space_rules() -> None:
    defaults = {d.name: d for d in load_defaults()}
    assert {"unsloth-16bit", "unsloth-4bit", "qlora-guanaco-7b", "peft-defaults"} <= set(defaults)
    for default in defaults.values():
        assert len(default.source) > 40, default.name  # says where it comes from
    guanaco = defaults["qlora-guanaco-7b"]
    assert guanaco.params["quantization"] == "nf4-dq" and guanaco.params["lora_r"] == 64
    train = guanaco.train_spec(TrainSpec())
    assert (train.scheduler, train.warmup_ratio, train.max_grad_norm) == ("constant", 0.03, 0.3)

    class Dims:  # a model whose smallest attention layer is 32 wide
        def smallest(self, targets: str) -> tuple[int, str]:
            return 32, "k_proj"

    assert "r 64 is larger" in guanaco.skip_reason(Dims(), "tiny-llama")
    assert defaults["unsloth-16bit"].skip_reason(Dims(), "tiny-llama") is None


@pytest.mark.parametrize("text, needle", [
    ("- {name: a, source: s}\n", "needs name, source and params"),
    ("- {name: a, source: s, params: {lora_r: 8}}\n", "params must give exactly"),
    ("- {name: a, source: s, params: {quantization: none, lora_r: 0, lora_alpha: 8, learning_rate: 1.0e-4, "
     "lora_dropout: 0.0, target_modules: all-linear}}\n", "lora_r"),
    ("- {name: a, source: s, training: {seed: 3}, params: {quantization: none, lora_r: 8, lora_alpha: 8, "
     "learning_rate: 1.0e-4, lora_dropout: 0.0, target_modules: all-linear}}\n", "training.seed"),
])
def test_a_bad_defaults_file_is_one_line_naming_the_entry(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "defaults.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=str(path)) as err:
        load_defaults(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_validated_difference_is_paired_over_seeds_and_holds_the_held_out_noise() -> None:
    from harness.evidence.stats import paired_bootstrap_half
    from harness.evidence.validation import difference

    tokens = [3.0, 1.0, 2.0, 4.0]
    a_examples = {1: [2.0, 1.0, 3.0, 2.2], 2: [2.2, 1.2, 3.1, 2.3], 3: [2.1, 0.9, 3.3, 2.1]}
    b_examples = {1: [1.8, 1.1, 2.9, 2.0], 2: [2.0, 1.1, 3.0, 2.2], 3: [2.0, 1.0, 3.0, 2.0]}

    def runs(name: str, by_seed: dict[int, float], examples: dict[int, list[float]]) -> ConfigRuns:
        return ConfigRuns({"name": name}, "search", (), tuple(by_seed.values()), long_by_seed=by_seed,
                          long_examples={s: (e, tokens) for s, e in examples.items()})

    a = runs("a", {1: 2.00, 2: 2.30, 3: 2.10}, a_examples)
    b = runs("b", {1: 1.95, 2: 2.24, 3: 2.06}, b_examples)  # per-seed differences 0.05, 0.06, 0.04
    d = difference(a, b)
    seed_half = t_quantile_975(2) * 0.01 / math.sqrt(3)
    mean = lambda ex: [sum(c) / 3 for c in zip(*ex.values())]  # noqa: E731
    example_half = paired_bootstrap_half(mean(a_examples), mean(b_examples), tokens)
    assert d["analysis"] == "paired" and d["pairs"] == 3 and d["diff"] == pytest.approx(0.05)
    assert d["eval_noise_half"] == pytest.approx(example_half)
    half = math.hypot(seed_half, example_half)
    assert d["ci95"] == pytest.approx([0.05 - half, 0.05 + half])
    assert d["unpaired_ci95"][1] - d["unpaired_ci95"][0] > 2 * half and d["width_ratio"] > 1
    # the seeds alone would say much less without the pairing; without shared seeds it is Welch's
    apart = ConfigRuns({"name": "c"}, "search", (), (1.95, 2.24, 2.06), long_by_seed={7: 1.95, 8: 2.24, 9: 2.06})
    assert difference(a, apart)["analysis"] == "welch"


def t_quantile_975(df: int) -> float:
    return float(stats.t.ppf(0.975, df))
