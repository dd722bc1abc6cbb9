"""LLaMA-Factory: its flat YAML (`llamafactory-cli train FILE`), parsed by llamafactory.hparams.get_train_args
into its model, data, training and fine-tuning argument dataclasses."""

from __future__ import annotations

from harness.config.tools import datasets
from harness.config.tools.settings import (TRAINING_DEFAULTS, Export, Tuned, data_note, kept_note, peft_init_note,
                                            training_arguments, whole)

NAME = "llamafactory"
CONTEXT = frozenset({"model_name_or_path", "dataset", "dataset_dir", "template", "cutoff_len", "output_dir",
                     "stage", "do_train", "finetuning_type", "seed", "optim",
                     "mask_history", "train_on_prompt"})
DEFAULTS = {**TRAINING_DEFAULTS, "use_rslora": False, "use_dora": False, "lora_dropout": 0.0,
            "quantization_type": "nf4", "double_quantization": True, "quantization_method": "bnb"}


def export(t: Tuned) -> Export:
    keys = {"model_name_or_path": t.hub_model, "stage": "sft", "do_train": True, "finetuning_type": "lora",
            "cutoff_len": t.seq_len,
            "output_dir": "outputs/harness-tuned",
            "lora_rank": t.r, "lora_alpha": whole(t.alpha), "lora_dropout": t.dropout,
            "lora_target": "all" if t.targets == "all-linear" else ",".join(t.targets),
            "use_rslora": t.use_rslora, "use_dora": t.use_dora}
    data, files, notes = datasets.llamafactory(t)
    keys |= data
    if t.frame is not None and t.frame[0] == datasets.PLAIN:
        keys["template"] = "default"
    if t.init in ("pissa",) or t.init.startswith("pissa_niter_"):
        keys["pissa_init"] = True
        if t.init.startswith("pissa_niter_"):
            keys["pissa_iter"] = int(t.init.rsplit("_", 1)[1])
    else:
        notes += peft_init_note(t, "LLaMA-Factory")
    notes += kept_note(t, "LLaMA-Factory")
    if t.loraplus_lr_ratio != 1.0:
        keys["loraplus_lr_ratio"] = t.loraplus_lr_ratio
    if t.bits is not None:
        keys |= {"quantization_bit": t.bits, "quantization_method": "bnb"}
    if t.bits == 4:
        keys |= {"quantization_type": t.quant_type, "double_quantization": t.double_quant}
    keys |= training_arguments(t)
    # LLaMA-Factory turns checkpointing on unless told otherwise, and reentrant unless use_reentrant_gc is false
    keys["disable_gradient_checkpointing"] = not t.gradient_checkpointing
    if t.gradient_checkpointing:
        keys["use_reentrant_gc"] = False
    removes = {"warmup_ratio"}
    if t.bits is None:
        removes |= {"quantization_bit", "quantization_method", "quantization_type", "double_quantization"}
    if t.loraplus_lr_ratio == 1.0:
        removes.add("loraplus_lr_ratio")
    load = ("Use: llamafactory-cli train THIS_FILE   (warmup_steps below 1 is a fraction of max_steps)",
            f"dataset {datasets.DATASET} is the entry of dataset_info.json beside this file (dataset_dir); no "
            "template: LLaMA-Factory reads the tokenizer's chat template, as the trials did", *data_note(t),
            *([datasets.SCORED_NEWLINE.format(tool="LLaMA-Factory")] if keys.get("stage") == "sft" else []))
    return Export(NAME, keys, tuple(notes), load, CONTEXT, DEFAULTS, frozenset(removes), files)
