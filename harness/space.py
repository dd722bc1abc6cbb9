"""Search spaces as data: `search_spaces/*.yaml` -> validated axes -> Optuna distributions.

A file looks like::

    description: what this space is for
    axes:
      lora_r: {choices: [8, 16, 32]}             # categorical
      lora_alpha: {ratio: {choices: [1, 2]}}     # tied axis: alpha = ratio * r (recorded as lora_alpha)
      learning_rate: {low: 1.0e-5, high: 5.0e-4, log: true}
      quantization: {choices: [none, nf4-dq]}
      lora_dropout: 0.0                          # a bare value fixes the axis
      target_modules: all-linear

Every axis is parsed and checked before any model loads; an axis that is left out is fixed at
its default, and every axis is still recorded as an Optuna param of every trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.spec import LoraSpec, QuantSpec, SpecError, TrainSpec, stable_hash

# axis -> (value type, the config type and field it sets). The default of an axis the file leaves out,
# and the rules a value must follow, are those of that field (spec.py is their only home).
_AXES: dict[str, tuple[type, type, str]] = {
    "lora_r": (int, LoraSpec, "r"),
    "lora_alpha": (float, LoraSpec, "alpha"),
    "learning_rate": (float, TrainSpec, "learning_rate"),
    "quantization": (str, QuantSpec, "mode"),
    "lora_dropout": (float, LoraSpec, "dropout"),
    "target_modules": (str, LoraSpec, "targets"),
}
_TOP_KEYS = {"description", "axes"}
_RANGE_KEYS = {"low", "high", "step", "log"}


def _default(name: str) -> Any:
    """An axis's value when the space file leaves it out: its config field's default."""
    _, config, field_name = _AXES[name]
    return getattr(config(), field_name)


def _value_error(name: str, value: Any) -> str | None:
    """Why a value cannot be an axis's value (its config type refuses it), or None."""
    if name not in _AXES:
        return None
    _, config, field_name = _AXES[name]
    try:
        config(**{field_name: value})
    except SpecError as err:
        return str(err)
    return None


@dataclass(frozen=True)
class Axis:
    """One searchable (or fixed) parameter: choices, or a low/high range (int or float, maybe log)."""

    name: str
    kind: str
    """`choices` or `range`."""
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    integer: bool = False

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choices":
            return CategoricalDistribution(list(self.choices))
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def values(self) -> list[Any] | None:
        """All values, when the axis is discrete (for grid search); None for a continuous range."""
        if self.kind == "choices":
            return list(self.choices)
        if self.integer:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step:
            count = int(round((self.high - self.low) / self.step))
            return [min(self.low + i * self.step, self.high) for i in range(count + 1)]  # 0.1*3 > 0.3
        return None

    def largest(self) -> float:
        return max(self.choices) if self.kind == "choices" else self.high

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "choices":
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "step": self.step, "log": self.log, "int": self.integer}


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; `alpha_ratio` set means lora_alpha = ratio * lora_r."""

    source: str
    axes: dict[str, Axis]
    alpha_ratio: Axis | None = None
    description: str = ""

    @property
    def hash(self) -> str:
        """Stable across runs: stored in the study so a resume with another space is refused."""
        payload = {name: axis.to_dict() for name, axis in sorted(self.axes.items())}
        if self.alpha_ratio is not None:
            payload["lora_alpha_ratio"] = self.alpha_ratio.to_dict()
        return stable_hash(payload)

    def describe(self) -> dict[str, Any]:
        out = {name: axis.to_dict() for name, axis in self.axes.items()}
        if self.alpha_ratio is not None:
            out["lora_alpha"] = {"ratio_of_r": self.alpha_ratio.to_dict()}
        return out

    def grid(self) -> dict[str, list[Any]]:
        """The grid for GridSampler; every axis must be discrete."""
        grid: dict[str, list[Any]] = {}
        named = dict(self.axes)
        if self.alpha_ratio is not None:
            named["lora_alpha_ratio"] = self.alpha_ratio
        for name, axis in named.items():
            values = axis.values()
            if values is None:
                raise SpecError(f"{self.source}: {name}: grid search needs discrete values; "
                                "give {choices: [...]} or a step")
            grid[name] = values
        return grid

    def max_rank(self) -> int:
        return int(self.axes["lora_r"].largest())

    def quantization_modes(self) -> list[str]:
        """The quantization modes trials of this space can use (a fixed value is one mode)."""
        axis = self.axes.get("quantization")
        return [str(v) for v in (axis.values() or [])] if axis is not None else ["none"]


def load_space(path: str | Path) -> SearchSpace:
    """Parse and validate a search-space YAML file; every error names the file and key."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"search space file {path} does not exist (see search_spaces/ for examples)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{path}:{where} is not valid YAML: {getattr(err, 'problem', err)}") from None
    return parse_space(data, str(path))


