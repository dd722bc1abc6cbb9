"""The LM head only where the loss reads it: per-token cross-entropy at the labelled positions.

A causal LM's own forward computes the vocabulary logits at every position ([B, T, V]; SmolLM2's V is
49,152) and the loss then reads only the positions whose next token is labelled (the completion tokens).
`token_losses` runs the decoder, picks the hidden states of those positions, and runs the head on them
alone ([N, V], N = scored tokens): the same cross-entropy per token, without the logits nobody reads.
Measured on SmolLM2-135M (fp32, 2 CPU cores, batch 8 x 64, LoRA r 16, 40% of positions labelled):
about +16% training tokens/s; `benchmarks/step_overhead.py` times it.

The shortcut is taken only for architectures whose causal-LM forward is exactly decoder -> lm_head (no
logit soft-capping or scaling in between, `SELECTED_HEAD_TYPES`: the families of harness.trial.families
whose row says so, Gemma 3 among them when its final-logit soft-capping is off, as Gemma-3-270M's is); any
other model gets the full logits and the same per-token losses from them. tests/trial/test_head.py holds both
paths equal to the model's own loss and gradients in every quantization mode, on every family's tiny model.
Gemma 3's 262,144-token head makes this matter most there.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from harness.data.examples import IGNORE_INDEX
from harness.trial.families import FAMILIES

SELECTED_HEAD_TYPES = frozenset({"mistral", "qwen3", "phi3", "smollm3"}.union(
    *(f.model_types for f in FAMILIES.values() if f.selected_head)))
"""`config.model_type`s whose causal-LM forward is `lm_head(decoder(...).last_hidden_state)` and nothing
else when `config.final_logit_softcapping` is unset: running the head on selected hidden states gives their
logits exactly. Gemma 2's soft-capping, Cohere's logit scale or Granite's logit scaling would not; such
models take the full-logits path."""


class TokenLosses(NamedTuple):
    """The cross-entropy (fp32, nats) of every scored token of a batch, and the batch row it belongs to."""

    losses: Any
    """[N] float32: one loss per scored token, in row-major order of the batch."""
    rows: Any
    """[N] long: the row of the batch each loss belongs to."""


def labelled_positions(labels: Any) -> tuple[Any, Any, Any]:
    """Rows, positions and targets of the scored tokens: position t predicts labels[:, t + 1].

    The causal shift in one place: the hidden state at position t is scored against the label at t + 1,
    exactly as transformers' ForCausalLMLoss shifts the labels."""
    shifted = labels[:, 1:]
    rows, cols = (shifted != IGNORE_INDEX).nonzero(as_tuple=True)
    return rows, cols, shifted[rows, cols]


def selects_head(model: Any) -> bool:
    """Whether `token_losses` can run the head on the labelled positions alone for this model."""
    inner = _causal_lm(model)
    config = getattr(inner, "config", None)
    return (getattr(config, "model_type", None) in SELECTED_HEAD_TYPES
            and getattr(config, "final_logit_softcapping", None) is None
            and inner.get_output_embeddings() is not None)


def token_losses(model: Any, input_ids: Any, attention_mask: Any, labels: Any, *,
                 selected: bool | None = None) -> TokenLosses:
    """Per-token cross-entropy at the scored positions of one batch (labels unshifted, -100 = not scored).

    `selected` None: the head at the labelled positions where `selects_head(model)`, else full logits;
    True/False force one path (tests and benchmarks compare them). A batch with no scored token returns
    empty tensors that still belong to the autograd graph (their sum is a zero loss with zero gradients)."""
    import torch

    if selected is None:
        selected = selects_head(model)
    rows, cols, targets = labelled_positions(labels)
    if selected:
        inner = _causal_lm(model)
        hidden = inner.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                     use_cache=False).last_hidden_state
        logits = inner.get_output_embeddings()(hidden[:, :-1][rows, cols])
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1][rows, cols]
    losses = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    return TokenLosses(losses, rows)


def _causal_lm(model: Any) -> Any:
    """The transformers causal LM under a peft wrapper (or the model itself when it is not wrapped)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
