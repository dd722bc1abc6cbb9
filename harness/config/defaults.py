"""The field's published LoRA / QLoRA defaults (`published_defaults.yaml`), each with its source, as
configs a study can train beside its own best ones. Read and checked here; nothing here trains."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.config.space import CORE_AXES, parse_space
from harness.config.errors import SpecError
from harness.config.training import TrainSpec

PUBLISHED = Path(__file__).resolve().parent / "published_defaults.yaml"
AXES = CORE_AXES
"""The params a published default gives: the search space's core axes."""


@dataclass(frozen=True)
class PublishedDefault:
    """One published default: its name, where it comes from, its params and training overrides."""

    name: str
    source: str
    params: dict[str, Any]
    """One value per search-space axis (quantization, lora_r, lora_alpha, learning_rate, ...)."""
    training: dict[str, Any] = field(default_factory=dict)
    """TrainSpec fields this default sets (schedule, warm-up, clipping); the study's otherwise."""

    def train_spec(self, base: TrainSpec) -> TrainSpec:
        """The study's training settings with this default's overrides."""
        return dataclasses.replace(base, **self.training)

    def skip_reason(self, dims: Any, model: str) -> str | None:
        """Why this default cannot run on a model (its rank is larger than a layer it targets), or None."""
        width, which = dims.smallest(str(self.params["target_modules"]))
        if int(self.params["lora_r"]) > width:
            return (f"r {self.params['lora_r']} is larger than the smallest targeted layer dimension of {model} "
                    f"({width}, {which})")
        return None


def load_defaults(path: Path = PUBLISHED) -> list[PublishedDefault]:
    """Parse and check the defaults file; every error names the file, the entry and the key."""
    try:
        rows = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SpecError(f"{path}: cannot read the published defaults ({type(err).__name__})") from None
    if not isinstance(rows, list) or not rows:
        raise SpecError(f"{path}: expected a non-empty list of defaults")
    out, names = [], set()
    train_fields = {f.name for f in dataclasses.fields(TrainSpec)} - {"learning_rate", "max_steps", "seed"}
    for i, row in enumerate(rows):
        where = f"{path}: entry {i + 1}"
        if not isinstance(row, dict) or not {"name", "source", "params"} <= set(row):
            raise SpecError(f"{where}: needs name, source and params")
        where = f"{path}: {row['name']}"
        if row["name"] in names:
            raise SpecError(f"{where}: the name is used twice")
        names.add(row["name"])
        unknown = set(row) - {"name", "source", "params", "training"}
        if unknown:
            raise SpecError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        params = row["params"] or {}
        if set(params) != set(AXES):
            raise SpecError(f"{where}: params must give exactly {', '.join(AXES)}")
        parse_space({"axes": params}, where)  # each value obeys the same rules as a search-space axis
        training = row.get("training") or {}
        bad = set(training) - train_fields
        if bad:
            raise SpecError(f"{where}: training.{sorted(bad)[0]} is not a setting a default can change "
                            f"(allowed: {', '.join(sorted(train_fields))})")
        TrainSpec(**training)  # value rules of the training settings
        out.append(PublishedDefault(str(row["name"]), " ".join(str(row["source"]).split()),
                                    {k: params[k] for k in AXES}, dict(training)))
    return out


SHIPPED = Path(__file__).resolve().parent / "defaults.yaml"
"""harness's own defaults (`harness defaults`' defaults.yaml, measured across models and tasks), when shipped."""


def is_harness_defaults(path: Path) -> bool:
    """Whether `path` is a defaults.yaml written by `harness defaults` (a mapping whose evidence says so), not a
    list in published_defaults.yaml's format."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(doc, dict) and bool((doc.get("evidence") or {}).get("defaults"))


def load_harness_defaults(path: Path = SHIPPED) -> list[PublishedDefault]:
    """The configs of a defaults.yaml written by `harness defaults`, one per quantization mode, as defaults named
    `harness-<mode>` (each mode's evidence.params: the candidate's params, trained with the study's own
    training settings); errors name the file and the mode."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SpecError(f"{path}: cannot read the defaults file ({type(err).__name__})") from None
    modes = (doc or {}).get("per_quantization") if isinstance(doc, dict) else None
    if not isinstance(modes, dict) or not modes:
        raise SpecError(f"{path}: not a defaults.yaml written by `harness defaults` (no per_quantization)")
    out = []
    for mode, section in modes.items():
        evidence = (section or {}).get("evidence") or {}
        params = evidence.get("params") or {}
        if not set(AXES) <= set(params):
            raise SpecError(f"{path}: per_quantization.{mode}.evidence.params must give {', '.join(AXES)}")
        parse_space({"axes": {k: params[k] for k in AXES}}, f"{path}: {mode}")
        source = f"harness defaults ({path.name}): candidate {evidence.get('candidate')}, {evidence.get('note', '')}"
        out.append(PublishedDefault(f"harness-{mode}", source.rstrip(", "), {k: params[k] for k in AXES}))
    return out
