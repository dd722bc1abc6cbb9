"""``text`` + ``label`` records -> prompt/answer examples through a prompt template.

The label set is the sorted distinct labels of the *train* split: the prompt lists them, and
the answer is the label itself, so accuracy is an exact comparison of the generated label. An
eval label that never occurs in training could not be learned (nor listed), so it is an error
rather than a silent zero.
"""

from __future__ import annotations

import string

from harness.data.examples import DataError, Example
from harness.data.records import Labeled

DEFAULT_TEMPLATE = "Classify the following text.\n\nText: {text}\nAnswer with one of: {labels}."
PLACEHOLDERS = ("text", "labels")


def check_template(template: str, shown: str) -> None:
    """Raise :class:`DataError` unless ``template`` has ``{text}`` and no placeholder but ``{labels}``."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:  # a lone brace
        raise DataError(f"{shown}: template {template!r} is not a valid format string ({err}); "
                        "write {{ and }} for literal braces") from None
    unknown = [name for name in names if name not in PLACEHOLDERS]
    if unknown:
        raise DataError(f"{shown}: template has unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; "
                        "use {text} and {labels} (write {{ and }} for literal braces)")
    if "text" not in names:
        raise DataError(f"{shown}: template {template!r} has no {{text}} placeholder, so the model would never see "
                        "the text to classify; add {text}")


def render(train: list[Labeled], held_out: list[Labeled], template: str,
           shown: str) -> tuple[list[Example], list[Example], tuple[str, ...]]:
    """(train examples, eval examples, label set): each record's text rendered into ``template``."""
    check_template(template, shown)
    labels = tuple(sorted({row.label for row in train}))
    _check_labels(labels, held_out, shown)
    listed = ", ".join(labels)

    def example(row: Labeled) -> Example:
        prompt = template.format(text=row.text, labels=listed)
        return Example([{"role": "user", "content": prompt}], row.label)

    return [example(row) for row in train], [example(row) for row in held_out], labels


def _check_labels(labels: tuple[str, ...], held_out: list[Labeled], shown: str) -> None:
    if len(labels) < 2:
        raise DataError(f"{shown}: the train split has the labels {list(labels)}; classification needs at "
                        "least two distinct labels")
    folded: dict[str, str] = {}
    for label in labels:
        other = folded.setdefault(label.casefold(), label)
        if other != label:  # scored answers are compared case-insensitively: these two would collide
            raise DataError(f"{shown}: labels {other!r} and {label!r} differ only in case; use one spelling")
    unseen = next((row for row in held_out if row.label not in labels), None)
    if unseen is not None:
        raise DataError(f"{unseen.where}: label {unseen.label!r} never occurs in the train split (labels: "
                        f"{', '.join(labels)}), so the model cannot learn it; add training records with it "
                        "or drop this record")
