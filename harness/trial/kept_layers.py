"""Linear layers kept in 16-bit inside a quantized base model ("dynamic" quantization, `keep_16bit`).

Which layers: `choose_kept` takes them in an order (greatest sensitivity first, or a seeded random order for the
control) while their parameters fit the fraction (harness.trial.sensitivity measures the order). How: their
full names go to bitsandbytes as `llm_int8_skip_modules` (`skip_list` adds transformers' own default skips, which
an explicit list replaces), so the cached quantized checkpoint holds them as plain 16-bit `nn.Linear`; after
peft's k-bit preparation (which upcasts every unquantized weight to fp32) `keep_16bit_layout` casts them back to
the compute dtype and lets them compute as a 4-bit layer does: input cast to the compute dtype, output cast back.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class KeptChoice:
    """The layers a trial keeps in 16-bit and what they cost; empty at keep_16bit 0."""

    modules: tuple[str, ...] = ()
    """Full module names (`model.layers.3.mlp.down_proj`), in the order they were chosen."""
    fraction: float = 0.0
    """Their share of the base model's quantizable linear-layer parameters (at most the asked fraction)."""
    params: int = 0
    """Their weight parameters."""
    scores: dict[str, float] = field(default_factory=dict)
    """Sensitivity of each kept layer (relative output error when it alone is quantized); empty for random."""
    skip: tuple[str, ...] = ()
    """The whole `llm_int8_skip_modules` the kept checkpoint is quantized with (skip_list): what a tool needs."""


def linear_sizes(model: Any) -> dict[str, int]:
    """Every linear layer a quantized mode converts (plain `nn.Linear` outside transformers' default skips, the
    output head), by full module name -> weight parameters, in the model's order."""
    import torch

    skipped = set(default_skips_of(model))
    return {name: module.weight.numel() for name, module in model.named_modules()
            if type(module) is torch.nn.Linear and name not in skipped}


def meta_model(path: str) -> Any:
    """A weightless copy (meta device) of the checkpoint's model: names and shapes, no weights read."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))


def choose_kept(sizes: Mapping[str, int], order: Sequence[str], fraction: float) -> tuple[str, ...]:
    """The layers of `order` taken first to last until the next would take their parameters past `fraction` of
    all of `sizes`' parameters (it and every later one are left quantized)."""
    budget = fraction * sum(sizes.values())
    kept: list[str] = []
    total = 0
    for name in order:
        if total + sizes[name] > budget:
            break
        kept.append(name)
        total += sizes[name]
    return tuple(kept)


def random_order(sizes: Mapping[str, int], seed: int) -> list[str]:
    """The control's order: the layers shuffled by `random.Random(seed)` (reproducible from the seed)."""
    names = sorted(sizes)
    random.Random(seed).shuffle(names)
    return names


def by_sensitivity(scores: Mapping[str, float]) -> list[str]:
    """Greatest error first; ties by name, so the order is a function of the scores alone."""
    return sorted(scores, key=lambda name: (-scores[name], name))


def choice_of(sizes: Mapping[str, int], kept: Sequence[str], scores: Mapping[str, float] | None = None) -> KeptChoice:
    """A KeptChoice for `kept` layers among `sizes`."""
    params = sum(sizes[name] for name in kept)
    total = sum(sizes.values())
    return KeptChoice(tuple(kept), params / total if total else 0.0, params,
                      {name: float(scores[name]) for name in kept} if scores else {})


def default_skips_of(model: Any) -> list[str]:
    """The modules transformers leaves unquantized when no skip list is given: the output head and what is tied
    to it (transformers.quantizers.base.get_keys_to_not_convert)."""
    from transformers.quantizers.base import get_keys_to_not_convert

    return sorted(get_keys_to_not_convert(model))


def skip_list(path: str, kept: Sequence[str]) -> list[str]:
    """`llm_int8_skip_modules` for keeping `kept`: transformers' default skips plus the kept layers' full names
    (transformers 5 matches a name from the start of a module's full name up to a dot, or as its suffix, so a
    full name matches that module alone)."""
    return sorted(set(default_skips_of(meta_model(path))) | set(kept))


def keep_16bit_layout(model: Any, kept: Sequence[str], dtype: Any) -> int:
    """After `prepare_model_for_kbit_training`: each kept layer's weight back in the compute `dtype` (peft upcast
    it to fp32 with the other unquantized weights), computing as a 4-bit layer does: its input cast to `dtype`,
    its output cast back to the input's dtype (the fp32 residual stream). Returns how many layers."""
    modules = dict(model.named_modules())
    missing = [name for name in kept if name not in modules]
    if missing:
        raise ValueError(f"kept layer {missing[0]!r} is not a module of this model")
    for name in kept:
        module = modules[name]
        module.to(dtype)
        _compute_in(module)
    return len(kept)


def _compute_in(module: Any) -> None:
    dtypes: list[Any] = []  # a stack: a recomputed forward (checkpointing) pairs its own pre and post calls

    def before(layer: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        dtypes.append(args[0].dtype)
        return (args[0].to(layer.weight.dtype), *args[1:])

    def after(layer: Any, args: tuple[Any, ...], output: Any) -> Any:
        return output.to(dtypes.pop())

    module.register_forward_pre_hook(before)
    module.register_forward_hook(after)


def kept_weight_mb(sizes: Mapping[str, int], kept: Sequence[str], mode: str, dtype_bytes: int) -> dict[str, float]:
    """The weight memory of the kept layers (MiB): as stored in 16-bit (`kept_mb`), what they would take quantized
    in `mode` (`quantized_mb`: packed weights plus constants as bitsandbytes stores them: 4-bit one fp32 absmax
    per 64 weights, or with double quantization one byte per 64 plus one fp32 per 256 blocks; int8 one fp32 scale
    per row is left out, under 1%), and the difference (`added_mb`), what keeping them adds."""
    params = sum(sizes[name] for name in kept)
    if mode == "int8":
        quantized = float(params)
    elif mode.endswith("-dq"):
        quantized = params / 2 + params / 64 + params / 64 / 256 * 4
    else:
        quantized = params / 2 + params / 64 * 4
    mib = 2**20
    return {"kept_mb": params * dtype_bytes / mib, "quantized_mb": quantized / mib,
            "added_mb": (params * dtype_bytes - quantized) / mib}
