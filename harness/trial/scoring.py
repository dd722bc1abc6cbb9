"""Evaluation: mean token loss and perplexity on the held-out split, and each example's own loss."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from harness.config.objectives import perplexity
from harness.data.examples import IGNORE_INDEX
from harness.runtime.devices import autocast_for
from harness.trial.head import token_losses


@dataclass(frozen=True)
class EvalScore:
    loss: float
    """Mean cross-entropy per scored token (nats), the same definition for every trial."""
    tokens: int
    """Scored tokens the mean is over."""
    seconds: float
    example_losses: list[float] = field(default_factory=list)
    """Per held-out example, in eval-split order: its mean cross-entropy per scored token (nats)."""
    example_tokens: list[int] = field(default_factory=list)
    """Per held-out example: its scored tokens (the weights that turn example losses into `loss`)."""

    @property
    def perplexity(self) -> float:
        return perplexity(self.loss)


def eval_loss(model: Any, batches: Sequence[Any], device: str) -> EvalScore:
    """Token-weighted mean loss over all batches (not a mean of batch means), and per example.

    The loss is computed here per token (the same shifted cross-entropy as the model's own loss, the
    head run only at the scored positions where harness.trial.head allows it), so that each example's
    sum is known: two trials can then be compared example by example
    on the same held-out set (the paired bootstrap in harness.evidence.stats)."""
    import torch

    started = time.perf_counter()
    sums: dict[int, float] = {}
    counts: dict[int, int] = {}
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast_for(device):
        for number, batch in enumerate(batches):
            row_sums, row_counts = _row_losses(model, batch, device)
            indices = batch.indices or tuple(range(number * 10**6, number * 10**6 + len(row_sums)))
            for index, total, count in zip(indices, row_sums, row_counts):
                sums[index], counts[index] = total, count
    if was_training:
        model.train()
    tokens = sum(counts.values())
    if tokens == 0:
        raise ValueError("the eval split has no scored tokens")
    order = sorted(sums)
    return EvalScore(sum(sums.values()) / tokens, tokens, time.perf_counter() - started,
                     [sums[i] / counts[i] if counts[i] else math.nan for i in order], [counts[i] for i in order])


def _row_losses(model: Any, batch: Any, device: str) -> tuple[list[float], list[int]]:
    """Summed cross-entropy (fp32) and scored-token count of each row, labels shifted as the model does."""
    import torch

    labels = batch.labels.to(device)
    scores = token_losses(model, batch.input_ids.to(device), batch.attention_mask.to(device), labels)
    sums = torch.zeros(labels.shape[0], dtype=torch.float64, device=labels.device)
    sums.index_add_(0, scores.rows, scores.losses.double())
    return sums.tolist(), (labels[:, 1:] != IGNORE_INDEX).sum(dim=1).tolist()
