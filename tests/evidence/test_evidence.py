"""What compare, confirm and recommend conclude, and what they must not (hand-built studies: no training):
diverged seeds count against a config, confirmation seeds are fresh, devices are never mixed, the held-out
set's noise widens the intervals, a small eval set is said out loud, memory budgets use the largest peak."""

from __future__ import annotations

import random
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution

from harness.evidence.compare import build_comparison
from harness.evidence.compare_doc import comparison_markdown
from harness.evidence.confirm import plan_confirmations
from harness.search.readout import open_view
from harness.evidence.recommend import recommend_study, write_recommended
from harness.config.errors import SpecError
from harness.evidence.stats import combined_difference, paired_bootstrap_half

DISTS = {"quantization": CategoricalDistribution(["none", "nf4"]), "lora_r": CategoricalDistribution([16]),
         "lora_alpha": FloatDistribution(1.0, 64.0), "learning_rate": FloatDistribution(1e-5, 1e-2, log=True),
         "lora_dropout": CategoricalDistribution([0.0]), "target_modules": CategoricalDistribution(["all-linear"])}
SWEEP = {"model": "tiny-llama", "data": "stdlib-qa", "max_steps": 10, "seed": 0, "objectives": ["eval_loss"],
         "train": {"batch_size": 4}}
N_EVAL = 64


def _examples(mean: float, seed: int, spread: float = 1.0, noise: float = 0.05) -> dict[str, list[float]]:
    """Per-example losses around a mean: the same 'difficulty' per example for every trial (seeded by
    example), plus a little trial noise, with equal token counts so the token-weighted mean is `mean`."""
    hard = [random.Random(i).gauss(0.0, spread) for i in range(N_EVAL)]
    centre = sum(hard) / N_EVAL
    jitter = [random.Random(1000 * seed + i).gauss(0.0, noise) for i in range(N_EVAL)]
    centre_jitter = sum(jitter) / N_EVAL
    return {"loss": [mean + h - centre + j - centre_jitter for h, j in zip(hard, jitter)], "tokens": [10] * N_EVAL}


def _trial(study: optuna.Study, mode: str, loss: float | None, *, status: str = "complete", seed: int = 0,
           of: int | None = None, lr: float = 1e-3, memory: float = 1000.0, device: str = "cpu X (2 cores)",
           examples: bool = True, noise: float = 0.05, reason: str | None = None) -> None:
    params = {"quantization": mode, "lora_r": 16, "lora_alpha": 32.0, "learning_rate": lr, "lora_dropout": 0.0,
              "target_modules": "all-linear"}
    state = {"complete": "COMPLETE", "diverged": "PRUNED", "pruned": "PRUNED"}.get(status, "FAIL")
    result = {"eval_loss": loss, "peak_memory_mb": memory, "train_seconds": 20.0, "steps": 10,
              "device": "cpu", "device_name": device, "compute_dtype": "float32", "optimizer": "adamw_torch"}
    reason = reason or (None if status == "complete" else f"{status}: loss nan")
    attrs = {"status": status, "reason": reason, "result": result,
             "seed": seed, "config": {"train": {"max_steps": 10, "batch_size": 4, "seed": seed}}}
    if examples and loss is not None:
        attrs["per_example"] = _examples(loss, seed + 100 * len(study.trials), noise=noise)
    if of is not None:
        attrs["confirmation_of"] = of
    study.add_trial(optuna.trial.create_trial(params=params, distributions=DISTS, user_attrs=attrs,
                                              state=getattr(optuna.trial.TrialState, state),
                                              value=loss if state == "COMPLETE" else None))


def _study(tmp_path: Path, name: str = "e") -> tuple[optuna.Study, str]:
    url = f"sqlite:///{tmp_path}/{name}.db"
    study = optuna.create_study(study_name=name, storage=url)
    study.set_user_attr("sweep", SWEEP)
    study.set_user_attr("objectives", ["eval_loss"])
    study.set_user_attr("n_eval", N_EVAL)
    study.set_user_attr("baseline_eval_loss", 4.0)
    study.set_user_attr("baseline_by_mode", {"none": {"eval_loss": 4.0, "metrics": {}},
                                             "nf4": {"eval_loss": 4.3, "metrics": {}}})
    return study, url


