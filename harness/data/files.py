"""Read the raw records of a local data file, each with a location for error messages.

JSONL is the main format (one object per line; blank lines are skipped). ``.json`` (a list of
records), ``.csv`` (a header row naming the columns) and ``.parquet`` are accepted too. Which
columns a record needs depends on its format (see :mod:`harness.data.formats`), so nothing here
checks them. Locations are ``file:line`` for JSONL and CSV and ``file record N`` (1-based) for
JSON and Parquet.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from harness.data.examples import DataError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")

Located = list[tuple[str, Any]]
"""(location, record) pairs in file order."""


def read_records(path: Path, shown: str) -> Located:
    """Every record in ``path``; ``shown`` is how the file is named in messages.

    Raises :class:`DataError` for an unsupported suffix, text that is not UTF-8 or JSON that
    does not parse (naming the line and column).
    """
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path, shown)
    if suffix == ".json":
        return _read_json(path, shown)
    if suffix == ".csv":
        return _read_csv(path, shown)
    if suffix == ".parquet":
        return _read_parquet(path, shown)
    raise DataError(f"{shown}: unsupported file type {path.suffix or '(none)'!r}; "
                    f"use one of {', '.join(SUFFIXES)} (JSONL: one JSON object per line)")


def _text(path: Path, shown: str) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")  # tolerate a byte-order mark from Windows editors
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataError(f"{shown}:{line}: not UTF-8 text ({err.reason}); save the file as UTF-8") from None


def _read_jsonl(path: Path, shown: str) -> Located:
    records: Located = []
    for number, line in enumerate(_text(path, shown).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((f"{shown}:{number}", json.loads(line)))
        except json.JSONDecodeError as err:
            raise DataError(f"{shown}:{number}: malformed JSON at column {err.colno} ({err.msg}); "
                            "each line must be one complete JSON object") from None
    return records


def _read_json(path: Path, shown: str) -> Located:
    try:
        data = json.loads(_text(path, shown))
    except json.JSONDecodeError as err:
        raise DataError(f"{shown}:{err.lineno}: malformed JSON at column {err.colno} ({err.msg}); "
                        "fix the file or write it as JSONL") from None
    if not isinstance(data, list):
        raise DataError(f"{shown}: a .json data file must hold a list of records, got {type(data).__name__}")
    return [(f"{shown} record {i}", record) for i, record in enumerate(data, start=1)]


def _read_csv(path: Path, shown: str) -> Located:
    reader = csv.DictReader(io.StringIO(_text(path, shown), newline=""))
    records: Located = []
    try:
        for row in reader:
            # DictReader files cells beyond the header under the key None and fills short rows with None.
            if None in row or None in row.values():
                raise DataError(f"{shown}:{reader.line_num}: the row does not have the header's "
                                f"{len(reader.fieldnames or [])} cells; quote cells that contain commas")
            # line_num is the reader's line after the row, which is the row's last line (1-based).
            records.append((f"{shown}:{reader.line_num}", row))
    except csv.Error as err:
        raise DataError(f"{shown}:{reader.line_num}: malformed CSV ({err}); check the quoting") from None
    return records


def _read_parquet(path: Path, shown: str) -> Located:
    try:
        import pyarrow.parquet as pq  # optional: only Parquet files need it
    except ImportError:
        raise DataError(f"{shown}: reading .parquet needs pyarrow; pip install pyarrow or convert to JSONL") from None
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a bad file
        reason = (str(err).splitlines() or [""])[0]  # pyarrow messages can span lines
        raise DataError(f"{shown}: not a readable Parquet file ({type(err).__name__}: {reason}); "
                        "check the file or convert it to JSONL") from None
    return [(f"{shown} record {i}", row) for i, row in enumerate(table.to_pylist(), start=1)]

