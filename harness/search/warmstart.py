"""Warm start: a sweep's first trials are known-good configs instead of random guesses.

`--warm-start defaults` enqueues the field's published defaults (harness/config/published_defaults.yaml)
and harness's own shipped defaults (harness/config/defaults.yaml, from `harness defaults`, once shipped)
that the study's space can express; `--warm-start STUDY` enqueues the best completed configs of another
study in the same storage. Each is an ordinary search trial of this study (its params, this study's
training settings), claimed before anything is sampled, with its origin in the trial's user attrs
(`warm_start`, `warm_start_source`). A config the space cannot express is skipped with the reason: a value
outside an axis, or a published default's training overrides (schedule, warm-up, clipping) that a search
trial of this study would not apply. Enqueuing is idempotent: a config already in the study is not added.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.config.defaults import SHIPPED, load_defaults, load_harness_defaults
from harness.config.errors import SpecError
from harness.config.objectives import ranked
from harness.config.space import Axis, SearchSpace, axis_default
from harness.config.sweep import SweepSpec

WARM_FROM_STUDY = 3
"""Best completed configs taken from a study given to --warm-start."""


@dataclass(frozen=True)
class WarmConfig:
    """One config to start with: its params as this space's trial asks for them, and where it comes from."""

    label: str
    """`published default unsloth-16bit`, `study lora_vs_qlora trial #12`."""
    source: str
    params: dict[str, Any]


def express(space: SearchSpace, given: dict[str, Any]) -> dict[str, Any] | str:
    """The params with which a trial of `space` is the config `given` (core axes, lora_alpha as a value),
    or the reason it cannot be: a value outside an axis. Axes `given` leaves out take their defaults."""
    values = dict(given)
    if space.alpha_ratio is not None and "lora_alpha" in values and "lora_r" in values:
        values["lora_alpha_ratio"] = float(values["lora_alpha"]) / float(values["lora_r"])
    params: dict[str, Any] = {}
    for axis in space.sampled():
        if not axis.applies(params):
            continue
        value = values[axis.name] if axis.name in values else axis_default(axis.name)
        if not axis.holds(value):
            return f"{axis.name} {value!r} is outside the space's {_shown(axis)}"
        params[axis.name] = axis.stored(value)
    return params


def _shown(axis: Axis) -> str:
    if axis.kind == "choices":
        return f"choices {list(axis.choices)}"
    return f"range [{axis.low:g}, {axis.high:g}]"


NO_SHIPPED = ("harness/config/defaults.yaml is missing from this installation (it ships with harness, copied from "
              "reports/defaults/defaults.yaml); the published defaults only")
"""Why `--warm-start defaults` has no harness defaults to add (said once, as a skipped warm-start config)."""


def published_configs(space: SearchSpace, shipped: Path = SHIPPED) -> tuple[list[WarmConfig], dict[str, str]]:
    """The published defaults and harness's shipped defaults (`shipped`, when it exists) this space expresses,
    and why each other one is skipped."""
    out, skipped = [], {}
    entries = [("published default", d) for d in load_defaults()]
    if shipped.exists():
        entries += [("shipped default", d) for d in load_harness_defaults(shipped)]
    else:
        skipped["harness defaults"] = NO_SHIPPED
    for kind, default in entries:
        if default.training:
            changes = ", ".join(f"{k} {v}" for k, v in default.training.items())
            skipped[default.name] = f"its training settings ({changes}) are not this study's"
            continue
        params = express(space, default.params)
        if isinstance(params, str):
            skipped[default.name] = params
            continue
        out.append(WarmConfig(f"{kind} {default.name}", default.source, params))
    return out, skipped


def study_configs(space: SearchSpace, study: Any, name: str, direction: str) -> tuple[list[WarmConfig], dict[str, str]]:
    """The best completed search configs of `study` (at most WARM_FROM_STUDY, best first) this space expresses."""
    import optuna

    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get("confirmation_of") is None and t.values]
    if not done:
        raise SpecError(f"--warm-start {name}: the study has no completed trials to start from")
    out, skipped = [], {}
    for trial in ranked(done, direction, lambda t: t.values[0])[:WARM_FROM_STUDY]:
        label = f"study {name} trial #{trial.number}"
        params = express(space, {k: v for k, v in trial.params.items() if k != "lora_alpha_ratio"})
        if isinstance(params, str):
            skipped[label] = params
            continue
        out.append(WarmConfig(label, f"{spec_objective(study)} {trial.values[0]:.6g}", params))
    return out, skipped


def spec_objective(study: Any) -> str:
    """The objective the source study ranked by (from its stored settings), for the trial's attrs."""
    objectives = study.user_attrs.get("objectives") or ["eval_loss"]
    return str(objectives[0])


def warm_configs(space: SearchSpace, spec: SweepSpec) -> tuple[list[WarmConfig], dict[str, str]]:
    """The sweep's warm-start configs (spec.warm_start) and the skipped ones with reasons; SpecError for a
    study that does not exist or has nothing to start from (before this sweep's study is created)."""
    if spec.warm_start == "none":
        return [], {}
    if spec.warm_start == "defaults":
        return published_configs(space)
    from harness.search.study import load_existing_study

    if spec.warm_start == spec.study:
        raise SpecError(f"--warm-start {spec.warm_start}: a study cannot warm-start itself; name another study")
    source = load_existing_study(spec.warm_start, spec.storage_url)
    return study_configs(space, source, spec.warm_start, spec.directions[0])


def enqueue_warm_start(study: Any, configs: list[WarmConfig], skipped: dict[str, str],
                       say: Callable[[str], None]) -> int:
    """Enqueue `configs` as the study's next trials; returns how many are new (one already in the study,
    from an earlier run of the same sweep, is not added again)."""
    for label, reason in skipped.items():
        say(f"warm start: skipped {label}: {reason}")
    if not configs:
        return 0
    before = len(study.get_trials(deepcopy=False))
    for config in configs:
        study.enqueue_trial(config.params, user_attrs={"warm_start": config.label, "warm_start_source": config.source},
                            skip_if_exists=True)
    added = len(study.get_trials(deepcopy=False)) - before
    say(f"warm start: {added} of {len(configs)} configs enqueued as the first trials "
        f"({', '.join(c.label for c in configs)})" + ("" if added == len(configs) else "; the others are already in the study"))
    return added
