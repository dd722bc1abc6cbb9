"""The settings a tool's config carries, tool-neutral: what `recommend` decided (read from recommended.yaml),
ready to be spelled in each tool's keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.config.dataset import DataSpec
from harness.config.errors import SpecError
from harness.config.model import QUANTIZATION_MODES

HUB_IDS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct", "gemma3-270m": "google/gemma-3-270m",
           "qwen2.5-coder-1.5b": "Qwen/Qwen2.5-Coder-1.5B-Instruct"}
"""Built-in model names -> the hub checkpoint a tool loads (the study itself may have run a GGUF of it)."""


@dataclass(frozen=True)
class Tuned:
    """One recommended config: adapter, quantization and training, plus what it was measured on."""

    r: int
    alpha: float
    dropout: float
    targets: str | list[str]
    """`all-linear` or module names."""
    quantization: str
    """A harness mode: none, int8, nf4, nf4-dq, fp4, fp4-dq."""
    learning_rate: float
    max_steps: int
    batch_size: int
    grad_accum: int
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float
    scheduler: str
    """transformers' lr_scheduler_type (cosine, linear, constant_with_warmup, warmup_stable_decay, ...)."""
    optim: str = "adamw_torch"
    seed: int = 0
    use_rslora: bool = False
    use_dora: bool = False
    init: str = "true"
    """peft init_lora_weights as text: true, gaussian, pissa, pissa_niter_N, olora."""
    loraplus_lr_ratio: float = 1.0
    skip_modules: tuple[str, ...] = ()
    """`llm_int8_skip_modules` of a config that kept linear layers in 16-bit (keep_16bit): transformers' default
    skips plus the kept layers; empty when none were kept."""
    gradient_checkpointing: bool = False
    """Whether the study's trials recomputed activations (memory and time only: the same result)."""
    scheduler_kwargs: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    """What the study's `--model` was (a built-in name, hub id, folder or GGUF file)."""
    data: str | None = None
    max_seq_len: int | None = None
    data_format: str | None = None
    """The data's record shape (harness.config.dataset.DATA_FORMATS) when known, else None."""
    completion_only: bool = True
    """The trials scored only the completion (DataSpec.completion_only_loss)."""
    frame: tuple[str, str, str] | None = None
    """How the trials wrote one user turn (harness.data.encode.prompt_frame): the prompt with `{prompt}` for the
    user's text, and the text before and after the completion; None when the tokenizer was not at hand."""
    data_path: str | None = None
    """The data file as an absolute path, when it was found at export time."""
    column_map: tuple[tuple[str, str], ...] = ()
    """(our column name, the user's column name) pairs the trials read the file with (DataSpec.column_map)."""
    system_prompt: str | None = None
    """The system message the trials put first in every prompt without one (DataSpec.system_prompt)."""

    def column(self, ours: str) -> str:
        """The user's name of one of our columns (`prompt` -> `question` under column_map)."""
        return dict(self.column_map).get(ours, ours)

    @property
    def bits(self) -> int | None:
        """4, 8 or None (not quantized)."""
        return None if self.quantization == "none" else 8 if self.quantization == "int8" else 4

    @property
    def quant_type(self) -> str | None:
        """nf4 or fp4 for the 4-bit modes, else None."""
        return self.quantization.split("-")[0] if self.bits == 4 else None

    @property
    def double_quant(self) -> bool:
        return self.quantization.endswith("-dq")

    @property
    def data_file(self) -> str:
        """The study's data when a tool can read it (a file or hub id), else a placeholder to replace."""
        data = self.data or ""
        return data if ("/" in data or "." in data) else "YOUR_DATA.jsonl"

    @property
    def seq_len(self) -> int:
        """The sequence length the trials trained at (the harness default, 128, for files that predate it)."""
        return self.max_seq_len or DataSpec().max_seq_len

    @property
    def hub_model(self) -> str | None:
        """The checkpoint a tool should load: a built-in's hub id, else the study's model as given."""
        return HUB_IDS.get(self.model or "", self.model)


