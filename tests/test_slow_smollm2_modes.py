"""Every quantization mode on the real SmolLM2-135M-Instruct (a few minutes on 2 CPU cores); marked slow, run in
CI. Apart from tests/test_slow_smollm2.py so that `make test` runs the two real-model tests on both cores."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from helpers import records, run_cli

pytestmark = pytest.mark.slow


def test_every_quantization_mode_trains_the_real_model(tmp_path: Path) -> None:
    space = tmp_path / "modes.yaml"
    space.write_text("axes:\n  lora_r: 8\n  lora_alpha: 16\n  learning_rate: 5.0e-4\n"
                     "  quantization: {choices: [none, int8, nf4, nf4-dq, fp4, fp4-dq]}\n")
    # No generation and 16 held-out examples: the six untuned baselines then cost seconds, not minutes.
    experiment = tmp_path / "modes_exp.yaml"
    experiment.write_text("data_options: {eval_size: 16}\neval: {metrics: []}\n")
    out = tmp_path / "modes"
    # fresh: the whole user's path, a new `python -m harness` process whose trial worker is spawned
    proc = run_cli("sweep", "-e", str(experiment), "--model", "smollm2-135m", "--space", str(space), "--sampler",
                   "grid", "--trials", "6", "--max-steps", "2", "--study", "modes", "--out", str(out), "--wandb",
                   "disabled", fresh=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["params"]["quantization"]: r for r in records(out)}
    assert set(rows) == {"none", "int8", "nf4", "nf4-dq", "fp4", "fp4-dq"}
    assert all(r["state"] == "COMPLETE" for r in rows.values()), {m: r["error"] for m, r in rows.items()}
    size = {mode: r["metrics"]["base_model_mb"] for mode, r in rows.items()}
    # Weights in memory: 4-bit < 8-bit < 16-bit; double quantization shrinks the 4-bit constants further.
    assert size["nf4"] < size["int8"] < size["none"], size
    assert size["nf4-dq"] < size["nf4"] and size["fp4-dq"] < size["fp4"], size
    # The untuned base was scored in every mode; the source is a Q4_1 GGUF, and the study says so.
    study = optuna.load_study(study_name="modes", storage=f"sqlite:///{out}/study.db")
    assert set(study.user_attrs["baseline_by_mode"]) == set(rows)
    assert study.user_attrs["model_source"]["label"] == "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to bf16)"
    assert "fewer" not in proc.stderr and "only 16 held-out examples" in proc.stderr
