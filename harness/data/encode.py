"""``tokenize_splits``: examples to ``(input_ids, labels)`` pairs with an exact prompt/answer boundary.

The prompt and the answer are tokenized separately and concatenated, so the first answer token
is exactly where the loss starts. With a chat template the prompt is the template's rendering
of the prompt messages with ``add_generation_prompt=True``, and the answer is what the template
puts after that for an assistant turn: normally the completion plus the end-of-turn marker
(``<|im_end|>`` for SmolLM2), i.e. exactly the tokens the model must learn to generate before it
stops. Without a template the format is ``Question: ...\\nAnswer: `` + completion + eos, which
only fits a single user turn: a system message or several turns need a chat template.

Plain text examples (an empty prompt) get no wrapper at all: the text + eos, scored on every
token, after whatever BOS the tokenizer adds by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.data.examples import IGNORE_INDEX, DataError, Example, Splits
from harness.config.dataset import DataSpec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

_PROBE = "ANSWER7f3c"  # stands in for the completion to find what the template wraps it in

LabeledIds = tuple[list[int], list[int]]
"""(input_ids, labels) of one example, equal lengths."""


@dataclass(frozen=True)
class TokenizedSplits:
    """Token sequences ready for :func:`harness.data.make_batches`."""

    train: list[LabeledIds]
    """(input_ids, labels) pairs; labels are -100 where a token is not scored."""
    eval: list[LabeledIds]
    truncated: int
    """Examples (train and eval) longer than max_seq_len and cut from the right; includes dropped."""
    dropped: int
    """Examples removed because truncation left no scored token."""
    eval_prompts: list[list[int]] = field(default_factory=list)
    """Per ``eval`` entry, same order: the prompt ids that precede the answer in it, i.e. what a
    model is given before generating (whole, even where ``eval`` cut a long prompt)."""
    eval_references: list[str] = field(default_factory=list)
    """Per ``eval`` entry, same order: the completion text the answer should match."""


def tokenize_splits(splits: Splits, tokenizer: PreTrainedTokenizerBase, spec: DataSpec) -> TokenizedSplits:
    """Tokenize both splits of ``splits`` with ``tokenizer`` as ``spec`` says.

    With ``spec.completion_only_loss`` only the answer tokens are scored; otherwise every token
    is. Sequences are cut to ``spec.max_seq_len`` tokens from the right; an example left with no
    scored token (after the causal shift) is dropped. ``eval_prompts`` and ``eval_references``
    line up with the kept ``eval`` entries, for generation-based metrics. Raises
    :class:`DataError` when truncation drops every example of a split (naming the
    ``max_seq_len`` that would keep one), or when a prompt has a system message or several
    turns and the tokenizer has no chat template.
    """
    if not splits.train or not splits.eval:
        raise DataError(f"data {splits.source}: nothing to tokenize ({len(splits.train)} train, "
                        f"{len(splits.eval)} eval examples); load it with harness.data.load_examples")
    _check_chat_template(splits, tokenizer)
    # Computed once: templates format the final assistant turn the same whatever precedes it.
    first_prompt = next((e.prompt for e in splits.train + splits.eval if e.prompt), None)
    wrap = _answer_wrapper(tokenizer, first_prompt) if first_prompt else ("", _eos(tokenizer))
    train, train_cut = _encode_split("train", splits.train, tokenizer, wrap, spec, splits.source)
    held_out, eval_cut = _encode_split("eval", splits.eval, tokenizer, wrap, spec, splits.source)
    dropped = len(splits.train) - len(train) + len(splits.eval) - len(held_out)
    return TokenizedSplits(
        train=[(e.ids, e.labels) for e in train], eval=[(e.ids, e.labels) for e in held_out],
        truncated=train_cut + eval_cut, dropped=dropped,
        eval_prompts=[e.prompt for e in held_out], eval_references=[e.reference for e in held_out])


@dataclass(frozen=True)
class _Encoded:
    ids: list[int]
    labels: list[int]
    prompt: list[int]
    reference: str


def _check_chat_template(splits: Splits, tokenizer: Any) -> None:
    """A system message or several turns cannot be written without a chat template: say so."""
    if getattr(tokenizer, "chat_template", None):
        return
    for split, examples in (("train", splits.train), ("eval", splits.eval)):
        for number, example in enumerate(examples, start=1):
            roles = [message["role"] for message in example.prompt]
            if roles and roles != ["user"]:
                kind = "a system message" if "system" in roles else f"{len(roles)} turns"
                name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
                raise DataError(f"data {splits.source}: {split} example {number} has {kind}, but tokenizer "
                                f"{name!r} has no chat template to format it; use a model with a chat template "
                                "(an instruct model) or single-turn prompt/completion data without system_prompt")


def _encode_split(split: str, examples: list[Example], tokenizer: Any, wrap: tuple[str, str],
                  spec: DataSpec, source: str) -> tuple[list[_Encoded], int]:
    """The kept examples of one split, encoded, and how many examples were truncated."""
    prompts = prompt_ids(tokenizer, examples)
    text_end = _eos(tokenizer) if any(not e.prompt for e in examples) else ""  # plain text ends in eos
    answers = _ids(tokenizer, [wrap[0] + e.completion + wrap[1] if e.prompt else e.completion + text_end
                               for e in examples])
    kept: list[_Encoded] = []
    truncated = 0
    for example, prompt, answer in zip(examples, prompts, answers):
        ids, labels = _join(prompt, answer, spec.completion_only_loss)
        truncated += len(ids) > spec.max_seq_len
        ids, labels = ids[: spec.max_seq_len], labels[: spec.max_seq_len]
        if any(label != IGNORE_INDEX for label in labels[1:]):  # labels[0] is never predicted
            kept.append(_Encoded(ids, labels, prompt, example.completion))
    if not kept:
        raise DataError(_too_short(split, prompts, answers, spec, source))
    return kept, truncated


def _answer_wrapper(tokenizer: Any, prompt: list[dict[str, str]]) -> tuple[str, str]:
    """(text before, text after) the completion in the answer the model must generate."""
    if not getattr(tokenizer, "chat_template", None):
        return "", _eos(tokenizer)
    opening = _render(tokenizer, prompt, add_generation_prompt=True)
    full = _render(tokenizer, prompt + [{"role": "assistant", "content": _PROBE}], add_generation_prompt=False)
    if full.startswith(opening) and _PROBE in full[len(opening):]:
        before, after = full[len(opening):].split(_PROBE, 1)
        # The newline after the end-of-turn marker is never generated: the model stops at it.
        if after.rstrip():
            return before, after.rstrip()
        return before, _eos(tokenizer)
    return "", _eos(tokenizer)  # an unusual template: fall back to completion + eos


def _render(tokenizer: Any, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _eos(tokenizer: Any) -> str:
    eos = getattr(tokenizer, "eos_token", None)
    if not eos:
        raise DataError(f"tokenizer {type(tokenizer).__name__} has no eos_token, so the model could not learn "
                        "where an answer ends; set tokenizer.eos_token")
    return eos


def prompt_ids(tokenizer: Any, examples: list[Example]) -> list[list[int]]:
    """Each example's prompt as the model is given it before answering (chat template and generation prompt
    when the tokenizer has one, else `Question: ...\\nAnswer: `), as token ids."""
    chat = bool(getattr(tokenizer, "chat_template", None))
    # The template writes any BOS itself, so the tokenizer must not add another; plain prompts
    # and plain text get the tokenizer's usual BOS (Llama adds one, GPT-2 adds nothing).
    templated = [chat and bool(e.prompt) for e in examples]
    texts = [_render(tokenizer, e.prompt, add_generation_prompt=True) if t else _plain_prompt(e.prompt)
             for e, t in zip(examples, templated)]
    with_template = iter(_ids(tokenizer, [text for text, t in zip(texts, templated) if t]))
    plain = iter(_ids(tokenizer, [text for text, t in zip(texts, templated) if not t], add_special_tokens=True))
    return [next(with_template) if t else next(plain) for t in templated]


PLAIN_TEMPLATE = "Question: {prompt}\\nAnswer: {completion}<eos>"
"""The prompt template of a tokenizer without a chat template (a base model such as Gemma-3-270M), as trial
records name it: one user turn only; a system message or several turns are refused (DataError)."""


def prompt_template(tokenizer: Any) -> str:
    """Which template formats prompts for `tokenizer`: `chat template (the tokenizer's own)` or `plain:
    PLAIN_TEMPLATE` (plain text data gets neither: the text + eos)."""
    return "chat template (the tokenizer's own)" if getattr(tokenizer, "chat_template", None) \
        else f"plain: {PLAIN_TEMPLATE}"


def prompt_frame(tokenizer: Any, slot: str = "{prompt}", system: str | None = None) -> tuple[str, str, str]:
    """(prompt, answer before, answer after) as the trials format one user turn with `tokenizer`: the prompt text
    with `slot` where the user's text goes, and the text the answer's completion is wrapped in (for the tools'
    exports, which must write the same format). `system`: the study's system_prompt, first in the prompt."""
    message = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": slot}]
    before, after = _answer_wrapper(tokenizer, message)
    chat = bool(getattr(tokenizer, "chat_template", None))
    prompt = _render(tokenizer, message, add_generation_prompt=True) if chat else _plain_prompt(message[-1:])
    return prompt, before, after