def mode_of(quantization: dict[str, Any] | None) -> str:
    """The harness mode of a BitsAndBytesConfig mapping (None: 16-bit LoRA)."""
    if not quantization:
        return "none"
    if quantization.get("load_in_8bit"):
        return "int8"
    if quantization.get("load_in_4bit"):
        kind = str(quantization.get("bnb_4bit_quant_type") or "fp4")  # transformers' default is fp4
        mode = kind + ("-dq" if quantization.get("bnb_4bit_use_double_quant") else "")
        if mode in QUANTIZATION_MODES:
            return mode
    raise SpecError(f"quantization {quantization!r} is no harness mode ({', '.join(QUANTIZATION_MODES)})")


def from_recommended(doc: dict[str, Any], *, section: dict[str, Any] | None = None) -> Tuned:
    """The Tuned config of a recommended.yaml mapping (its top config, or `section`, one of its
    per_quantization entries, which have the same shape)."""
    part = section or doc
    try:
        lora, training = part["lora"], part["training"]
    except (KeyError, TypeError):
        raise SpecError("not a recommended.yaml: it needs `lora` and `training` sections "
                        "(write one with `harness recommend`)") from None
    evidence = part.get("evidence") or doc.get("evidence") or {}
    optimizer = part.get("optimizer") or {}
    warmup = float(training.get("warmup_ratio", training.get("warmup_steps", 0.0)))
    if warmup >= 1:  # whole steps: as a fraction of the run
        warmup = warmup / int(training["max_steps"])
    init = lora.get("init_lora_weights", True)
    return Tuned(
        r=int(lora["r"]), alpha=float(lora["lora_alpha"]), dropout=float(lora.get("lora_dropout", 0.0)),
        targets=lora.get("target_modules", "all-linear"), quantization=mode_of(part.get("quantization")),
        learning_rate=float(f"{float(training['learning_rate']):.4g}"), max_steps=int(training["max_steps"]),
        batch_size=int(training.get("per_device_train_batch_size", 8)),
        grad_accum=int(training.get("gradient_accumulation_steps", 1)), warmup_ratio=warmup,
        weight_decay=float(training.get("weight_decay", 0.0)), max_grad_norm=float(training.get("max_grad_norm", 1.0)),
        scheduler=str(training.get("lr_scheduler_type", "linear")), optim=str(training.get("optim", "adamw_torch")),
        seed=int(training.get("seed", 0)), use_rslora=bool(lora.get("use_rslora", False)),
        use_dora=bool(lora.get("use_dora", False)), init=str(init).lower() if isinstance(init, bool) else str(init),
        loraplus_lr_ratio=float(optimizer.get("loraplus_lr_ratio", 1.0)),
        skip_modules=tuple((part.get("quantization") or {}).get("llm_int8_skip_modules") or ()),
        gradient_checkpointing=bool(training.get("gradient_checkpointing", False)),
        scheduler_kwargs=dict(training.get("lr_scheduler_kwargs") or {}),
        model=evidence.get("model"), data=evidence.get("data"),
        max_seq_len=evidence.get("max_seq_len"), data_format=evidence.get("data_format"),
        completion_only=bool(evidence.get("completion_only_loss", True)),
        column_map=DataSpec(column_map=evidence.get("column_map") or ()).column_map,  # pairs or a mapping
        system_prompt=evidence.get("system_prompt"))