# --- diverged and failed confirmation seeds count against their config --------------------------

def test_a_diverged_seed_is_counted_and_its_config_is_not_recommended(tmp_path: Path) -> None:
    study, url = _study(tmp_path)
    _trial(study, "none", 2.00)                                   # 0
    _trial(study, "nf4", 1.90)                                    # 1: the best search trial
    _trial(study, "nf4", 2.05, lr=3e-4)                           # 2
    for seed, loss in ((1, 2.02), (2, 2.03), (3, 2.01)):          # 3-5: 16-bit confirmed
        _trial(study, "none", loss, seed=seed, of=0)
    _trial(study, "nf4", 1.95, seed=1, of=1)                      # 6
    _trial(study, "nf4", None, seed=2, of=1, status="diverged")   # 7: a confirmation seed diverged
    _trial(study, "nf4", 1.97, seed=3, of=1)                      # 8
    view = open_view("e", url)
    comparison = build_comparison(view)
    nf4 = next(m for m in comparison.modes if m.mode == "nf4")
    assert nf4.diverged == 1 and nf4.pruned == 0
    assert nf4.confirmed.statuses.count("diverged") == 1 and nf4.confirmed.against() == "1 of 3 seeds diverged"
    assert "1 of 3 seeds diverged" in comparison.headlines[0]
    assert "1 of 3 seeds diverged" in comparison_markdown(comparison)

    doc = recommend_study(view)
    assert doc["evidence"]["quantization"] == "none", "a config with a diverged seed is not recommended"
    assert any("trial #1" in line and "1 of 3 seeds diverged" in line for line in doc["evidence"]["left_out"])
    allowed = recommend_study(view, allow_diverged=True)
    assert allowed["evidence"]["quantization"] == "nf4" and "left_out" not in allowed["evidence"]


def test_an_interrupted_seed_is_no_evidence_against_its_config(tmp_path: Path) -> None:
    """A confirmation run the user Ctrl-C'd says nothing of its config: it is planned again, not counted as a
    failed seed (it left 16-bit LoRA out of a real study's recommendation); a seed that failed is."""
    from harness.search.readout import INTERRUPTED

    study, url = _study(tmp_path)
    _trial(study, "none", 1.90)                                   # 0: the best search trial
    _trial(study, "nf4", 2.00)                                    # 1
    _trial(study, "none", None, seed=1, of=0, status="failed", reason=INTERRUPTED, device=None)  # 2
    for seed, loss in ((1, 1.92), (2, 1.93)):                     # 3-4: 16-bit confirmed
        _trial(study, "none", loss, seed=seed, of=0)
    for seed, loss in ((1, 2.02), (2, 2.03)):                     # 5-6: nf4 confirmed
        _trial(study, "nf4", loss, seed=seed, of=1)
    view = open_view("e", url)
    none = next(m for m in build_comparison(view).modes if m.mode == "none")
    assert none.confirmed.statuses == ("complete", "complete") and none.confirmed.against() is None
    doc = recommend_study(view)
    assert doc["evidence"]["quantization"] == "none" and "left_out" not in doc["evidence"]
    _trial(study, "none", None, seed=3, of=0, status="failed", reason="failed: RuntimeError: boom")  # 7
    doc = recommend_study(open_view("e", url))
    assert doc["evidence"]["quantization"] == "nf4", "a config with a failed seed is recommended"
    assert any("trial #0" in line and "1 of 3 seeds failed" in line for line in doc["evidence"]["left_out"])


# --- confirmation seeds are never a seed already run for that config ------------------------------

