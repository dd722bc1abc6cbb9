"""compare --confirm-seeds, recommend and report through the real command line on a tiny-llama study."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from helpers import assert_one_line_error, load_without_harness, run_cli
from wandb_reader import offline_runs, read_offline_run

pytestmark = pytest.mark.integration  # a sweep, then compare/recommend/report through the command line

SPACE = """axes:
  lora_r: 4
  lora_alpha: {ratio: 2}
  learning_rate: {choices: [2.0e-3, 1.0e-2]}
  quantization: {choices: [none, nf4]}
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-point grid (2 modes x 2 learning rates), then 2 fresh seeds for each mode's best."""
    root = tmp_path_factory.mktemp("readout")
    (root / "space.yaml").write_text(SPACE)
    proc = run_cli("sweep", "--model", "tiny-llama", "--space", str(root / "space.yaml"), "--sampler", "grid",
                   "--trials", "10", "--max-steps", "3", "--study", "q", "--out", str(root / "q"), "--wandb", "offline")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli("compare", "--study", "q", "--out", str(root / "q"), "--reports-dir", str(root / "reports"),
                   "--confirm-seeds", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (root / "compare.out").write_text(proc.stdout)
    return root


def test_the_grid_stops_when_covered_and_confirmation_reruns_each_modes_best(swept: Path) -> None:
    study = optuna.load_study(study_name="q", storage=f"sqlite:///{swept}/q/study.db")
    search = [t for t in study.trials if "confirmation_of" not in t.user_attrs]
    confirm = [t for t in study.trials if "confirmation_of" in t.user_attrs]
    assert len(search) == 4 and len(confirm) == 4
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    for trial in confirm:
        source = study.trials[trial.user_attrs["confirmation_of"]]
        assert trial.params == source.params
        assert trial.user_attrs["config"]["train"]["seed"] == trial.user_attrs["seed"]
    assert sorted(t.user_attrs["seed"] for t in confirm) == [1, 1, 2, 2]
    modes = {study.trials[t.user_attrs["confirmation_of"]].params["quantization"] for t in confirm}
    assert modes == {"none", "nf4"}
    records = [json.loads(line) for line in (swept / "q" / "trials.jsonl").read_text().splitlines()]
    assert sorted(r["number"] for r in records) == list(range(8))


def test_compare_writes_the_table_and_confirmed_numbers(swept: Path) -> None:
    data = json.loads((swept / "reports" / "comparison.json").read_text())
    modes = {m["mode"]: m for m in data["modes"]}
    assert set(modes) == {"none", "nf4"}
    for m in modes.values():
        assert m["trials"] == 4 and m["completed"] == 4
        assert m["confirmed"]["objective"]["n"] == 2 and m["confirmed"]["seeds"] == [1, 2]
        assert m["peak_memory_mb"] > 0 and m["seconds_per_step"] > 0
    assert data["vs_16bit"]["nf4"]["relative_ci95"] is not None
    assert "nf4 reaches" in (swept / "compare.out").read_text()
    # The unquantized mode is named by the dtype its base had: fp32 on a CPU without native bf16.
    label = "LoRA (fp32 base)" if modes["none"]["compute_dtype"] == "float32" else "16-bit LoRA"
    assert modes["none"]["label"] == label
    text = (swept / "reports" / "comparison.md").read_text()
    assert f"| {label} |" in text
    for needle in ("Model: tiny-llama (random weights", "Device: ", "Weight memory by kind", "untuned eval_loss",
                   "train peak MiB", "eval peak MiB"):
        assert needle in text, needle
    assert {m["untuned"] is not None for m in modes.values()} == {True}
    assert modes["nf4"]["weights"]["quantized_mb"] > 0 and modes["none"]["weights"]["quantized_mb"] == 0
    assert data["vs_16bit"]["nf4"]["eval_noise_half_relative"] > 0  # per-example losses were recorded
    again = run_cli("compare", "--study", "q", "--out", str(swept / "q"), "--reports-dir", str(swept / "reports"),
                    "--confirm-seeds", "2")
    assert again.returncode == 0 and "already has its 2 seeds" in again.stdout


def test_recommend_writes_yaml_that_plain_peft_loads(swept: Path, tmp_path: Path) -> None:
    out = tmp_path / "rec" / "recommended.yaml"
    proc = run_cli("recommend", "--study", "q", "--out", str(swept / "q"), "--reports-dir", str(out.parent),
                   "--max-memory-mb", "100000")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "deprecated" not in proc.stderr
    doc = yaml.safe_load(out.read_text())
    assert doc["evidence"]["confirmed"] is True and len(doc["evidence"]["seeds"]) == 2
    assert set(doc["per_quantization"]) == {"none", "nf4"}
    assert doc["within_memory"]["lora"]["r"] == 4
    assert "loaded 4" in load_without_harness(out, tmp_path)


def test_recommends_old_flag_spellings_still_work_with_a_deprecation_line(swept: Path, tmp_path: Path) -> None:
    out = tmp_path / "old.yaml"
    proc = run_cli("recommend", "--study", "q", "--sweep-dir", str(swept / "q"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert yaml.safe_load(out.read_text())["evidence"]["confirmed"] is True
    deprecations = [line for line in proc.stderr.splitlines() if "deprecated" in line]
    assert len(deprecations) == 2, proc.stderr
    assert any("--sweep-dir" in line and "--out DIR" in line for line in deprecations)
    assert any("--out FILE.yaml" in line and "--reports-dir" in line for line in deprecations)


def test_report_writes_plots_html_and_a_wandb_summary_run(swept: Path) -> None:
    proc = run_cli("report", "--study", "q", "--out", str(swept / "q"), "--reports-dir", str(swept / "reports"),
                   "--wandb", "offline")
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = swept / "reports"
    for name in ("report.md", "report.html", "comparison.md", "comparison.json", "recommended.yaml"):
        assert (reports / name).exists(), name
    assert len(list(reports.glob("*.png"))) >= 4
    html = (reports / "report.html").read_text()
    assert "http://" not in html and "https://" not in html
    runs = [read_offline_run(p) for p in offline_runs(swept / "q")]
    summary = [r for r in runs if r["job_type"] == "summary"]
    assert len(summary) == 1 and summary[0]["group"] == "q" and summary[0]["exit_code"] == 0
    assert summary[0]["summary"]["completed"] == 8
    assert len([r for r in runs if r["job_type"] == "trial"]) == 8
    run_dir = Path(next(p for p in offline_runs(swept / "q") if read_offline_run(p)["job_type"] == "summary"))
    assert list(run_dir.rglob("*.png")), "plots are logged as images"


def test_readout_commands_on_a_missing_study_fail_in_one_line(tmp_path: Path) -> None:
    for command in ("compare", "recommend", "report"):
        proc = run_cli(command, "--study", "nope", "--storage", f"sqlite:///{tmp_path}/none.db")
        assert_one_line_error(proc, "nope")
