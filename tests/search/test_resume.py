"""A resumed study is one experiment: every setting that changes what a trial measures is pinned, and
so is the held-out split; a mismatch is one line, exit 2, and nothing recorded before is lost."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from helpers import assert_one_line_error, run_cli

pytestmark = pytest.mark.integration  # sweeps through the command line

SPACE = "axes:\n  lora_r: 4\n  lora_alpha: {ratio: 2}\n  learning_rate: 5.0e-3\n  quantization: none\n"
EXPERIMENT = """model: tiny-llama
space: {space}
trials: 1
max_steps: 2
wandb: disabled
train: {{batch_size: {batch}}}
data_options: {{eval_size: {eval_size}, train_size: 32}}
eval: {{generate_size: {generate}, max_new_tokens: 3}}
"""
DEFAULTS = {"batch": 4, "eval_size": 8, "generate": 2}


def _experiment(root: Path, name: str, **changes: int) -> Path:
    (root / "space.yaml").write_text(SPACE)
    path = root / f"{name}.yaml"
    path.write_text(EXPERIMENT.format(space=root / "space.yaml", **{**DEFAULTS, **changes}))
    return path


@pytest.fixture(scope="module")
def created(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    proc = run_cli("sweep", "-e", str(_experiment(root, "base")), "--study", "p", "--out", str(root / "out"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.mark.parametrize("flags, changes, needles", [
    (["--max-steps", "3"], {}, ["max_steps", "2", "3"]),
    (["--seed", "1"], {}, ["seed", "0", "1"]),
    ([], {"batch": 2}, ["train.batch_size", "4", "2"]),
    ([], {"eval_size": 6}, ["data_options.eval_size", "8", "6"]),
    ([], {"generate": 1}, ["eval.generate_size", "2", "1"]),
])
def test_resume_refuses_each_changed_setting(created: Path, flags: list[str], changes: dict[str, int],
                                             needles: list[str]) -> None:
    experiment = _experiment(created, "changed", **changes)
    proc = run_cli("sweep", "-e", str(experiment), "--study", "p", "--out", str(created / "out"), *flags)
    line = assert_one_line_error(proc, "cannot be resumed with a different", *needles)
    assert "created with" in line
    study = optuna.load_study(study_name="p", storage=f"sqlite:///{created}/out/study.db")
    assert len(study.trials) == 1, "a refused resume runs and loses nothing"


def test_resume_with_the_same_settings_adds_trials(created: Path, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(created / "out", out)
    proc = run_cli("sweep", "-e", str(_experiment(created, "base")), "--study", "p", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(optuna.load_study(study_name="p", storage=f"sqlite:///{out}/study.db").trials) == 2


def test_resume_refuses_a_changed_held_out_split(tmp_path: Path) -> None:
    data = tmp_path / "qa.jsonl"
    rows = [{"prompt": f"What is item {i}?", "completion": f"Item {i} is number {i}."} for i in range(80)]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    experiment = _experiment(tmp_path, "file")
    args = ["sweep", "-e", str(experiment), "--data", str(data), "--study", "d", "--out", str(tmp_path / "out")]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    rows += [{"prompt": f"What is thing {i}?", "completion": f"Thing {i}."} for i in range(80)]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")  # the same file name, other content
    assert_one_line_error(run_cli(*args), "held-out split changed")