@dataclass(frozen=True)
class Export:
    """One tool's config for a Tuned config: its keys, and what it cannot say."""

    tool: str
    keys: dict[str, Any]
    """The file's top-level keys (for Unsloth: one section per call)."""
    notes: tuple[str, ...] = ()
    """Each setting of the recommendation this tool cannot express, in one line: written into the file and
    printed."""
    load: tuple[str, ...] = ()
    """How to use the file with the tool (header lines)."""
    context: frozenset[str] = frozenset()
    """Keys that say what to train on rather than how (model, data, output folder, sequence length): `--format
    same` keeps the user's values of these."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """The tool's value of a key a file leaves out: `--format same` does not add a key at this value."""
    removes: frozenset[str] = frozenset()
    """Keys that would contradict this export in a user's file (`lora_target_modules` beside
    `lora_target_linear: true`): `--format same` comments them out."""
    files: dict[str, str] = field(default_factory=dict)
    """Further files the export needs beside it (LLaMA-Factory's dataset_info.json), name -> text."""


def data_note(t: Tuned) -> list[str]:
    """The note for a study that trained on a harness built-in task: the file names a placeholder."""
    if t.data_file == t.data:
        return []
    return [f"Data: the study trained on harness's built-in `{t.data}`; replace the placeholder with your data "
            "(the data section reads chat `messages` rows; a study on your own file writes it for its columns)"]


def peft_init_note(t: Tuned, tool: str) -> list[str]:
    """The note for a PiSSA/OLoRA/Gaussian init a tool's file cannot carry."""
    if t.init in ("true",):
        return []
    return [f"init_lora_weights {t.init}: {tool} has no key for it; the study's adapters started from it "
            f"(set peft.LoraConfig(init_lora_weights={t.init!r}) in code, or expect the plain-init result to differ)"]


def loraplus_note(t: Tuned, tool: str) -> list[str]:
    if t.loraplus_lr_ratio == 1.0:
        return []
    return [f"LoRA+ (B learns {t.loraplus_lr_ratio:g}x faster): {tool} has no key for it; this file trains "
            "plain LoRA (peft.optimizers.create_loraplus_optimizer in code gives the study's optimizer)"]


def kept_note(t: Tuned, tool: str) -> list[str]:
    """The note for layers kept in 16-bit (keep_16bit) that a tool's file cannot leave unquantized."""
    if not t.skip_modules:
        return []
    return [f"keep_16bit: {tool} has no key for modules left unquantized, so this file quantizes every linear layer; "
            f"the study kept some in 16-bit (BitsAndBytesConfig(llm_int8_skip_modules={list(t.skip_modules)}) in code "
            "trains as it did)"]


def whole(value: float) -> float | int:
    """2.0 -> 2: the tools' files write whole alphas as integers."""
    return int(value) if float(value).is_integer() else value


def training_arguments(t: Tuned) -> dict[str, Any]:
    """The training settings in transformers.TrainingArguments' keys (TRL's SFTConfig, LLaMA-Factory, and the
    SFTConfig of Unsloth's trainer); a warm-up below 1 is a fraction of max_steps in transformers 5."""
    keys = {"learning_rate": t.learning_rate, "lr_scheduler_type": t.scheduler, "warmup_steps": t.warmup_ratio,
            "weight_decay": t.weight_decay, "max_grad_norm": t.max_grad_norm,
            "per_device_train_batch_size": t.batch_size, "gradient_accumulation_steps": t.grad_accum,
            "max_steps": t.max_steps, "optim": t.optim, "seed": t.seed}
    if t.scheduler_kwargs:
        keys["lr_scheduler_kwargs"] = dict(t.scheduler_kwargs)
    keys |= checkpointing_arguments(t)
    return keys


def checkpointing_arguments(t: Tuned) -> dict[str, Any]:
    """Gradient checkpointing in TrainingArguments' keys, always written (TRL's SFTConfig turns it on by default),
    non-reentrant as the study's trials ran it."""
    keys: dict[str, Any] = {"gradient_checkpointing": t.gradient_checkpointing}
    if t.gradient_checkpointing:
        keys["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    return keys


TRAINING_DEFAULTS: dict[str, Any] = {"weight_decay": 0.0, "max_grad_norm": 1.0, "gradient_accumulation_steps": 1}
"""transformers.TrainingArguments' defaults, which TRL and LLaMA-Factory keep."""