def test_confirmation_seeds_skip_seeds_already_run_for_the_same_config(tmp_path: Path) -> None:
    study, url = _study(tmp_path)
    _trial(study, "none", 2.00)                                   # 0: search trial, seed 0
    _trial(study, "none", 2.01, seed=1)                           # 1: same params, seed 1 (an older run)
    _trial(study, "none", None, seed=2, of=0, status="failed")    # 2: an interrupted confirmation, seed 2
    plans = plan_confirmations(open_view("e", url), seeds=3)
    seeds = sorted(p.seed for p in plans if p.source == 0)
    assert seeds == [2, 3, 4], "seed 1 ran already; seed 2 failed without a result, so it is run again"
    assert all(p.params["quantization"] == "none" for p in plans if p.source == 0)


# --- one table never mixes devices -----------------------------------------------------------------

def test_compare_refuses_to_mix_devices_and_can_split_them(tmp_path: Path) -> None:
    study, url = _study(tmp_path)
    _trial(study, "none", 2.0, device="cpu A (2 cores)")
    _trial(study, "nf4", 2.1, device="cpu A (2 cores)")
    _trial(study, "nf4", 2.2, device="NVIDIA H100 80GB HBM3")
    view = open_view("e", url)
    with pytest.raises(SpecError, match="2 devices .*--device"):
        build_comparison(view)
    one = build_comparison(view, "cpu A (2 cores)")
    assert one.device == "cpu A (2 cores)" and sum(m.trials for m in one.modes) == 2
    assert any("Device: cpu A (2 cores)" in line for line in one.setup)
    with pytest.raises(SpecError, match="no finished trial"):
        build_comparison(view, "TPU")


def test_a_trial_interrupted_before_it_loaded_is_not_a_device(tmp_path: Path) -> None:
    """A Ctrl-C'd trial records no device: it must not make the study look split across two (an `unknown` one),
    which refused `harness compare` on a real study; a completed trial without one (an old record) still counts."""
    study, url = _study(tmp_path)
    _trial(study, "none", 2.0, device="cpu A (2 cores)")
    _trial(study, "nf4", 2.1, device="cpu A (2 cores)")
    _trial(study, "none", None, status="failed", device=None)
    comparison = build_comparison(open_view("e", url))
    assert comparison.device == "cpu A (2 cores)"
    _trial(study, "nf4", 2.2, device=None)  # completed, device not recorded: that is a second device
    with pytest.raises(SpecError, match="2 devices .*'unknown': 1 trials"):
        build_comparison(open_view("e", url))


# --- the held-out set's sampling noise is part of every interval ------------------------------------

def test_paired_bootstrap_matches_the_normal_approximation() -> None:
    rng = random.Random(0)
    a = [rng.gauss(2.0, 1.0) for _ in range(400)]
    b = [x + 0.1 + rng.gauss(0.0, 0.3) for x in a]  # paired: the same examples, per-example difference sd 0.3
    half = paired_bootstrap_half(a, b)
    assert half == pytest.approx(1.96 * 0.3 / 400 ** 0.5, rel=0.15)
    assert paired_bootstrap_half(a, b) == half  # seeded: reproducible
    assert paired_bootstrap_half(a, a) == 0.0


def test_combined_interval_adds_both_noises_in_quadrature() -> None:
    seeds_only = combined_difference([1.00, 1.01, 0.99], [1.10, 1.11, 1.09], None)
    assert seeds_only.distinguishable is True and seeds_only.example_half is None
    both = combined_difference([1.00, 1.01, 0.99], [1.10, 1.11, 1.09], 0.2)
    assert both.example_half == 0.2 and both.seed_half == pytest.approx(seeds_only.seed_half)
    assert (both.ci_high - both.ci_low) / 2 == pytest.approx((seeds_only.seed_half ** 2 + 0.04) ** 0.5)
    assert both.distinguishable is False, "a 0.1 gap inside +/-0.2 of eval-set noise is not a finding"


