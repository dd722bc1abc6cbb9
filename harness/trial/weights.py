"""Weight accounting: how much memory a loaded base model's weights take, split so a quantized mode's
saving is explained (packed weights, their quantization constants, everything else by dtype)."""

from __future__ import annotations

from typing import Any


def weight_breakdown(model: Any) -> dict[str, Any]:
    """The base model's weight memory by kind, in MiB, so a quantized mode's saving is explained:

    - `quantized_mb`: the packed int8 / 4-bit weights of the quantized linear layers;
    - `constants_mb`: their quantization constants (4-bit absmax, codebooks and the second-level
      constants of double quantization; int8 row scales), which `get_memory_footprint` leaves out;
    - `other_mb` and `other_by_dtype`: every other parameter and buffer (embeddings, norms, rotary
      tables) by dtype. For quantized modes `prepare_model_for_kbit_training` casts these to fp32,
      so on SmolLM2 the tied 49,152 x 576 embedding alone is 108 MiB of an nf4 model's weights;
    - `total_mb`: the sum."""
    seen: set[int] = set()
    parts = {"quantized": 0, "constants": 0}
    other: dict[str, int] = {}

    def size(tensor: Any) -> int:
        if tensor is None or not hasattr(tensor, "nbytes") or id(tensor) in seen:
            return 0
        seen.add(id(tensor))
        return int(tensor.nbytes)

    for tensor in list(model.parameters()) + list(model.buffers()):
        state = getattr(tensor, "quant_state", None)
        scales = getattr(tensor, "SCB", None)
        if state is None and scales is None:
            dtype = str(tensor.dtype).replace("torch.", "")
            other[dtype] = other.get(dtype, 0) + size(tensor)
            continue
        parts["quantized"] += size(tensor)
        parts["constants"] += size(scales)  # int8 row scales
        while state is not None:
            for name in ("absmax", "code", "offset"):
                parts["constants"] += size(getattr(state, name, None))
            state = getattr(state, "state2", None)
    mib = 2**20
    total = parts["quantized"] + parts["constants"] + sum(other.values())
    return {"quantized_mb": parts["quantized"] / mib, "constants_mb": parts["constants"] / mib,
            "other_mb": sum(other.values()) / mib,
            "other_by_dtype": {k: v / mib for k, v in sorted(other.items()) if v},
            "total_mb": total / mib}