def parse_space(data: Any, source: str = "<space>") -> SearchSpace:
    """Validate a search-space mapping (the parsed YAML)."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping with an `axes` key")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise SpecError(f"{source}: unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(_TOP_KEYS))})")
    axes_data = data.get("axes") or {}
    if not isinstance(axes_data, dict):
        raise SpecError(f"{source}: axes must be a mapping of axis name to values")
    for name in axes_data:
        if name not in _AXES:
            raise SpecError(f"{source}: unknown axis {name!r} (allowed: {', '.join(_AXES)})")
    axes: dict[str, Axis] = {}
    ratio = None
    for name, (kind, _, _) in _AXES.items():
        raw = axes_data.get(name, _default(name))
        if name == "lora_alpha" and isinstance(raw, dict) and "ratio" in raw:
            if set(raw) != {"ratio"}:
                raise SpecError(f"{source}: lora_alpha: give either ratio or values, not both")
            ratio = _parse_axis(f"{source}: lora_alpha.ratio", "lora_alpha", raw["ratio"], float)
            continue
        axes[name] = _parse_axis(f"{source}: {name}", name, raw, kind)
    return SearchSpace(source, axes, ratio, str(data.get("description", "")))


def _article(kind: type) -> str:
    return {"int": "an integer", "float": "a number", "str": "text"}[kind.__name__]


def _coerce(where: str, name: str, value: Any, kind: type) -> Any:
    """Check a value's type (YAML reads 1e-5 as a string, so numeric strings are accepted)."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        raise SpecError(f"{where}: {value!r} is not {_article(kind)}")
    if kind is str:
        out: Any = str(value)
    else:
        try:
            out = kind(float(value)) if kind is float else int(value)
        except (TypeError, ValueError):
            raise SpecError(f"{where}: {value!r} is not {_article(kind)}") from None
        if kind is int and float(value) != out:
            raise SpecError(f"{where}: {value!r} is not an integer")
        if kind is float and not math.isfinite(out):
            raise SpecError(f"{where}: {value!r} is not a finite number")
    problem = _value_error(name, out)
    if problem:
        raise SpecError(f"{where}: {problem}")
    return out


def _parse_axis(where: str, name: str, raw: Any, kind: type) -> Axis:
    if not isinstance(raw, dict):
        return Axis(name, "choices", (_coerce(where, name, raw, kind),))
    keys = set(raw)
    if "choices" in keys:
        if keys != {"choices"}:
            raise SpecError(f"{where}: choices cannot be mixed with {sorted(keys - {'choices'})[0]}")
        choices = raw["choices"]
        if not isinstance(choices, list) or not choices:
            raise SpecError(f"{where}: choices must be a non-empty list")
        values = tuple(_coerce(where, name, v, kind) for v in choices)
        if len(set(values)) != len(values):
            raise SpecError(f"{where}: choices has duplicates")
        return Axis(name, "choices", values)
    unknown = keys - _RANGE_KEYS
    if unknown:
        raise SpecError(f"{where}: unknown key {sorted(unknown)[0]!r} (use choices, or low/high/step/log)")
    if kind is str:
        raise SpecError(f"{where}: a text axis takes a value or {{choices: [...]}}, not a range")
    return _parse_range(where, name, raw, kind)


def _parse_range(where: str, name: str, raw: dict[str, Any], kind: type) -> Axis:
    if "low" not in raw or "high" not in raw:
        raise SpecError(f"{where}: a range needs both low and high")
    low, high = (_coerce(f"{where}.{k}", name, raw[k], kind) for k in ("low", "high"))
    if low >= high:
        raise SpecError(f"{where}: low ({low}) must be < high ({high})")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise SpecError(f"{where}.log: expected true or false, got {log!r}")
    step = raw.get("step")
    if step is not None:
        step = _coerce(f"{where}.step", "", step, kind)
        if step <= 0:
            raise SpecError(f"{where}.step: must be > 0")
        if log:
            raise SpecError(f"{where}: step and log cannot be combined")
    if log and low <= 0:
        raise SpecError(f"{where}: log scale needs low > 0")
    return Axis(name, "range", low=low, high=high, step=step, log=log, integer=kind is int)


def check_rank_fits(space: SearchSpace, dims: Any, model_name: str) -> None:
    """Refuse a space whose largest r exceeds the smallest width among the layers it targets."""
    for preset in space.axes["target_modules"].values() or []:
        width, which = dims.smallest(preset)
        if space.max_rank() > width:
            raise SpecError(f"{space.source}: lora_r: {space.max_rank()} is larger than the smallest "
                            f"targeted layer dimension of {model_name} ({width}, {which}, "
                            f"target_modules {preset}); lower the largest r to <= {width}")


def suggest(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """Ask an Optuna trial for one value per axis; returns the params (lora_alpha always included)."""
    params = {name: _suggest_axis(trial, axis) for name, axis in space.axes.items() if name != "lora_alpha"}
    if space.alpha_ratio is not None:
        ratio = _suggest_axis(trial, space.alpha_ratio, "lora_alpha_ratio")
        alpha = float(ratio * params["lora_r"])
        # A single-point distribution records the derived value as the `lora_alpha` param.
        params["lora_alpha"] = trial.suggest_float("lora_alpha", alpha, alpha)
    else:
        params["lora_alpha"] = _suggest_axis(trial, space.axes["lora_alpha"])
    return params


def _suggest_axis(trial: Any, axis: Axis, name: str | None = None) -> Any:
    name = name or axis.name
    if axis.kind == "choices":
        return trial.suggest_categorical(name, list(axis.choices))
    if axis.integer:
        return trial.suggest_int(name, int(axis.low), int(axis.high), step=int(axis.step or 1), log=axis.log)
    return trial.suggest_float(name, axis.low, axis.high, step=axis.step, log=axis.log)
