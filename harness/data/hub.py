"""Records of a Hugging Face dataset: a hub id (``org/name``) or a local dataset folder.

``datasets`` is imported only here and only when such a dataset is named; it honours
``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` itself and reads from its cache when offline. The
dataset's own ``validation`` split (or ``test`` when it has none) is held out; otherwise the
caller holds out a fraction of ``train`` by hash. ``ClassLabel`` columns come back as their
label names, so a classification prompt lists words rather than integers.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from harness.data.examples import DataError
from harness.data.formats import Located

TRAIN_SPLITS = ("train",)
EVAL_SPLITS = ("validation", "valid", "dev", "test")  # the first one present is held out


def hub_records(name: str, builtins: list[str]) -> tuple[Located, Located | None]:
    """(train records, held-out records or None) of dataset ``name``.

    ``builtins`` only feeds the error message. Raises :class:`DataError` (one line) when the
    dataset cannot be loaded, e.g. offline and not cached, or has no train split.
    """
    from harness.runtime.online import hub_offline

    folder = Path(name).expanduser().is_dir()
    if not folder:
        hub_offline()  # before datasets is imported: an unreachable hub turns offline mode on, not 25 s of retries
    try:
        import datasets
    except ImportError:
        raise DataError(f"dataset {name!r} is not a built-in ({', '.join(builtins)}) or a local file, and reading "
                        "hub datasets needs the `datasets` package: pip install datasets") from None
    try:
        loaded = _load(datasets, name, folder)
    except Exception as err:  # datasets raises many types: connection, not found, bad files
        reason = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"
        if folder:
            raise DataError(f"data folder {name!r}: Hugging Face datasets cannot read it ({reason}); "
                            "give a data file (.jsonl, .json, .csv, .parquet) instead") from None
        close = difflib.get_close_matches(name, builtins, n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"dataset {name!r} is not a built-in ({', '.join(builtins)}){hint}, not a local file, and "
                        f"cannot be fetched from the Hugging Face hub (offline?): {reason}") from None
    if isinstance(loaded, datasets.Dataset):  # load_from_disk of a single split
        loaded = {"train": loaded}
    train_name = next((s for s in TRAIN_SPLITS if s in loaded), None)
    if train_name is None:
        raise DataError(f"dataset {name!r} has splits {sorted(loaded)} but no `train` split to fine-tune on")
    eval_name = next((s for s in EVAL_SPLITS if s in loaded), None)
    train = _rows(datasets, loaded[train_name], name, train_name)
    if not train:
        raise DataError(f"dataset {name!r}: its {train_name} split has no rows")
    return train, (_rows(datasets, loaded[eval_name], name, eval_name) if eval_name else None)


def _load(datasets: Any, name: str, folder: bool) -> Any:
    """``load_from_disk`` for a ``save_to_disk`` folder, else ``load_dataset``; progress bars off."""
    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # restored below: the caller's settings are not ours to change
    try:
        path = Path(name).expanduser()
        if folder and any((path / marker).is_file() for marker in ("dataset_dict.json", "state.json")):
            return datasets.load_from_disk(str(path))
        return datasets.load_dataset(str(path) if folder else name)
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


def _rows(datasets: Any, split: Any, name: str, split_name: str) -> Located:
    """(location, row) pairs; ``name train[12]`` is the row ``dataset["train"][12]``."""
    names = {column: feature.int2str for column, feature in split.features.items()
             if isinstance(feature, datasets.ClassLabel)}
    rows = []
    for index, row in enumerate(split):
        for column, to_name in names.items():
            if row[column] is not None and row[column] >= 0:  # -1 marks an unlabelled row
                row[column] = to_name(row[column])
        rows.append((f"{name} {split_name}[{index}]", row))
    return rows
