"""Axolotl: its flat YAML (`axolotl train FILE`), checked by axolotl.utils.config.validate_config. 4-bit
QLoRA is `adapter: qlora` with `load_in_4bit`, which Axolotl loads as NF4 with double quantization unless
`bnb_config_kwargs` (passed to BitsAndBytesConfig as is) says otherwise; 8-bit is `adapter: lora` with
`load_in_8bit`."""

from __future__ import annotations

from harness.config.tools import datasets
from harness.config.tools.settings import (Export, Tuned, checkpointing_arguments, data_note, kept_note, peft_init_note,
                                            whole)

NAME = "axolotl"
CONTEXT = frozenset({"base_model", "datasets", "train_on_inputs", "output_dir", "sequence_len", "chat_template", "val_set_size", "seed",
                     "optimizer"})
DEFAULTS = {"load_in_8bit": False, "load_in_4bit": False, "peft_use_rslora": False, "peft_use_dora": False,
            "bnb_config_kwargs": {"bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True}, "weight_decay": 0.0,
            "max_grad_norm": 1.0, "gradient_accumulation_steps": 1, "lora_dropout": 0.0}
"""What Axolotl does with a key left out (qlora: NF4 with double quantization)."""


def export(t: Tuned) -> Export:
    data, data_notes = datasets.axolotl(t)
    keys = {"base_model": t.hub_model, **data, "sequence_len": t.seq_len,
            "output_dir": "outputs/harness-tuned",
            "adapter": "qlora" if t.bits == 4 else "lora",
            "load_in_8bit": t.bits == 8, "load_in_4bit": t.bits == 4}
    if t.bits == 4:
        keys["bnb_config_kwargs"] = {"bnb_4bit_quant_type": t.quant_type, "bnb_4bit_use_double_quant": t.double_quant}
        if t.skip_modules:  # keep_16bit: bnb_config_kwargs reaches BitsAndBytesConfig as is (4-bit only)
            keys["bnb_config_kwargs"]["llm_int8_skip_modules"] = list(t.skip_modules)
    keys |= {"lora_r": t.r, "lora_alpha": whole(t.alpha), "lora_dropout": t.dropout}
    if t.targets == "all-linear":
        keys["lora_target_linear"] = True
    else:
        keys["lora_target_modules"] = list(t.targets)
    keys |= {"peft_use_rslora": t.use_rslora, "peft_use_dora": t.use_dora}
    if t.loraplus_lr_ratio != 1.0:
        keys["loraplus_lr_ratio"] = t.loraplus_lr_ratio
    keys |= {"learning_rate": t.learning_rate, "lr_scheduler": t.scheduler, "warmup_ratio": t.warmup_ratio,
             "weight_decay": t.weight_decay, "max_grad_norm": t.max_grad_norm, "micro_batch_size": t.batch_size,
             "gradient_accumulation_steps": t.grad_accum, "max_steps": t.max_steps, "optimizer": t.optim,
             "seed": t.seed}
    if t.scheduler_kwargs:
        keys["lr_scheduler_kwargs"] = dict(t.scheduler_kwargs)
    keys |= checkpointing_arguments(t)  # Axolotl's own keys are TrainingArguments' names
    removes = {"warmup_steps", "lora_target_modules" if t.targets == "all-linear" else "lora_target_linear"}
    if t.bits != 4:
        removes.add("bnb_config_kwargs")
    if t.loraplus_lr_ratio == 1.0:
        removes.add("loraplus_lr_ratio")
    load = ("Use: axolotl train THIS_FILE", *data_note(t),
            *([datasets.MULTI_TURN] if keys["datasets"][0].get("type") == "chat_template" else []))
    notes = data_notes + peft_init_note(t, "Axolotl") + (kept_note(t, "Axolotl's 8-bit loading") if t.bits == 8 else [])
    return Export(NAME, keys, tuple(notes), load, CONTEXT, DEFAULTS, frozenset(removes))
