"""Experiment YAML (`experiments/<name>.yaml`) + command-line flags -> a validated SweepSpec.

The merge is `{**defaults, **file, **flags}`; an unknown key is an error naming the file and key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any


from harness.config.dataset import DataSpec
from harness.config.errors import SpecError
from harness.config.evaluation import EvalSpec
from harness.config.files import load_mapping
from harness.config.sweep import SweepSpec
from harness.config.training import TrainSpec

# Nested sections of an experiment file and the config type each one builds.
SECTIONS: dict[str, type] = {"train": TrainSpec, "data_options": DataSpec, "eval": EvalSpec}
FIELD_OF_SECTION = {"train": "train", "data_options": "data_spec", "eval": "eval"}
_FLAT = {f.name for f in dataclasses.fields(SweepSpec)} - set(FIELD_OF_SECTION.values())
PACKAGED_SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


def load_experiment(path: str | Path) -> dict[str, Any]:
    """Read an experiment file into SweepSpec keyword arguments (sections stay mappings)."""
    path = Path(path)
    data = load_mapping(path, missing=f"experiment file {path} does not exist",
                        not_mapping=f"{path}: expected a mapping of settings", empty_ok=True)
    for key, value in data.items():
        if key not in _FLAT and key not in SECTIONS:
            raise SpecError(f"{path}: unknown key {key!r} (allowed: {', '.join(sorted(_FLAT | set(SECTIONS)))})")
        if key in SECTIONS and not isinstance(value, dict):
            raise SpecError(f"{path}: {key} must be a mapping")
    data.setdefault("study", path.stem)
    return data


def build_sweep_spec(file_values: dict[str, Any], flags: dict[str, Any], source: str = "flags") -> SweepSpec:
    """Merge defaults, file values and flags (None means "not given") into a SweepSpec."""
    merged = {**file_values, **{k: v for k, v in flags.items() if v is not None}}
    kwargs: dict[str, Any] = {}
    for key, value in merged.items():
        if key in SECTIONS:
            kwargs[FIELD_OF_SECTION[key]] = _section(key, value, source)
        elif key == "objectives" and isinstance(value, str):
            kwargs[key] = tuple(v.strip() for v in value.split(",") if v.strip())
        elif key == "objectives":
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    try:
        return SweepSpec(**kwargs)
    except TypeError as err:
        raise SpecError(f"{source}: {err}") from None
    except SpecError as err:
        if source == "flags":
            raise
        raise SpecError(f"{source} (or a flag): {err}") from None


def _section(name: str, values: dict[str, Any], source: str) -> Any:
    cls = SECTIONS[name]
    allowed = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in allowed:
            raise SpecError(f"{source}: {name}.{key} is not a setting (allowed: {', '.join(sorted(allowed))})")
    try:
        return cls(**values)
    except SpecError as err:
        raise SpecError(f"{source}: {name}: {err}") from None


def resolve_space(name: str) -> Path:
    """A search-space path, or a name found in ./search_spaces/ or the copy shipped with harness."""
    path = Path(name)
    if path.is_file():
        return path
    for folder in (Path("search_spaces"), PACKAGED_SPACES):
        candidate = folder / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in PACKAGED_SPACES.glob("*.yaml")) if PACKAGED_SPACES.exists() else []
    raise SpecError(f"search space {name!r} not found (a file path, or one of: {', '.join(known) or 'none'})")


def spec_to_dict(spec: SweepSpec) -> dict[str, Any]:
    """A SweepSpec as the experiment-file mapping (stored in the study so workers can join it)."""
    data = dataclasses.asdict(spec)
    for section, field_name in FIELD_OF_SECTION.items():
        data[section] = data.pop(field_name)
    data["objectives"] = list(spec.objectives)
    return data
