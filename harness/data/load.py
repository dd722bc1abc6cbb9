"""``load_examples``: a :class:`DataSpec` in, a fixed train/eval split out.

Three kinds of source, tried in this order: a built-in task (:mod:`harness.data.builtins`), a
local file or dataset folder, and a Hugging Face hub dataset id. For files and hub datasets the
records go through the same steps: rename columns (``column_map``), take the dataset's own
split (a ``split`` column, or the hub's ``validation``/``test`` split) or else hold out
``eval_fraction`` by hash, detect the format, parse every record, render classification
prompts and add the system prompt. Every check runs here, before any model is loaded.

Both splits come back in *hash order* of a per-example key (the qualified name for
``stdlib-qa``, the record's canonical JSON for files). That order is the same on every run and
machine, and its first N examples (``eval_size``, ``train_size``) are a spread-out sample
rather than the first module or the head of a file sorted by topic.
"""

from __future__ import annotations

from pathlib import Path

from harness.data import classify
from harness.data.builtins import TASKS, builtin_names
from harness.data.examples import DataError, Example, Splits
from harness.data.files import SUFFIXES, read_records
from harness.data.formats import Located, detect_format, map_columns, split_by_column
from harness.data.hub import hub_records
from harness.data.records import Labeled, parse_record
from harness.config.dataset import DataSpec
from harness.config.hashing import stable_hash

_HASH_SPACE = 16**16  # stable_hash returns 16 hex digits
MAX_NEW_TOKENS_CAP = 256  # generation budget ceiling for data with long answers
SHORT_ANSWER_WORDS = 10  # exact match is a fair metric only when every answer is this short

Keyed = list[tuple[str, Example | Labeled]]
"""(stable hash of the record, parsed record) pairs."""


def load_examples(spec: DataSpec) -> Splits:
    """The train and eval examples that ``spec`` names, capped by its sizes.

    ``spec.name`` is a built-in name (see :func:`builtin_names`), a local data file or dataset
    folder, or a hub dataset id. Data without a validation split of its own has
    ``spec.eval_fraction`` of its records held out by stable hash (at least one in each split);
    built-ins have fixed splits. ``spec.eval_size`` caps the eval split and ``spec.train_size``
    (0: all) the train split, both by taking the first examples in hash order. Raises
    :class:`DataError` (one line, naming the file, record and column) for any unusable input.
    """
    splits = _builtin(spec) if spec.name in TASKS else _external(spec)
    held_out = splits.eval[: spec.eval_size]
    train = splits.train[: spec.train_size] if spec.train_size else splits.train
    split_hash = stable_hash([[example.prompt, example.completion] for example in held_out])
    return Splits(train=train, eval=held_out, source=splits.source, split_hash=split_hash, format=splits.format,
                  metrics=splits.metrics, max_new_tokens=splits.max_new_tokens, labels=splits.labels)


def _builtin(spec: DataSpec) -> Splits:
    task = TASKS[spec.name]
    given = [key for key, value in (("format", spec.format != "auto"), ("column_map", spec.column_map),
                                    ("template", spec.template)) if value]
    if given:  # a setting that would be silently ignored is an error
        raise DataError(f"data {spec.name!r} is a built-in task; {', '.join(given)} only apply to data files "
                        "and hub datasets: remove them")
    train, held_out = task.build(0)
    if spec.system_prompt:
        train, held_out = _with_system(train, spec), _with_system(held_out, spec)
    return Splits(train, held_out, source=task.source(0), split_hash="", format=task.format,
                  metrics=task.metrics, max_new_tokens=task.max_new_tokens, labels=task.labels)


