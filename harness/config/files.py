"""YAML files a user writes (experiment files, other tools' configs, recommended.yaml), read into a mapping
with the one-line SpecError of each way it can be wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.config.errors import SpecError


def load_mapping(path: Path, *, missing: str, not_mapping: str, empty_ok: bool = False) -> dict[str, Any]:
    """The YAML mapping in `path`. `missing` is the error when the file does not exist, `not_mapping` when it
    holds something else (an empty file is an empty mapping with `empty_ok`)."""
    if not path.is_file():
        raise SpecError(missing)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {getattr(err, 'problem', err)}") from None
    if data is None and empty_ok:
        return {}
    if not isinstance(data, dict):
        raise SpecError(not_mapping)
    return data
