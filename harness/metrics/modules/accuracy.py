"""Accuracy of generated class labels (a local `evaluate` metric).

A generated answer rarely stops right after the label ("Positive. The headline says..."), so the
prediction counts as correct when its first words, after SQuAD normalisation, are the whole
normalised reference label: for a one-word label, its first word equals the label. "Positive."
and "positive, because..." both match the label "positive"; "not positive" does not.
"""

import evaluate

from .text import answer_tokens, mean, text_pair_info

_DESCRIPTION = """Fraction of predictions whose first normalised word(s) equal the normalised
reference label (one word for a one-word label). Normalisation is SQuAD's: lowercase, punctuation
and articles removed. An empty reference matches only an empty prediction. 0.0 to 1.0."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated text, expected to start with a class label.
    references (list of str): the gold label for each prediction.
Returns:
    accuracy (float): fraction of predictions that start with their label, 0.0 to 1.0.
Examples:
    >>> metric = evaluate.load("accuracy.py")
    >>> metric.compute(predictions=["Positive. It rose.", "neutral"], references=["positive", "negative"])
    {'accuracy': 0.5}
"""


def label_matches(prediction, reference):
    """Whether the prediction's first words are exactly the reference label's words."""
    label = answer_tokens(reference)
    words = answer_tokens(prediction)
    if not label:
        return not words
    return words[: len(label)] == label


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return text_pair_info(_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references):
        return {"accuracy": mean([float(label_matches(p, r)) for p, r in zip(predictions, references)])}
