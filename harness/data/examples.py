"""The plain data types every other module in ``harness.data`` passes around."""

from __future__ import annotations

from dataclasses import dataclass

from harness.spec import SpecError

IGNORE_INDEX = -100
"""Label value for tokens that are not scored (torch's cross_entropy default ignore_index)."""


class DataError(SpecError):
    """Bad or unusable training data.

    The message is one line that names the file (with line or record number where there is
    one), what was found and how to fix it, so the CLI can print it and exit 2.
    """


@dataclass(frozen=True)
class Example:
    """One supervised example: a chat prompt and the answer the model must learn to give."""

    prompt: list[dict[str, str]]
    """Chat messages before the answer: an optional system message, then user/assistant turns
    ending with a user turn. Each message is ``{"role": ..., "content": ...}``."""
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
