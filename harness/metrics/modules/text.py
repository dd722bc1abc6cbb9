"""Text normalisation and tokenisation shared by the local metric scripts.

`normalize_answer` is the SQuAD v1.1 evaluation script's normalisation: lowercase, drop ASCII
punctuation, drop the articles a/an/the, collapse whitespace. `rouge_tokens` follows the
`rouge_score` default tokenizer (lowercase, runs of letters and digits) but keeps non-ASCII
letters, which `rouge_score` would drop.
"""

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
_WORD = re.compile(r"[^\W_]+")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list:
    """The words of the normalised answer (SQuAD token F1 works on these)."""
    return normalize_answer(text).split()


def rouge_tokens(text: str) -> list:
    """Lowercased runs of letters and digits; punctuation and whitespace separate tokens."""
    return _WORD.findall(text.lower())


def mean(values: list) -> float:
    """Arithmetic mean as a float; callers guarantee at least one value."""
    return float(sum(values) / len(values))
