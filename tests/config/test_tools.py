"""The tools' keys both ways, without the tools: a recommended.yaml mapping -> each tool's keys (every
quantization mode, the variants, what a tool cannot express), a user's file -> what a sweep takes from it (and
the one-line error for each key the harness cannot honour), and the line-keeping rewrite of a user's file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.config.errors import SpecError
from harness.config.tools import axolotl, llamafactory, trl, unsloth
from harness.config.tools.reading import read_tool_config, space_around, sweep_values
from harness.config.tools.rewrite import rewrite
from harness.config.tools.settings import from_recommended, mode_of
from tool_fixtures import BNB, CONFIGS, recommended, write_data

@pytest.mark.parametrize("mode", list(BNB))
def test_every_mode_reads_back_and_reaches_each_tool_key(mode: str) -> None:
    tuned = from_recommended(recommended(mode))
    assert tuned.quantization == mode == mode_of(BNB[mode])
    bits = {"none": None, "int8": 8}.get(mode, 4)
    ax, lf, tr = axolotl.export(tuned).keys, llamafactory.export(tuned).keys, trl.export(tuned).keys
    assert (ax["adapter"], ax["load_in_4bit"], ax["load_in_8bit"]) == ("qlora" if bits == 4 else "lora", bits == 4, bits == 8)
    assert lf.get("quantization_bit") == bits and tr["load_in_4bit"] == (bits == 4) and tr["load_in_8bit"] == (bits == 8)
    if bits == 4:
        kind, double = mode.split("-")[0], mode.endswith("-dq")
        assert ax["bnb_config_kwargs"] == {"bnb_4bit_quant_type": kind, "bnb_4bit_use_double_quant": double}
        assert (lf["quantization_type"], lf["double_quantization"]) == (kind, double)
        assert (tr["bnb_4bit_quant_type"], tr["use_bnb_nested_quant"]) == (kind, double)
    for keys, r, alpha in ((ax, "lora_r", "lora_alpha"), (lf, "lora_rank", "lora_alpha"), (tr, "lora_r", "lora_alpha")):
        assert (keys[r], keys[alpha]) == (16, 32)
    assert ax["lora_target_modules"] == tr["lora_target_modules"] == ["q_proj", "v_proj"]
    assert lf["lora_target"] == "q_proj,v_proj"
    assert ax["peft_use_rslora"] and lf["use_rslora"] and tr["use_rslora"]
    for keys in (ax, lf, tr):
        assert keys["learning_rate"] == 3.0e-4 and keys["max_steps"] == 60 and keys["gradient_accumulation_steps"] == 2
    assert ax["micro_batch_size"] == lf["per_device_train_batch_size"] == tr["per_device_train_batch_size"] == 4
    assert ax["warmup_ratio"] == lf["warmup_steps"] == tr["warmup_steps"] == 0.1
    assert ax["sequence_len"] == lf["cutoff_len"] == tr["max_length"] == 96
    assert ax["base_model"] == lf["model_name_or_path"] == tr["model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_what_a_tool_cannot_express_is_said_or_refused() -> None:
    plus = from_recommended(recommended(optimizer={"lr": 3e-4, "loraplus_lr_ratio": 16.0, "weight_decay": 0.01}))
    assert axolotl.export(plus).keys["loraplus_lr_ratio"] == llamafactory.export(plus).keys["loraplus_lr_ratio"] == 16
    assert any("LoRA+" in note for note in trl.export(plus).notes)  # TRL has no LoRA+: said, not dropped
    assert any("LoRA+" in note for note in unsloth.export(plus).notes)
    assert not axolotl.export(plus).notes and not llamafactory.export(plus).notes
    pissa = from_recommended(recommended("none", lora__init_lora_weights="pissa_niter_4"))
    assert llamafactory.export(pissa).keys["pissa_init"] and llamafactory.export(pissa).keys["pissa_iter"] == 4
    assert any("pissa_niter_4" in note for note in axolotl.export(pissa).notes + trl.export(pissa).notes)
    with pytest.raises(SpecError, match="NF4 only"):
        unsloth.export(from_recommended(recommended("fp4-dq")))
    with pytest.raises(SpecError, match="DoRA"):
        unsloth.export(from_recommended(recommended("none", lora__use_dora=True)))
    assert any("double-quantizes" in note for note in unsloth.export(from_recommended(recommended("nf4"))).notes)
    assert not unsloth.export(from_recommended(recommended("nf4-dq", evidence__data_format="text"))).notes


def test_all_linear_and_a_built_in_dataset() -> None:
    doc = recommended("none", lora__target_modules="all-linear")
    doc["evidence"]["data"] = "stdlib-qa"
    tuned = from_recommended(doc)
    assert axolotl.export(tuned).keys["lora_target_linear"] is True
    assert "lora_target_modules" in axolotl.export(tuned).removes
    assert llamafactory.export(tuned).keys["lora_target"] == "all"
    assert unsloth.export(tuned).keys["get_peft_model"]["target_modules"][-1] == "down_proj"
    assert axolotl.export(tuned).keys["datasets"][0]["path"] == "YOUR_DATA.jsonl"
    assert any("stdlib-qa" in line for line in axolotl.export(tuned).load)


def test_not_a_recommended_file() -> None:
    with pytest.raises(SpecError, match="needs `lora` and `training`"):
        from_recommended({"study": "x"})


TEXT = """# mine
base_model: m  # the model
lora_r: 8
lora_target_modules:
  - q_proj
  - v_proj
