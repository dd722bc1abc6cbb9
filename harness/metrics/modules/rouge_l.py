"""ROUGE-L F1 from the longest common subsequence of tokens (a local `evaluate` metric).

Same definition as `rouge_score`'s rougeL F-measure without stemming (the hub `rouge` metric's
default), computed here so no extra package is needed.
"""

import datasets
import evaluate

from .text import mean, rouge_tokens

_DESCRIPTION = """Mean over examples of ROUGE-L F1: with L the length of the longest common
subsequence of the lowercased word tokens (runs of letters and digits), precision = L / prediction
tokens, recall = L / reference tokens, F1 their harmonic mean. An empty prediction or reference
scores 0.0, as in rouge_score. 0.0 to 1.0."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated text.
    references (list of str): one reference text per prediction.
Returns:
    rouge_l (float): mean ROUGE-L F1, 0.0 to 1.0.
Examples:
    >>> metric = evaluate.load("rouge_l.py")
    >>> metric.compute(predictions=["the cat sat on the mat"], references=["the cat is on the mat"])
    {'rouge_l': 0.8333333333333334}
"""


def lcs_length(a, b):
    """Length of the longest common subsequence of two token lists (O(len(a) * len(b)) time)."""
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0  # row[j - 1] of the previous row
        for j, y in enumerate(b, start=1):
            above = row[j]
            row[j] = diagonal + 1 if x == y else max(above, row[j - 1])
            diagonal = above
    return row[-1]


def rouge_l_f1(prediction, reference):
    """ROUGE-L F1 of one prediction against one reference."""
    pred, ref = rouge_tokens(prediction), rouge_tokens(reference)
    lcs = lcs_length(pred, ref) if pred and ref else 0
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RougeL(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        return {"rouge_l": mean([rouge_l_f1(p, r) for p, r in zip(predictions, references)])}
