"""LoRA variants and training knobs as search-space axes (issue 13): conditional sampling, the grid of a
conditional space, combinations refused before any model loads, each axis reaching the model or optimizer,
`compare --by`, and recommended.yaml with every new key loading without harness."""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap
from pathlib import Path

import optuna
import pytest

from helpers import assert_one_line_error, load_without_harness, run_cli
from harness.evidence.grouping import grouping
from harness.config.space import check_points, describe_optional, load_space, parse_space, suggest
from harness.config.errors import SpecError
from harness.config.lora import LoraSpec
from harness.config.model import QuantSpec
from harness.config.sweep import SweepSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig
from harness.search.study import points_sampler
from harness.search.sweep import trial_config

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _variant(params: dict) -> str:
    if params["init_lora_weights"] != "true":
        return params["init_lora_weights"]
    if params["use_dora"]:
        return "dora"
    if params["use_rslora"]:
        return "rslora"
    return "lora+" if params["loraplus_lr_ratio"] != 1 else "plain"


# --- conditional axes ---------------------------------------------------------------------------------


def test_conditional_axes_are_sampled_only_when_their_condition_holds() -> None:
    space = load_space(SPACES / "variants.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        params = suggest(trial, space)
        assert ("use_dora" in params) == (params["init_lora_weights"] == "true")
        assert ("use_rslora" in params) == (params.get("use_dora") is False)
        assert ("loraplus_lr_ratio" in params) == (params.get("use_rslora") is False)
        assert {k: v for k, v in trial.params.items() if k != "lora_alpha_ratio"} == params
        seen.add(_variant({"use_dora": False, "use_rslora": False, "loraplus_lr_ratio": 1, **params}))
        study.tell(trial, 1.0)
    assert seen == {"pissa", "dora", "rslora", "lora+", "plain"}


def test_the_grid_of_a_conditional_space_runs_each_combination_once() -> None:
    space = load_space(SPACES / "variants.yaml")
    points = space.points()
    assert len(points) == 5 * 4  # five exclusive variants x four learning rates, no duplicates
    study = optuna.create_study(sampler=points_sampler(points, seed=3))
    ran = []
    for _ in range(20):
        assert not study.sampler.is_exhausted(study)
        trial = study.ask()
        params = suggest(trial, space)
        ran.append(json.dumps({**params, "lora_alpha_ratio": trial.params["lora_alpha_ratio"]}, sort_keys=True))
        study.tell(trial, 1.0)
    assert study.sampler.is_exhausted(study)
    expected = {json.dumps({**p, "lora_alpha": p["lora_alpha_ratio"] * p["lora_r"]}, sort_keys=True) for p in points}
    assert len(set(ran)) == 20 and set(ran) == expected


def test_an_enqueued_trial_keeps_its_params_under_the_points_grid() -> None:
    space = load_space(SPACES / "variants.yaml")
    study = optuna.create_study(sampler=points_sampler(space.points(), seed=0))
    fixed = {"lora_r": 16, "lora_alpha_ratio": 2.0, "learning_rate": 3e-4, "quantization": "none",
             "lora_dropout": 0.0, "target_modules": "all-linear", "init_lora_weights": "true", "use_dora": True}
    study.enqueue_trial(fixed)
    trial = study.ask()
    assert suggest(trial, space)["use_dora"] is True and trial.params["learning_rate"] == 3e-4
    assert "harness:point" not in study.trials[-1].system_attrs  # a confirmation run takes no grid point


def test_conditions_may_chain_but_not_circle(tmp_path: Path) -> None:
    chained = parse_space({"axes": {"use_dora": {"choices": [False, True]},
                                    "use_rslora": {"choices": [False, True], "when": {"use_dora": False}},
                                    "loraplus_lr_ratio": {"choices": [1, 4], "when": {"use_rslora": [False]}}}})
    assert [a.name for a in chained.sampled()][-3:] == ["use_dora", "use_rslora", "loraplus_lr_ratio"]
    with pytest.raises(SpecError, match="circle"):
        parse_space({"axes": {"use_dora": {"choices": [False, True], "when": {"use_rslora": True}},
                              "use_rslora": {"choices": [False, True], "when": {"use_dora": True}}}}, "s.yaml")


def test_a_space_without_the_new_axes_keeps_its_hash() -> None:
    # recorded before issue 13: resuming a study made with these spaces must still be allowed
    assert parse_space({"axes": {}}).hash == "80f89ecb80d6bc18"
    assert parse_space({"axes": {"lora_alpha": {"ratio": 2}}}).hash == "ba1479ded1abb4da"
    with_dora = parse_space({"axes": {"use_dora": {"choices": [False, True]}}})
    assert with_dora.hash != parse_space({"axes": {}}).hash


# --- combinations that cannot train are refused before any model loads ---------------------------------


def test_pissa_on_a_quantized_base_is_refused_and_a_condition_allows_it(tmp_path: Path) -> None:
    spec = SweepSpec()
    both = parse_space({"axes": {"quantization": {"choices": ["none", "nf4"]},
                                 "init_lora_weights": {"choices": [True, "pissa"]}}}, "mixed.yaml")
    with pytest.raises(SpecError) as info:
        check_points(both, lambda p: trial_config(spec, p))
    message = str(info.value)
    assert "mixed.yaml" in message and "init_lora_weights pissa" in message and "quantization nf4" in message
    assert "\n" not in message
    only_16bit = parse_space({"axes": {"quantization": {"choices": ["none", "nf4"]},
                                       "init_lora_weights": {"choices": [True, "pissa"],
                                                             "when": {"quantization": "none"}}}}, "ok.yaml")
    check_points(only_16bit, lambda p: trial_config(spec, p))
    with pytest.raises(SpecError, match="SVD"):
        TrialConfig(quant=QuantSpec("int8"), lora=LoraSpec(init="pissa_niter_4"))
    dora_int8 = parse_space({"axes": {"quantization": {"choices": ["none", "int8"]},
                                      "use_dora": {"choices": [False, True]}}}, "dora.yaml")
    with pytest.raises(SpecError, match="use_dora True, quantization int8|quantization int8, use_dora True"):
        check_points(dora_int8, lambda p: trial_config(spec, p))


def test_warmup_and_decay_must_fit_the_run() -> None:
    space = parse_space({"axes": {"scheduler": "warmup_stable_decay", "warmup_ratio": {"choices": [0.1, 0.95]}}})
    with pytest.raises(SpecError, match="decay_ratio"):
        check_points(space, lambda p: trial_config(SweepSpec(), p))


# --- the values reach the trial config, the schedule and the read-outs ---------------------------------


def test_sampled_training_axes_override_the_experiment_and_absent_ones_keep_it() -> None:
    spec = SweepSpec(train=TrainSpec(batch_size=4, warmup_ratio=0.2, scheduler="linear"))
    base = {"quantization": "none", "lora_r": 8, "lora_alpha": 16.0, "learning_rate": 1e-3, "lora_dropout": 0.0,
            "target_modules": "q_proj,v_proj"}
    config = trial_config(spec, {**base, "batch_size": 2, "grad_accum": 3, "weight_decay": 0.0,
                                 "max_grad_norm": 0.5, "loraplus_lr_ratio": 8.0, "use_dora": True,
                                 "init_lora_weights": "olora"})
    assert (config.train.batch_size, config.train.grad_accum, config.train.weight_decay) == (2, 3, 0.0)
    assert (config.train.max_grad_norm, config.train.loraplus_lr_ratio) == (0.5, 8.0)
    assert (config.train.warmup_ratio, config.train.scheduler) == (0.2, "linear")  # from the experiment
    assert (config.lora.use_dora, config.lora.init, config.lora.use_rslora) == (True, "olora", False)
    # a validation carries a config's variant axes beside the linked space's core params
    carried = trial_config(spec, base, variant={"use_rslora": True, "scheduler": "constant"})
    assert carried.lora.use_rslora and carried.train.scheduler == "constant"


@pytest.mark.parametrize("scheduler", ["cosine", "linear", "constant", "warmup_stable_decay"])
def test_the_learning_rate_follows_the_named_schedule(scheduler: str) -> None:
    import torch

    from harness.trial.train import make_scheduler

    spec = TrainSpec(learning_rate=1e-3, max_steps=20, warmup_ratio=0.1, decay_ratio=0.25, scheduler=scheduler)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=spec.learning_rate)
    schedule = make_scheduler(optimizer, spec)
    lrs = []
    for _ in range(spec.max_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    peak, warm, total, decay = 1e-3, spec.warmup_steps, spec.max_steps, spec.decay_steps
    assert (warm, decay) == (2, 5)

    def expected(step: int) -> float:
        if step < warm:
            return peak * step / warm
        progress = (step - warm) / (total - warm)
        if scheduler == "cosine":
            return peak * 0.5 * (1 + math.cos(math.pi * progress))
        if scheduler == "linear":
            return peak * (1 - progress)
        if scheduler == "constant":
            return peak
        if step < total - decay:  # warm-up, stable, then transformers' default cosine decay to 0
            return peak
        return peak * 0.5 * (1 + math.cos(math.pi * (step - (total - decay)) / decay))

    for step in (0, 1, 2, 5, 14, 15, 17, 19):
        assert lrs[step] == pytest.approx(expected(step), abs=1e-9), (scheduler, step, lrs)


def test_grouping_labels_and_the_values_of_axes_a_trial_did_not_sample() -> None:
    sweep = {"train": {"batch_size": 4}}
    by = grouping("init_lora_weights,use_dora", sweep)
    assert by.reference == "init_lora_weights=true, use_dora=false"
    assert by.key({"init_lora_weights": "pissa"}) == "init_lora_weights=pissa, use_dora=false"
    assert by.label({"init_lora_weights": "true", "use_dora": True}) == "use_dora=true"
    assert by.label({}) == "defaults"
    assert grouping("batch_size", sweep).key({}) == "batch_size=4"  # the experiment's value, not TrainSpec's 8
    assert grouping(None, sweep).key({"quantization": "nf4"}) == "nf4"
    with pytest.raises(SpecError, match="not a search-space axis"):
        grouping("use_doraa", sweep)
    with pytest.raises(SpecError, match="continuous range"):
        grouping("learning_rate", sweep, {"learning_rate": {"low": 1e-4, "high": 1e-3, "log": True}})
    assert describe_optional({"use_dora": True, "use_rslora": False, "init_lora_weights": "pissa",
                              "loraplus_lr_ratio": 16.0, "batch_size": 4}) == ["dora", "pissa", "lora+16", "bs4"]


def test_importances_count_a_conditional_axis_at_the_value_it_trained_with() -> None:
    from harness.publish.report import with_defaults_filled

    space = load_space(SPACES / "variants.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(12):
        trial = study.ask()
        suggest(trial, space)
        study.tell(trial, 1.0)
    filled = with_defaults_filled(study.get_trials(), {"train": {}})
    for trial in filled:
        assert {"use_dora", "use_rslora", "loraplus_lr_ratio"} <= set(trial.params)
        if trial.params["init_lora_weights"] == "pissa":
            assert trial.params["use_dora"] is False and trial.params["loraplus_lr_ratio"] == 1.0


# --- each axis reaches the model and the optimizer (the tiny random Llama) ------------------------------


def _peft(tiny_checkpoint: str, **lora: object):
    from harness.trial.models import load_base_model
    from harness.trial.run import attach_adapter

    config = TrialConfig(lora=LoraSpec(r=8, alpha=16.0, **lora))  # type: ignore[arg-type]
    return attach_adapter(load_base_model(tiny_checkpoint, "none", "cpu"), config), config


def _lora_layers(model) -> list:
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


@pytest.mark.integration
def test_dora_rslora_and_the_target_presets_reach_the_peft_model(tiny_checkpoint: str) -> None:
    dora, _ = _peft(tiny_checkpoint, use_dora=True)
    magnitudes = [n for n, p in dora.named_parameters() if "lora_magnitude_vector" in n and p.requires_grad]
    assert len(magnitudes) == len(_lora_layers(dora)) > 0  # one trained magnitude vector per adapted layer
    rs, _ = _peft(tiny_checkpoint, use_rslora=True)
    assert [layer.scaling["default"] for layer in _lora_layers(rs)] == pytest.approx(
        [16.0 / math.sqrt(8)] * len(_lora_layers(rs)))
    plain, _ = _peft(tiny_checkpoint)
    assert [layer.scaling["default"] for layer in _lora_layers(plain)] == pytest.approx([2.0] * len(_lora_layers(plain)))
    mlp, _ = _peft(tiny_checkpoint, targets="mlp")
    assert {n.rsplit(".", 1)[-1] for n, m in mlp.named_modules() if m in _lora_layers(mlp)} == {
        "gate_proj", "up_proj", "down_proj"}
    listed, _ = _peft(tiny_checkpoint, targets="q_proj,v_proj")
    assert {n.rsplit(".", 1)[-1] for n, m in listed.named_modules() if m in _lora_layers(listed)} == {
        "q_proj", "v_proj"}


@pytest.mark.integration
@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_principal_inits_start_from_the_weights_and_save_as_plain_lora(init: str, tiny_checkpoint: str,
                                                                        tmp_path: Path) -> None:
    import torch
    from peft import PeftModel

    from harness.trial.models import load_base_model
    from harness.trial.run import keep_initial, save_adapter

    original = load_base_model(tiny_checkpoint, "none", "cpu")
    q_before = original.model.layers[0].self_attn.q_proj.weight.detach().clone()
    model, config = _peft(tiny_checkpoint, init=init)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    assert b.abs().sum() > 0 and a.abs().sum() > 0  # not B = 0: the adapter holds principal components
    residual = layer.base_layer.weight.detach()
    assert not torch.allclose(residual, q_before)  # the base keeps the residual ...
    rebuilt = residual.float() + layer.scaling["default"] * (b.float() @ a.float())
    assert torch.allclose(rebuilt, q_before.float(), atol=2e-2)  # ... and residual + adapter is the weight
    initial = keep_initial(model, str(tmp_path / "adapter"), config.lora)
    with torch.no_grad():  # stand in for training: move every adapter weight
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.add_(0.01 * torch.randn_like(param))
    ids = torch.randint(0, 100, (2, 12))
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=ids).logits.float()
    save_adapter(model, str(tmp_path / "adapter"), initial)
    assert not (tmp_path / "adapter" / "initial_adapter").exists()
    reloaded = PeftModel.from_pretrained(load_base_model(tiny_checkpoint, "none", "cpu"), str(tmp_path / "adapter"))
    assert reloaded.peft_config["default"].r == 16  # converted to a plain LoRA delta of rank 2r
    with torch.no_grad():
        again = reloaded(input_ids=ids).logits.float()
    assert torch.allclose(again, trained, atol=5e-2), (again - trained).abs().max()


@pytest.mark.integration
def test_loraplus_puts_the_b_matrices_in_faster_groups(tiny_checkpoint: str) -> None:
    from harness.trial.train import make_optimizer

    model, _ = _peft(tiny_checkpoint)
    params = [p for p in model.parameters() if p.requires_grad]
    spec = TrainSpec(learning_rate=1e-3, loraplus_lr_ratio=16.0, weight_decay=0.01)
    optimizer = make_optimizer(model, params, spec, "cpu")
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {names[id(p)]: group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert lr_of and len(lr_of) == len(params)
    b_lrs = [lr for n, lr in lr_of.items() if "lora_B" in n]
    a_lrs = [lr for n, lr in lr_of.items() if "lora_A" in n]
    assert b_lrs and b_lrs == pytest.approx([1.6e-2] * len(b_lrs))
    assert a_lrs and a_lrs == pytest.approx([1e-3] * len(a_lrs))
    plain = make_optimizer(model, params, dataclasses.replace(spec, loraplus_lr_ratio=1.0), "cpu")
    assert [g["lr"] for g in plain.param_groups] == [1e-3]


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["int8", "nf4-dq"])
def test_dora_rslora_olora_and_loraplus_train_on_a_quantized_base(mode: str) -> None:
    """What spec.combination_error allows on a quantized base does train there (the CPU bitsandbytes); what it
    refuses is refused before any model loads."""
    from harness.config.dataset import DataSpec
    from harness.config.evaluation import EvalSpec
    from harness.config.model import ModelSpec
    from harness.trial.run import TrialCache, run_trial

    cache = TrialCache()
    common = dict(model=ModelSpec("tiny-llama"), quant=QuantSpec(mode), data=DataSpec(eval_size=8, train_size=32),
                  eval=EvalSpec(generate_size=0, metrics=()))
    train = TrainSpec(max_steps=2, learning_rate=1e-3, loraplus_lr_ratio=4.0)
    dora = {"use_dora": True, "use_rslora": True}
    variants = {"plain": {}, "rslora": {"use_rslora": True}, "olora": {"init": "olora"}}
    if mode == "int8":
        with pytest.raises(SpecError, match="use_dora true cannot be combined with quantization int8"):
            TrialConfig(lora=LoraSpec(use_dora=True), **common)
    else:
        variants["dora+rslora"] = dora
    results = {name: run_trial(TrialConfig(lora=LoraSpec(r=8, alpha=16.0, **lora), train=train, **common), cache)
               for name, lora in variants.items()}
    for name, result in results.items():
        assert result.status == "complete", (name, result.reason)
        assert result.steps == 2 and math.isfinite(result.eval_loss)
    if "dora+rslora" in results:
        assert results["dora+rslora"].trainable_params > results["plain"].trainable_params  # the magnitude vectors


# --- the command line: a conditional grid, compare --by, recommended.yaml without harness ---------------


VARIANT_SPACE = """\
description: every new axis, for the command-line test
axes:
  lora_r: 8
  lora_alpha: {ratio: 2}
  learning_rate: 1.0e-3
  quantization: none
  target_modules: [q_proj, v_proj]
  init_lora_weights: {choices: [true, olora]}
  use_dora: {choices: [false, true], when: {init_lora_weights: true}}
  use_rslora: true
  loraplus_lr_ratio: 4
  batch_size: 4
  grad_accum: 2
  warmup_ratio: 0.25
  weight_decay: 0.0
  scheduler: warmup_stable_decay
  max_grad_norm: 0.5
"""


@pytest.mark.integration
def test_variants_sweep_compare_by_and_recommend_from_the_command_line(tmp_path: Path) -> None:
    space = tmp_path / "variants.yaml"
    space.write_text(VARIANT_SPACE)
    out = tmp_path / "run"
    common = ["--study", "v", "--out", str(out)]
    sweep = run_cli("sweep", "--model", "tiny-llama", "--space", str(space), "--sampler", "grid", "--trials", "5",
                    "--max-steps", "4", "--wandb", "disabled", *common, cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    assert "the grid is exhausted after 3 trials" in sweep.stderr + sweep.stdout
    rows = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        config = row["config"]
        assert config["lora"]["use_rslora"] is True and config["lora"]["targets"] == "q_proj,v_proj"
        assert (config["train"]["batch_size"], config["train"]["grad_accum"]) == (4, 2)
        assert config["train"]["loraplus_lr_ratio"] == 4.0
        assert config["train"]["scheduler"] == "warmup_stable_decay"
        assert row["params"]["batch_size"] == 4  # every sampled value is a param
        lrs = [h["lr"] for h in row["history"] if "lr" in h]  # the rate after each step (the next step's)
        assert lrs == pytest.approx([1e-3, 1e-3, 1e-3, 0.0])  # 1 warm-up step, stable, 1 decay step
    assert sorted(_variant_of(r["params"]) for r in rows) == ["dora", "olora", "plain"]

    # Sequential confirmation at a resolution no run can meet: 2 seeds per group, then one more (the cap).
    compare = run_cli("compare", "--by", "init_lora_weights,use_dora", "--confirm-until", "resolved", "--max-seeds",
                      "3", "--resolution", "1e-9", *common, "--reports-dir", str(tmp_path / "reports"), cwd=tmp_path)
    assert compare.returncode == 0, compare.stderr[-2000:]
    doc = json.loads((tmp_path / "reports" / "comparison_by_init_lora_weights+use_dora.json").read_text())
    assert doc["by"] == ["init_lora_weights", "use_dora"]
    assert doc["reference"] == "init_lora_weights=true, use_dora=false"
    labels = sorted(m["label"] for m in doc["modes"])
    assert labels == ["defaults", "init_lora_weights=olora", "use_dora=true"]
    assert all(sorted(m["confirmed"]["seeds"]) == [1, 2, 3] for m in doc["modes"])  # the same seeds for every group
    assert set(doc["vs_reference"]) == {"init_lora_weights=olora, use_dora=false", "init_lora_weights=true, use_dora=true"}
    assert "6 re-runs" in compare.stdout and "group of init_lora_weights, use_dora" in compare.stdout
    assert "adding seeds up to 3" in compare.stdout and "3 seeds spent (--max-seeds)" in compare.stdout
    assert doc["sequential"]["max_seeds"] == 3 and "Lan & DeMets" in doc["sequential"]["method"]
    for d in doc["vs_reference"].values():  # paired over the shared seeds, at the last look's level
        assert d["analysis"] == "paired" and d["paired"]["pairs"] == 3 and 0.95 < d["paired"]["confidence"] < 1
        # nothing is pinned down to +/-1e-9: resolved only by an interval that excludes zero
        phrase = d["paired"]["phrase"]
        assert phrase == "resolved: a real difference" or phrase.startswith("not resolved at ±1e-09"), phrase
        assert d["resolved"] == (d["paired"]["verdict"]["kind"] == "different")
    assert all("resolved" in h for h in doc["headlines"])
    # A later compare without --confirm-until reads the study at the looks' levels too, not at 95%.
    plain = run_cli("compare", "--by", "init_lora_weights,use_dora", *common, "--resolution", "1e-9",
                    "--reports-dir", str(tmp_path / "reports_plain"), cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr[-2000:]
    doc_plain = json.loads((tmp_path / "reports_plain" / "comparison_by_init_lora_weights+use_dora.json").read_text())
    assert doc_plain["sequential"]["max_seeds"] == 3
    for key, d in doc["vs_reference"].items():
        assert doc_plain["vs_reference"][key]["paired"]["confidence"] == pytest.approx(d["paired"]["confidence"])

    # The study rebuilt from its trials.jsonl reads back the same (confirmations named in the records).
    imported = tmp_path / "imported"
    result = run_cli("import", str(out / "trials.jsonl"), "--model", "tiny-llama", "--space", str(space),
                     "--max-steps", "4", "--study", "v2", "--out", str(imported), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported 12 trials" in result.stdout and "inferred" not in result.stdout
    again = run_cli("compare", "--by", "init_lora_weights,use_dora", "--study", "v2", "--out", str(imported),
                    "--resolution", "1e-9", "--reports-dir", str(tmp_path / "reports2"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    doc2 = json.loads((tmp_path / "reports2" / "comparison_by_init_lora_weights+use_dora.json").read_text())
    for key, d in doc["vs_reference"].items():
        assert doc2["vs_reference"][key]["paired"]["diff"] == pytest.approx(d["paired"]["diff"], rel=1e-12)
        assert doc2["vs_reference"][key]["relative_ci95"] == pytest.approx(d["relative_ci95"], rel=1e-9)
        assert doc2["vs_reference"][key]["paired"]["confidence"] == pytest.approx(d["paired"]["confidence"])
    refused = run_cli("import", str(out / "trials.jsonl"), "--model", "tiny-llama", "--space", str(space),
                      "--study", "v2", "--out", str(imported), cwd=tmp_path)
    assert_one_line_error(refused, "already exists", "v2")

    recommend = run_cli("recommend", *common, "--reports-dir", str(tmp_path / "reports"), cwd=tmp_path)
    assert recommend.returncode == 0, recommend.stderr[-2000:]
    path = tmp_path / "reports" / "recommended.yaml"
    import yaml

    rec = yaml.safe_load(path.read_text())
    assert rec["lora"]["use_rslora"] is True and rec["lora"]["target_modules"] == ["q_proj", "v_proj"]
    assert rec["lora"]["init_lora_weights"] in (True, "olora") and "use_dora" in rec["lora"]
    assert rec["training"]["lr_scheduler_type"] == "warmup_stable_decay"
    assert rec["training"]["lr_scheduler_kwargs"] == {"num_decay_steps": 1}
    assert (rec["training"]["per_device_train_batch_size"], rec["training"]["gradient_accumulation_steps"]) == (4, 2)
    assert rec["training"]["max_grad_norm"] == 0.5 and rec["training"]["weight_decay"] == 0.0
    assert rec["optimizer"] == {"lr": 1e-3, "loraplus_lr_ratio": 4.0, "weight_decay": 0.0}
    assert "create_loraplus_optimizer" in path.read_text().split("\nlora:")[0]  # the header says how
    loaded = load_without_harness(path, tmp_path)
    assert "loraplus groups" in loaded and "loaded" in loaded

    report = run_cli("report", "--by", "init_lora_weights,use_dora", "--wandb", "disabled", *common,
                     "--reports-dir", str(tmp_path / "reports"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    markdown = (tmp_path / "reports" / "report.md").read_text()
    assert "## Compared by init_lora_weights, use_dora" in markdown and "| variant |" in markdown
    assert "rslora, olora, lora+4, bs4, accum2" in markdown  # the best-trials table names each variant


def _variant_of(params: dict) -> str:
    if params["init_lora_weights"] == "olora":
        return "olora"
    return "dora" if params["use_dora"] else "plain"


@pytest.mark.integration
@pytest.mark.parametrize("axes, needles", [
    ("quantization: {choices: [none, nf4]}\n  init_lora_weights: {choices: [true, pissa]}",
     ["init_lora_weights pissa", "quantization nf4", "cannot train"]),
    ("use_dora: {choices: [false, true], when: {use_rslora: true}}", ["use_dora.when", "use_rslora"]),
    ("target_modules: [q_proj, w_proj]", ["target_modules", "'w_proj'", "no linear layer"]),
])
def test_a_bad_variant_space_is_one_line_before_any_model_loads(tmp_path: Path, axes: str, needles: list[str]) -> None:
    space = tmp_path / "bad.yaml"
    space.write_text(textwrap.dedent("axes:\n  " + axes + "\n"))
    proc = run_cli("sweep", "--model", "tiny-llama", "--space", str(space), "--trials", "1", "--study", "b",
                   "--out", str(tmp_path / "b"), "--wandb", "disabled", cwd=tmp_path)
    assert_one_line_error(proc, str(space), *needles)
    assert not (tmp_path / "b" / "trials.jsonl").exists()
