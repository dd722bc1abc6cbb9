"""Every exported config loads with its tool's own parser, each value where it should arrive: TRL's
TrlParser (in this process: TRL installs beside the harness's pins), Axolotl's validate_config and
LLaMA-Factory's get_train_args (in a subprocess over .tools/<tool>: both pin other transformers/peft versions,
so `make test` installs their code without its dependencies), Unsloth's FastLanguageModel signatures (read
with `ast` from its installed source: importing it needs a GPU stack). Then the round trip: a sweep from each
tool's sample config on tiny-llama, and `recommend --format same` writes the file back with only tuned keys
changed, which the tool's parser loads."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.config.tools.settings import from_recommended
from harness.publish.exports import TOOLS, render
from helpers import REPO, assert_one_line_error, run_cli

from tool_fixtures import recommended, write_data

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parent


def tools_dir() -> Path:
    """.tools (or $HARNESS_TOOLS): `make test` fills it, so there a missing parser fails rather than skips."""
    folder = Path(os.environ.get("HARNESS_TOOLS") or REPO / ".tools")
    if not (folder / "axolotl").is_dir():
        if os.environ.get("HARNESS_TOOLS"):
            pytest.fail(f"HARNESS_TOOLS={folder} holds no tool parsers (make test installs them)")
        pytest.skip("the tools' parsers are not installed (make test installs them into .tools)")
    return folder if folder.is_absolute() else REPO / folder


def parse_with(tool: str, files: list[Path]) -> dict[str, dict[str, Any]]:
    """Run tests/publish/tool_parsers.py over the files with one tool's code on the path."""
    env = {**os.environ, "PYTHONPATH": str(tools_dir() / tool), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, str(HERE / "tool_parsers.py"), tool, *map(str, files)],
                          capture_output=True, text=True, env=env, timeout=600)
    line = next((line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")), None)
    assert line is not None, proc.stderr[-3000:]
    return {Path(k).name: v for k, v in json.loads(line[len("RESULTS "):]).items()}


def parse_trl(path: Path) -> tuple[Any, Any, Any, Any, Any]:
    """TRL's own parser: (script args, SFTConfig, ModelConfig, LoraConfig, BitsAndBytesConfig). use_cpu is the
    machine's setting (SFTConfig otherwise defaults to bf16, which a CPU refuses), not the file's."""
    from trl import (DatasetMixtureConfig, ModelConfig, ScriptArguments, SFTConfig, TrlParser, get_peft_config,
                     get_quantization_config)

    script, sft, model, data = TrlParser((ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig)).parse_dict(
        {**yaml.safe_load(path.read_text()), "use_cpu": True})
    script.datasets = data.datasets  # `trl sft` reads a local file from here (DatasetMixtureConfig)
    return script, sft, model, get_peft_config(model), get_quantization_config(model)


def unsloth_parameters() -> dict[str, set[str]]:
    """The named parameters of FastLanguageModel.from_pretrained (models/loader.py) and of the get_peft_model
    it forwards to (FastLlamaModel, models/llama.py), read from Unsloth's source without importing it."""
    root = tools_dir() / "unsloth" / "unsloth" / "models"
    found: dict[str, set[str]] = {}
    for file, cls, name in (("loader.py", "FastLanguageModel", "from_pretrained"),
                            ("llama.py", "FastLlamaModel", "get_peft_model")):
        tree = ast.parse((root / file).read_text())
        klass = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls)
        fn = next(n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == name)
        found[name] = {a.arg for a in fn.args.args + fn.args.kwonlyargs}
    return found


CASES = {"nf4dq": recommended("nf4-dq"),
         "fp4": recommended("fp4", optimizer={"lr": 3e-4, "loraplus_lr_ratio": 16.0, "weight_decay": 0.01}),
         "int8": recommended("int8", lora__target_modules="all-linear"),
         "dora": recommended("none", lora__use_dora=True, lora__use_rslora=False, lora__target_modules="all-linear",
                             training__lr_scheduler_type="warmup_stable_decay",
                             training__lr_scheduler_kwargs={"num_decay_steps": 6})}


def write_all(tmp_path: Path) -> dict[str, dict[str, Path]]:
    """Every case exported to every tool that takes it: {tool: {case: file}}."""
    files: dict[str, dict[str, Path]] = {tool: {} for tool in TOOLS}
    for case, doc in CASES.items():
        tuned = from_recommended(doc)
        for tool, module in TOOLS.items():
            if tool == "unsloth" and (tuned.use_dora or tuned.quant_type == "fp4"):
                continue  # refused (tests/config/test_tools.py)
            path = tmp_path / f"{case}.{tool}.yaml"
            path.write_text(render(module.export(tuned), doc, "test"))
            files[tool][case] = path
    return files


def misspelt(files: dict[str, dict[str, Path]], tmp_path: Path) -> dict[str, Path]:
    """One export per parsed tool with a key renamed to a near miss: the parsers must catch each (so a passing
    parse means the keys are the tool's own)."""
    wrong = {}
    for tool, (right, near) in (("axolotl", ("lora_r", "lora_rank")), ("llamafactory", ("lora_rank", "lora_r")),
                                ("trl", ("use_bnb_nested_quant", "bnb_4bit_use_double_quant"))):
        doc = yaml.safe_load(files[tool]["nf4dq"].read_text())
        doc[near] = doc.pop(right)
        wrong[tool] = tmp_path / f"wrong.{tool}.yaml"
        wrong[tool].write_text(yaml.safe_dump(doc))
    return wrong


def test_every_export_loads_with_its_tools_parser_and_a_misspelt_key_does_not(tmp_path: Path) -> None:
    files = write_all(tmp_path)
    wrong = misspelt(files, tmp_path)
    with pytest.raises(ValueError, match="bnb_4bit_use_double_quant"):
        parse_trl(wrong["trl"])
    for case, path in files["trl"].items():
        tuned = from_recommended(CASES[case])
        script, sft, model, lora, bnb = parse_trl(path)
        assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (tuned.r, tuned.alpha, tuned.dropout)
        assert lora.target_modules == (set(tuned.targets) if isinstance(tuned.targets, list) else tuned.targets)
        assert (lora.use_rslora, lora.use_dora) == (tuned.use_rslora, tuned.use_dora)
        if tuned.bits is None:
            assert bnb is None
        else:
            assert (bnb.load_in_4bit, bnb.load_in_8bit) == (tuned.bits == 4, tuned.bits == 8)
            if tuned.bits == 4:
                assert (bnb.bnb_4bit_quant_type, bnb.bnb_4bit_use_double_quant) == (tuned.quant_type, tuned.double_quant)
        assert (sft.learning_rate, sft.max_steps, sft.per_device_train_batch_size, sft.gradient_accumulation_steps,
                sft.warmup_steps, sft.weight_decay, sft.max_grad_norm, sft.max_length, sft.optim) == (
            tuned.learning_rate, tuned.max_steps, tuned.batch_size, tuned.grad_accum, tuned.warmup_ratio,
            tuned.weight_decay, tuned.max_grad_norm, tuned.seq_len, tuned.optim)
        assert str(sft.lr_scheduler_type).split(".")[-1].lower() == tuned.scheduler
        assert (sft.lr_scheduler_kwargs or {}) == tuned.scheduler_kwargs and script.datasets[0].data_files == "train.jsonl"

    parsed = parse_with("axolotl", [*files["axolotl"].values(), wrong["axolotl"]])
    assert parsed["wrong.axolotl.yaml"]["unknown"] == ["lora_rank"]
    for case, path in files["axolotl"].items():
        tuned, result = from_recommended(CASES[case]), parsed[path.name]
        assert "error" not in result and result["unknown"] == [], result
        got = result["values"]
        assert (got["lora_r"], got["lora_alpha"], got["lora_dropout"]) == (tuned.r, tuned.alpha, tuned.dropout)
        assert (got["peft_use_rslora"], got["peft_use_dora"]) == (tuned.use_rslora, tuned.use_dora)
        assert got["adapter"] == ("qlora" if tuned.bits == 4 else "lora")
        assert (got["load_in_4bit"], got["load_in_8bit"]) == (tuned.bits == 4, tuned.bits == 8)
        assert (got["learning_rate"], got["micro_batch_size"], got["gradient_accumulation_steps"], got["max_steps"],
                got["warmup_ratio"], got["max_grad_norm"], got["sequence_len"], got["lr_scheduler"]) == (
            tuned.learning_rate, tuned.batch_size, tuned.grad_accum, tuned.max_steps, tuned.warmup_ratio,
            tuned.max_grad_norm, tuned.seq_len, tuned.scheduler)
        assert got.get("loraplus_lr_ratio") == (tuned.loraplus_lr_ratio if tuned.loraplus_lr_ratio != 1 else None)
        if tuned.targets == "all-linear":
            assert got["lora_target_linear"] is True
        else:
            assert got["lora_target_modules"] == tuned.targets
        if tuned.bits == 4:
            assert got["bnb_config_kwargs"] == {"bnb_4bit_quant_type": tuned.quant_type,
                                                "bnb_4bit_use_double_quant": tuned.double_quant}

    parsed = parse_with("llamafactory", [*files["llamafactory"].values(), wrong["llamafactory"]])
    assert "lora_r" in parsed["wrong.llamafactory.yaml"]["error"]
    for case, path in files["llamafactory"].items():
        tuned, result = from_recommended(CASES[case]), parsed[path.name]
        assert "error" not in result, result
        got = result["values"]
        assert (got["lora_rank"], got["lora_alpha"], got["lora_dropout"]) == (tuned.r, tuned.alpha, tuned.dropout)
        assert got["_lora_target"] == (["all"] if tuned.targets == "all-linear" else tuned.targets)
        assert (got["use_rslora"], got["use_dora"]) == (tuned.use_rslora, tuned.use_dora)
        assert got.get("quantization_bit") == tuned.bits
        if tuned.bits == 4:
            assert got["_compute"] == {"quantization_type": tuned.quant_type, "double_quantization": tuned.double_quant}
        assert (got["learning_rate"], got["per_device_train_batch_size"], got["gradient_accumulation_steps"],
                got["max_steps"], got["warmup_steps"], got["max_grad_norm"], got["cutoff_len"]) == (
            tuned.learning_rate, tuned.batch_size, tuned.grad_accum, tuned.max_steps, tuned.warmup_ratio,
            tuned.max_grad_norm, tuned.seq_len)
        assert got["lr_scheduler_type"].split(".")[-1].lower() == tuned.scheduler
        assert got.get("loraplus_lr_ratio") == (tuned.loraplus_lr_ratio if tuned.loraplus_lr_ratio != 1 else None)

    names = unsloth_parameters()
    assert "use_dora" not in names["get_peft_model"]  # why a DoRA export is refused
    for case, path in files["unsloth"].items():
        tuned, doc = from_recommended(CASES[case]), yaml.safe_load(path.read_text())
        for section in ("from_pretrained", "get_peft_model"):
            assert set(doc[section]) <= names[section], set(doc[section]) - names[section]
        peft = doc["get_peft_model"]
        assert (peft["r"], peft["lora_alpha"], peft["use_rslora"]) == (tuned.r, tuned.alpha, tuned.use_rslora)
        assert doc["from_pretrained"]["load_in_4bit"] == (tuned.bits == 4)
        from trl import SFTConfig

        sft = SFTConfig(**doc["training"], use_cpu=True)  # what Unsloth's SFTTrainer takes
        assert (sft.learning_rate, sft.max_steps, sft.warmup_steps) == (tuned.learning_rate, tuned.max_steps,
                                                                        tuned.warmup_ratio)


SAMPLE_DATA = [(f"What does helper_{i} in the module return?", f"It returns item {i} of the list.") for i in range(40)]


def sample_folder(tmp_path: Path) -> Path:
    """The three sample configs beside their data (messages JSONL; LLaMA-Factory's alpaca JSON named in
    data/dataset_info.json), and an experiment file that keeps the trials to seconds."""
    write_data(tmp_path)
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n" for q, a in SAMPLE_DATA))
    (tmp_path / "data" / "alpaca.json").write_text(json.dumps(
        [{"instruction": q, "input": "", "output": a} for q, a in SAMPLE_DATA]))
    for tool in ("axolotl", "llamafactory", "trl"):
        (tmp_path / f"{tool}.yaml").write_text((HERE / "tool_configs" / f"{tool}.yaml").read_text())
    (tmp_path / "fast.yaml").write_text("trials: 2\nwandb: disabled\ndata_options: {eval_size: 8}\n"
                                        "eval: {metrics: [], generate_size: 0}\n")
    return tmp_path


@pytest.mark.parametrize("tool", ["axolotl", "llamafactory", "trl"])
def test_from_config_round_trip(tool: str, tmp_path: Path) -> None:
    folder = sample_folder(tmp_path)
    original = (folder / f"{tool}.yaml").read_text()
    swept = run_cli("sweep", "--from-config", f"{tool}.yaml", "-e", "fast.yaml", "--study", tool, cwd=folder)
    assert swept.returncode == 0, swept.stderr[-3000:]
    assert f"({tool}):" in swept.stdout and "  lora_r: 8" in swept.stdout.replace("lora_rank", "lora_r")
    assert "not used by the sweep (kept in your file): " in swept.stdout and "output_dir" in swept.stdout
    space = yaml.safe_load((folder / "experiments" / tool / "space_from_config.yaml").read_text())["axes"]
    assert space["lora_r"] == {"choices": [4, 8, 16]}
    import optuna

    study = optuna.load_study(study_name=tool, storage=f"sqlite:///{folder}/experiments/{tool}/study.db")
    stored = study.user_attrs["sweep"]
    assert stored["from_format"] == tool and stored["from_config"] == str((folder / f"{tool}.yaml").resolve())
    assert stored["from_values"]["learning_rate"] in (2e-3, "2e-3", 1e-3)

    made = run_cli("recommend", "--study", tool, "--format", f"same,{tool}", cwd=folder)
    assert made.returncode == 0, made.stderr[-3000:]
    assert (folder / f"{tool}.yaml").read_text() == original  # the user's file is not touched
    tuned_path = folder / "reports" / tool / f"{tool}.tuned.yaml"
    tuned_text = tuned_path.read_text()
    rec = yaml.safe_load((folder / "reports" / tool / "recommended.yaml").read_text())
    before, after = yaml.safe_load(original), yaml.safe_load(tuned_text)
    lr = float(f"{rec['training']['learning_rate']:.4g}")
    rank_key = "lora_rank" if tool == "llamafactory" else "lora_r"
    assert (after[rank_key], after["lora_alpha"], after["learning_rate"]) == (
        rec["lora"]["r"], rec["lora"]["lora_alpha"], lr)
    # Gradient checkpointing is stated too (the trials' setting, issue 40: TRL's SFTConfig would turn it on).
    tuned_keys = {rank_key, "lora_alpha", "learning_rate", "warmup_ratio", "warmup_steps", "gradient_checkpointing",
                  "gradient_checkpointing_kwargs", "disable_gradient_checkpointing"}
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert changed <= tuned_keys, changed - tuned_keys
    untouched = [line for line in original.splitlines() if not line.split(":")[0] in changed]
    assert [line for line in tuned_text.splitlines() if line in untouched] == untouched
    if tool == "trl":
        _, sft, _, lora, _ = parse_trl(tuned_path)
        assert (lora.r, sft.learning_rate) == (rec["lora"]["r"], lr)
    else:
        result = parse_with(tool, [tuned_path])[tuned_path.name]
        assert "error" not in result and not result["unknown"], result
        assert result["values"]["learning_rate"] == lr
    if tool == "llamafactory":  # warmup_ratio (gone in transformers 5.x) became warmup_steps
        assert "warmup_ratio" not in after and after["warmup_steps"] == 0.1

    refused = run_cli("recommend", "--study", tool, "--format", "same,trl,nope", cwd=folder)
    assert_one_line_error(refused, "--format 'nope' is not one of")


def test_export_command_and_refusals(tmp_path: Path) -> None:
    doc = recommended("fp4-dq")
    path = tmp_path / "recommended.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = run_cli("export", str(path), "--format", "axolotl,unsloth,trl")
    line = assert_one_line_error(proc, "--format unsloth refused", "NF4 only")
    assert line and (tmp_path / "recommended.axolotl.yaml").is_file() and (tmp_path / "recommended.trl.yaml").is_file()
    assert not (tmp_path / "recommended.unsloth.yaml").exists()
    header = (tmp_path / "recommended.axolotl.yaml").read_text().split("base_model")[0]
    assert "Study s" in header and "not validated" in header and "Budget per run: 60 optimizer steps" in header
    plus = tmp_path / "plus" / "recommended.yaml"
    plus.parent.mkdir()
    plus.write_text(yaml.safe_dump(recommended("nf4-dq", optimizer={"lr": 3e-4, "loraplus_lr_ratio": 8.0})))
    proc = run_cli("export", str(plus), "--format", "trl")
    assert proc.returncode == 0 and "trl: not expressed: LoRA+" in proc.stdout
    assert "# NOT EXPRESSED: LoRA+" in (plus.parent / "recommended.trl.yaml").read_text()
    both = recommended("fp4-dq")
    both["per_quantization"] = {"fp4-dq": recommended("fp4-dq"), "nf4": recommended("nf4", lora__r=8)}
    mixed = tmp_path / "modes" / "recommended.yaml"
    mixed.parent.mkdir()
    mixed.write_text(yaml.safe_dump(both))
    proc = run_cli("export", str(mixed), "--format", "unsloth", "--quantization", "nf4")
    assert proc.returncode == 0, proc.stderr
    per_mode = yaml.safe_load((mixed.parent / "recommended.unsloth.nf4.yaml").read_text())
    assert per_mode["get_peft_model"]["r"] == 8 and per_mode["from_pretrained"]["load_in_4bit"] is True
    assert "--quantization nf4-dq" in assert_one_line_error(run_cli("export", str(mixed), "--format", "unsloth"))
    assert_one_line_error(run_cli("export", str(mixed), "--quantization", "int8"), "per_quantization has: fp4-dq, nf4")
    assert_one_line_error(run_cli("export", str(tmp_path / "none.yaml")), "no such file")
    assert_one_line_error(run_cli("export", str(path), "--format", "same"), "--format same needs the study")
    assert_one_line_error(run_cli("sweep", "--from-config", str(tmp_path / "none.yaml")), "no such file")
    assert_one_line_error(run_cli("sweep", "--from-format", "trl"), "--from-format names the tool")
