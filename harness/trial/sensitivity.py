"""Which linear layers a quantization mode hurts most: the order `keep_16bit_rule: sensitivity` keeps them in.

A layer's sensitivity is the relative error of the model's output (logits at the real tokens of a fixed calibration
batch) when that layer alone is quantized in the trial's mode, the rest in 16-bit: ||logits_q - logits|| /
||logits||, in fp32. The layer is quantized by the bitsandbytes module the mode loads (Linear4bit with its quant
type, double quantization and compute dtype; Linear8bitLt with transformers' int8 settings), in the training
layout (keep_4bit_training_layout), so the error is that of the path a trial trains through; no proxy. Computed
once per (checkpoint, mode, dtype, device, package versions, calibration batch) and kept in the cache
(`sensitivity/<key>.json`): SmolLM2-135M's 210 layers are 211 forward passes of one batch.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from harness.runtime.devices import compute_dtype
from harness.config.model import QuantSpec
from harness.trial.kept_layers import (KeptChoice, by_sensitivity, choice_of, choose_kept, linear_sizes, meta_model,
                                       random_order)
from harness.trial.models import attention_for, cache_dir, keep_4bit_training_layout, quantized_stamp
from harness.trial.quantization import quantization_config

CALIBRATION_SEED = 20_251_207
"""The seed of the calibration batch's draw from the training split (fixed: one batch per study data)."""
CALIBRATION_SIZE = 8
"""Sequences in the calibration batch."""
SENSITIVITY_VERSION = 1
"""Bumped when the measurement changes, so older cached scores are not read as the new ones."""


def calibration_batch(train: Any, pad_id: int) -> Any:
    """The fixed calibration batch: CALIBRATION_SIZE sequences of the tokenized training split, drawn with
    CALIBRATION_SEED (the same batch for every trial of a study's data)."""
    from harness.data import make_batches

    seqs = list(train)
    size = min(CALIBRATION_SIZE, len(seqs))
    batches = make_batches(seqs, size, pad_id, shuffle_seed=CALIBRATION_SEED)
    return next(batch for batch in batches if batch.input_ids.shape[0] == size)  # a full one, not a remainder


def kept_for(quant: QuantSpec, path: str, device: str, train: Any, pad_id: int) -> KeptChoice:
    """The layers a trial of `quant` keeps in 16-bit: none at keep_16bit 0 (or in mode none), the pinned list
    when the config carries one (a resumed study's), else chosen by the rule (sensitivity: measured on the
    calibration batch of `train`, cached; random: seeded by keep_16bit_seed)."""
    if quant.mode == "none" or (not quant.keep_16bit and not quant.kept_modules):
        return KeptChoice()
    if quant.keep_16bit_rule == "sensitivity" and quant.kept_modules is None:
        measured = sensitivity(path, quant.mode, device, calibration_batch(train, pad_id))
        sizes, scores = measured["sizes"], measured["scores"]
        return choice_of(sizes, choose_kept(sizes, by_sensitivity(scores), quant.keep_16bit), scores)
    sizes = linear_sizes(meta_model(path))
    if quant.kept_modules is not None:
        unknown = [name for name in quant.kept_modules if name not in sizes]
        if unknown:
            raise ValueError(f"kept_modules: {unknown[0]!r} is not a quantizable linear layer of {path}")
        return choice_of(sizes, quant.kept_modules)
    return choice_of(sizes, choose_kept(sizes, random_order(sizes, quant.keep_16bit_seed), quant.keep_16bit))


def sensitivity(path: str, mode: str, device: str, batch: Any) -> dict[str, Any]:
    """{"scores": layer -> relative output error, "sizes": layer -> weight parameters} of checkpoint `path` in
    `mode` on `batch`: measured once, then read from the cache."""
    dtype = str(compute_dtype(device))
    ids = batch.input_ids.tolist(), batch.attention_mask.tolist()
    stamp = [SENSITIVITY_VERSION, quantized_stamp(path, mode, dtype, device), hashlib.sha256(repr(ids).encode()).hexdigest()]
    key = hashlib.sha256(repr(stamp).encode()).hexdigest()[:16]
    target = cache_dir() / "sensitivity" / f"{mode}-{key}.json"
    if target.is_file():
        return json.loads(target.read_text())
    measured = measure(path, mode, device, batch)
    _write(target, measured)
    return measured


def measure(path: str, mode: str, device: str, batch: Any,
            on_layer: Callable[[str, float], None] | None = None) -> dict[str, Any]:
    """Each quantizable linear layer's relative output error when it alone is quantized in `mode` (uncached)."""
    import torch
    from transformers import AutoModelForCausalLM

    from harness.runtime.quiet import quiet

    dtype = compute_dtype(device)
    with quiet():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map={"": 0 if device == "cuda" else "cpu"},
                                                     attn_implementation=attention_for(device, None, path))
    model.eval()
    sizes = linear_sizes(model)
    modules = dict(model.named_modules())
    inputs = {"input_ids": batch.input_ids.to(model.device), "attention_mask": batch.attention_mask.to(model.device)}
    real = batch.attention_mask.to(model.device).bool()

    def logits() -> Any:
        with torch.inference_mode():
            return model(**inputs).logits[real].float()

    reference = logits()
    norm = float(reference.norm())
    scores: dict[str, float] = {}
    with quiet():  # LLM.int8's known notice on every forward (harness.runtime.quiet), nothing else
        for name in sizes:
            parent_name, _, child = name.rpartition(".")
            parent, layer = modules[parent_name], modules[name]
            setattr(parent, child, quantized_copy(layer, mode, dtype, device))
            try:
                scores[name] = float((logits() - reference).norm()) / norm
            finally:
                setattr(parent, child, layer)  # the next layer is measured with this one in 16-bit again
            if on_layer:
                on_layer(name, scores[name])
    del model
    return {"scores": scores, "sizes": sizes}


def quantized_copy(layer: Any, mode: str, dtype: Any, device: str) -> Any:
    """A bitsandbytes copy of one 16-bit `nn.Linear`, quantized in `mode` with the settings transformers uses
    for it (harness.trial.quantization's table), in the training layout."""
    import bitsandbytes as bnb
    import torch

    config = quantization_config(mode, dtype)
    weight = layer.weight.detach().to("cpu").clone()
    bias = layer.bias is not None
    if config.load_in_8bit:
        new = bnb.nn.Linear8bitLt(layer.in_features, layer.out_features, bias,
                                  has_fp16_weights=config.llm_int8_has_fp16_weight, threshold=config.llm_int8_threshold)
        new.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=config.llm_int8_has_fp16_weight)
    else:
        new = bnb.nn.Linear4bit(layer.in_features, layer.out_features, bias, config.bnb_4bit_compute_dtype,
                                compress_statistics=config.bnb_4bit_use_double_quant,
                                quant_type=config.bnb_4bit_quant_type, quant_storage=torch.uint8)
        new.weight = bnb.nn.Params4bit(weight, requires_grad=False, compress_statistics=config.bnb_4bit_use_double_quant,
                                       quant_type=config.bnb_4bit_quant_type, quant_storage=torch.uint8, module=new)
    if bias:
        new.bias = torch.nn.Parameter(layer.bias.detach().to("cpu").clone(), requires_grad=False)
    new = new.to(layer.weight.device)  # quantizes on the move
    keep_4bit_training_layout(new)
    new.eval()
    return new


def _write(target: Path, data: dict[str, Any]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, target)
