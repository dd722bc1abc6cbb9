"""``make_batches``: padded tensors from token sequences, grouped by length to waste little padding.

Sorting within chunks of ``50 * batch_size`` sequences keeps the training order random at the
scale that matters (which examples share a step and when) while each batch holds sequences of
similar length. Measured on ``stdlib-qa`` with the SmolLM2 tokenizer (sequences of 48-92
tokens), padding efficiency, real / (B * T) tokens, is 0.86 for random batches of 8 and 0.99
for grouped ones (0.82 and 0.99 at batch size 16).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harness.data.examples import IGNORE_INDEX

CHUNK_BATCHES = 50  # batches per length-sorted chunk when shuffling


@dataclass
class Batch:
    """One right-padded micro-batch."""

    input_ids: torch.Tensor
    """[B, T] long, padded with pad_id."""
    attention_mask: torch.Tensor
    """[B, T] long, 1 on real tokens and 0 on padding."""
    labels: torch.Tensor
    """[B, T] long, -100 on padding and unscored tokens (unshifted: the model shifts them)."""
    real_tokens: int
    """Non-padding tokens, for tokens/s."""
    scored_tokens: int
    """Labels that count after the causal shift: ``(labels[:, 1:] != -100).sum()``."""
    indices: tuple[int, ...] = ()
    """Position of each row's sequence in the list given to make_batches (per-example scores)."""


def make_batches(seqs: Sequence[tuple[list[int], list[int]]], batch_size: int, pad_id: int, *,
                 shuffle_seed: int | None) -> list[Batch]:
    """Split ``(input_ids, labels)`` pairs into padded batches of at most ``batch_size``.

    With ``shuffle_seed``: shuffle with ``random.Random(shuffle_seed)``, sort each chunk of
    ``50 * batch_size`` sequences by length, cut into batches and shuffle the batch order with
    the same generator, so a seed always gives the same batches in the same order. With None
    (for eval): all sequences sorted longest first, so the largest batch, the one most likely
    to run out of memory, comes first.
    """
    return [_pad([seqs[i] for i in group], pad_id, tuple(group))
            for group in _groups([len(ids) for ids, _ in seqs], batch_size, shuffle_seed)]


def make_step_batches(seqs: Sequence[tuple[list[int], list[int]]], batch_size: int, micro_batches: int,
                      pad_id: int, *, shuffle_seed: int) -> list[Batch]:
    """Training micro-batches, `micro_batches` per optimizer step: the steps hold exactly the sequences of
    ``make_batches(seqs, batch_size * micro_batches, ...)``'s batches, in the same order, each cut in order into
    micro-batches of at most `batch_size` (each padded to its own longest row). So a config fitted to a memory
    budget (micro-batch halved, accumulation doubled) trains every step on the same sequences as the config it
    was fitted from. A step with fewer sequences than micro-batches (an epoch's last) is completed with
    unscored filler micro-batches (one sequence, no label, no real token), which add nothing to its loss or
    gradients: every step takes exactly `micro_batches` of the list."""
    if micro_batches < 1:
        raise ValueError(f"micro_batches must be >= 1, got {micro_batches}")
    out: list[Batch] = []
    for group in _groups([len(ids) for ids, _ in seqs], batch_size * micro_batches, shuffle_seed):
        parts = [_pad([seqs[i] for i in part], pad_id, tuple(part)) for part in _cut(group, batch_size)]
        out.extend(parts + [_filler(seqs[group[0]], pad_id)] * (micro_batches - len(parts)))
    return out


def _groups(lengths: list[int], batch_size: int, shuffle_seed: int | None) -> list[list[int]]:
    """The index groups of make_batches (see there), from the sequences' lengths."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = list(range(len(lengths)))
    if shuffle_seed is None:
        order.sort(key=lambda i: -lengths[i])  # stable: ties keep input order
        return _cut(order, batch_size)
    rng = random.Random(shuffle_seed)
    rng.shuffle(order)
    chunk = CHUNK_BATCHES * batch_size
    groups = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        groups.extend(_cut(part, batch_size))
    rng.shuffle(groups)
    return groups


def _filler(seq: tuple[list[int], list[int]], pad_id: int) -> Batch:
    """A one-row micro-batch that scores nothing and counts no token (completes a short step)."""
    batch = _pad([seq], pad_id)
    batch.labels.fill_(IGNORE_INDEX)
    return Batch(batch.input_ids, batch.attention_mask, batch.labels, real_tokens=0, scored_tokens=0)


def padding_efficiency(batches: Sequence[Batch]) -> float:
    """Real tokens over all B * T positions (1.0: no padding at all)."""
    total = sum(batch.input_ids.numel() for batch in batches)
    return sum(batch.real_tokens for batch in batches) / total if total else 1.0


def _cut(order: list[int], batch_size: int) -> list[list[int]]:
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _pad(group: list[tuple[list[int], list[int]]], pad_id: int, indices: tuple[int, ...] = ()) -> Batch:
    width = max(len(ids) for ids, _ in group)
    input_ids = torch.full((len(group), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(group), width), dtype=torch.long)
    labels = torch.full((len(group), width), IGNORE_INDEX, dtype=torch.long)
    for row, (ids, labs) in enumerate(group):
        if len(ids) != len(labs):
            raise ValueError(f"sequence {row} has {len(ids)} input ids but {len(labs)} labels")
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
        labels[row, : len(labs)] = torch.tensor(labs, dtype=torch.long)
    return Batch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        real_tokens=int(attention_mask.sum()),
        scored_tokens=int((labels[:, 1:] != IGNORE_INDEX).sum()),
        indices=indices,
    )
