"""Evaluation: mean token loss and perplexity on the held-out split."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class EvalScore:
    loss: float
    """Mean cross-entropy per scored token (nats), the same definition for every trial."""
    tokens: int
    """Scored tokens the mean is over."""
    seconds: float

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 50.0))


def eval_loss(model: Any, batches: Sequence[Any], device: str) -> EvalScore:
    """Token-weighted mean loss over all batches (not a mean of batch means)."""
    import torch

    started = time.perf_counter()
    total, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        for batch in batches:
            out = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                        labels=batch.labels.to(device))
            total += float(out.loss) * batch.scored_tokens
            tokens += batch.scored_tokens
    if was_training:
        model.train()
    if tokens == 0:
        raise ValueError("the eval split has no scored tokens")
    return EvalScore(total / tokens, tokens, time.perf_counter() - started)
