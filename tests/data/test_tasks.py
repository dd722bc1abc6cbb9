"""Task metrics end to end: every built-in task through the command line, every file format through
run_trial, on tiny-llama."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from helpers import run_cli
from harness.data import builtin_names

pytestmark = pytest.mark.integration  # sweeps through the command line

TASK_METRIC = {"stdlib-qa": "token_f1", "headline-sentiment": "accuracy", "fictional-company": "exact_match"}


@pytest.mark.parametrize("task", builtin_names())
def test_every_builtin_task_sweeps_and_records_its_metrics(task: str, tmp_path: Path) -> None:
    metric = TASK_METRIC[task]
    out = tmp_path / task
    proc = run_cli("sweep", "--model", "tiny-llama", "--space", "tiny", "--data", task, "--trials", "1",
                   "--max-steps", "2", "--objectives", metric, "--study", "t", "--out", str(out), "--wandb", "offline")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "trials.jsonl").read_text().splitlines()[0])
    assert record["state"] == "COMPLETE"
    assert 0.0 <= record["metrics"][metric] <= 1.0
    assert record["samples"] and {"prompt", "prediction", "reference"} <= set(record["samples"][0])
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{out}/study.db")
    assert study.direction.name == "MAXIMIZE"
    assert study.best_value == pytest.approx(record["metrics"][metric])
    assert metric in study.user_attrs["baseline_metrics"]


FORMATS = {
    "messages": lambda i: {"messages": [{"role": "user", "content": f"What is {i} plus one?"},
                                        {"role": "assistant", "content": f"{i + 1}"}]},
    "prompt_completion": lambda i: {"prompt": f"What is {i} plus one?", "completion": f"{i + 1}"},
    "instruction": lambda i: {"instruction": "Add one.", "input": str(i), "output": str(i + 1)},
    "text": lambda i: {"text": f"The number after {i} is {i + 1}."},
    "classification": lambda i: {"text": f"The number {i}", "label": "even" if i % 2 == 0 else "odd"},
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_file_format_sweeps_and_records_task_metrics(fmt: str, tmp_path: Path) -> None:
    path = tmp_path / f"{fmt}.jsonl"
    path.write_text("".join(json.dumps(FORMATS[fmt](i)) + "\n" for i in range(200)))
    out = tmp_path / "out"
    proc = run_cli("sweep", "--model", "tiny-llama", "--space", "tiny", "--data", str(path), "--trials", "1",
                   "--max-steps", "2", "--study", "f", "--out", str(out), "--wandb", "disabled")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "trials.jsonl").read_text().splitlines()[0])
    assert record["state"] == "COMPLETE"
    task_metrics = set(record["metrics"]) - {"base_model_mb"}
    expected = {"text": set(), "classification": {"accuracy"}}.get(fmt)
    if expected is not None:
        assert task_metrics == expected
    else:
        assert {"token_f1", "rouge_l"} <= task_metrics
    study = optuna.load_study(study_name="f", storage=f"sqlite:///{out}/study.db")
    stored = study.trials[0].user_attrs["result"]
    assert all(stored[m] == pytest.approx(record["metrics"][m]) for m in task_metrics)
    assert set(study.user_attrs["baseline_metrics"]) == task_metrics
    assert len(record["samples"]) == (0 if fmt == "text" else 5)
