"""Search spaces as data: `search_spaces/*.yaml` -> validated axes -> Optuna distributions.

A file looks like::

    description: what this space is for
    axes:
      lora_r: {choices: [8, 16, 32]}             # categorical
      lora_alpha: {ratio: {choices: [1, 2]}}     # tied axis: alpha = ratio * r (recorded as lora_alpha)
      learning_rate: {low: 1.0e-5, high: 5.0e-4, log: true}
      quantization: {choices: [none, nf4-dq]}
      lora_dropout: 0.0                          # a bare value fixes the axis
      target_modules: all-linear                 # attention, mlp, or a list of module names
      use_dora: {choices: [false, true]}
      use_rslora: {choices: [false, true], when: {use_dora: false}}   # conditional: only in those trials

Every axis is parsed and checked before any model loads. The six core axes (rank, alpha, learning
rate, quantization, dropout, target modules) are recorded as Optuna params of every trial, at their
default when the file leaves them out. The other axes (LoRA variants: use_rslora, use_dora,
init_lora_weights, pissa_niter; LoRA+: loraplus_lr_ratio; training: batch_size, grad_accum,
warmup_ratio, weight_decay, scheduler, max_grad_norm, gradient_checkpointing; quantization: keep_16bit, keep_16bit_rule,
keep_16bit_seed) are params only when the file names them (so
a space without them keeps its hash); left out, a variant axis is at its LoraSpec default and a
training axis at the experiment's `train:` value. An axis with `when: {axis: value or [values]}` is
sampled only in trials where that axis was sampled with one of those values; otherwise it is no param
of the trial and its default applies.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.config.errors import SpecError
from harness.config.hashing import stable_hash
from harness.config.lora import LoraSpec
from harness.config.model import QuantSpec
from harness.config.training import TrainSpec

# axis -> (value type, the config type and field it sets). The default of an axis the file leaves out,
# and the rules a value must follow, are those of that field (spec.py is their only home).
_AXES: dict[str, tuple[type, type, str]] = {
    "lora_r": (int, LoraSpec, "r"),
    "lora_alpha": (float, LoraSpec, "alpha"),
    "learning_rate": (float, TrainSpec, "learning_rate"),
    "quantization": (str, QuantSpec, "mode"),
    "lora_dropout": (float, LoraSpec, "dropout"),
    "target_modules": (str, LoraSpec, "targets"),
    "use_rslora": (bool, LoraSpec, "use_rslora"),
    "use_dora": (bool, LoraSpec, "use_dora"),
    "init_lora_weights": (str, LoraSpec, "init"),
    "pissa_niter": (int, LoraSpec, "pissa_niter"),
    "loraplus_lr_ratio": (float, TrainSpec, "loraplus_lr_ratio"),
    "batch_size": (int, TrainSpec, "batch_size"),
    "grad_accum": (int, TrainSpec, "grad_accum"),
    "warmup_ratio": (float, TrainSpec, "warmup_ratio"),
    "weight_decay": (float, TrainSpec, "weight_decay"),
    "scheduler": (str, TrainSpec, "scheduler"),
    "max_grad_norm": (float, TrainSpec, "max_grad_norm"),
    "gradient_checkpointing": (bool, TrainSpec, "gradient_checkpointing"),
    "keep_16bit": (float, QuantSpec, "keep_16bit"),
    "keep_16bit_rule": (str, QuantSpec, "keep_16bit_rule"),
    "keep_16bit_seed": (int, QuantSpec, "keep_16bit_seed"),
}
CORE_AXES = ("quantization", "lora_r", "lora_alpha", "learning_rate", "lora_dropout", "target_modules")
"""Recorded as a param of every trial (at its default when the file leaves it out); never conditional."""
LORA_AXES = {name: f for name, (_, config, f) in _AXES.items() if config is LoraSpec and name not in CORE_AXES}
"""Optional axes that set a LoraSpec field (axis name -> field)."""
TRAIN_AXES = {name: f for name, (_, config, f) in _AXES.items() if config is TrainSpec and name != "learning_rate"}
"""Optional axes that set a TrainSpec field (axis name -> field); left out, the experiment's `train:` value holds."""
QUANT_AXES = {name: f for name, (_, config, f) in _AXES.items() if config is QuantSpec and name not in CORE_AXES}
"""Optional axes that set a QuantSpec field (keep_16bit, keep_16bit_rule, keep_16bit_seed)."""
OPTIONAL_AXES = tuple(LORA_AXES) + tuple(TRAIN_AXES) + tuple(QUANT_AXES)
"""Every axis that is a param only when a space names it."""


