"""End-to-end sweeps on tiny-llama through the real command line: storage, trials.jsonl, W&B,
failures as results, resume, Ctrl-C, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from helpers import TINY, assert_one_line_error, load_study as load, records, run_cli, write_space
from wandb_reader import offline_runs, read_offline_run

pytestmark = pytest.mark.integration  # every test runs harness in a subprocess

CONTRACT_KEYS = {"number", "state", "params", "eval_loss", "peak_memory_mb", "train_seconds", "tokens_per_second",
                 "metrics", "error"}
def test_sweep_records_trials_in_storage_jsonl_and_wandb_then_resumes(tmp_path: Path) -> None:
    out = tmp_path / "t"
    proc = run_cli("sweep", *TINY, "--trials", "4", "--study", "t", "--out", str(out), "--wandb", "offline")
    assert proc.returncode == 0, proc.stderr[-3000:]

    study = load(out, "t")
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    for trial in trials:
        assert {"lora_r", "lora_alpha", "learning_rate", "quantization"} <= set(trial.params)
        assert all(math.isfinite(float(trial.params[k])) for k in ("lora_r", "lora_alpha", "learning_rate"))
        assert trial.params["lora_alpha"] == trial.params["lora_alpha_ratio"] * trial.params["lora_r"]
        assert math.isfinite(trial.value)
    assert study.user_attrs["baseline_eval_loss"] > 0 and study.user_attrs["split_hash"]

    rows = records(out)
    assert len(rows) == 4 and all(CONTRACT_KEYS <= set(r) for r in rows)
    assert sorted(r["number"] for r in rows) == [0, 1, 2, 3]
    for row in rows:
        assert row["state"] == "COMPLETE" and row["error"] is None
        assert row["eval_loss"] == pytest.approx(study.trials[row["number"]].value)
        assert row["peak_memory_mb"] > 0 and row["train_seconds"] > 0 and row["tokens_per_second"] > 0
        assert row["config"]["lora"]["r"] == row["params"]["lora_r"]
        assert row["environment"]["versions"]["torch"]

    runs = [read_offline_run(p) for p in offline_runs(out)]
    assert len(runs) == 4
    assert {r["group"] for r in runs} == {"t"} and {r["job_type"] for r in runs} == {"trial"}
    by_name = {r["name"]: r for r in runs}
    for row in rows:
        run = by_name[f"t-trial-{row['number']}"]
        assert run["config"]["params"]["lora_r"] == row["params"]["lora_r"]
        assert run["summary"]["eval_loss"] == pytest.approx(row["eval_loss"])
        assert run["exit_code"] == 0
        assert any("train/loss" in h for h in run["history"])

    best = study.best_trial.number
    adapter = out / "best_adapter"
    assert (adapter / "adapter_model.safetensors").exists()
    assert adapter.resolve().name == f"trial-{best}"
    assert "best trial" in proc.stdout and "untuned base model" in proc.stdout

    # Resume: the same command with --trials 2 adds two trials to the same study.
    again = run_cli("sweep", *TINY, "--trials", "2", "--study", "t", "--out", str(out), "--wandb", "disabled")
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(load(out, "t").get_trials()) == 6
    assert sorted(r["number"] for r in records(out)) == list(range(6))

    status = run_cli("status", "--study", "t", "--out", str(out))
    assert status.returncode == 0 and "6 trials" in status.stdout and "COMPLETE" in status.stdout

    # A different search space is refused, naming the problem.
    other = write_space(tmp_path / "other.yaml")
    refused = run_cli("sweep", "--model", "tiny-llama", "--space", str(other), "--trials", "1", "--study", "t",
                      "--out", str(out))
    assert_one_line_error(refused, "cannot be resumed", "space")


def test_every_tested_quantization_mode_trains_with_grid_sampler(tmp_path: Path) -> None:
    space = write_space(tmp_path / "q.yaml")
    out = tmp_path / "q"
    proc = run_cli("sweep", "--model", "tiny-llama", "--space", str(space), "--sampler", "grid", "--trials", "3",
                   "--max-steps", "3", "--study", "q", "--out", str(out), "--wandb", "disabled")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = records(out)
    assert {r["params"]["quantization"] for r in rows} == {"none", "int8", "nf4"}
    assert all(r["state"] == "COMPLETE" for r in rows)
    memory = {r["params"]["quantization"]: r["metrics"]["base_model_mb"] for r in rows}
    assert memory["nf4"] < memory["int8"], memory  # 4-bit weights take less than 8-bit ones
    assert not (out / "wandb").exists()


@pytest.mark.parametrize("args, needles", [
    (["--space", "nope.yaml"], ["search space", "nope.yaml"]),
    (["--model", "./no/such/model"], ["no/such/model", "does not exist"]),
    (["--model", "missing.gguf"], ["missing.gguf", "does not exist"]),
    (["--sampler", "bayes"], ["sampler", "bayes"]),
    (["--objectives", "eval_loss,bleu"], ["objective", "bleu"]),
    (["--pruner", "median", "--objectives", "eval_loss,peak_memory_mb"], ["pruner", "single objective"]),
    (["--data", "no_such_file.jsonl"], ["no_such_file.jsonl"]),
    (["--trials", "0"], ["trials"]),
    (["--no-such-flag"], ["No such option", "--no-such-flag"]),
    (["--trials", "many"], ["--trials", "integer"]),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    base = ["sweep", "--model", "tiny-llama", "--space", "tiny", "--out", str(tmp_path / "x"), "--wandb", "disabled"]
    assert_one_line_error(run_cli(*base, *args), *needles)
    assert not (tmp_path / "x" / "study.db").exists()


def test_rank_larger_than_the_model_is_refused_before_training(tmp_path: Path) -> None:
    space = write_space(tmp_path / "big.yaml", quantization="none", lora_r="{choices: [8, 64]}")
    proc = run_cli("sweep", "--model", "tiny-llama", "--space", str(space), "--out", str(tmp_path / "x"))
    assert_one_line_error(proc, "big.yaml", "lora_r", "64", "32")


@pytest.mark.parametrize("fmt", ["messages", "prompt_completion"])
def test_local_jsonl_data(fmt: str, tmp_path: Path) -> None:
    data = tmp_path / f"{fmt}.jsonl"
    lines = []
    for i in range(40):
        if fmt == "messages":
            lines.append({"messages": [{"role": "user", "content": f"What is {i} plus one?"},
                                       {"role": "assistant", "content": f"It is {i + 1}."}]})
        else:
            lines.append({"prompt": f"Spell {i} in words.", "completion": f"The number {i}."})
    data.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "j"
    proc = run_cli("sweep", *TINY, "--data", str(data), "--trials", "1", "--study", "j", "--out", str(out),
                   "--wandb", "disabled")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert records(out)[0]["state"] == "COMPLETE"
    assert str(data) in load(out, "j").user_attrs["data_source"]


def test_status_of_a_missing_study_is_a_clear_error(tmp_path: Path) -> None:
    assert_one_line_error(run_cli("status", "--study", "nope", "--out", str(tmp_path)), "no study database")


def test_multi_objective_study_stores_and_prints_the_pareto_front(tmp_path: Path) -> None:
    out = tmp_path / "m"
    proc = run_cli("sweep", *TINY, "--trials", "4", "--objectives", "eval_loss,peak_memory_mb", "--study", "m",
                   "--out", str(out), "--wandb", "disabled")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load(out, "m")
    assert len(study.directions) == 2
    front = {t.number for t in study.best_trials}
    assert front and set(study.user_attrs["pareto_front"]) == front
    stored = json.loads((out / "pareto.json").read_text())
    assert {t["number"] for t in stored["trials"]} == front
    assert "Pareto front" in proc.stdout
    assert {p.name for p in (out / "adapters").iterdir()} == {f"trial-{n}" for n in front}

