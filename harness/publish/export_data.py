"""What an export needs to know about the study's data to write each tool's data section: the file's record
format (from recommended.yaml, else read from the file's first record) and the prompt format the trials used
(from the study's tokenizer, when it is on this machine). Neither is required: an export without them says so."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.config.tools.settings import Tuned
from harness.data.examples import DataError
from harness.data.files import SUFFIXES, read_records
from harness.data.formats import detect_format, map_columns


def with_data(tuned: Tuned) -> Tuned:
    """`tuned` with data_format, data_path and frame filled in where they can be found here."""
    path = Path(tuned.data or "")
    found = path.is_file() and path.suffix.lower() in SUFFIXES
    fmt = tuned.data_format if tuned.data_format not in (None, "auto") else None
    if fmt is None and found:
        try:
            first = map_columns(read_records(path, str(path))[:1], tuned.column_map, str(path))
            fmt = detect_format(first, "auto", str(path))
        except DataError:
            fmt = None
    return dataclasses.replace(tuned, data_format=fmt, data_path=str(path.resolve()) if found else None,
                               frame=study_frame(tuned.model, tuned.system_prompt))


def study_frame(model: str | None, system: str | None = None) -> tuple[str, str, str] | None:
    """harness.data.encode.prompt_frame of the study's tokenizer (with the study's system prompt), when it is at
    hand (a built-in already converted, a local folder, a cached hub model); None otherwise (nothing is
    converted for an export)."""
    if not model:
        return None
    try:
        from harness.data.encode import prompt_frame
        from harness.trial.models import checkpoint_path, is_converted, load_tokenizer, resolve_model

        resolved = resolve_model(model)
        if not is_converted(resolved):
            return None
        return prompt_frame(load_tokenizer(checkpoint_path(resolved)), system=system)
    except Exception:  # an export never fails for want of a tokenizer: it says the format is unknown
        return None
