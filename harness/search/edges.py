"""Edge-of-range warnings: which numeric axes of a best config sit on the edge of what was searched.

A best value at the largest (or smallest) value searched says the optimum may lie beyond it: the
search was too narrow to find it, and widening that axis is the next sweep to run. Reads only the
space description a study stores (user attr `space`, `SearchSpace.describe()`) and a config's params.
Only numeric axes with at least two distinct values count (a fixed axis is not a searched range), and a
side is left alone when widening it would need a value the axis refuses (lora_r below 1, a learning
rate of 1 or more) or beyond the sensible limit of lora_dropout (0 to 0.5).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from harness.config.space import Axis, parse_space
from harness.config.errors import SpecError

if TYPE_CHECKING:
    from harness.search.readout import StudyView

EDGE_TOLERANCE = 0.02
"""A value within this share of a continuous range's span of one end is at that end (the span in log
space for a log range); a discrete value (choices, a stepped or integer range) must be an end itself."""

WIDEN = {"learning_rate": 4.0, "lora_r": 2.0, "lora_alpha": 2.0, "lora_alpha_ratio": 2.0, "loraplus_lr_ratio": 2.0,
         "batch_size": 2.0, "grad_accum": 2.0, "warmup_ratio": 2.0, "weight_decay": 4.0, "max_grad_norm": 2.0}
"""How far past an edge a suggestion goes: a factor beyond the edge value (learning rates move on a log
scale, so x4; rank and alpha by doublings)."""
DROPOUT_LIMIT = 0.5
"""The largest lora_dropout worth suggesting (the axis accepts up to 1, but no adapter trains well there)."""

RATIO = "lora_alpha_ratio"
"""The param a tied alpha axis records its ratio under (alpha = ratio * lora_r)."""
_NUMERIC = ("lora_r", "lora_alpha", "learning_rate", "lora_dropout", "loraplus_lr_ratio", "batch_size", "grad_accum",
            "warmup_ratio", "weight_decay", "max_grad_norm")
_INTEGER = ("lora_r", "batch_size", "grad_accum")


def edge_warnings(space: dict[str, Any] | None, params: dict[str, Any]) -> list[str]:
    """One line per numeric axis whose value in `params` lies at the edge of its searched range in
    `space` (a stored `SearchSpace.describe()`; None or {} for a study recorded without one)."""
    found = []
    for name in _NUMERIC:
        described = (space or {}).get(name)
        if not isinstance(described, dict):
            continue
        if "ratio_of_r" in described:
            name, described, value = RATIO, described["ratio_of_r"], _ratio(params)
        else:
            value = params.get(name)
        axis = _axis(name, described)
        if axis is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        line = _warning(name, axis, float(value))
        if line:
            found.append(line)
    return found


def study_edge_warnings(view: "StudyView", params: dict[str, Any]) -> list[str]:
    """edge_warnings for a config of a study, against the space the study stored (for a validation's linked
    study, the space its source study searched: its own space only lists the validated values)."""
    return edge_warnings(view.attrs.get("searched_space") or view.attrs.get("space"), params)


def _ratio(params: dict[str, Any]) -> float | None:
    """alpha / r of a config: the recorded ratio param, else derived from lora_alpha and lora_r."""
    if isinstance(params.get(RATIO), (int, float)):
        return float(params[RATIO])
    alpha, r = params.get("lora_alpha"), params.get("lora_r")
    return float(alpha) / float(r) if isinstance(alpha, (int, float)) and isinstance(r, (int, float)) and r else None


def _axis(name: str, described: dict[str, Any]) -> Axis | None:
    """The stored description back as an Axis (None when it is not a numeric one)."""
    try:
        if "choices" in described:
            choices = tuple(described["choices"])
            if not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices):
                return None
            return Axis(name, "choices", choices)
        low, high, log = float(described["low"]), float(described["high"]), bool(described.get("log"))
        if not low < high or (log and low <= 0):
            return None  # not a range harness.config.space would have accepted
        return Axis(name, "range", low=low, high=high, step=described.get("step"), log=log,
                    integer=bool(described.get("int")))
    except (KeyError, TypeError, ValueError):
        return None


def _warning(name: str, axis: Axis, value: float) -> str | None:
    values = axis.values()
    if values is not None:
        distinct = sorted({float(v) for v in values})
        if len(distinct) < 2:
            return None  # a fixed axis: nothing was searched
        low, high = distinct[0], distinct[-1]
        top, bottom = value >= high or _same(value, high), value <= low or _same(value, low)
    else:
        low, high = axis.low, axis.high
        scale = math.log if axis.log else float
        inside = min(max(value, low), high)
        position = (scale(inside) - scale(low)) / (scale(high) - scale(low))
        top, bottom = position >= 1 - EDGE_TOLERANCE, position <= EDGE_TOLERANCE
    if not (top or bottom):
        return None
    suggestion = _beyond(name, high if top else low, up=top)
    if suggestion is None:
        return None  # the edge is a hard (or sensible) limit of the axis
    label = "lora_alpha / lora_r" if name == RATIO else name
    where = _where(axis, low, high)
    if values is not None:
        at = "the largest value searched" if top else "the smallest value searched"
    else:
        at = "at the top of the range searched" if top else "at the bottom of the range searched"
    side, direction = ("above", "up to") if top else ("below", "down to")
    return (f"{label} {value:.4g} is {at} ({where}): the best may lie {side} it; widen the range, "
            f"e.g. {direction} {_num(suggestion)}")


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def _beyond(name: str, value: float, up: bool) -> float | None:
    """A value past the edge `value` worth searching next, or None when the axis allows none."""
    if name == "lora_dropout":
        suggestion = min(DROPOUT_LIMIT, 2 * value if value > 0 else 0.1) if up else 0.0
    elif name in _INTEGER:
        suggestion = value * WIDEN[name] if up else float(max(1, int(value // WIDEN[name])))
    else:
        suggestion = value * WIDEN[name] if up else value / WIDEN[name]
    if _same(suggestion, value) or (suggestion < value) == up or not _allowed(name, suggestion):
        return None
    return suggestion


def _allowed(name: str, value: float) -> bool:
    """Whether the axis's own rules (harness.config.space, through its config type) accept the value."""
    raw: Any = int(value) if name in _INTEGER else value
    axes = {"lora_alpha": {"ratio": raw}} if name == RATIO else {name: raw}
    try:
        parse_space({"axes": axes})
    except SpecError:
        return False
    return True


def _where(axis: Axis, low: float, high: float) -> str:
    if axis.kind == "choices":
        return f"choices {_num(low)} to {_num(high)}"
    extra = ", log scale" if axis.log else f", step {_num(float(axis.step))}" if axis.step else ""
    return f"range {_num(low)} to {_num(high)}{extra}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e6 else f"{value:.4g}"
