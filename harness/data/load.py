"""``load_examples``: a :class:`DataSpec` in, a fixed train/eval split out.

Both splits come back in *hash order* of a per-example key (the qualified name for
``stdlib-qa``, the record's canonical JSON for files). That order is the same on every run and
machine, and its first N examples (``eval_size``, ``train_size``) are a spread-out sample
rather than the first module or the head of a file sorted by topic.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness.data import stdlib_qa
from harness.data.examples import DataError, Example, Splits
from harness.data.files import SUFFIXES, read_records
from harness.data.records import parse_record
from harness.spec import DataSpec, stable_hash

_HASH_SPACE = 16**16  # stable_hash returns 16 hex digits


def builtin_names() -> list[str]:
    """Names ``DataSpec.name`` accepts besides a file path."""
    return [stdlib_qa.NAME]


def load_examples(spec: DataSpec) -> Splits:
    """The train and eval examples that ``spec`` names, capped by its sizes.

    ``spec.name`` is a built-in name (see :func:`builtin_names`) or a local data file. A file has
    no validation split of its own, so ``spec.eval_fraction`` of its records is held out by
    stable hash (at least one in each split); ``stdlib-qa`` holds out by function name and
    ignores ``eval_fraction``. ``spec.eval_size`` caps the eval split and ``spec.train_size``
    (0: all) the train split, both by taking the first examples in hash order.
    Raises :class:`DataError` for a missing or malformed file or too few usable examples.
    """
    if spec.name in builtin_names():
        train, held_out = _stdlib_split()
        source = stdlib_qa.stdlib_source()
    else:
        path, shown = _resolve(spec.name)
        train, held_out = _file_split(path, shown, spec.eval_fraction)
        source = str(path)
    held_out = held_out[: spec.eval_size]
    if spec.train_size:
        train = train[: spec.train_size]
    split_hash = stable_hash([[example.prompt, example.completion] for example in held_out])
    return Splits(train=train, eval=held_out, source=source, split_hash=split_hash)


def _stdlib_split() -> tuple[list[Example], list[Example]]:
    rows = sorted(stdlib_qa.build_stdlib_qa(), key=lambda row: hashlib.sha256(row[0].encode()).hexdigest())
    train = [example for name, example in rows if not stdlib_qa.is_held_out(name)]
    held_out = [example for name, example in rows if stdlib_qa.is_held_out(name)]
    return train, held_out


def _resolve(name: str) -> tuple[Path, str]:
    """The data file's resolved path and the name to show in messages."""
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve(), name
    if path.exists():
        raise DataError(f"data {name!r} is a directory; give a data file ({', '.join(SUFFIXES)})")
    if path.suffix.lower() in SUFFIXES or "/" in name:
        raise DataError(f"data file {name!r} not found (looked at {path.resolve()}); check the path")
    raise DataError(f"data {name!r} is neither a built-in dataset ({', '.join(builtin_names())}) "
                    f"nor an existing file; give a path to a .jsonl file")


def _file_split(path: Path, shown: str, eval_fraction: float) -> tuple[list[Example], list[Example]]:
    """Hold out records whose hash falls below ``eval_fraction``, keeping one in each split."""
    records = read_records(path, shown)
    if not records:
        raise DataError(f"{shown}: the file has no records; add {{\"prompt\": ..., \"completion\": ...}} lines")
    keyed = []
    for where, record in records:
        example = parse_record(record, where)
        if example is not None:
            keyed.append((stable_hash(record), example))
    if len(keyed) < 2:
        raise DataError(f"{shown}: {len(keyed)} usable example(s) in {len(records)} record(s) "
                        "(blank completions are skipped); need at least 2, one to train and one to evaluate")
    keyed.sort(key=lambda pair: pair[0])
    # Records in hash order: the held-out ones are a prefix, clamped to leave one in each split.
    n_eval = sum(int(key, 16) / _HASH_SPACE < eval_fraction for key, _ in keyed)
    n_eval = min(max(n_eval, 1), len(keyed) - 1)
    examples = [example for _, example in keyed]
    return examples[n_eval:], examples[:n_eval]