def lora_fields(params: dict[str, Any]) -> dict[str, Any]:
    """The LoraSpec fields a trial's optional params set (use_dora -> use_dora, init_lora_weights -> init, ...)."""
    return {field: params[axis] for axis, field in LORA_AXES.items() if axis in params}


def train_fields(params: dict[str, Any]) -> dict[str, Any]:
    """The TrainSpec fields a trial's optional params set (batch_size, scheduler, loraplus_lr_ratio, ...)."""
    return {field: params[axis] for axis, field in TRAIN_AXES.items() if axis in params}


def quant_fields(params: dict[str, Any]) -> dict[str, Any]:
    """The QuantSpec fields a trial's optional params set (keep_16bit, keep_16bit_rule, keep_16bit_seed)."""
    return {field: params[axis] for axis, field in QUANT_AXES.items() if axis in params}

AXIS_NAMES: tuple[str, ...] = tuple(_AXES)
_TOP_KEYS = {"description", "axes"}
_RANGE_KEYS = {"low", "high", "step", "log"}
_POINTS_LIMIT = 100_000


def axis_default(name: str) -> Any:
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


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


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
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    """Conditions (axis, allowed values), all of which must hold for this axis to be sampled."""

    def applies(self, params: dict[str, Any]) -> bool:
        """Whether this axis is sampled in a trial whose earlier axes took `params`."""
        return all(name in params and params[name] in values for name, values in self.when)

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

    def bounds(self) -> tuple[float, float]:
        """The lowest and highest value (of the choices, or of the range)."""
        if self.kind == "choices":
            return float(min(self.choices)), float(max(self.choices))
        return float(self.low), float(self.high)

    def holds(self, value: Any) -> bool:
        """Whether a trial of this axis can take `value` (one of the choices; inside the range, on its step)."""
        if self.kind == "choices":
            return any(_same(value, choice) for choice in self.choices)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        if not self.low * (1 - 1e-9) <= value <= self.high * (1 + 1e-9):
            return False
        if self.integer and int(value) != value:
            return False
        step = self.step or (1 if self.integer else None)
        return step is None or math.isclose((value - self.low) / step, round((value - self.low) / step), abs_tol=1e-6)

    def stored(self, value: Any) -> Any:
        """A value this axis holds, as the axis stores it (a choice's own object; an int for an integer range)."""
        if self.kind == "choices":
            return next(choice for choice in self.choices if _same(value, choice))
        return int(value) if self.integer else float(value)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = ({"choices": list(self.choices)} if self.kind == "choices" else
                               {"low": self.low, "high": self.high, "step": self.step, "log": self.log,
                                "int": self.integer})
        if self.when:  # only then: a space without conditions keeps the hash it always had
            out["when"] = {name: list(values) for name, values in self.when}
        return out


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

    @property
    def conditional(self) -> bool:
        return any(axis.when for axis in self.axes.values())

    def sampled(self) -> list[Axis]:
        """The axes a trial asks for, in order (an axis after every axis its conditions name); `lora_alpha`
        is left out when it is derived from `lora_alpha_ratio`, which comes right after `lora_r`."""
        out: list[Axis] = []
        for axis in self.axes.values():
            if axis.name == "lora_alpha" and self.alpha_ratio is not None:
                continue
            out.append(axis)
            if axis.name == "lora_r" and self.alpha_ratio is not None:
                out.append(dataclasses.replace(self.alpha_ratio, name="lora_alpha_ratio"))
        return out

    def grid(self) -> dict[str, list[Any]]:
        """The grid for GridSampler; every axis must be discrete."""
        grid: dict[str, list[Any]] = {}
        for axis in self.sampled():
            values = axis.values()
            if values is None:
                raise SpecError(f"{self.source}: {axis.name}: grid search needs discrete values; "
                                "give {choices: [...]} or a step")
            grid[axis.name] = values
        return grid

    def points(self, ranges: str = "refuse") -> list[dict[str, Any]]:
        """Every combination of values a trial can take, conditions applied (an axis whose conditions do not
        hold is absent from a point): the grid of a conditional space. `ranges="ends"` stands a continuous
        range in by its two ends (to check combinations); "refuse" raises SpecError for it (grid search)."""
        if ranges == "refuse":
            self.grid()  # raises for a continuous axis
        out: list[dict[str, Any]] = [{}]
        for axis in self.sampled():
            values = axis.values() or [axis.low, axis.high]
            grown = []
            for point in out:
                if not axis.applies(point):
                    grown.append(point)
                    continue
                grown += [{**point, axis.name: value} for value in values]
            out = grown
            if len(out) > _POINTS_LIMIT:
                raise SpecError(f"{self.source}: more than {_POINTS_LIMIT} combinations of discrete values; "
                                "use ranges or fewer choices")
        return out

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
    conditions: dict[str, Any] = {}
    for name, (kind, _, _) in _AXES.items():
        if name not in CORE_AXES and name not in axes_data:
            continue  # an optional axis is a param only when the file names it
        raw = axes_data.get(name, axis_default(name))
        if isinstance(raw, dict) and "when" in raw:
            if name in CORE_AXES:
                raise SpecError(f"{source}: {name}: a core axis cannot be conditional (every trial records it); "
                                "put the condition on the other axis")
            raw = dict(raw)
            conditions[name] = raw.pop("when")
        if name == "lora_alpha" and isinstance(raw, dict) and "ratio" in raw:
            if set(raw) != {"ratio"}:
                raise SpecError(f"{source}: lora_alpha: give either ratio or values, not both")
            ratio = _parse_axis(f"{source}: lora_alpha.ratio", "lora_alpha", raw["ratio"], float)
            continue
        axes[name] = _parse_axis(f"{source}: {name}", name, raw, kind)
    for name, when in conditions.items():
        axes[name] = dataclasses.replace(axes[name], when=_parse_when(f"{source}: {name}.when", name, when, axes))
    return SearchSpace(source, _in_condition_order(source, axes), ratio, str(data.get("description", "")))


