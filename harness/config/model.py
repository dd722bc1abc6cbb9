"""Which base model a trial fine-tunes, and how its frozen weights are stored (the quantization mode:
one field with six values; harness.trial.quantization maps each to bitsandbytes settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from harness.config.errors import check

Quantization = Literal["none", "int8", "nf4", "nf4-dq", "fp4", "fp4-dq"]
QUANTIZATION_MODES: tuple[str, ...] = get_args(Quantization)


@dataclass(frozen=True)
class ModelSpec:
    """Which base model to fine-tune."""

    name: str = "smollm2-135m"
    """A built-in name (`smollm2-135m`, `gemma3-270m`, `qwen2.5-coder-1.5b`: `harness models`; `tiny-llama`,
    `tiny-gemma3`, `tiny-qwen2`), a hub id, a model folder or a `.gguf` file."""

    def __post_init__(self) -> None:
        check(isinstance(self.name, str) and self.name.strip() != "",
               "model must be a non-empty name or path (try --model tiny-llama)")


@dataclass(frozen=True)
class QuantSpec:
    """How the frozen base weights are stored while the adapter trains."""

    mode: Quantization = "none"
    """`none` is 16-bit LoRA (bf16 where the device supports it); the rest are QLoRA modes."""

    def __post_init__(self) -> None:
        check(self.mode in QUANTIZATION_MODES,
               f"quantization {self.mode!r} is not one of {', '.join(QUANTIZATION_MODES)}")
