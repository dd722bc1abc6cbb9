"""Whether the answer contains the reference, after SQuAD normalisation (a local `evaluate` metric)."""

import evaluate

from .text import answer_tokens, mean, text_pair_info

_DESCRIPTION = """Fraction of predictions whose normalised words contain the normalised reference as a run of
whole words (SQuAD normalisation: lowercase, punctuation and a/an/the removed). "The Solace Pro is a portable
projector." contains "portable projector". It credits a right answer said in a sentence, which exact match
does not (an instruct model that was never taught the answer format); it also credits an answer that lists
the reference among wrong ones, so read it beside exact match. 0.0 to 1.0."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated answers.
    references (list of str): one reference answer per prediction.
Returns:
    contains_answer (float): fraction of predictions that contain their reference, 0.0 to 1.0.
Examples:
    >>> metric = evaluate.load("contains_answer.py")
    >>> metric.compute(predictions=["It costs $169."], references=["$169"])
    {'contains_answer': 1.0}
"""


def _contains(prediction, reference):
    words, wanted = answer_tokens(prediction), answer_tokens(reference)
    if not wanted:
        return float(not words)
    n = len(wanted)
    return float(any(words[i:i + n] == wanted for i in range(len(words) - n + 1)))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ContainsAnswer(evaluate.Metric):
    def _info(self):
        return text_pair_info(_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references):
        return {"contains_answer": mean([_contains(p, r) for p, r in zip(predictions, references)])}
