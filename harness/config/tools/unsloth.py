"""Unsloth: keyword arguments of FastLanguageModel.from_pretrained and FastLanguageModel.get_peft_model, and
of trl.SFTConfig for its SFTTrainer, one YAML section each (Unsloth is driven from Python, not from a file)."""

from __future__ import annotations

from harness.config.errors import SpecError
from harness.config.tools import datasets
from harness.config.tools.settings import Export, Tuned, kept_note, loraplus_note, training_arguments

NAME = "unsloth"
CONTEXT = frozenset()  # no `--format same`: Unsloth has no config file of its own


def export(t: Tuned) -> Export:
    if t.quant_type == "fp4":
        raise SpecError(f"quantization {t.quantization}: Unsloth loads 4-bit weights as NF4 only, so it cannot "
                        "train the recommended FP4 config; export another format, or the best NF4 config "
                        "with --quantization nf4-dq (or nf4), when the study ran one")
    if t.use_dora:
        raise SpecError("use_dora: Unsloth's get_peft_model has no DoRA; export another format")
    notes = []
    if t.quantization == "nf4":
        notes.append("nf4 without double quantization: Unsloth always double-quantizes 4-bit weights (nf4-dq); "
                     "the quality difference is small, the memory a little lower")
    notes += loraplus_note(t, "Unsloth's get_peft_model")
    notes += kept_note(t, "Unsloth's from_pretrained")  # its own dynamic quants are prequantized checkpoints
    sft, data_lines, data_said, data_notes = datasets.unsloth(t)
    notes += data_notes
    load = {"model_name": t.hub_model, "max_seq_length": t.seq_len,
            "load_in_4bit": t.bits == 4, "load_in_8bit": t.bits == 8}
    peft = {"r": t.r, "lora_alpha": t.alpha, "lora_dropout": t.dropout, "bias": "none",
            "target_modules": _targets(t.targets), "use_rslora": t.use_rslora, "random_state": t.seed,
            "init_lora_weights": True if t.init == "true" else t.init,
            "use_gradient_checkpointing": t.gradient_checkpointing}  # Unsloth's own key (its default: on)
    training = {**training_arguments(t), **sft, "output_dir": "outputs/harness-tuned"}
    steps = ("Use: cfg = yaml.safe_load(open(THIS_FILE))",
             "model, tokenizer = FastLanguageModel.from_pretrained(**cfg['from_pretrained'])",
             "model = FastLanguageModel.get_peft_model(model, **cfg['get_peft_model'])",
             *data_lines,
             "trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=data, "
             "args=SFTConfig(**cfg['training']))", *data_said)
    return Export(NAME, {"from_pretrained": load, "get_peft_model": peft, "training": training},
                  tuple(notes), steps, CONTEXT, {})


def _targets(targets: str | list[str]) -> list[str] | str:
    """Unsloth's default targets are the seven projections, which is what `all-linear` means on Llama-shaped
    models; peft's shorthand is passed through otherwise."""
    if targets == "all-linear":
        return ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    return targets
