"""The prompt of a retrieval arm (issue 12): a held-out question's chat messages with the retrieved passages
put in front of its last user turn, cut to a token budget. The result is an ordinary Example prompt, so it is
rendered by the same chat template and tokenizer path as every other prompt (harness.data.encode). Nothing
here retrieves or loads a model: `count` is the tokenizer's length function."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.advise.corpus import Passage

INSTRUCTION = "Use the context below if it helps to answer the question. Answer in a few words."
NO_CONTEXT = "(retrieval found no passage)"
"""The context line of a RAG prompt whose retrieval returned nothing (`without_passages`)."""


@dataclass(frozen=True)
class RagPrompt:
    """A prompt with context and what went into it."""

    messages: list[dict[str, str]]
    passages: tuple[str, ...]
    """Ids of the passages in the prompt, in prompt order (retrieval rank: best first)."""
    truncated: bool
    """The last passage in the prompt was cut to fit the budget."""
    added_tokens: int
    """Tokens the context added to the question's last user turn (by `count`)."""


def _context(passages: Sequence[str], question: str) -> str:
    lines = "\n".join(f"[{i}] {text}" for i, text in enumerate(passages, start=1)) or NO_CONTEXT
    return f"{INSTRUCTION}\n\nContext:\n{lines}\n\nQuestion: {question}"


def _last_question(messages: list[dict[str, str]]) -> str:
    if not messages or messages[-1].get("role") != "user":
        raise ValueError("a RAG prompt needs chat messages that end with a user turn")
    return messages[-1]["content"]


def _replaced(messages: list[dict[str, str]], content: str) -> list[dict[str, str]]:
    """A copy of the messages with the last (user) turn's content replaced."""
    return [dict(m) for m in messages[:-1]] + [{**messages[-1], "content": content}]


def with_passages(messages: list[dict[str, str]], passages: Sequence[Passage], budget: int,
                  count: Callable[[str], int]) -> RagPrompt:
    """The messages with the passages (best first) in their last user turn, as many as fit in `budget` tokens
    of added context; a passage that would not fit whole is cut word by word (only the first passage can be:
    a lower-ranked one that does not fit is left out). No passages, or a budget of 0: the messages unchanged."""
    question = _last_question(messages)
    base = count(question)
    kept: list[str] = []
    ids: list[str] = []
    truncated = False
    for passage in passages:
        text = passage.as_prompt()
        if count(_context([*kept, text], question)) - base <= budget:
            kept.append(text)
            ids.append(passage.id)
            continue
        if not kept:  # the best passage alone is too long: keep as many of its words as fit
            words = text.split()
            low, high = 0, len(words)
            while low < high:  # the largest prefix that fits
                mid = (low + high + 1) // 2
                if count(_context([" ".join(words[:mid])], question)) - base <= budget:
                    low = mid
                else:
                    high = mid - 1
            if low:
                kept.append(" ".join(words[:low]))
                ids.append(passage.id)
                truncated = True
        break
    if not kept:
        return RagPrompt([dict(m) for m in messages], (), False, 0)
    content = _context(kept, question)
    return RagPrompt(_replaced(messages, content), tuple(ids), truncated, count(content) - base)


def without_passages(messages: list[dict[str, str]], count: Callable[[str], int]) -> RagPrompt:
    """The prompt a RAG system sends when retrieval returns nothing: the same frame with an empty context
    (the no-passage robustness arm; unlike `with_passages` on no passages, the prompt is not the bare question)."""
    question = _last_question(messages)
    content = _context([], question)
    return RagPrompt(_replaced(messages, content), (), False, count(content) - count(question))
