"""Shared by tests/config/test_tools.py and tests/publish/test_exports.py: a recommended.yaml mapping as
`harness recommend` writes it, and the sample tool configs (tests/publish/tool_configs) beside stub data."""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "publish" / "tool_configs"
BNB = {"none": None, "int8": {"load_in_8bit": True},
       "nf4": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": False},
       "nf4-dq": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True},
       "fp4": {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": False},
       "fp4-dq": {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": True}}


def recommended(mode: str = "nf4-dq", **overrides: object) -> dict:
    """A recommended.yaml mapping as `harness recommend` writes it."""
    lora = {"r": 16, "lora_alpha": 32.0, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"],
            "bias": "none", "task_type": "CAUSAL_LM", "use_rslora": True, "use_dora": False, "init_lora_weights": True}
    training = {"learning_rate": 3.0e-4, "max_steps": 60, "per_device_train_batch_size": 4,
                "gradient_accumulation_steps": 2, "warmup_steps": 0.1, "weight_decay": 0.01, "max_grad_norm": 0.5,
                "lr_scheduler_type": "cosine", "optim": "adamw_torch", "seed": 0}
    quant = BNB[mode] and {**BNB[mode], **({"bnb_4bit_compute_dtype": "float32"} if "4" in mode else {})}
    doc = {"validated": False, "lora": lora, "quantization": quant, "training": training, "optimizer": None,
           "evidence": {"model": "smollm2-135m", "data": "train.jsonl", "max_seq_len": 96, "study": "s",
                        "data_format": "messages"}}
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if section == "optimizer":
            doc["optimizer"] = value
        else:
            doc[section][name] = value
    return doc


def write_data(folder: Path) -> None:
    folder.joinpath("data").mkdir(exist_ok=True)
    folder.joinpath("data.jsonl").write_text('{"messages": []}\n')
    folder.joinpath("data", "alpaca.json").write_text("[]")
    folder.joinpath("data", "dataset_info.json").write_text('{"tiny_alpaca": {"file_name": "alpaca.json"}}')


