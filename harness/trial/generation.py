"""Batched greedy generation from prompt token ids, and scoring the generated text with task metrics.

Prompts are sorted by length so each batch holds prompts of similar length (little padding), and
left-padded: a decoder-only model continues from the last position, so the prompt must end there
in every row. Results come back in the caller's order. Greedy decoding makes the output a
function of the model and the prompt alone (no sampling noise between trials).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence


@dataclass(frozen=True)
class GenerationScore:
    """Task metrics of one model on the held-out prompts, with a few samples to read."""

    metrics: dict[str, float]
    """Metric key -> value (built-ins from 0.0 to 1.0)."""
    samples: list[dict[str, str]]
    """The first n prompts as {prompt, prediction, reference} (prompt decoded with its special tokens)."""
    seconds: float
    """Wall time of generation and scoring together."""
    new_tokens: int = 0
    """Tokens generated, stop tokens included and padding excluded (for tokens per second)."""
    per_example: dict[str, list[float]] = field(default_factory=dict)
    """Each built-in metric's score per prompt, in the prompts' order (see metrics.example_scores)."""


def generate(model: Any, tokenizer: Any, prompts: list[list[int]], *, max_new_tokens: int, batch_size: int,
             device: str, stop_ids: Sequence[int] | None = None) -> list[str]:
    """Greedy continuations of token-id prompts, decoded and stripped, in the prompts' order.

    Generation ends at `max_new_tokens` or at the first of `stop_ids` (default: the tokenizer's
    EOS token; pass [] to always generate `max_new_tokens`). The stop token is not part of the
    text, nor are special tokens. Works on plain, peft-wrapped and bitsandbytes-quantized models.
    """
    ids = generate_ids(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                       device=device, stop_ids=stop_ids)
    return [_decode(tokenizer, row) for row in ids]


def generate_ids(model: Any, tokenizer: Any, prompts: list[list[int]], *, max_new_tokens: int, batch_size: int,
                 device: str, stop_ids: Sequence[int] | None = None) -> list[list[int]]:
    """The new token ids of each prompt's greedy continuation, cut before the first stop id."""
    _check_args(prompts, max_new_tokens, batch_size)
    stops = _stop_ids(tokenizer, stop_ids)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has neither a pad nor an EOS token to pad prompts with")
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)  # longest first
    results: list[list[int]] = [[] for _ in prompts]
    with _generation_mode(model, device):
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            new = _generate_batch(model, [prompts[i] for i in rows], pad_id, stops, max_new_tokens, device)
            for i, ids in zip(rows, new):
                results[i] = ids
    return results


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def _check_args(prompts: list[list[int]], max_new_tokens: int, batch_size: int) -> None:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    empty = [i for i, p in enumerate(prompts) if len(p) == 0]
    if empty:
        raise ValueError(f"prompt {empty[0]} is empty: generation needs at least one prompt token")


def _stop_ids(tokenizer: Any, stop_ids: Sequence[int] | None) -> list[int]:
    if stop_ids is not None:
        return [int(i) for i in stop_ids]
    return [] if tokenizer.eos_token_id is None else [int(tokenizer.eos_token_id)]


def _generate_batch(model: Any, prompts: list[list[int]], pad_id: int, stops: list[int], max_new_tokens: int,
                    device: str) -> list[list[int]]:
    import torch

    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):  # left padding: every prompt ends at the last column
        input_ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        attention_mask[row, width - len(prompt):] = 1
    # eos_token_id=[] (no stop) must stay a list: None would fall back to the model's own EOS.
    out = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                         do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=pad_id,
                         eos_token_id=stops, use_cache=True, **_last_logits_only(model))
    return [_cut_at_stop(row.tolist(), stops) for row in out[:, width:]]


def _last_logits_only(model: Any) -> dict[str, int]:
    """`logits_to_keep=1` where generate would not pass it itself: transformers asks for the last position's
    logits only when the model's own forward names the argument, which a peft wrapper's does not, so a LoRA
    model's prefill computed the vocabulary logits of every prompt position (32 prompts x 48 tokens x 49,152 in
    fp32 on SmolLM2: ~0.8 GB of peak memory and a second of the head for nothing). Greedy tokens are the same."""
    import inspect

    def names(module: Any) -> set[str]:
        return set(inspect.signature(module.forward).parameters)

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if "logits_to_keep" in names(model) or "logits_to_keep" not in names(inner):
        return {}
    return {"logits_to_keep": 1}


def _cut_at_stop(ids: list[int], stops: list[int]) -> list[int]:
    stop_set = set(stops)
    for position, token in enumerate(ids):
        if token in stop_set:
            return ids[:position]
    return ids


@contextlib.contextmanager
def _generation_mode(model: Any, device: str) -> Iterator[None]:
    """eval mode, no autograd, KV cache on (training turns it off), bf16 autocast on CUDA as in
    `scoring.eval_loss`; all restored afterwards."""
    import torch

    from harness.runtime.quiet import quiet

    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    was_training = model.training
    model.eval()
    if config is not None:
        config.use_cache = True
    try:
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda")
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast, quiet():
            yield
    finally:
        if config is not None:
            config.use_cache = use_cache
        if was_training:
            model.train()


def score_generations(model: Any, tokenizer: Any, prompts: list[list[int]], references: list[str],
                      metric_names: Sequence[str], *, max_new_tokens: int, batch_size: int, device: str,
                      n_samples: int = 5, stop_ids: Sequence[int] | None = None) -> GenerationScore:
    """Generate greedily for every prompt and score the text against its reference with each metric."""
    from harness.metrics import compute_metrics, example_scores

    if len(prompts) != len(references):
        raise ValueError(f"{len(prompts)} prompts but {len(references)} references")
    started = time.perf_counter()
    ids = generate_ids(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                       device=device, stop_ids=stop_ids)
    predictions = [_decode(tokenizer, row) for row in ids]
    # A row shorter than the budget ended on a stop token, which was generated too.
    new_tokens = sum(len(row) + (len(row) < max_new_tokens) for row in ids)
    metrics = compute_metrics(metric_names, predictions, references) if metric_names and prompts else {}
    samples = [{"prompt": tokenizer.decode(prompts[i], skip_special_tokens=False),
                "prediction": predictions[i], "reference": references[i]}
               for i in range(min(n_samples, len(prompts)))]
    per_example = example_scores(metric_names, predictions, references) if metric_names and prompts else {}
    return GenerationScore(metrics, samples, time.perf_counter() - started, new_tokens, per_example)