learning_rate: 2e-4   # a guess

lora_target_linear: false
datasets:
- path: a.jsonl
  type: alpaca
"""


def test_rewrite_keeps_every_other_line() -> None:
    text, changed = rewrite(TEXT, {"lora_r": 16, "learning_rate": 2e-4, "lora_alpha": 32, "lora_dropout": 0.0,
                                   "lora_target_linear": True},
                            removes={"lora_target_modules"}, defaults={"lora_dropout": 0.0})
    assert changed == {"lora_r": (8, 16), "lora_alpha": (None, 32), "lora_target_linear": (False, True),
                       "lora_target_modules": (["q_proj", "v_proj"], None)}  # 2e-4 is 2e-4: unchanged
    doc = yaml.safe_load(text)
    assert doc == {"base_model": "m", "lora_r": 16, "learning_rate": "2e-4", "lora_target_linear": True,
                   "datasets": [{"path": "a.jsonl", "type": "alpaca"}], "lora_alpha": 32}
    assert "learning_rate: 2e-4   # a guess\n" in text and "lora_r: 16  # harness: was 8\n" in text
    kept = [line for line in TEXT.splitlines() if not line.startswith(("lora_r", "lora_target", "  - "))]
    assert [line for line in text.splitlines() if line in kept] == kept  # the rest verbatim, in order


@pytest.mark.parametrize("tool", ["axolotl", "llamafactory", "trl"])
def test_sample_configs_are_read(tool: str, tmp_path: Path) -> None:
    write_data(tmp_path)
    path = tmp_path / f"{tool}.yaml"
    path.write_text((CONFIGS / f"{tool}.yaml").read_text())
    config = read_tool_config(path)
    assert config.format == tool
    assert config.sweep["model"] == "tiny-llama" and config.sweep["max_steps"] == 2
    assert config.sweep["data_options"]["max_seq_len"] == 64
    assert config.sweep["train"]["batch_size"] == 4
    assert config.centre["lora_r"] == 8 and config.centre["lora_alpha"] == 16
    expected = {"axolotl": ("nf4-dq", "q_proj,v_proj", 2e-3, "cosine"), "llamafactory": ("none", "all-linear", 1e-3, "cosine"),
                "trl": ("none", "q_proj,k_proj,v_proj,o_proj", 2e-3, "linear")}[tool]
    assert (config.centre["quantization"], config.centre["target_modules"], config.centre["learning_rate"],
            config.sweep["train"]["scheduler"]) == expected
    assert config.sweep["train"]["warmup_ratio"] == 0.1
    if tool == "llamafactory":
        assert config.sweep["data"] == str(tmp_path / "data" / "alpaca.json")
        assert config.sweep["data_options"]["format"] == "instruction"
    assert "output_dir" in config.unused and "output_dir" not in config.read
    values = sweep_values(config, {"train": {"batch_size": 2}, "trials": 3})
    assert values["train"]["batch_size"] == 2 and values["train"]["warmup_ratio"] == 0.1  # sections merge by key
    assert values["from_format"] == tool and values["study"] == tool
    space = space_around(config)["axes"]
    assert space["lora_r"] == {"choices": [4, 8, 16]} and space["quantization"] == expected[0]
    assert space["lora_alpha"] == {"ratio": {"choices": [1.0, 2.0, 4.0]}}
    lr = expected[2]
    assert space["learning_rate"] == {"low": lr / 4, "high": lr * 4, "log": True}


@pytest.mark.parametrize("tool, edit, needle", [
    ("axolotl", {"optimizer": "adafactor"}, "optimizer: 'adafactor': trials train with AdamW"),
    ("axolotl", {"chat_template": "chatml"}, "chat_template: 'chatml'"),
    ("axolotl", {"adapter": None}, "adapter: None"),
    ("axolotl", {"datasets": [{"path": "a.jsonl", "type": "alpaca"}, {"path": "b.jsonl", "type": "alpaca"}]},
     "datasets: expected one dataset"),
    ("axolotl", {"datasets": [{"path": "a.jsonl", "type": "sharegpt"}]}, "datasets[0].type: 'sharegpt'"),
    ("axolotl", {"lr_scheduler": "one_cycle"}, "lr_scheduler: 'one_cycle'"),
    ("axolotl", {"lora_r": "eight"}, "lora_r: expected a positive whole number"),
    ("llamafactory", {"finetuning_type": "full"}, "finetuning_type: 'full'"),
    ("llamafactory", {"dataset": "missing"}, "dataset: 'missing' is not in"),
    ("llamafactory", {"quantization_bit": 3}, "quantization_bit: 3"),
    ("trl", {"use_peft": False}, "use_peft: missing or false"),
    ("trl", {"optim": "adafactor"}, "optim: 'adafactor'"),
    ("trl", {"warmup_steps": 5, "max_steps": None}, "warmup_steps: 5 steps without max_steps"),
])
def test_what_cannot_be_honoured_is_one_line_naming_the_key(tool: str, edit: dict, needle: str, tmp_path: Path) -> None:
    write_data(tmp_path)
    doc = {**yaml.safe_load((CONFIGS / f"{tool}.yaml").read_text()), **edit}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in doc.items() if v is not None}))
    with pytest.raises(SpecError) as err:
        read_tool_config(path, tool)
    assert needle in str(err.value) and str(path.resolve()) in str(err.value) and "\n" not in str(err.value)


def test_detection_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("learning_rate: 1.0e-4\n")
    with pytest.raises(SpecError, match="cannot tell which tool"):
        read_tool_config(path)
    with pytest.raises(SpecError, match="--from-format 'unsloth' is not one of"):
        read_tool_config(path, "unsloth")
    with pytest.raises(SpecError, match="no such file"):
        read_tool_config(tmp_path / "none.yaml")


def test_epochs_instead_of_steps_is_a_note(tmp_path: Path) -> None:
    write_data(tmp_path)
    doc = {**yaml.safe_load((CONFIGS / "axolotl.yaml").read_text()), "num_epochs": 3}
    del doc["max_steps"]
    path = tmp_path / "epochs.yaml"
    path.write_text(yaml.safe_dump(doc))
    config = read_tool_config(path)
    assert "max_steps" not in config.sweep and any("validate --epochs 3" in n for n in config.notes)


UPSTREAM_AXOLOTL = """base_model: NousResearch/Llama-3.2-1B
load_in_8bit: false
load_in_4bit: true
datasets:
  - path: teknium/GPT4-LLM-Cleaned
    type: alpaca