def _parse_when(where: str, name: str, when: Any, axes: dict[str, Axis]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """`{axis: value or [values]}`: each named axis must be in the space, discrete, and able to take the values."""
    if not isinstance(when, dict) or not when:
        raise SpecError(f"{where}: expected a mapping of axis to value(s), e.g. {{init_lora_weights: pissa}}")
    out = []
    for other, wanted in when.items():
        if other == name or other not in axes:
            raise SpecError(f"{where}: {other!r} is not another axis of this space "
                            f"(axes: {', '.join(n for n in axes if n != name)})")
        possible = axes[other].values()
        if possible is None:
            raise SpecError(f"{where}: {other} is a continuous range; a condition needs an axis with choices")
        values = tuple(_coerce(f"{where}.{other}", other, v, _AXES[other][0])
                       for v in (wanted if isinstance(wanted, list) else [wanted]))
        never = [v for v in values if v not in possible]
        if never:
            raise SpecError(f"{where}: {other} never takes {never[0]!r} in this space "
                            f"(its values: {', '.join(map(str, possible))})")
        out.append((str(other), values))
    return tuple(out)


def _in_condition_order(source: str, axes: dict[str, Axis]) -> dict[str, Axis]:
    """The axes with each one after every axis its conditions name (core axes first); a cycle is an error."""
    ordered: dict[str, Axis] = {}
    pending = dict(axes)
    while pending:
        ready = [n for n, a in pending.items() if all(other in ordered for other, _ in a.when)]
        if not ready:
            raise SpecError(f"{source}: the conditions of {', '.join(sorted(pending))} depend on each other in a "
                            "circle; one of them must be unconditional")
        for name in ready:
            ordered[name] = pending.pop(name)
    return ordered


def check_points(space: SearchSpace, config_of: Any) -> None:
    """Refuse a space in which some combination of values cannot train (PiSSA on a quantized base, say):
    `config_of(params)` builds (and so checks) a trial's config; a continuous range is tried at both ends."""
    for point in space.points(ranges="ends"):
        params = {**point}
        if "lora_alpha_ratio" in params:
            params["lora_alpha"] = float(params.pop("lora_alpha_ratio") * params["lora_r"])
        try:
            config_of(params)
        except SpecError as err:
            shown = {k: v for k, v in point.items() if k not in CORE_AXES or k == "quantization"}
            combo = ", ".join(f"{k} {v}" for k, v in shown.items())
            raise SpecError(f"{space.source}: the combination {combo} cannot train: {err}") from None


def _article(kind: type) -> str:
    return {"int": "an integer", "float": "a number", "str": "text", "bool": "true or false"}[kind.__name__]


def _coerce(where: str, name: str, value: Any, kind: type) -> Any:
    """Check a value's type (YAML reads 1e-5 as a string, so numeric strings are accepted)."""
    if name == "init_lora_weights" and isinstance(value, bool):
        value = str(value).lower()  # YAML reads `true` as a bool; peft's default init is `true`
    if name == "target_modules" and isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        value = ",".join(value)  # an explicit list of module names is one value
    if kind is bool:
        flag = {"true": True, "false": False}.get(str(value).lower()) if isinstance(value, (bool, str)) else None
        if flag is None:
            raise SpecError(f"{where}: {value!r} is not true or false")
        return flag
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
    if kind is bool and "choices" not in raw:
        raise SpecError(f"{where}: a true/false axis takes a value or {{choices: [false, true]}}")
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


_SHORT = {"use_rslora": "rslora", "use_dora": "dora", "pissa_niter": "niter", "loraplus_lr_ratio": "lora+",
          "batch_size": "bs", "grad_accum": "accum", "warmup_ratio": "warmup", "weight_decay": "wd",
          "max_grad_norm": "clip", "gradient_checkpointing": "ckpt", "keep_16bit": "keep",
          "keep_16bit_seed": "seed"}


def describe_optional(params: dict[str, Any]) -> list[str]:
    """The optional axes a trial sampled, short: `dora`, `pissa`, `lora+16`, `bs4`, `linear`
    (a true/false axis only when true; LoRA+ only when on)."""
    out = []
    for name in _AXES:
        if name in CORE_AXES or name not in params:
            continue
        value = params[name]
        if isinstance(value, bool):
            out += [_SHORT[name]] if value else []
        elif name == "loraplus_lr_ratio":
            out += [f"lora+{value:g}"] if float(value) != 1.0 else []
        elif name in ("init_lora_weights", "scheduler"):
            out += [] if value == "true" else [str(value)]  # pissa, olora, linear, warmup_stable_decay
        elif name == "keep_16bit_rule":
            out += [str(value)] if params.get("keep_16bit") else []  # `keep0.1 random`
        elif name == "keep_16bit_seed":
            out += [f"seed{value}"] if params.get("keep_16bit_rule") == "random" else []
        else:  # the numeric axes
            out.append(f"{_SHORT[name]}{value:g}")
    return out


def suggest(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """Ask an Optuna trial for one value per axis whose conditions hold; returns the params (lora_alpha
    always included, `lora_alpha_ratio` too when alpha is tied to r)."""
    params: dict[str, Any] = {}
    for axis in space.sampled():
        if axis.applies(params):
            params[axis.name] = _suggest_axis(trial, axis)
    if space.alpha_ratio is not None:
        alpha = float(params["lora_alpha_ratio"] * params["lora_r"])
        # A single-point distribution records the derived value as the `lora_alpha` param.
        params["lora_alpha"] = trial.suggest_float("lora_alpha", alpha, alpha)
        params.pop("lora_alpha_ratio")  # the trial's params keep it; a config needs only lora_alpha
    return params


def _suggest_axis(trial: Any, axis: Axis) -> Any:
    name = axis.name
    if axis.kind == "choices":
        return trial.suggest_categorical(name, list(axis.choices))
    if axis.integer:
        return trial.suggest_int(name, int(axis.low), int(axis.high), step=int(axis.step or 1), log=axis.log)
    return trial.suggest_float(name, axis.low, axis.high, step=axis.step, log=axis.log)
