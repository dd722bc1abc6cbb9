"""Which examples a trial trains and is scored on: a built-in task, a local file or a hub dataset, its
format, column renames and split sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.config.errors import SpecError, check

DATA_FORMATS: tuple[str, ...] = ("messages", "prompt_completion", "instruction", "text", "classification")
"""Record shapes a data file or hub dataset can have (DataSpec.format, besides `auto`)."""
DATA_COLUMNS: tuple[str, ...] = ("messages", "prompt", "completion", "instruction", "input", "output", "text",
                                 "label", "split")
"""Column names the data formats read (the keys DataSpec.column_map may map)."""


def _column_pairs(value: Any) -> tuple[tuple[str, str], ...]:
    """column_map as sorted (ours, theirs) pairs, from pairs or a mapping (YAML, JSON round trip)."""
    try:
        pairs = tuple((k, v) for k, v in (value.items() if isinstance(value, dict) else value))
    except (TypeError, ValueError):
        raise SpecError(f"column_map must map our column names to yours, e.g. {{prompt: question}}, "
                        f"got {value!r}") from None
    for ours, theirs in pairs:
        check(ours in DATA_COLUMNS, f"column_map key {ours!r} is not one of {', '.join(DATA_COLUMNS)}")
        check(isinstance(theirs, str) and theirs != "", f"column_map[{ours!r}] must be a column name, got {theirs!r}")
    check(len({ours for ours, _ in pairs}) == len(pairs), "column_map names one of our columns twice")
    check(len({theirs for _, theirs in pairs}) == len(pairs), "column_map maps two of our columns to one column")
    return tuple(sorted(pairs))


@dataclass(frozen=True)
class DataSpec:
    """Where the examples come from and how they become token sequences."""

    name: str = "stdlib-qa"
    """A built-in dataset name, a local data file (JSONL, JSON, CSV, Parquet) or folder, or a hub dataset id."""
    max_seq_len: int = 128
    """Longer examples are truncated (and counted)."""
    eval_fraction: float = 0.1
    """Held-out fraction when the data has no validation split of its own."""
    eval_size: int = 64
    """At most this many held-out examples are scored (the same ones for every trial)."""
    train_size: int = 0
    """Use at most this many training examples (0: all)."""
    completion_only_loss: bool = True
    """Train and score only on the completion (assistant) tokens."""
    format: str = "auto"
    """Record shape of a file or hub dataset: `auto` (detected from its columns) or one of DATA_FORMATS."""
    column_map: tuple[tuple[str, str], ...] = ()
    """(our column name, the data's column name) pairs, e.g. (("prompt", "question"),); YAML may give a mapping."""
    system_prompt: str | None = None
    """Prepended as a system message to every prompt that has none (needs a chat template)."""
    template: str | None = None
    """Classification prompt with `{text}` and optionally `{labels}`; None: DEFAULT_TEMPLATE in harness.data."""

    def __post_init__(self) -> None:
        check(isinstance(self.name, str) and self.name.strip() != "", "data must be a name or a file path")
        check(self.format in ("auto",) + DATA_FORMATS,
               f"format {self.format!r} is not one of auto, {', '.join(DATA_FORMATS)}")
        object.__setattr__(self, "column_map", _column_pairs(self.column_map))  # frozen: normalise once
        for key in ("system_prompt", "template"):
            value = getattr(self, key)
            check(value is None or (isinstance(value, str) and value.strip() != ""),
                   f"{key} must be a non-empty string or null, got {value!r}")
        check(isinstance(self.max_seq_len, int) and self.max_seq_len >= 8,
               f"max_seq_len must be an integer >= 8, got {self.max_seq_len!r}")
        check(0.0 < self.eval_fraction < 1.0, f"eval_fraction must be in (0, 1), got {self.eval_fraction!r}")
        check(isinstance(self.eval_size, int) and self.eval_size >= 1,
               f"eval_size must be a positive integer, got {self.eval_size!r}")
        check(isinstance(self.train_size, int) and self.train_size >= 0,
               f"train_size must be a non-negative integer, got {self.train_size!r}")