dataset_prepared_path: last_run_prepared
val_set_size: 0.1
output_dir: ./outputs/qlora-out
adapter: qlora
lora_model_dir:
sequence_len: 2048
sample_packing: true
lora_r: 32
lora_alpha: 16
lora_dropout: 0.05
lora_target_modules: [gate_proj, down_proj, up_proj, q_proj, v_proj, k_proj, o_proj]
wandb_project:
gradient_accumulation_steps: 4
micro_batch_size: 2
num_epochs: 1
optimizer: adamw_bnb_8bit
lr_scheduler: cosine
learning_rate: 0.0002
bf16: auto
gradient_checkpointing: true
warmup_ratio: 0.1
weight_decay: 0.0
special_tokens:
  pad_token: "<|end_of_text|>"
"""
"""The shape of Axolotl's own QLoRA example for Llama-3.2-1B (examples/llama-3/qlora-1b.yml): a hub model and
dataset, 8-bit AdamW, epochs rather than steps, sample packing."""

UPSTREAM_LLAMAFACTORY = """model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
quantization_bit: 4
quantization_method: bitsandbytes
stage: sft
do_train: true
finetuning_type: lora
lora_target: all
dataset: identity,alpaca_en_demo
template: llama3
cutoff_len: 2048
max_samples: 1000
output_dir: saves/llama3-8b/lora/sft
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
"""
"""The shape of LLaMA-Factory's on-the-fly QLoRA example (examples/train_qlora/llama3_lora_sft_otfq.yaml)."""


