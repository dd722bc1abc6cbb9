"""The adapter: rank, alpha, dropout, target modules and the LoRA variants (rsLoRA, DoRA, PiSSA, OLoRA),
and which variants cannot train on which quantization mode."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

from harness.config.errors import check, positive

TargetPreset = Literal["all-linear", "attention", "mlp"]
TARGET_PRESETS: tuple[str, ...] = get_args(TargetPreset)


LORA_INITS: tuple[str, ...] = ("true", "gaussian", "pissa", "olora")
"""peft `init_lora_weights` values a trial can use (`true`: peft's default, B = 0); `pissa_niter_N` (PiSSA by
N iterations of randomized SVD) is also accepted. Principal-component inits (PiSSA, PiSSA-niter, OLoRA)
replace the base weights by a residual, so their adapters are saved converted to plain LoRA (rank 2r)."""
_REFUSED_INITS = {
    "false": "init_lora_weights false starts B random (the adapter changes the model before training); use true",
    "loftq": "init_lora_weights loftq is not supported: it needs the base loaded unquantized and quantized by LoftQ "
             "itself, which bypasses the study's quantization mode; use pissa (16-bit) or olora",
}
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class LoraSpec:
    """The adapter attached to the frozen base model."""

    r: int = 16
    """Rank of the update matrices."""
    alpha: float = 32.0
    """Scaling numerator: the update is scaled by alpha / r (alpha usually r or 2r)."""
    dropout: float = 0.0
    """Dropout on the adapter input."""
    targets: str = "all-linear"
    """A preset, `all-linear` (attention and MLP projections), `attention` (q, k, v, o) or `mlp` (gate, up,
    down), or module names separated by commas (`q_proj,v_proj`; checked against the model before a sweep)."""
    use_rslora: bool = False
    """rank-stabilised LoRA: the update is scaled by alpha / sqrt(r) instead of alpha / r."""
    use_dora: bool = False
    """DoRA: a trained magnitude vector per output feature on top of the low-rank direction update."""
    init: str = "true"
    """peft `init_lora_weights`: one of LORA_INITS or `pissa_niter_N`."""
    pissa_niter: int = 0
    """With init `pissa`: iterations of randomized SVD (peft's `pissa_niter_N`); 0 is the full SVD."""

    def __post_init__(self) -> None:
        check(isinstance(self.r, int) and not isinstance(self.r, bool) and self.r >= 1,
               f"lora_r must be a positive integer, got {self.r!r}")
        positive("lora_alpha", self.alpha)
        check(isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0,
               f"lora_dropout must be in [0, 1), got {self.dropout!r}")
        _check_targets(self.targets)
        for name in ("use_rslora", "use_dora"):
            check(isinstance(getattr(self, name), bool), f"{name} must be true or false, got {getattr(self, name)!r}")
        check(isinstance(self.init, str), f"init_lora_weights must be a name, got {self.init!r}")
        check(self.init not in _REFUSED_INITS, _REFUSED_INITS.get(self.init, ""))
        check(self.init in LORA_INITS or re.fullmatch(r"pissa_niter_[1-9][0-9]*", self.init) is not None,
               f"init_lora_weights {self.init!r} is not one of {', '.join(LORA_INITS)} or pissa_niter_N")
        check(isinstance(self.pissa_niter, int) and not isinstance(self.pissa_niter, bool) and self.pissa_niter >= 0,
               f"pissa_niter must be a non-negative integer, got {self.pissa_niter!r}")
        check(self.pissa_niter == 0 or self.init == "pissa",
               f"pissa_niter {self.pissa_niter} applies only with init_lora_weights pissa, not {self.init!r}")

    @property
    def peft_init(self) -> bool | str:
        """The `init_lora_weights` value peft takes (True for `true`)."""
        if self.init == "true":
            return True
        return f"pissa_niter_{self.pissa_niter}" if self.init == "pissa" and self.pissa_niter else self.init

    @property
    def residual_init(self) -> bool:
        """PiSSA and OLoRA: the adapter starts from the base's principal components and the base keeps the
        residual, so the trained adapter alone is not a delta on the original base (see trial.save_adapter)."""
        return self.init.startswith("pissa") or self.init == "olora"


def _check_targets(targets: Any) -> None:
    """A preset or module names separated by commas (no duplicates, no empty names)."""
    check(isinstance(targets, str) and targets.strip() != "",
           f"target_modules must be one of {', '.join(TARGET_PRESETS)} or module names, got {targets!r}")
    if targets in TARGET_PRESETS:
        return
    names = [n.strip() for n in targets.split(",")]
    bad = next((n for n in names if not _MODULE_NAME.match(n)), None)
    check(bad is None, f"target_modules {targets!r} is not one of {', '.join(TARGET_PRESETS)} or a list of module "
                        f"names ({bad!r} is not a module name)")
    check(len(set(names)) == len(names), f"target_modules {targets!r} names a module twice")


def explicit_modules(targets: str) -> list[str] | None:
    """The module names of an explicit target_modules list, or None for a preset."""
    return None if targets in TARGET_PRESETS else [n.strip() for n in targets.split(",")]


def combination_error(mode: str, init: str, use_dora: bool = False) -> str | None:
    """Why a quantization mode and a LoRA variant cannot train together here, or None. PiSSA takes the SVD of
    the base weights, which peft refuses on quantized (int8 / 4-bit) weights. DoRA on an int8 base trains but
    its first eval fails inside bitsandbytes (peft 0.21, bitsandbytes 0.50 on the CPU; CUDA not checked), so
    it is refused rather than discovered as failed trials. rsLoRA, OLoRA and LoRA+ train in every mode, and
    DoRA in the 4-bit ones (tests/test_variants.py trains them on int8 and NF4-DQ)."""
    if mode != "none" and init.startswith("pissa"):
        return (f"init_lora_weights {init} cannot be combined with quantization {mode}: peft computes PiSSA's SVD "
                "on 16-bit weights only; use quantization none, or init olora / true with this mode")
    if mode == "int8" and use_dora:
        return ("use_dora true cannot be combined with quantization int8: DoRA's eval on an int8 base fails inside "
                "bitsandbytes here; use a 4-bit mode (nf4, nf4-dq, fp4, fp4-dq) or none with DoRA")
    return None
