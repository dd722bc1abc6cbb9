"""keep_16bit through the command line on tiny-llama (issue 41): a sweep with the axis records the kept layers,
their fraction and added memory; the study pins each spec's list, which later trials (a confirmation) use;
`compare --by keep_16bit[,quantization]` works; bad fractions and keep_16bit on `none` exit 2 with one line;
the exports carry the kept layers where the tool can say so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config.tools import axolotl, llamafactory, trl, unsloth
from harness.config.tools.settings import Tuned
from helpers import assert_one_line_error, load_study, loss_only_experiment, records, run_cli

SPACE = """axes:
  lora_r: 4
  lora_alpha: {ratio: 2}
  learning_rate: 5.0e-3
  quantization: {choices: [none, nf4]}
  keep_16bit: {choices: [0, 0.3], when: {quantization: nf4}}
  keep_16bit_rule: {choices: [sensitivity, random], when: {keep_16bit: 0.3}}
"""
PINNED = ["model.layers.1.mlp.down_proj"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 4-point grid (16-bit; nf4; nf4 keeping 30% by sensitivity; at random), then the random arm's list pinned
    by hand to another one and every group's best confirmed on one more seed."""
    root = tmp_path_factory.mktemp("keep16")
    (root / "space.yaml").write_text(SPACE)
    experiment = loss_only_experiment(root)
    proc = run_cli("sweep", "-e", str(experiment), "--model", "tiny-llama", "--space", str(root / "space.yaml"),
                   "--sampler", "grid", "--trials", "4", "--max-steps", "2", "--study", "k", "--out", str(root / "k"),
                   "--wandb", "disabled", "--no-lr-range-test")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load_study(root / "k", "k")
    pins = study.user_attrs["kept_16bit"]
    random_key = next(key for key in pins if "random" in key)
    study.set_user_attr("kept_16bit", {**pins, random_key: PINNED})
    proc = run_cli("compare", "--study", "k", "--out", str(root / "k"), "--reports-dir", str(root / "reports"),
                   "--by", "keep_16bit,keep_16bit_rule,quantization", "--confirm-seeds", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.mark.integration
def test_every_record_states_the_kept_layers_their_fraction_and_memory(swept: Path) -> None:
    rows = [r for r in records(swept / "k") if r["number"] < 4]
    assert len(rows) == 4 and all(r["status"] == "complete" for r in rows)
    for row in rows:
        assert {"kept_16bit_modules", "kept_16bit_fraction", "kept_16bit_added_mb"} <= set(row)
        keep = row["params"].get("keep_16bit", 0)
        if not keep:
            assert row["kept_16bit_modules"] == [] and row["kept_16bit_fraction"] == 0 == row["kept_16bit_added_mb"]
            continue
        assert row["kept_16bit_modules"] and 0 < row["kept_16bit_fraction"] <= keep
        assert row["kept_16bit_added_mb"] > 0
        assert row["config"]["quant"]["keep_16bit"] == keep
        assert "lm_head" in row["result"]["kept_16bit_skip_modules"]
    kept = {r["params"]["keep_16bit_rule"]: r["kept_16bit_modules"] for r in rows if r["params"].get("keep_16bit")}
    assert set(kept) == {"sensitivity", "random"}
    pins = load_study(swept / "k", "k").user_attrs["kept_16bit"]
    assert sorted(pins.values()) == sorted([kept["sensitivity"], PINNED])


@pytest.mark.integration
def test_later_trials_of_a_spec_keep_the_pinned_list(swept: Path) -> None:
    confirmations = [r for r in records(swept / "k") if r["number"] >= 4]
    assert len(confirmations) == 4 and all(r["status"] == "complete" for r in confirmations)
    by_rule = {r["params"].get("keep_16bit_rule"): r for r in confirmations if r["params"].get("keep_16bit")}
    assert by_rule["random"]["kept_16bit_modules"] == PINNED  # pinned, not chosen again
    assert by_rule["random"]["config"]["quant"]["kept_modules"] == PINNED
    first = {r["params"].get("keep_16bit_rule"): r for r in records(swept / "k") if r["number"] < 4
             and r["params"].get("keep_16bit")}
    assert by_rule["sensitivity"]["kept_16bit_modules"] == first["sensitivity"]["kept_16bit_modules"]


@pytest.mark.integration
@pytest.mark.parametrize("by", ["keep_16bit", "keep_16bit,quantization"])
def test_compare_groups_by_keep_16bit(swept: Path, by: str) -> None:
    proc = run_cli("compare", "--study", "k", "--out", str(swept / "k"), "--reports-dir", str(swept / "reports"),
                   "--by", by)
    assert proc.returncode == 0, proc.stderr[-3000:]
    name = by.replace(",", "+")
    data = json.loads(next((swept / "reports").rglob(f"comparison_by_{name}.json")).read_text())
    text = json.dumps(data)
    assert "keep_16bit=0.3" in text and "keep_16bit=0" in text


@pytest.mark.integration
@pytest.mark.parametrize("axes, needles", [
    ("  quantization: nf4\n  keep_16bit: {choices: [0, 0.7]}\n", ["keep_16bit 0.7 is outside [0, 0.5]"]),
    ("  quantization: none\n  keep_16bit: 0.1\n", ["keep_16bit 0.1 needs a quantized mode", "when: {quantization"]),
    ("  quantization: {choices: [none, nf4]}\n  keep_16bit: {choices: [0, 0.1]}\n",
     ["quantization none, keep_16bit 0.1 cannot train", "needs a quantized mode"]),
])
def test_a_bad_fraction_or_keep_16bit_on_none_is_one_line_exit_2(tmp_path: Path, axes: str, needles: list[str]) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("axes:\n  lora_r: 4\n  lora_alpha: {ratio: 2}\n  learning_rate: 5.0e-3\n" + axes)
    proc = run_cli("sweep", "--model", "tiny-llama", "--space", str(space), "--trials", "1", "--max-steps", "2",
                   "--out", str(tmp_path / "o"), "--wandb", "disabled")
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "o" / "trials.jsonl").exists()


def _tuned(quantization: str, skip: tuple[str, ...]) -> Tuned:
    return Tuned(r=8, alpha=16.0, dropout=0.0, targets="all-linear", quantization=quantization, learning_rate=1e-3,
                 max_steps=40, batch_size=8, grad_accum=1, warmup_ratio=0.05, weight_decay=0.01, max_grad_norm=1.0,
                 scheduler="cosine", skip_modules=skip, model="smollm2-135m", data="stdlib-qa")


def test_the_exports_carry_the_kept_layers_where_the_tool_can_say_so() -> None:
    skip = ("lm_head", "model.layers.3.mlp.down_proj")
    four = axolotl.export(_tuned("nf4-dq", skip))
    assert four.keys["bnb_config_kwargs"]["llm_int8_skip_modules"] == list(skip)
    assert not [n for n in four.notes if "keep_16bit" in n]
    assert [n for n in axolotl.export(_tuned("int8", skip)).notes if n.startswith("keep_16bit")]
    for tool in (trl, llamafactory, unsloth):
        notes = tool.export(_tuned("nf4-dq", skip)).notes
        assert [n for n in notes if n.startswith("keep_16bit") and "model.layers.3.mlp.down_proj" in n], tool.NAME
    for tool in (axolotl, trl, llamafactory, unsloth):  # a config that kept nothing says nothing of it
        export = tool.export(_tuned("nf4-dq", ()))
        assert not [n for n in export.notes if "keep_16bit" in n]
        assert "llm_int8_skip_modules" not in json.dumps(export.keys)
