"""Which record shape a dataset has, read from its columns, and the user's column renames.

Detection looks at the columns of the *first* record (every format has fixed columns, so one
record shows them; a later record missing one is reported at its own line). A dataset whose
columns fit two formats (``prompt`` + ``completion`` next to ``messages``, ``instruction`` +
``output`` next to ``text``) is ambiguous and must name its format: guessing would silently
train on the wrong column. ``text`` + ``label`` is classification, not plain text.
"""

from __future__ import annotations

from typing import Any

from harness.data.examples import DataError
from harness.data.records import REQUIRED

Located = list[tuple[str, Any]]
"""(location, record) pairs in dataset order."""

EXPECTED = ("expected `messages`, `prompt` + `completion`, `instruction` + `output` (+ `input`), `text`, "
            "or `text` + `label`")

SPLIT_COLUMN = "split"
TRAIN_VALUES = ("train", "training")
VALIDATION_VALUES = ("validation", "valid", "val", "dev", "eval", "evaluation")
TEST_VALUES = ("test", "testing")


def map_columns(records: Located, column_map: tuple[tuple[str, str], ...], shown: str) -> Located:
    """``records`` with each (ours, theirs) pair of ``column_map`` applied: column theirs is read as ours.

    A column of the data that already has one of our mapped names is dropped, so it cannot make
    the format ambiguous. Raises :class:`DataError` when the first record lacks a mapped column.
    """
    if not column_map or not records:
        return records
    where, first = records[0]
    if isinstance(first, dict):
        absent = [f"{ours} -> {theirs!r}" for ours, theirs in column_map if theirs not in first]
        if absent:
            raise DataError(f"{where}: column_map maps {', '.join(absent)} but the columns are {list(first)}; "
                            "fix column_map (our name: your column name)")
    ours = {o for o, _ in column_map}
    theirs = {t for _, t in column_map}
    mapped: Located = []
    for where, record in records:
        if isinstance(record, dict):
            kept = {k: v for k, v in record.items() if k not in ours and k not in theirs}
            record = {**kept, **{o: record[t] for o, t in column_map if t in record}}
        mapped.append((where, record))
    return mapped


def detect_format(records: Located, requested: str, shown: str) -> str:
    """``requested`` unless it is ``auto``; then the one format the first record's columns fit.

    Raises :class:`DataError` saying what was found and what is expected when no format fits,
    or which formats fit when several do.
    """
    if requested != "auto" or not records:
        return requested
    where, first = records[0]
    if not isinstance(first, dict):
        raise DataError(f"{where}: expected a JSON object per record, got {type(first).__name__}; {EXPECTED}")
    found = [f for f, columns in REQUIRED.items() if set(columns) <= set(first)]
    if "classification" in found:
        found.remove("text")  # text + label is classification; text alone is language modelling
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(f"{where}: columns are {list(first)}; {EXPECTED}; rename them or set column_map "
                        "(e.g. column_map: {prompt: question, completion: answer})")
    fits = "; ".join(f"{f} ({' + '.join(REQUIRED[f])})" for f in found)
    raise DataError(f"{shown}: columns {list(first)} fit several formats: {fits}; set format to one of "
                    f"{', '.join(found)} (data_options.format) or drop the extra columns")


def split_by_column(records: Located, shown: str) -> tuple[Located, Located | None]:
    """(train, held-out) records by their ``split`` column, or (records, None) when there is none.

    Held out are the validation rows (``validation``, ``eval``, ``dev``...), or the ``test`` rows
    when there are no validation rows; test rows are never trained on. Held-out is None when
    every row is ``train``. Raises :class:`DataError` for a record without a split value, with an
    unknown one, or when no record is ``train``.
    """
    if not any(isinstance(record, dict) and SPLIT_COLUMN in record for _, record in records):
        return records, None
    groups: dict[str, Located] = {"train": [], "validation": [], "test": []}
    for where, record in records:
        value = record.get(SPLIT_COLUMN) if isinstance(record, dict) else None
        name = str(value).strip().lower() if value is not None else ""
        group = next((g for g, values in (("train", TRAIN_VALUES), ("validation", VALIDATION_VALUES),
                                         ("test", TEST_VALUES)) if name in values), None)
        if group is None:
            raise DataError(f"{where}: `split` is {value!r}; use train, validation (or eval) or test in every "
                            f"record, or drop the `split` column to hold out a fraction by hash")
        groups[group].append((where, record))
    if not groups["train"]:
        have = ", ".join(f"{len(v)} {k}" for k, v in groups.items())
        raise DataError(f"{shown}: the `split` column gives {have} records and no train records; "
                        "mark the training records `train` or drop the column to hold out a fraction by hash")
    # Only train rows: like a hub dataset without a validation split, a fraction is held out by hash.
    return groups["train"], (groups["validation"] or groups["test"] or None)
