"""Which base model a trial fine-tunes, and how its frozen weights are stored (the quantization mode:
one field with six values; harness.trial.quantization maps each to bitsandbytes settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from harness.config.errors import check

Quantization = Literal["none", "int8", "nf4", "nf4-dq", "fp4", "fp4-dq"]
QUANTIZATION_MODES: tuple[str, ...] = get_args(Quantization)
KeepRule = Literal["sensitivity", "random"]
KEEP_RULES: tuple[str, ...] = get_args(KeepRule)
KEEP_16BIT_MAX = 0.5
"""The largest fraction of linear-layer parameters `keep_16bit` may leave unquantized (beyond it the mode is
mostly 16-bit and no longer a quantized one)."""


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
    keep_16bit: float = 0.0
    """Fraction (0 to 0.5) of the base model's linear-layer parameters left unquantized in a quantized mode
    ("dynamic" quantization): whole layers, chosen by `keep_16bit_rule`; 0 is the plain mode."""
    keep_16bit_rule: KeepRule = "sensitivity"
    """How the kept layers are chosen: `sensitivity` (greatest output error when that layer alone is quantized,
    on a fixed calibration batch of the training split; harness.trial.kept_layers) or `random` (the control:
    layers in a random order seeded by `keep_16bit_seed`, kept while they fit the fraction)."""
    keep_16bit_seed: int = 0
    """The seed of the `random` rule's order (the sensitivity rule ignores it)."""
    kept_modules: tuple[str, ...] | None = None
    """The kept layers' full module names when pinned (a resumed study's or a replayed trial's); None: chosen
    by the rule when the trial runs."""

    def __post_init__(self) -> None:
        check(self.mode in QUANTIZATION_MODES,
               f"quantization {self.mode!r} is not one of {', '.join(QUANTIZATION_MODES)}")
        keep = self.keep_16bit
        check(isinstance(keep, (int, float)) and not isinstance(keep, bool) and 0 <= keep <= KEEP_16BIT_MAX,
              f"keep_16bit {keep!r} is outside [0, {KEEP_16BIT_MAX}]: give the fraction of linear-layer parameters "
              "to keep in 16-bit, e.g. 0.05 or 0.1")
        check(self.keep_16bit_rule in KEEP_RULES,
              f"keep_16bit_rule {self.keep_16bit_rule!r} is not one of {', '.join(KEEP_RULES)}")
        check(isinstance(self.keep_16bit_seed, int) and not isinstance(self.keep_16bit_seed, bool),
              f"keep_16bit_seed {self.keep_16bit_seed!r} is not an integer")
        if self.kept_modules is not None:  # a JSON record gives a list
            object.__setattr__(self, "kept_modules", tuple(str(name) for name in self.kept_modules))


def keep_16bit_error(mode: str, keep: float) -> str | None:
    """Why `keep_16bit` cannot be used with a quantization mode (only `none`: nothing to keep out of), or None."""
    if mode == "none" and keep:
        return (f"keep_16bit {keep:g} needs a quantized mode, and quantization none is 16-bit already; use "
                "keep_16bit 0 there, or condition the axis: keep_16bit: {choices: [...], when: {quantization: nf4-dq}}")
    return None
