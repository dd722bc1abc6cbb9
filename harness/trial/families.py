"""What differs between the model families harness trains: one row per family, read by the loader, the
target-module presets, the selected-logits head and the tests (a family is a row, not a branch).

Llama (SmolLM2), Gemma 3 and Qwen2 (Qwen2.5) name their decoder's linear layers alike (`q_proj` ...
`down_proj`), so the presets mean the same layers on each; the rows still hold the names, so that a family
that names them otherwise is one more row. A checkpoint's family is found from `config.model_type`.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LLAMA_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
LLAMA_MLP = ("gate_proj", "up_proj", "down_proj")

TINY_DIMS = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True)
"""What every tiny random model shares (2 layers, 64 dims), as config overrides, without the vocabulary."""


@dataclass(frozen=True)
class Family:
    """The facts of one architecture that training depends on."""

    name: str
    """Short name: `llama`, `gemma3`, `qwen2` (the tiny model is `tiny-<name>`)."""
    model_types: tuple[str, ...]
    """`config.model_type` values of this family's causal LMs."""
    config_class: str
    """transformers config class of the tiny random model."""
    model_class: str
    """transformers causal-LM class of the tiny random model."""
    attention: tuple[str, ...] = LLAMA_ATTENTION
    """The linear layers of the `attention` preset."""
    mlp: tuple[str, ...] = LLAMA_MLP
    """The linear layers of the `mlp` preset (`all-linear` is both: peft finds them, lm_head excluded)."""
    tied_embeddings: bool = True
    """The LM head shares the input embedding's weight (so it stays unquantized and untrained)."""
    training_attention: str | None = None
    """An attention implementation the family must train with on every device (None: harness's rule,
    models.attention_for). Gemma 3: `eager`, as transformers recommends for training it."""
    selected_head: bool = True
    """The causal-LM forward is exactly `lm_head(decoder(...))` when `config.final_logit_softcapping` is
    unset, so head.token_losses may run the head on the labelled positions alone."""
    chat_template: bool = True
    """Whether the tiny model keeps the tokenizer's chat template (tiny-gemma3 drops it, as the real
    Gemma-3-270M base model has none, so the tests cover the plain prompt template)."""
    attention_bias: bool = False
    """q/k/v projections carry a bias (Qwen2): LoRA leaves biases frozen (bias="none")."""
    tiny: dict[str, Any] = field(default_factory=dict)
    """Config overrides of the tiny random model beyond TINY_DIMS."""


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("llama", ("llama",), "LlamaConfig", "LlamaForCausalLM"),
    # Alternating sliding-window and full attention, a window shorter than the test sequences so the mask
    # matters; head_dim 16 = 64 / 4 heads, query_pre_attn_scalar to match it.
    Family("gemma3", ("gemma3_text", "gemma3"), "Gemma3TextConfig", "Gemma3ForCausalLM",
           training_attention="eager", chat_template=False,
           tiny=dict(head_dim=16, query_pre_attn_scalar=16, sliding_window=16,
                     layer_types=["sliding_attention", "full_attention"])),
    Family("qwen2", ("qwen2",), "Qwen2Config", "Qwen2ForCausalLM", attention_bias=True),
)}
"""Every family harness knows, by short name."""

TINY_MODELS = {f"tiny-{name}": family for name, family in FAMILIES.items()}
"""The tiny random models (`tiny-llama`, `tiny-gemma3`, `tiny-qwen2`) -> their family."""

DEFAULT_FAMILY = FAMILIES["llama"]
"""Whose names a preset means when no model is at hand (e.g. an exported config)."""


def family_of_type(model_type: str | None) -> Family | None:
    """The family of a `config.model_type`, or None when harness has no row for it."""
    return next((f for f in FAMILIES.values() if model_type in f.model_types), None)


def family_of_checkpoint(path: str) -> Family | None:
    """The family of a local checkpoint folder (its config.json read as JSON; None when unknown or no
    local config: a hub id then trains with the defaults)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return family_of_type(json.loads((Path(path) / "config.json").read_text()).get("model_type"))
    return None


def preset_modules(preset: str, family: Family | None = None) -> tuple[str, ...]:
    """The layer names of preset `attention` or `mlp` in `family` (DEFAULT_FAMILY when None)."""
    family = family or DEFAULT_FAMILY
    return {"attention": family.attention, "mlp": family.mlp}[preset]


def tiny_config(family: Family, **vocab: Any) -> Any:
    """The tiny random model's transformers config (TINY_DIMS + the family's overrides + `vocab`: the
    vocabulary size and special token ids)."""
    import transformers

    return getattr(transformers, family.config_class)(**{**TINY_DIMS, **family.tiny, **vocab})


def tiny_model(family: Family, config: Any) -> Any:
    """A randomly initialised causal LM of `family` (the caller seeds torch)."""
    import transformers

    return getattr(transformers, family.model_class)(config)
