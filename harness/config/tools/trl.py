"""TRL: the flat YAML `trl sft --config FILE` reads (trl.TrlParser over ScriptArguments, SFTConfig and
ModelConfig; SFTConfig is transformers.TrainingArguments plus the SFT fields)."""

from __future__ import annotations

from harness.config.tools import datasets
from harness.config.tools.settings import (TRAINING_DEFAULTS, Export, Tuned, data_note, kept_note, loraplus_note, peft_init_note,
                                            training_arguments, whole)

NAME = "trl"
CONTEXT = frozenset({"model_name_or_path", "dataset_name", "datasets", "dataset_text_field", "completion_only_loss",
                     "output_dir", "max_length", "dtype", "report_to", "seed", "optim"})
DEFAULTS = {**TRAINING_DEFAULTS, "use_rslora": False, "use_dora": False, "load_in_8bit": False, "load_in_4bit": False,
            "use_bnb_nested_quant": False, "bnb_4bit_quant_type": "nf4"}
"""ModelConfig's and TrainingArguments' values of keys a file leaves out."""


def export(t: Tuned) -> Export:
    script, sft, data_notes = datasets.trl(t)
    keys = {"model_name_or_path": t.hub_model, **script, **sft, "output_dir": "outputs/harness-tuned",
            "max_length": t.seq_len,
            "use_peft": True, "lora_r": t.r, "lora_alpha": whole(t.alpha),
            "lora_dropout": t.dropout, "lora_target_modules": t.targets if isinstance(t.targets, list) else [t.targets],
            "use_rslora": t.use_rslora, "use_dora": t.use_dora,
            "load_in_8bit": t.bits == 8, "load_in_4bit": t.bits == 4}
    if t.bits == 4:
        keys |= {"bnb_4bit_quant_type": t.quant_type, "use_bnb_nested_quant": t.double_quant}
    keys |= training_arguments(t)
    notes = (data_notes + peft_init_note(t, "TRL's ModelConfig") + loraplus_note(t, "TRL")
             + kept_note(t, "TRL's ModelConfig"))
    load = ("Use: trl sft --config THIS_FILE   (or: TrlParser((ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig)).parse_args_and_config())",
            "warmup_steps below 1 is a fraction of max_steps (transformers 5)", *data_note(t))
    return Export(NAME, keys, tuple(notes), load, CONTEXT, DEFAULTS, frozenset({"warmup_ratio"}))
