"""Text normalisation and tokenisation shared by the local metric scripts.

`normalize_answer` is the SQuAD v1.1 evaluation script's normalisation: lowercase, drop ASCII
punctuation, drop the articles a/an/the, collapse whitespace. `rouge_tokens` follows the
`rouge_score` default tokenizer (lowercase, runs of letters and digits) but keeps non-ASCII
letters, which `rouge_score` would drop.
"""

import re
import string

import datasets
import evaluate

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


def text_pair_info(description, inputs_description):
    """The MetricInfo every local metric shares: one predicted string against one reference string."""
    return evaluate.MetricInfo(
        description=description,
        citation="",
        inputs_description=inputs_description,
        features=datasets.Features({"predictions": datasets.Value("string"),
                                    "references": datasets.Value("string")}),
    )


def overlap_f1(overlap, n_predicted, n_reference):
    """Harmonic mean of precision (overlap / predicted) and recall (overlap / reference); 0 without overlap."""
    if overlap == 0:
        return 0.0
    precision, recall = overlap / n_predicted, overlap / n_reference
    return 2 * precision * recall / (precision + recall)