def test_a_published_axolotl_qlora_example_is_read(tmp_path: Path) -> None:
    path = tmp_path / "qlora-1b.yml"
    path.write_text(UPSTREAM_AXOLOTL)
    config = read_tool_config(path)
    assert config.format == "axolotl" and config.sweep["model"] == "NousResearch/Llama-3.2-1B"
    assert config.sweep["data"] == "teknium/GPT4-LLM-Cleaned" and config.sweep["data_options"]["format"] == "instruction"
    assert config.centre == {"quantization": "nf4-dq", "lora_r": 32, "lora_alpha": 16.0, "lora_dropout": 0.05,
                             "target_modules": "gate_proj,down_proj,up_proj,q_proj,v_proj,k_proj,o_proj",
                             "learning_rate": 2e-4}
    assert config.sweep["train"] == {"scheduler": "cosine", "warmup_ratio": 0.1, "weight_decay": 0.0,
                                     "max_grad_norm": 1.0, "batch_size": 2, "grad_accum": 4}
    assert "max_steps" not in config.sweep and config.sweep["data_options"]["max_seq_len"] == 2048
    notes = " | ".join(config.notes)
    assert "num_epochs 1" in notes and "adamw_bnb_8bit: trials train with 32-bit AdamW" in notes
    assert {"sample_packing", "gradient_checkpointing", "special_tokens", "bf16"} <= set(config.unused)


def test_a_published_llamafactory_qlora_example_is_read_once_it_names_one_dataset(tmp_path: Path) -> None:
    path = tmp_path / "llama3_lora_sft_otfq.yaml"
    path.write_text(UPSTREAM_LLAMAFACTORY)
    with pytest.raises(SpecError, match="dataset: 'identity,alpaca_en_demo': a sweep trains on one dataset"):
        read_tool_config(path)
    write_data(tmp_path)
    path.write_text(UPSTREAM_LLAMAFACTORY.replace("identity,alpaca_en_demo", "tiny_alpaca") + "dataset_dir: data\n")
    config = read_tool_config(path)
    assert config.format == "llamafactory" and config.centre["quantization"] == "nf4-dq"  # double quant by default
    assert config.centre["target_modules"] == "all-linear" and config.centre["lora_r"] == 8  # LLaMA-Factory's default rank
    assert config.centre["lora_alpha"] == 16.0 and config.sweep["train"]["grad_accum"] == 8
    assert any("num_train_epochs 3.0" in n for n in config.notes) and any("template llama3" in n for n in config.notes)
