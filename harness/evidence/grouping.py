"""How `harness compare --by AXIS[,AXIS...]` splits a study's trials into groups to compare.

The default is by quantization mode (LoRA vs QLoRA); any categorical axis works, and several axes
group by their combination (the variants of `search_spaces/variants.yaml`). A trial that has no param
for an axis (a conditional axis whose condition did not hold, an optional axis the space left out) is
grouped at the value it trained with: the LoraSpec default for a LoRA axis, the study's `train:`
setting for a training axis. The reference group, which every other group is compared with, is the
one at every axis's default (16-bit for quantization, plain LoRA for the variant axes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.config.space import AXIS_NAMES, TRAIN_AXES, axis_default
from harness.config.errors import SpecError
from harness.config.training import TrainSpec

BY_MODE = ("quantization",)


@dataclass(frozen=True)
class Grouping:
    """The axes trials are grouped by and the value each axis has where a trial does not record it."""

    axes: tuple[str, ...]
    defaults: dict[str, Any]

    @property
    def by_mode(self) -> bool:
        """Grouped by quantization mode alone: the LoRA vs QLoRA comparison (untuned costs, weight memory)."""
        return self.axes == BY_MODE

    @property
    def name(self) -> str:
        return ", ".join(self.axes)

    def values(self, params: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(params.get(axis, self.defaults[axis]) for axis in self.axes)

    def key(self, params: dict[str, Any]) -> str:
        """The group of a trial's params: the quantization mode itself, else `axis=value, ...`."""
        if self.by_mode:
            return str(params.get("quantization", "none"))
        return ", ".join(f"{a}={_show(v)}" for a, v in zip(self.axes, self.values(params)))

    @property
    def reference(self) -> str:
        """The key of the group at every axis's default."""
        return self.key({})

    def label(self, params: dict[str, Any]) -> str:
        """A short name: the axes away from their default (`use_dora=true`); the reference group is its one
        axis and value (`use_dora=false`), or `defaults` when grouped by several axes."""
        changed = [f"{a}={_show(v)}" for a, v in zip(self.axes, self.values(params)) if v != self.defaults[a]]
        if changed:
            return ", ".join(changed)
        return self.key({}) if len(self.axes) == 1 else "defaults"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def grouping(by: str | tuple[str, ...] | None, sweep: dict[str, Any], space: dict[str, Any] | None = None) -> Grouping:
    """The grouping for `--by` (comma-separated axis names; None: quantization), checked: each axis must be
    a search-space axis and, where the study recorded its space, one with choices (a continuous range would
    make one group per trial)."""
    axes = BY_MODE if not by else tuple(a.strip() for a in (by.split(",") if isinstance(by, str) else by) if a.strip())
    if not axes:
        raise SpecError("--by needs at least one axis name, e.g. --by use_dora")
    for axis in axes:
        if axis not in AXIS_NAMES:
            raise SpecError(f"--by {axis}: not a search-space axis (axes: {', '.join(AXIS_NAMES)})")
        described = (space or {}).get(axis)
        if isinstance(described, dict) and "low" in described and not (described.get("step") or described.get("int")):
            raise SpecError(f"--by {axis}: the study searched it as a continuous range; group by an axis with "
                            "choices (use_dora, init_lora_weights, quantization, ...)")
    if len(set(axes)) != len(axes):
        raise SpecError(f"--by {','.join(axes)}: an axis is named twice")
    return Grouping(axes, {axis: default_value(axis, sweep) for axis in axes})


def default_value(axis: str, sweep: dict[str, Any]) -> Any:
    """What a trial without a param for `axis` trained with."""
    if axis in TRAIN_AXES:
        train = sweep.get("train") or {}
        return train.get(TRAIN_AXES[axis], getattr(TrainSpec(), TRAIN_AXES[axis]))
    return axis_default(axis)
