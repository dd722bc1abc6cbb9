"""ROUGE-L F1 from the longest common subsequence of tokens (a local `evaluate` metric).

Same definition as `rouge_score`'s rougeL F-measure without stemming (the hub `rouge` metric's
default), computed here so no extra package is needed.
"""

import evaluate

from .text import mean, overlap_f1, rouge_tokens, text_pair_info

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
    return overlap_f1(lcs, len(pred), len(ref))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RougeL(evaluate.Metric):
    def _info(self):
        return text_pair_info(_DESCRIPTION, _KWARGS_DESCRIPTION)

    def _compute(self, predictions, references):
        return {"rouge_l": mean([rouge_l_f1(p, r) for p, r in zip(predictions, references)])}
