"""Warm start: published defaults or another study's best configs as a sweep's first trials."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from helpers import REPO, load_study, loss_only_experiment, run_cli
from harness.config.defaults import load_harness_defaults
from harness.config.errors import SpecError
from harness.config.space import parse_space
from harness.search.warmstart import express, published_configs, study_configs

DEFAULT_SPACE = parse_space(yaml.safe_load((REPO / "search_spaces" / "default.yaml").read_text()), "default.yaml")


def test_the_default_space_starts_from_the_unsloth_defaults_and_says_why_not_the_others() -> None:
    configs, skipped = published_configs(DEFAULT_SPACE)
    assert [c.label for c in configs] == ["published default unsloth-16bit", "published default unsloth-4bit"]
    assert configs[0].params == {"lora_r": 16, "lora_alpha_ratio": 1, "learning_rate": 2e-4, "quantization": "none",
                                 "lora_dropout": 0.0, "target_modules": "all-linear"}
    assert configs[1].params["quantization"] == "nf4-dq" and "Unsloth" in configs[1].source
    assert "training settings" in skipped["qlora-guanaco-7b"] and "scheduler constant" in skipped["qlora-guanaco-7b"]
    assert skipped["peft-defaults"].startswith("learning_rate 5e-05 is outside the space's range [0.0001, 0.001]")


def test_express_checks_every_axis_and_fills_the_ones_a_config_leaves_out() -> None:
    space = parse_space({"axes": {"lora_r": {"low": 4, "high": 32, "step": 4}, "lora_alpha": 16.0,
                                  "learning_rate": {"choices": [1e-4, 3e-4]}, "quantization": "none",
                                  "use_dora": {"choices": [False, True]}}})
    given = {"lora_r": 8, "lora_alpha": 16.0, "learning_rate": 3e-4, "quantization": "none"}
    assert express(space, given) == {"lora_r": 8, "lora_alpha": 16.0, "learning_rate": 3e-4, "quantization": "none",
                                     "lora_dropout": 0.0, "target_modules": "all-linear", "use_dora": False}
    assert "lora_r 10" in express(space, {**given, "lora_r": 10})  # off the step
    assert "learning_rate 0.0002" in express(space, {**given, "learning_rate": 2e-4})
    assert "quantization 'nf4'" in express(space, {**given, "quantization": "nf4"})


def _study_with(values: list[tuple[int, float, dict]]) -> optuna.Study:
    study = optuna.create_study()
    dists = {"lora_r": optuna.distributions.CategoricalDistribution([8, 16, 32]),
             "lora_alpha": optuna.distributions.FloatDistribution(8, 64),
             "learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-3, log=True),
             "quantization": optuna.distributions.CategoricalDistribution(["none", "nf4-dq"])}
    for r, value, attrs in values:
        study.add_trial(optuna.trial.create_trial(
            params={"lora_r": r, "lora_alpha": 2.0 * r, "learning_rate": 5e-4, "quantization": "none"},
            distributions=dists, value=value, user_attrs=attrs))
    return study


def test_a_studys_best_completed_search_configs_come_first() -> None:
    study = _study_with([(8, 1.5, {}), (16, 1.2, {}), (32, 1.0, {"confirmation_of": 1}), (32, 1.3, {}),
                         (16, 1.4, {})])
    configs, skipped = study_configs(DEFAULT_SPACE, study, "old", "minimize")
    assert [c.label for c in configs] == ["study old trial #1", "study old trial #3", "study old trial #4"]
    assert configs[0].params["lora_alpha_ratio"] == 2 and configs[0].source == "eval_loss 1.2"
    assert not skipped
    with pytest.raises(SpecError, match="no completed trials"):
        study_configs(DEFAULT_SPACE, optuna.create_study(), "empty", "minimize")


@pytest.mark.integration
def test_warm_started_sweeps_from_the_command_line(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("axes:\n  lora_r: {choices: [4, 16]}\n  lora_alpha: {ratio: {choices: [1, 2]}}\n"
                     "  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}\n  quantization: none\n")
    exp = loss_only_experiment(tmp_path)
    out = tmp_path / "w"
    # --no-lr-range-test: by default the 100x axis would be range-tested first and the default's rate might fall
    # outside the narrowed range (that interplay: tests/search/test_lr_narrowing.py)
    common = ("sweep", "-e", str(exp), "--model", "tiny-llama", "--space", str(space), "--max-steps", "2",
              "--out", str(out), "--wandb", "disabled", "--no-lr-range-test")
    # The published 16-bit default, then harness's own shipped 16-bit default (harness/config/defaults.yaml, the
    # measured cross-evaluation's choice: its values come from the file); the 4-bit ones are outside the space.
    shipped = next(d for d in load_harness_defaults() if d.name == "harness-none")
    proc = run_cli(*common, "--trials", "3", "--study", "first", "--warm-start", "defaults")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("warm start: 2 of 2 configs enqueued as the first trials (published default unsloth-16bit, shipped "
            "default harness-none)") in proc.stderr
    assert "warm start: skipped unsloth-4bit: quantization 'nf4-dq' is outside" in proc.stderr
    assert "warm start: skipped harness-nf4-dq: quantization 'nf4-dq' is outside" in proc.stderr
    first = load_study(out, "first")
    assert first.trials[0].user_attrs["warm_start"] == "published default unsloth-16bit"
    assert first.trials[0].params["lora_r"] == 16 and first.trials[0].params["learning_rate"] == 2e-4
    assert first.trials[1].user_attrs["warm_start"] == "shipped default harness-none"
    assert "defaults.yaml" in first.trials[1].user_attrs["warm_start_source"]
    assert first.trials[1].params["lora_r"] == shipped.params["lora_r"]
    assert first.trials[1].params["learning_rate"] == pytest.approx(shipped.params["learning_rate"])
    assert "warm_start" not in first.trials[2].user_attrs  # sampled
    # Another study starts from the first one's best configs; a study that is not there is one line, exit 2.
    proc = run_cli(*common, "--trials", "2", "--study", "second", "--warm-start", "first")
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = load_study(out, "second")
    best = sorted(first.trials, key=lambda t: t.value)
    assert [t.user_attrs["warm_start"] for t in second.trials] == [f"study first trial #{t.number}" for t in best]
    assert second.trials[0].params["learning_rate"] == best[0].params["learning_rate"]
    proc = run_cli(*common, "--trials", "1", "--study", "third", "--warm-start", "nosuch")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "nosuch" in proc.stderr.strip().splitlines()[-1]
    assert "third" not in optuna.get_all_study_names(f"sqlite:///{out}/study.db")
