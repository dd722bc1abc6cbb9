"""What a study's base model is and the precision its weights had before harness touched them.

A number about quantization means little without it: the built-in `smollm2-135m` comes from a
Q4_1 GGUF file, so its "16-bit" weights are 4-bit weights dequantized, and NF4/FP4 re-quantize
weights that were already 4-bit. Every report names the model with `label` and says `precision`.
Reading a GGUF or safetensors header is cheap (no weights are loaded).
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.trial.builtins import BUILTINS
from harness.trial.families import TINY_DIMS, TINY_MODELS
from harness.trial.models import ResolvedModel

SMOLLM2_NAME = BUILTINS["smollm2-135m"].display


@dataclass(frozen=True)
class SourceInfo:
    """A base model as reports name it."""

    label: str
    """e.g. "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to bf16)"."""
    precision: str
    """The stored precision of the source weights, e.g. "Q4_1 linear weights (210), Q8_0 embedding (1)"."""
    four_bit_source: bool
    """The source's linear weights were already 4-bit: 16-bit LoRA on it is 16-bit storage of 4-bit weights."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_source(model: ResolvedModel) -> SourceInfo:
    """The label and source precision of a resolved model (reads file headers only)."""
    if model.name in TINY_MODELS and model.source == "builtin":
        dims = f"{TINY_DIMS['num_hidden_layers']} layers, {TINY_DIMS['hidden_size']} dims"
        return SourceInfo(f"{model.name} (random weights, {dims})", "float32 (random initialisation)", False)
    if model.source == "builtin":  # the row's facts (checked against each file by the slow tests): no read
        row = BUILTINS[model.name]
        return SourceInfo(f"{row.display} ({row.quant} GGUF, dequantized to bf16)", row.precision, True)
    if model.source == "gguf":
        kinds = gguf_types(model.location)
        # The file's own name for its quantization (a K-quant mix is "Q4_K_M", not its most common tensor type),
        # else the most common type of its linear weights.
        kind = gguf_file_type(model.location) or _top(kinds.get("linear", Counter()))
        return SourceInfo(f"{Path(model.location).name} ({kind} GGUF, dequantized to bf16)", precision_of(kinds),
                          kind.upper().startswith(("Q4", "IQ4", "Q3", "Q2", "IQ3", "IQ2", "IQ1")))
    dtypes = _checkpoint_dtypes(model.location)
    precision = ", ".join(f"{k} ({v} tensors)" for k, v in dtypes.most_common()) or "unknown (no local weights read)"
    return SourceInfo(f"{model.name} ({_top(dtypes) or 'dtype unknown'} weights)", precision, False)


def gguf_file_type(path: str) -> str | None:
    """The quantization the file's `general.file_type` names (`Q4_K_M`, `Q4_1`, ...), or None when absent."""
    from gguf import GGUFReader, LlamaFileType

    field = GGUFReader(path).fields.get("general.file_type")
    try:
        return LlamaFileType(int(field.contents())).name.removeprefix("MOSTLY_") if field is not None else None
    except (ValueError, TypeError):
        return None


def gguf_types(path: str) -> dict[str, Counter]:
    """GGUF tensor types by kind: `embedding` (token_embd), `linear` (other 2-D weights), `other`."""
    from gguf import GGUFReader

    kinds: dict[str, Counter] = {}
    for tensor in GGUFReader(path).tensors:
        kind = ("embedding" if tensor.name.startswith("token_embd") else
                "linear" if len(tensor.shape) == 2 else "other")
        kinds.setdefault(kind, Counter())[tensor.tensor_type.name] += 1
    return kinds


def precision_of(kinds: dict[str, Counter]) -> str:
    """gguf_types as one line: "Q4_1 linear weights (210), Q8_0 embedding (1), F32 norms/biases (61)"."""
    parts = []
    for kind, word in (("linear", "linear weights"), ("embedding", "embedding"), ("other", "norms/biases")):
        for dtype, count in kinds.get(kind, Counter()).most_common():
            parts.append(f"{dtype} {word} ({count})")
    return ", ".join(parts)


def _top(counter: Counter) -> str:
    return counter.most_common(1)[0][0] if counter else ""


def _checkpoint_dtypes(location: str) -> Counter:
    """dtypes of the 2-D tensors in a folder's safetensors files (header only), else config.json's dtype."""
    folder = Path(location)
    counts: Counter = Counter()
    if folder.is_dir():
        for file in sorted(folder.glob("*.safetensors")):
            for entry in _safetensors_header(file).values():
                if isinstance(entry, dict) and len(entry.get("shape", ())) == 2:
                    counts[str(entry.get("dtype", "?")).lower()] += 1
        if not counts and (folder / "config.json").is_file():
            config = json.loads((folder / "config.json").read_text())
            dtype = config.get("dtype") or config.get("torch_dtype")
            if dtype:
                counts[str(dtype)] += 1
    return counts


def _safetensors_header(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(length))