def _external(spec: DataSpec) -> Splits:
    train_records, held_records, source, shown = _records(spec.name)
    train_records = map_columns(train_records, spec.column_map, shown)
    if held_records is None:
        train_records, held_records = split_by_column(train_records, shown)
    else:
        held_records = map_columns(held_records, spec.column_map, shown)
    fmt = detect_format(train_records, spec.format, shown)
    if spec.template and fmt != "classification":
        raise DataError(f"{shown}: a template applies to classification data (`text` + `label`) but this data is "
                        f"in {fmt} format; drop the template or set format: classification")
    train_keyed = _parse(train_records, fmt)
    if held_records is None:
        train_keyed, held_keyed = _hash_split(train_keyed, spec.eval_fraction, shown, len(train_records))
    else:
        held_keyed = _parse(held_records, fmt)
        _need_usable(shown, train_keyed, len(train_records), "train")
        _need_usable(shown, held_keyed, len(held_records), "held-out")
    train, held_out = [item for _, item in train_keyed], [item for _, item in held_keyed]
    labels: tuple[str, ...] = ()
    if fmt == "classification":
        train, held_out, labels = classify.render(train, held_out, spec.template or classify.DEFAULT_TEMPLATE, shown)
    if spec.system_prompt:
        train, held_out = _with_system(train, spec, shown), _with_system(held_out, spec, shown)
    metrics, budget = _scoring(fmt, train + held_out)
    return Splits(train, held_out, source=source, split_hash="", format=fmt, metrics=metrics,
                  max_new_tokens=budget, labels=labels)


def _records(name: str) -> tuple[Located, Located | None, str, str]:
    """(train records, held-out records or None, source, name shown in messages) of a file or hub dataset."""
    path = Path(name).expanduser()
    if path.is_file():
        records = read_records(path, name)
        if not records:
            raise DataError(f"{name}: the file has no records; add records such as "
                            "{\"prompt\": ..., \"completion\": ...} (one JSON object per line for .jsonl)")
        return records, None, str(path.resolve()), name
    if path.is_dir():
        train, held_out = hub_records(name, builtin_names())
        return train, held_out, str(path.resolve()), name
    # A hub id is `name` or `org/name`; anything else that looks like a path is a missing file.
    if path.suffix.lower() in SUFFIXES or name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name:
        raise DataError(f"data file {name!r} not found (looked at {path.resolve()}); check the path")
    train, held_out = hub_records(name, builtin_names())
    return train, held_out, f"hub dataset {name}", name


def _parse(records: Located, fmt: str) -> Keyed:
    """The usable records, parsed, keyed by the stable hash of the raw record, in hash order."""
    keyed = []
    for where, record in records:
        item = parse_record(record, where, fmt)
        if item is not None:
            keyed.append((stable_hash(record), item))
    return sorted(keyed, key=lambda pair: pair[0])


def _need_usable(shown: str, keyed: Keyed, n_records: int, split: str) -> None:
    if not keyed:
        raise DataError(f"{shown}: no usable {split} example in {n_records} {split} record(s) (blank answers and "
                        "texts are skipped); add records with a non-blank answer")


def _hash_split(keyed: Keyed, eval_fraction: float, shown: str, n_records: int) -> tuple[Keyed, Keyed]:
    """Hold out records whose hash falls below ``eval_fraction``, keeping one in each split."""
    if len(keyed) < 2:
        raise DataError(f"{shown}: {len(keyed)} usable example(s) in {n_records} record(s) "
                        "(blank completions are skipped); need at least 2, one to train and one to evaluate")
    # Records in hash order: the held-out ones are a prefix, clamped to leave one in each split.
    n_eval = sum(int(key, 16) / _HASH_SPACE < eval_fraction for key, _ in keyed)
    n_eval = min(max(n_eval, 1), len(keyed) - 1)
    return keyed[n_eval:], keyed[:n_eval]


def _with_system(examples: list[Example], spec: DataSpec, shown: str | None = None) -> list[Example]:
    """``spec.system_prompt`` first in every prompt that has no system message of its own."""
    system = {"role": "system", "content": spec.system_prompt or ""}
    out = []
    for example in examples:
        if not example.prompt:
            raise DataError(f"{shown or spec.name}: system_prompt does not apply to plain text data (no prompt to "
                            "put it in front of); remove it")
        has_system = any(message["role"] == "system" for message in example.prompt)
        out.append(example if has_system else Example([system, *example.prompt], example.completion))
    return out


def _scoring(fmt: str, examples: list[Example]) -> tuple[tuple[str, ...], int]:
    """(task metrics, max_new_tokens) that fit answers like these; plain text has nothing to generate."""
    if fmt == "text":
        return (), 0
    words = max(len(example.completion.split()) for example in examples)
    budget = min(MAX_NEW_TOKENS_CAP, 2 * words + 8)  # about 1.3 tokens per English word, plus slack
    if fmt == "classification":
        return ("accuracy",), budget
    if words <= SHORT_ANSWER_WORDS:
        return ("exact_match", "token_f1", "rouge_l"), budget
    return ("token_f1", "rouge_l"), budget
