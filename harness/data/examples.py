"""The plain data types every other module in ``harness.data`` passes around."""

from __future__ import annotations

from dataclasses import dataclass

from harness.config.errors import SpecError

IGNORE_INDEX = -100
"""Label value for tokens that are not scored (torch's cross_entropy default ignore_index)."""


class DataError(SpecError):
    """Bad or unusable training data.

    The message is one line that names the file (with line or record number where there is
    one), what was found and how to fix it, so the CLI can print it and exit 2.
    """


@dataclass(frozen=True)
class Example:
    """One supervised example: a chat prompt and the answer the model must learn to give.

    An empty ``prompt`` marks plain text (language modelling): ``completion`` is the whole
    text, tokenized without any chat wrapper and scored on every token.
    """

    prompt: list[dict[str, str]]
    """Chat messages before the answer: an optional system message, then user/assistant turns
    ending with a user turn. Each message is ``{"role": ..., "content": ...}``. Empty: plain text."""
    completion: str
    """The assistant's answer text (no end-of-turn marker: the tokenizer step adds it)."""


@dataclass(frozen=True)
class Splits:
    """Train and held-out examples, each list in a stable order that does not depend on the run."""

    train: list[Example]
    eval: list[Example]
    source: str
    """Human-readable origin: ``built-in stdlib-qa (Python 3.11.7)`` or the resolved file path."""
    split_hash: str
    """``stable_hash`` of the eval examples: equal hashes mean two trials scored the same split."""
    format: str = "prompt_completion"
    """The record shape the examples came from (a DATA_FORMATS value) or ``builtin``."""
    metrics: tuple[str, ...] = ()
    """Task metrics that fit these examples (``accuracy``, ``exact_match``, ``token_f1``, ``rouge_l``);
    empty for plain text, which has nothing to generate."""
    max_new_tokens: int = 0
    """Generation budget for one answer, in tokens (0: nothing to generate)."""
    labels: tuple[str, ...] = ()
    """Classification only: the label set (sorted, from the train split) the prompts list."""