def test_a_gap_smaller_than_the_eval_noise_is_not_distinguishable(tmp_path: Path) -> None:
    study, url = _study(tmp_path)
    _trial(study, "none", 2.00)
    _trial(study, "nf4", 2.02)
    for seed, (a, b) in enumerate(((2.000, 2.020), (2.001, 2.021), (1.999, 2.019)), start=1):
        # each run's per-example losses scatter by 0.5 nats around its mean (a small, noisy eval set)
        _trial(study, "none", a, seed=seed, of=0, noise=0.5)
        _trial(study, "nf4", b, seed=seed, of=1, noise=0.5)
    comparison = build_comparison(open_view("e", url))
    d = comparison.differences["nf4"]
    assert d["seed_half_relative"] < 0.005, "the seeds alone agree closely"
    assert d["eval_noise_half_relative"] > 0.01, "but the held-out examples vary a lot"
    assert d["distinguishable"] is False and not d["resolved"]
    # more seeds cannot resolve it: the eval set's noise alone is wider than the 1% resolution
    assert d["paired"]["verdict"]["eval_set_floor"] is True
    assert "not resolved" in comparison.headlines[0] and "more held-out examples" in comparison.headlines[0]


# --- per-mode untuned baselines and what fine-tuning recovered ---------------------------------------

def test_compare_shows_each_modes_untuned_baseline_and_the_recovered_gap(tmp_path: Path) -> None:
    study, url = _study(tmp_path)
    _trial(study, "none", 2.00)
    _trial(study, "nf4", 2.10)
    comparison = build_comparison(open_view("e", url))
    none, nf4 = comparison.modes
    assert (none.untuned, nf4.untuned) == (4.0, 4.3)
    assert comparison.differences["nf4"]["untuned_diff"] == pytest.approx(0.3)
    assert "+0.3000" in comparison.costs[0] and "closed 67% of it" in comparison.costs[0]
    md = comparison_markdown(comparison)
    assert "untuned eval_loss" in md and "| 4.3000 |" in md


# --- a small held-out split is said out loud everywhere ----------------------------------------------

def test_a_small_eval_set_is_repeated_by_compare_and_recommend(tmp_path: Path) -> None:
    study, url = _study(tmp_path)
    study.set_user_attr("n_eval", 12)
    _trial(study, "none", 2.0, examples=False)
    _trial(study, "nf4", 2.1, examples=False)
    view = open_view("e", url)
    assert any("only 12 held-out examples" in n for n in build_comparison(view).notes)
    doc = recommend_study(view)
    assert any("only 12 held-out examples" in n for n in doc["evidence"]["notes"])


# --- recommended.yaml: the memory budget holds for every seed; it states what really ran --------------

def test_memory_budget_uses_the_largest_peak_of_a_configs_runs(tmp_path: Path) -> None:
    study, url = _study(tmp_path)
    _trial(study, "none", 2.00, memory=900.0)
    _trial(study, "nf4", 2.10, memory=500.0)
    for seed, memory in ((1, 900.0), (2, 950.0), (3, 1300.0)):   # one seed peaked above the budget
        _trial(study, "none", 2.00, seed=seed, of=0, memory=memory)
    for seed in (1, 2, 3):
        _trial(study, "nf4", 2.10, seed=seed, of=1, memory=500.0)
    doc = recommend_study(open_view("e", url), max_memory_mb=1000.0)
    assert doc["evidence"]["quantization"] == "none"
    assert doc["within_memory"]["evidence"]["quantization"] == "nf4", "the median 950 fits, the largest 1300 not"
    assert doc["within_memory"]["evidence"]["metrics"]["peak_memory_mb"]["max"] == 500.0


def test_recommended_yaml_states_the_optimizer_and_dtype_that_ran(tmp_path: Path) -> None:
    study, url = _study(tmp_path)
    _trial(study, "nf4", 2.0)
    doc = recommend_study(open_view("e", url))
    assert doc["training"]["optim"] == "adamw_torch" and "bf16" not in doc["training"]
    assert doc["quantization"]["bnb_4bit_compute_dtype"] == "float32"
    assert doc["evidence"]["compute_dtype"] == "float32" and doc["evidence"]["device"] == "cpu X (2 cores)"
    path = write_recommended(doc, tmp_path / "r.yaml", "harness recommend --study e")
    text = path.read_text()
    assert "# Measured on tiny-llama" in text and "compute dtype float32" in text
    assert yaml.safe_load(text)["training"]["optim"] == "adamw_torch"
