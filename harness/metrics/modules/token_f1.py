"""SQuAD token-overlap F1 (a local `evaluate` metric)."""

import collections

import evaluate

from .text import answer_tokens, mean, overlap_f1, text_pair_info

_DESCRIPTION = """Mean over examples of the SQuAD token F1: the harmonic mean of precision and
recall of the normalised words shared by prediction and reference (counted with multiplicity).
When either side is empty the F1 is 1.0 if both are, else 0.0 (the SQuAD v2 rule). 0.0 to 1.0,
not SQuAD's 0 to 100."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated answers.
    references (list of str): one reference answer per prediction.
Returns:
    token_f1 (float): mean token F1, 0.0 to 1.0.
Examples:
    >>> metric = evaluate.load("token_f1.py")
    >>> metric.compute(predictions=["the cat sat"], references=["a cat sat down"])
    {'token_f1': 0.8}
"""


def token_f1(prediction, reference):
    """SQuAD F1 of one prediction against one reference."""
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    same = sum((collections.Counter(pred) & collections.Counter(ref)).values())
    return overlap_f1(same, len(pred), len(ref))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TokenF1(evaluate.Metric):
    def _info(self):
        return text_pair_info(_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references):
        return {"token_f1": mean([token_f1(p, r) for p, r in zip(predictions, references)])}
