"""--lr-range-test: narrow a study's learning-rate axis with one range test per quantization mode (by default
in a new study whose learning-rate range spans two decades or more: `auto_reason`).

Before the search, each quantization mode the space names trains one fresh adapter (the space's typical
config: each axis at its default where the axis holds it, else its middle) at rates rising exponentially
across the learning-rate axis, for the sweep's `max_steps` (harness.trial.lr_range). The rule per mode,
Leslie Smith's: the rate at the smoothed loss's minimum is the largest that still helps, so the mode's range
is the decade below it, [top / 10, top], clipped to the axis. A curve whose loss never fell, or whose
minimum lies within a factor MIN_WIDTH of the axis's low end, keeps the axis (with the reason).

The study searches one range, the union of the modes' ranges (one distribution for the whole study, so the
sampler can compare every trial). The study records the curves, each mode's range and reason and the study's
range (user attr `lr_range_test`); a resumed study, and every worker, reuses them instead of testing again.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from harness.config.errors import SpecError
from harness.config.space import Axis, SearchSpace, axis_default
from harness.trial.lr_range import MIN_STEPS, RangeCurve

DECADE = 10.0
"""A mode's range spans this factor below the rate at the loss's minimum."""
AUTO_WIDTH = DECADE * DECADE
"""By default a study range-tests a learning-rate range at least this wide (two decades): see auto_reason."""
MIN_WIDTH = 2.0
"""A narrowed range narrower than this factor is no range: the axis is kept."""
ATTR = "lr_range_test"


@dataclass(frozen=True)
class Narrowed:
    """A mode's learning-rate range after its range test, and why."""

    low: float
    high: float
    reason: str


def lr_axis(space: SearchSpace) -> Axis:
    """The space's learning-rate axis, refused in one line when there is nothing to narrow."""
    axis = space.axes["learning_rate"]
    searched = axis.kind == "range" and axis.high > axis.low or axis.kind == "choices" and len(axis.choices) > 1
    if not searched:
        raise SpecError(f"--lr-range-test: {space.source} fixes learning_rate; give it a range "
                        "(learning_rate: {low: 1.0e-5, high: 5.0e-4, log: true}) or drop --lr-range-test")
    return axis


def suggest_range(curve: RangeCurve, low: float, high: float) -> Narrowed:
    """The range a mode's curve supports within [low, high], or [low, high] with the reason it is kept."""
    if curve.error:
        return Narrowed(low, high, f"range test failed ({curve.error}); the axis is kept")
    if len(curve.smoothed) < MIN_STEPS:
        return Narrowed(low, high, f"range test stopped after {len(curve.smoothed)} steps ({curve.stopped}); "
                                   "the axis is kept")
    best = min(range(len(curve.smoothed)), key=lambda k: curve.smoothed[k])
    if best == 0:
        return Narrowed(low, high, "the smoothed loss never fell below its first step; the axis is kept")
    top = curve.lrs[best]
    new_low, new_high = max(low, top / DECADE), min(high, top)
    if new_high / new_low < MIN_WIDTH:
        return Narrowed(low, high, f"the smoothed loss was lowest at {top:.3g}, within {MIN_WIDTH:g}x of the axis's "
                                   "low end; the axis is kept")
    ended = "the end of the axis" if best == len(curve.lrs) - 1 and not curve.stopped else f"{top:.3g}"
    return Narrowed(new_low, new_high, f"the smoothed loss was lowest at {ended}: the decade below it")


def auto_reason(space: SearchSpace, sampler: str) -> str | None:
    """Why a study that left --lr-range-test unset gets one (the default), or None: only where it can pay, a
    sampled learning-rate range (not a grid, not choices the user picked) of at least AUTO_WIDTH, so that the one
    decade a range test keeps cuts at least half of the axis (in log scale) away. A one-decade axis, as in
    search_spaces/default.yaml, is already as narrow as the test would make it, and `--from-config`'s axis (the
    tool's rate / 4 to x 4) nearly so. Measured on SmolLM2 against Trainer.hyperparameter_search: with a 1000x
    axis the peer's best eval loss at 0.40x its time instead of 0.77x; with a 100x axis 1.03x instead of 1.27x;
    a better best than without the test in every seed at both (benchmarks/README.md, "A wide learning-rate
    axis")."""
    axis = space.axes.get("learning_rate")
    if axis is None or axis.kind != "range" or sampler == "grid" or axis.low <= 0:
        return None
    width = axis.high / axis.low
    if width < AUTO_WIDTH * (1 - 1e-9):
        return None
    return (f"learning_rate spans {width:.0f}x ({axis.low:.3g} to {axis.high:.3g}): a range test keeps the one decade "
            "the model trains best in")


def narrow_space(space: SearchSpace, low: float, high: float) -> SearchSpace:
    """`space` with its learning-rate axis cut to [low, high] (a choices axis keeps the choices inside it)."""
    axis = space.axes["learning_rate"]
    if axis.kind == "choices":
        kept = tuple(c for c in axis.choices if low * (1 - 1e-9) <= c <= high * (1 + 1e-9))
        narrowed = dataclasses.replace(axis, choices=kept or axis.choices)
    else:
        narrowed = dataclasses.replace(axis, low=max(axis.low, low), high=min(axis.high, high))
    return dataclasses.replace(space, axes={**space.axes, "learning_rate": narrowed})


def range_test_params(space: SearchSpace, mode: str) -> dict[str, Any]:
    """The config a mode's range test trains: every axis at its default where the axis holds it, else at its
    middle (the middle choice; a range's geometric or plain middle), in quantization mode `mode`."""
    params: dict[str, Any] = {}
    for axis in space.sampled():
        if not axis.applies(params):
            continue
        if axis.name == "quantization":
            value: Any = mode
        else:
            default = axis_default(axis.name) if axis.name != "lora_alpha_ratio" else None
            value = default if default is not None and axis.holds(default) else _middle(axis)
        params[axis.name] = axis.stored(value)
    if space.alpha_ratio is not None:
        params["lora_alpha"] = float(params.pop("lora_alpha_ratio") * params["lora_r"])
    return params


def _middle(axis: Axis) -> Any:
    if axis.kind == "choices":
        return axis.choices[len(axis.choices) // 2]
    middle = math.sqrt(axis.low * axis.high) if axis.log and axis.low > 0 else (axis.low + axis.high) / 2
    if axis.step:
        middle = axis.low + round((middle - axis.low) / axis.step) * axis.step
    return int(round(middle)) if axis.integer else middle


def study_record(space: SearchSpace, curves: dict[str, RangeCurve]) -> dict[str, Any]:
    """What the study keeps (user attr `lr_range_test`): the axis, each mode's curve, range and reason, and the
    range the study searches (the union of the modes' ranges)."""
    low, high = space.axes["learning_rate"].bounds()
    modes = {}
    for mode, curve in curves.items():
        narrowed = suggest_range(curve, low, high)
        modes[mode] = {**curve.to_dict(), "range": [narrowed.low, narrowed.high], "reason": narrowed.reason}
    ranges = [m["range"] for m in modes.values()]
    return {"axis": [low, high], "range": [min(r[0] for r in ranges), max(r[1] for r in ranges)],
            "steps": max(c.steps for c in curves.values()), "modes": modes}
