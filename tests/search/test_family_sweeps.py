"""The tiny Gemma 3 and Qwen2 models through the real command line, as tiny-llama goes through it: a packed sweep
in the three tested quantization modes, then (Gemma 3, the family whose row differs most) confirmation seeds for
each mode's best (harness.trial.families).

Representatives of tests/search/test_sweep.py (every tested mode), tests/search/test_pack_sweep.py (a packed sweep)
and tests/evidence/test_readout_cli.py (confirmation), chosen to keep the suite's time: one sweep per family, one
compare; the equivalence of the selected head on each family is tests/trial/test_head.py's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import load_study, records, run_cli

pytestmark = pytest.mark.integration  # sweeps in subprocesses

SPACE = """axes:
  lora_r: 4
  lora_alpha: {ratio: 2}
  learning_rate: {choices: [2.0e-3, 1.0e-2]}
  quantization: {choices: [none, int8, nf4]}
"""


@pytest.mark.parametrize("tiny", ["tiny-gemma3", "tiny-qwen2"])
def test_a_packed_sweep_in_every_tested_mode_and_its_confirmation(tiny: str, tmp_path: Path) -> None:
    (tmp_path / "space.yaml").write_text(SPACE)
    (tmp_path / "exp.yaml").write_text("data_options: {eval_size: 8, train_size: 64}\n"
                                       "eval: {metrics: [], generate_size: 0}\n")
    out = tmp_path / "s"
    proc = run_cli("sweep", "-e", str(tmp_path / "exp.yaml"), "--model", tiny, "--space", str(tmp_path / "space.yaml"),
                   "--sampler", "grid", "--trials", "6", "--max-steps", "2", "--pack", "2", "--study", "s",
                   "--out", str(out), "--wandb", "disabled")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = records(out)
    assert {r["params"]["quantization"] for r in rows} == {"none", "int8", "nf4"}
    assert all(r["state"] == "COMPLETE" for r in rows), [r["error"] for r in rows]
    assert any(r["result"]["pack_size"] == 2 for r in rows), [r["result"]["pack_size"] for r in rows]
    memory = {r["params"]["quantization"]: r["metrics"]["base_model_mb"] for r in rows}
    assert memory["nf4"] < memory["int8"], memory  # the tiny models' unquantized embedding dominates "none"
    # What the family row decides is in the record: Gemma 3 trains with eager attention; tiny-gemma3, like the
    # Gemma-3-270M base model, has no chat template, so its prompts use the plain template and say so.
    assert {r["result"]["attention"] for r in rows} == {"eager"}
    template = "plain: " if tiny == "tiny-gemma3" else "chat template"
    assert all(r["result"]["prompt_template"].startswith(template) for r in rows), rows[0]["result"]["prompt_template"]
    if tiny != "tiny-gemma3":
        return

    proc = run_cli("compare", "--study", "s", "--out", str(out), "--reports-dir", str(tmp_path / "reports"),
                   "--confirm-seeds", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load_study(out, "s")
    confirm = [t for t in study.trials if "confirmation_of" in t.user_attrs]
    assert len(confirm) == 3 and all(t.state.name == "COMPLETE" for t in confirm)
    assert (tmp_path / "reports" / "comparison.md").exists()
