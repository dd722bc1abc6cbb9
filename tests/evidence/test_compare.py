"""compare / confirm / recommend on a hand-built study (no training), and the statistics they rest on."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution

from helpers import load_without_harness
from harness.evidence.compare import build_comparison
from harness.evidence.compare_doc import comparison_markdown, write_comparison
from harness.evidence.confirm import enqueue, plan_confirmations
from harness.search.readout import open_view
from harness.evidence.recommend import recommend_many, recommend_study, write_recommended
from harness.evidence.stats import summarize, t_quantile, welch

REPO = Path(__file__).resolve().parents[2]


# --- statistics against hand-computed values ----------------------------------------------------

@pytest.mark.parametrize("df, printed", [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (9, 2.262),
                                         (29, 2.045), (120, 1.980)])
def test_t_quantile_matches_the_printed_table(df: int, printed: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(printed, abs=5e-4)
    assert t_quantile(0.025, df) == pytest.approx(-printed, abs=5e-4)


@pytest.mark.parametrize("p, df, printed", [(0.95, 5, 2.015), (0.995, 10, 3.169), (0.90, 20, 1.325)])
def test_t_quantile_at_other_levels_matches_the_printed_table(p: float, df: int, printed: float) -> None:
    assert t_quantile(p, df) == pytest.approx(printed, abs=5e-4)


def test_t_quantile_takes_real_df_and_rejects_bad_input() -> None:
    assert t_quantile(0.975, 4) > t_quantile(0.975, 4.5) > t_quantile(0.975, 5)  # Welch df is real
    for p, df in ((0.0, 3), (1.0, 3), (0.975, 0)):
        with pytest.raises(ValueError, match="t_quantile needs"):
            t_quantile(p, df)


def test_summary_of_four_values_by_hand() -> None:
    # mean 2.5; std sqrt(5/3) = 1.29099; half width t(0.975, 3) * std / 2 = 3.18245 * 0.645497 = 2.05426
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert (s.n, s.mean) == (4, 2.5)
    assert s.std == pytest.approx(1.290994, rel=1e-6)
    assert (s.ci_low, s.ci_high) == pytest.approx((0.44574, 4.55426), abs=1e-5)
    single = summarize([3.0])
    assert single.std is None and single.ci_low is None


def test_welch_interval_by_hand() -> None:
    # a = 1,2,3 and b = 2,3,4: diff -1, variances 1, se sqrt(2/3) = 0.816497, Welch df = 4,
    # t(0.975, 4) = 2.776445: half width 2.266958 -> CI (-3.2670, 1.2670), includes 0.
    d = welch([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert d.diff == pytest.approx(-1.0)
    assert (d.ci_low, d.ci_high) == pytest.approx((-3.266958, 1.266958), abs=1e-5)
    assert d.distinguishable is False
    far = welch([1.0, 1.1, 0.9], [2.0, 2.1, 1.9])
    assert far.distinguishable is True
    rel, low, high = far.relative()
    assert rel == pytest.approx(-0.5)
    assert low < rel < high < 0


# --- a hand-built study, shaped as `harness sweep` leaves one ------------------------------------

DISTS = {"quantization": CategoricalDistribution(["none", "nf4-dq"]), "lora_r": CategoricalDistribution([8, 16]),
         "lora_alpha": FloatDistribution(1.0, 64.0), "learning_rate": FloatDistribution(1e-5, 1e-2, log=True),
         "lora_dropout": CategoricalDistribution([0.0]), "target_modules": CategoricalDistribution(["all-linear"])}
SWEEP = {"model": "tiny-llama", "data": "stdlib-qa", "space": "tiny", "max_steps": 10, "seed": 0,
         "objectives": ["eval_loss"]}


def _trial(study: optuna.Study, mode: str, lr: float, loss: float | None, *, memory: float, state: str = "COMPLETE",
           status: str = "complete", seed: int = 0, of: int | None = None, r: int = 16, pack: int = 1) -> None:
    params = {"quantization": mode, "lora_r": r, "lora_alpha": 2.0 * r, "learning_rate": lr, "lora_dropout": 0.0,
              "target_modules": "all-linear"}
    result = {"eval_loss": loss, "peak_memory_mb": memory, "train_seconds": 20.0 if mode == "none" else 30.0,
              "steps": 10, "tokens_per_second": 100.0, "base_model_mb": 500.0 if mode == "none" else 150.0,
              "rouge_l": None if loss is None else 1.0 / loss, "device": "cpu", "pack_size": pack}
    attrs = {"status": status, "reason": None if status == "complete" else f"{status} reason", "result": result,
             "config": {"train": {"max_steps": 10, "batch_size": 4, "grad_accum": 2, "warmup_ratio": 0.1,
                                  "weight_decay": 0.01, "max_grad_norm": 1.0, "scheduler": "cosine", "seed": seed}},
             "seed": seed}
    if of is not None:
        attrs["confirmation_of"] = of
    study.add_trial(optuna.trial.create_trial(
        params=params, distributions=DISTS, user_attrs=attrs, state=getattr(optuna.trial.TrialState, state),
        value=loss if state == "COMPLETE" else None))


@pytest.fixture()
def study_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=url)
    study.set_user_attr("sweep", SWEEP)
    study.set_user_attr("objectives", ["eval_loss"])
    study.set_user_attr("baseline_eval_loss", 4.0)
    study.set_user_attr("baseline_metrics", {"rouge_l": 0.1})
    _trial(study, "none", 1e-3, 2.00, memory=1000.0)                  # 0: best 16-bit
    _trial(study, "none", 3e-4, 2.40, memory=1000.0)                  # 1
    _trial(study, "nf4-dq", 1e-3, 1.95, memory=400.0)                 # 2: luckiest single trial
    _trial(study, "nf4-dq", 3e-4, None, memory=400.0, state="FAIL", status="oom")  # 3: out of memory
    _trial(study, "nf4-dq", 3e-4, None, memory=400.0, state="PRUNED", status="pruned")  # 4
    for seed, loss in ((1, 2.02), (2, 2.04), (3, 2.00)):              # 5-7: 16-bit confirmed, mean 2.02
        _trial(study, "none", 1e-3, loss, memory=1000.0, seed=seed, of=0)
    for seed, loss in ((1, 2.10), (2, 2.06), (3, 2.08)):              # 8-10: nf4-dq confirmed, mean 2.08
        _trial(study, "nf4-dq", 1e-3, loss, memory=400.0, seed=seed, of=2)
    return url


def test_comparison_counts_confirms_and_states_the_headline(study_url: str, tmp_path: Path) -> None:
    comparison = build_comparison(open_view("s", study_url))
    none, nf4 = comparison.modes
    assert (none.mode, none.trials, none.completed) == ("none", 5, 5)
    assert (nf4.trials, nf4.completed, nf4.pruned, nf4.failed, nf4.oom) == (6, 4, 1, 0, 1)
    assert nf4.best == pytest.approx(1.95) and nf4.median == pytest.approx(2.07)  # of 1.95, 2.06, 2.08, 2.10
    assert nf4.confirmed.source == 2 and nf4.confirmed.seeds == (1, 2, 3)
    assert nf4.confirmed.objective.mean == pytest.approx(2.08)  # the lucky 1.95 is not in the confirmed mean
    assert nf4.quality() == pytest.approx(2.08)
    assert nf4.seconds_per_step == pytest.approx(3.0) and nf4.peak_memory_mb == pytest.approx(400.0)
    d = comparison.differences["nf4-dq"]
    assert d["relative"] == pytest.approx(0.06 / 2.02)
    assert d["peak_memory_ratio"] == pytest.approx(0.4) and d["time_ratio"] == pytest.approx(1.5)
    assert d["distinguishable"] is True and d["better"] is False
    headline = comparison.headlines[0]
    for needle in ("nf4-dq", "worse by 3.0%", "95% CI", "40% of its peak memory", "30% of its weight memory",
                   "1.50x its time", "3 seeds"):
        assert needle in headline, (needle, headline)
    md, js = write_comparison(comparison, tmp_path / "r")
    assert "2.0800 ± 0.0200 (3, trial #2)" in md.read_text()
    data = json.loads(js.read_text())
    assert data["modes"][1]["confirmed"]["objective"]["mean"] == pytest.approx(2.08)
    assert data["modes"][1]["oom"] == 1


def _paired_study(tmp_path: Path, nf4: tuple[float, float, float], name: str = "p") -> str:
    """16-bit and nf4-dq confirmed on seeds 1-3 whose seed effect both share (seed 2 is a bad draw for both)."""
    url = f"sqlite:///{tmp_path}/{name}.db"
    study = optuna.create_study(study_name=name, storage=url)
    study.set_user_attr("sweep", SWEEP)
    _trial(study, "none", 1e-3, 2.00, memory=1000.0)
    _trial(study, "nf4-dq", 1e-3, 2.00, memory=400.0)
    for seed, loss in zip((1, 2, 3), (2.00, 2.30, 2.10)):
        _trial(study, "none", 1e-3, loss, memory=1000.0, seed=seed, of=0)
    for seed, loss in zip((1, 2, 3), nf4):
        _trial(study, "nf4-dq", 1e-3, loss, memory=400.0, seed=seed, of=1)
    return url


def test_configs_confirmed_on_the_same_seeds_are_compared_seed_by_seed(tmp_path: Path) -> None:
    comparison = build_comparison(open_view("p", _paired_study(tmp_path, (2.05, 2.36, 2.15))))
    d = comparison.differences["nf4-dq"]
    assert d["distinguishable"] is False  # Welch: the seed spread (0.15) swamps a 0.053 difference
    pair = d["paired"]
    # per-seed differences 0.05, 0.06, 0.05: mean 0.05333, sd 0.005774; t(0.975, 2) = 4.302653
    assert pair["pairs"] == 3 and pair["seeds"] == [1, 2, 3]
    assert pair["diff"] == pytest.approx(0.053333, abs=1e-6)
    half = 4.302653 * 0.0057735 / 3 ** 0.5
    scale = (2.00 + 2.30 + 2.10) / 3
    assert pair["relative_ci"] == pytest.approx([(0.053333 - half) / scale, (0.053333 + half) / scale], abs=1e-5)
    assert pair["width_ratio"] > 5 and d["analysis"] == "paired"
    assert d["resolved"] and pair["verdict"]["kind"] == "different"
    headline = comparison.headlines[0]
    for needle in ("paired over 3 seeds", "unpaired 95% CI", "the pairing narrows it", "resolved: a real difference"):
        assert needle in headline, (needle, headline)
    assert "paired t over the per-seed differences" in comparison_markdown(comparison)


def test_an_unresolved_comparison_says_how_many_seeds_would_resolve_it(tmp_path: Path) -> None:
    view = open_view("q", _paired_study(tmp_path, (2.03, 2.29, 2.12), name="q"))  # diffs +0.03, -0.01, +0.02
    d = build_comparison(view).differences["nf4-dq"]
    assert not d["resolved"] and d["paired"]["verdict"]["kind"] == "unresolved"
    needed = d["paired"]["verdict"]["seeds_needed"]
    assert needed > 3 and f"about {needed} seeds in all would resolve it ({needed - 3} more)" in d["paired"]["phrase"]
    assert "not resolved at ±1.0%" in d["paired"]["phrase"]
    # a coarser resolution is met by the same runs: the interval is narrower than +/-10%
    coarse = build_comparison(view, resolution="10%").differences["nf4-dq"]
    assert coarse["resolved"] and coarse["paired"]["verdict"]["kind"] == "within"


def test_unconfirmed_comparison_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/u.db"
    study = optuna.create_study(study_name="u", storage=url)
    study.set_user_attr("sweep", SWEEP)
    _trial(study, "none", 1e-3, 2.0, memory=1000.0)
    _trial(study, "nf4-dq", 1e-3, 2.0, memory=500.0)
    comparison = build_comparison(open_view("u", url))
    assert comparison.headlines == ["nf4-dq reaches the same eval_loss at 50% of its peak memory (30% of its "
                                    "weight memory) and 1.50x its time per step; not resolved: single trials, unconfirmed."]
    assert any("unconfirmed" in note for note in comparison.notes)
    assert "confirm-seeds" in comparison_markdown(comparison)


def test_confirmation_plans_fresh_seeds_once(study_url: str) -> None:
    view = open_view("s", study_url)
    assert plan_confirmations(view, 3) == []  # both modes' best already have seeds 1, 2, 3
    plans = plan_confirmations(view, 4)
    assert [(p.source, p.seed) for p in plans] == [(0, 4), (2, 4)]
    study = optuna.load_study(study_name="s", storage=study_url)
    enqueue(study, plans)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [(t.user_attrs["confirmation_of"], t.user_attrs["seed"]) for t in waiting] == [(0, 4), (2, 4)]
    assert waiting[1].system_attrs["fixed_params"]["learning_rate"] == pytest.approx(1e-3)
    assert plan_confirmations(open_view("s", study_url), 4) == []  # waiting re-runs are not planned twice
    top2 = plan_confirmations(open_view("s", study_url), 1, top=2)
    assert [(p.source, p.seed) for p in top2] == [(1, 1)]  # 16-bit's second config; nf4-dq has one completed


def test_a_packed_confirmation_trains_each_config_alone_once_and_its_memory_is_read_from_that_run(
        tmp_path: Path) -> None:
    """Runs trained in packs record the pack's peak memory and seconds; a packed confirmation plans one run of
    each config alone, and compare and recommend read memory and time from the runs that trained alone."""
    url = f"sqlite:///{tmp_path}/p.db"
    study = optuna.create_study(study_name="p", storage=url)
    study.set_user_attr("sweep", SWEEP)
    _trial(study, "none", 1e-3, 2.00, memory=4000.0, pack=4)            # 0: the search trials trained in a pack
    _trial(study, "nf4-dq", 1e-3, 2.10, memory=4000.0, pack=4)          # 1
    view = open_view("p", url)
    assert all(not p.alone for p in plan_confirmations(view, 3))  # not packed: every run measures itself
    plans = plan_confirmations(view, 3, pack=3)
    assert [(p.source, p.seed, p.alone) for p in plans] == [(0, 1, True), (0, 2, False), (0, 3, False),
                                                              (1, 1, True), (1, 2, False), (1, 3, False)]
    enqueue(study, plans)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [bool(t.user_attrs.get("alone")) for t in waiting] == [True, False, False, True, False, False]
    more = plan_confirmations(open_view("p", url), 4, pack=3)  # the waiting alone runs count: none planned again
    assert [(p.source, p.seed, p.alone) for p in more] == [(0, 4, False), (1, 4, False)]

    # The confirmations as a packed run leaves them: seed 1 alone (its own memory), seeds 2 and 3 in a pack.
    url2 = f"sqlite:///{tmp_path}/q.db"
    done = optuna.create_study(study_name="q", storage=url2)
    done.set_user_attr("sweep", SWEEP)
    _trial(done, "none", 1e-3, 2.00, memory=4000.0, pack=4)
    _trial(done, "nf4-dq", 1e-3, 2.10, memory=4000.0, pack=4)
    for source, mode, alone_mb in ((0, "none", 1000.0), (1, "nf4-dq", 400.0)):
        _trial(done, mode, 1e-3, 2.0, memory=alone_mb, seed=1, of=source)
        for seed in (2, 3):
            _trial(done, mode, 1e-3, 2.0, memory=3000.0, seed=seed, of=source, pack=2)
    view = open_view("q", url2)
    assert plan_confirmations(view, 4, pack=3)[0].alone is False  # each config has its run alone
    comparison = build_comparison(view)
    none, nf4 = comparison.modes
    assert (none.peak_memory_mb, nf4.peak_memory_mb) == (1000.0, 400.0)
    assert comparison.differences["nf4-dq"]["peak_memory_ratio"] == pytest.approx(0.4)
    assert any("come from the 2 run(s) that trained alone" in note for note in comparison.notes)
    doc = recommend_study(view, max_memory_mb=500)
    assert doc["evidence"]["metrics"]["peak_memory_mb"] == {"median": 1000.0, "max": 1000.0}
    assert doc["within_memory"]["evidence"]["source_trial"] == 1  # nf4-dq fits 500 MiB alone, not in its pack
    assert any("trained in packs of 2" in note for note in doc["evidence"]["notes"])


def test_recommendation_rests_on_confirmed_means(study_url: str, tmp_path: Path) -> None:
    doc = recommend_study(open_view("s", study_url), max_memory_mb=500)
    # the lucky nf4-dq trial (1.95) loses to 16-bit's confirmed mean 2.02 vs nf4-dq's 2.08
    assert doc["quantization"] is None and doc["evidence"]["source_trial"] == 0
    assert doc["evidence"]["confirmed"] is True and doc["evidence"]["seeds"] == [1, 2, 3]
    assert doc["evidence"]["metrics"]["eval_loss"]["mean"] == pytest.approx(2.02)
    assert doc["evidence"]["metrics"]["eval_loss"]["std"] == pytest.approx(0.02)
    assert doc["lora"] == {"r": 16, "lora_alpha": 32.0, "lora_dropout": 0.0, "target_modules": "all-linear",
                           "bias": "none", "task_type": "CAUSAL_LM", "use_rslora": False, "use_dora": False,
                           "init_lora_weights": True}
    assert doc["training"]["learning_rate"] == pytest.approx(1e-3)
    assert doc["training"]["gradient_accumulation_steps"] == 2
    assert set(doc["per_quantization"]) == {"none", "nf4-dq"}
    assert doc["per_quantization"]["nf4-dq"]["quantization"]["bnb_4bit_use_double_quant"] is True
    assert doc["within_memory"]["quantization"]["bnb_4bit_quant_type"] == "nf4"
    assert recommend_study(open_view("s", study_url), max_memory_mb=100)["within_memory"]["config"] is None
    path = write_recommended(doc, tmp_path / "recommended.yaml", "harness recommend --study s")
    assert yaml.safe_load(path.read_text())["evidence"]["study"] == "s"


def test_aggregating_studies_picks_the_config_they_share(study_url: str, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path}/o.db"
    study = optuna.create_study(study_name="o", storage=other)
    study.set_user_attr("sweep", SWEEP)
    _trial(study, "none", 1e-3, 3.3, memory=1000.0)      # 10% worse than this study's best
    _trial(study, "nf4-dq", 1e-3, 3.0, memory=400.0)     # this study's best
    views = [open_view("s", study_url), open_view("o", other)]
    doc = recommend_many(views)
    # shared configs: 16-bit lr 1e-3 (gaps 0% and 10%) and nf4-dq lr 1e-3 (gaps 3.0% and 0%)
    assert doc["quantization"]["bnb_4bit_quant_type"] == "nf4"
    assert "smallest mean relative gap" in doc["evidence"]["rule"]
    assert set(doc["evidence"]["studies"]) == {"s", "o"}


@pytest.mark.integration
def test_recommended_yaml_loads_into_peft_and_transformers_without_harness(study_url: str, tmp_path: Path) -> None:
    path = write_recommended(recommend_study(open_view("s", study_url)), tmp_path / "rec.yaml", "test")
    out = load_without_harness(path, tmp_path)
    assert "loaded 3" in out
    # best: 16-bit; per mode: 16-bit and nf4 with double quantization; warm-up 10% of 10 steps
    assert out.count("r 16 quant None dq None steps 10 warmup 1") == 2
    assert "quant nf4 dq True steps 10 warmup 1" in out


@pytest.mark.integration
@pytest.mark.parametrize("path", sorted(REPO.glob("reports/*/recommended.yaml")), ids=lambda p: p.parent.name)
def test_every_committed_recommended_yaml_loads(path: Path, tmp_path: Path) -> None:
    assert "loaded" in load_without_harness(path, tmp_path)
