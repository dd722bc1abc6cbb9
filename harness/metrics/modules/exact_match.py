"""Exact match after SQuAD normalisation (a local `evaluate` metric)."""

import evaluate

from .text import mean, normalize_answer, text_pair_info

_DESCRIPTION = """Fraction of predictions equal to their reference after SQuAD normalisation
(lowercase, punctuation and the articles a/an/the removed, whitespace collapsed). 0.0 to 1.0."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated answers.
    references (list of str): one reference answer per prediction.
Returns:
    exact_match (float): fraction of exact matches, 0.0 to 1.0.
Examples:
    >>> metric = evaluate.load("exact_match.py")
    >>> metric.compute(predictions=["The Cat."], references=["cat"])
    {'exact_match': 1.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(evaluate.Metric):
    def _info(self):
        return text_pair_info(_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references):
        hits = [float(normalize_answer(p) == normalize_answer(r)) for p, r in zip(predictions, references)]
        return {"exact_match": mean(hits)}
