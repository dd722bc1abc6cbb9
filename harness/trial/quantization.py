"""Quantization modes: one table from each mode to its bitsandbytes settings and its human names.

The `BitsAndBytesConfig` a trial loads with (`quantization_config`) and the plain keyword arguments written
to recommended.yaml (`quantization_kwargs`) are both built from `MODES`, so they cannot drift apart. Pure:
transformers is imported only to build the config object; nothing is loaded or quantized here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from harness.config.errors import SpecError
from harness.config.model import QUANTIZATION_MODES

FP32_BASE_LABEL = "LoRA (fp32 base)"
"""The name of mode `none` when its base ran in fp32 (a CPU without native bf16): not "16-bit"."""


@dataclass(frozen=True)
class ModeSettings:
    """What one quantization mode means."""

    label: str
    """Its name in tables and text ("16-bit LoRA", "nf4-dq")."""
    legend: str
    """Its longer name in figure legends ("nf4-dq (4-bit, double quant)")."""
    bnb: Mapping[str, Any] | None
    """Keyword arguments of `BitsAndBytesConfig` except the compute dtype, which 4-bit modes take from the
    device; None for `none` (16-bit LoRA, not quantized)."""


def _four_bit(kind: str, double: bool) -> dict[str, Any]:
    return {"load_in_4bit": True, "bnb_4bit_quant_type": kind, "bnb_4bit_use_double_quant": double}


MODES: dict[str, ModeSettings] = {
    "none": ModeSettings("16-bit LoRA", "16-bit LoRA", None),
    "int8": ModeSettings("int8", "int8 (8-bit)", {"load_in_8bit": True}),
    "nf4": ModeSettings("nf4", "nf4 (4-bit)", _four_bit("nf4", double=False)),
    "nf4-dq": ModeSettings("nf4-dq", "nf4-dq (4-bit, double quant)", _four_bit("nf4", double=True)),
    "fp4": ModeSettings("fp4", "fp4 (4-bit)", _four_bit("fp4", double=False)),
    "fp4-dq": ModeSettings("fp4-dq", "fp4-dq (4-bit, double quant)", _four_bit("fp4", double=True)),
}
"""Every mode of `spec.QUANTIZATION_MODES`, in the same order: the one home of what a mode means."""


def mode_settings(mode: str) -> ModeSettings:
    """The table row of `mode`; SpecError naming the allowed modes when it is not one."""
    settings = MODES.get(mode)
    if settings is None:
        raise SpecError(f"quantization {mode!r} is not one of {', '.join(QUANTIZATION_MODES)}")
    return settings


def quantization_kwargs(mode: str, dtype_name: str = "bfloat16",
                        skip: tuple[str, ...] | list[str] = ()) -> dict[str, Any] | None:
    """The keyword arguments of `BitsAndBytesConfig` for `mode` as plain values (for recommended.yaml), the
    4-bit compute dtype given by name; None for `none`. `skip`: modules left unquantized (see
    quantization_config)."""
    return _kwargs(mode, dtype_name, skip)


def quantization_config(mode: str, dtype: Any, skip: tuple[str, ...] | list[str] = ()) -> Any:
    """The `BitsAndBytesConfig` for a quantization mode (4-bit compute in the torch `dtype`), or None for
    16-bit LoRA (`none`). `skip`: full module names left unquantized (`llm_int8_skip_modules`, which 4-bit
    loading honours too); transformers 5 then skips only these, not its defaults (the output head), so a
    caller gives the whole list (harness.trial.kept_layers.skip_list). Empty: the plain mode, no skip key."""
    kwargs = _kwargs(mode, dtype, skip)
    if kwargs is None:
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(**kwargs)


def _kwargs(mode: str, compute_dtype: Any, skip: tuple[str, ...] | list[str] = ()) -> dict[str, Any] | None:
    bnb = mode_settings(mode).bnb
    if bnb is None:
        return None
    out = {**bnb, "bnb_4bit_compute_dtype": compute_dtype} if bnb.get("load_in_4bit") else dict(bnb)
    if skip:
        out["llm_int8_skip_modules"] = list(skip)
    return out


def mode_label(mode: str, compute_dtype: str | None = None, *, legend: bool = False) -> str:
    """How a mode is named in tables (or, with `legend`, in figure legends). `none` says the dtype its base
    really had: fp32 on a CPU without native bf16 is not "16-bit LoRA". A mode not in the table (a future
    one, read from an old study) is named as it is."""
    if mode == "none" and compute_dtype == "float32":
        return FP32_BASE_LABEL
    settings = MODES.get(mode)
    if settings is None:
        return mode
    return settings.legend if legend else settings.label