def _plain_prompt(messages: list[dict[str, str]]) -> str:
    """``Question: ...\\nAnswer: `` for one user turn without a chat template; empty for plain text."""
    return f"Question: {messages[0]['content']}\nAnswer: " if messages else ""


def _ids(tokenizer: Any, texts: list[str], *, add_special_tokens: bool = False) -> list[list[int]]:
    """Token ids of each text, in one batched call (the fast tokenizers run it in Rust)."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=add_special_tokens)["input_ids"]]


def _join(prompt: list[int], answer: list[int], completion_only: bool) -> LabeledIds:
    ids = prompt + answer
    labels = ([IGNORE_INDEX] * len(prompt) if completion_only else list(prompt)) + list(answer)
    return ids, labels


def _too_short(split: str, prompts: list[list[int]], answers: list[list[int]], spec: DataSpec, source: str) -> str:
    # The first scored token sits right after the prompt (or at position 1 when all are scored).
    need = min(len(p) + 1 if spec.completion_only_loss else 2 for p in prompts)
    whole = max(len(p) + len(a) for p, a in zip(prompts, answers))
    return (f"data {source}: max_seq_len={spec.max_seq_len} is too small: truncation leaves no scored token in any "
            f"{split} example; set max_seq_len >= {need} (>= {whole} keeps every example whole)")
