"""`harness validate`: does a study's short-budget ranking hold at the real training budget?

The study's top configs and the field's published defaults (harness/config/published_defaults.yaml) are re-trained
at the long budget N, each with fresh seeds, as ordinary trials of a linked study `<study>@<N>` in the same
storage: they resume, run through the same supervised worker, can be spread over workers, and land in
trials.jsonl and W&B like any trial. Each run is a fresh schedule over N steps (warm-up and decay scaled to
N), not a continuation of a short trial.

The linked study's search space is written from the study: every axis a categorical of the values of the
study's completed configs and of the published defaults that fit the model, so re-running with another
`--top` adds trials to the same linked study. What to validate is stored in the linked study
(`validation_plan`); the source study lists its validations (`validations`). The statistics are
harness.evidence.validation's; this module plans, runs and reads back.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.evidence.confirm import confirmation_seeds
from harness.config.defaults import AXES, is_harness_defaults, load_defaults, load_harness_defaults
from harness.search.readout import StudyView, TrialRow, measured_alone, open_view
from harness.config.space import OPTIONAL_AXES
from harness.config.errors import SpecError
from harness.config.training import TrainSpec
from harness.evidence.longruns import (Validation, config_key, fitting_generation, generation_folder, generation_name,
                                      generation_names, generation_views, read_validation)
from harness.evidence.sequential import DEFAULT_RESOLUTION, until_resolved

COPIED_ATTRS = ("model_source", "split_hash", "data_source", "n_train", "n_eval", "truncated")
"""Study attrs the linked study shares with its source (same model, same data, same held-out split), besides
every `baseline*` attr: the untuned model is not scored again."""


def linked_name(study: str, steps: int) -> str:
    """The linked study of a validation at `steps` optimizer steps."""
    return f"{study}@{steps}"


@dataclass(frozen=True)
class Planned:
    """One config to re-train at the long budget."""

    source: str
    """`search` (one of the study's own configs) or a published default's name."""
    params: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    """TrainSpec overrides (a published default's schedule, warm-up, clipping)."""
    note: str = ""
    """Where it comes from: `trial #12 (confirmed over 3 seeds)`, or the published default's source."""

    @property
    def key(self) -> str:
        return config_key(self.params, self.training)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def long_budget(view: StudyView, steps: int | None, epochs: float | None) -> int:
    """The validated budget in optimizer steps (`--steps`, or `--epochs` of the study's training split); it must
    be longer than the study's own trials."""
    if (steps is None) == (epochs is None):
        raise SpecError("give the long budget as --steps N or --epochs E (one of them)")
    short = int(view.sweep.get("max_steps") or 0)
    if epochs is not None:
        if not epochs > 0:
            raise SpecError(f"--epochs must be > 0, got {epochs}")
        n_train = view.attrs.get("n_train")
        if not isinstance(n_train, int) or n_train < 1:
            raise SpecError(f"study {view.name!r} did not record its training-split size; give --steps N instead")
        train = view.sweep.get("train") or {}
        per_step = int(train.get("batch_size", TrainSpec.batch_size)) * int(train.get("grad_accum", TrainSpec.grad_accum))
        steps = max(1, math.ceil(epochs * n_train / per_step))
    assert steps is not None
    if steps <= short:
        raise SpecError(f"--steps {steps} must be larger than study {view.name!r}'s {short} steps per trial (a "
                        f"validation re-trains at a longer budget than the search's)")
    return steps


def top_configs(view: StudyView, top: int) -> list[Planned]:
    """The study's `top` best distinct configs: confirmed ones by their confirmed mean first (when the study has
    confirmations), then search trials by their value."""
    from harness.evidence.recommend import candidates

    if top < 1:
        raise SpecError(f"--top must be >= 1, got {top}")
    confirmed = [c for c in candidates(view) if c.confirmed]
    search = view.ranked(r for r in view.search_rows() if r.state == "COMPLETE" and r.values)
    picked: dict[str, Planned] = {}
    for row, note in ([(c.source, f"trial #{c.source.number}, confirmed over {c.objective.n} seeds") for c in confirmed]
                      + [(r, f"trial #{r.number}") for r in search]):
        params = {k: v for k, v in row.params.items() if k in AXES or k in OPTIONAL_AXES}  # variants included
        planned = Planned("search", params, note=note)
        if planned.key not in picked and len(picked) < top:
            picked[planned.key] = planned
    return list(picked.values())


def published(view: StudyView, dims: Any, path: Path | None = None) -> tuple[list[Planned], dict[str, str]]:
    """The published defaults (the shipped file, or `path` in the same format) that can run on the study's
    model, and why each of the others cannot. A `path` that is a defaults.yaml of `harness defaults` adds its
    configs (one per mode, `harness-<mode>`) to the shipped published defaults instead of replacing them."""
    model = str(view.sweep.get("model"))
    runnable, skipped = [], {}
    if path is not None and is_harness_defaults(path):
        entries = load_defaults() + load_harness_defaults(path)
    else:
        entries = load_defaults(path) if path is not None else load_defaults()
    for default in entries:
        reason = default.skip_reason(dims, model)
        if reason:
            skipped[default.name] = reason
        else:
            runnable.append(Planned(default.name, dict(default.params), dict(default.training), default.source))
    return runnable, skipped


def model_dims_of(view: StudyView) -> Any:
    """The study's model's layer dimensions (which published defaults' ranks fit it)."""
    from harness.trial.models import checkpoint_path, model_dims, resolve_model

    return model_dims(checkpoint_path(resolve_model(str(view.sweep.get("model")))))


def linked_space(view: StudyView, planned: list[Planned]) -> dict[str, Any]:
    """The linked study's space file: each axis a categorical of every value the study's completed configs
    and the planned configs use (sorted), so that another `--top` later fits the same space."""
    done = [r for r in view.rows if r.state == "COMPLETE"]
    axes = {}
    for name in AXES:
        values = {r.params[name] for r in done if name in r.params} | {p.params[name] for p in planned}
        axes[name] = {"choices": sorted(values, key=lambda v: (str(type(v)), v))}
    return {"description": f"validation of study {view.name}: the values of its configs and the published "
                           "defaults (written by harness validate)", "axes": axes}


def plan_runs(plan: list[Planned], rows: list[TrialRow], seeds: int, base_seed: int,
              grow: set[str] | None = None) -> list[tuple[Planned, int]]:
    """Long runs still missing: every planned config (those whose key is in `grow`, when given) gets `seeds`
    runs in all (finished, running or waiting ones count; failed ones, such as an interrupted run, are planned
    again), each with a seed not yet used for it; first seeds of every config first. Every config gets the
    same seeds (the study's seed + 1, + 2, ...): the differences between them are paired by seed."""
    if seeds < 1:
        raise SpecError(f"--seeds must be >= 1, got {seeds}")
    per_config = []
    for planned in dict((p.key, p) for p in plan).values():
        if grow is not None and planned.key not in grow:
            continue
        mine = [r for r in rows if config_key(r.params, r.training) == planned.key]
        have = [r for r in mine if r.state != "FAIL"]
        used = {r.seed for r in have if r.seed is not None}
        per_config.append([(planned, s) for s in confirmation_seeds(base_seed, max(0, seeds - len(have)), used)])
    # Round-robin: every config's first seed before any config's second, so that a validation stopped early
    # (Ctrl-C, a deadline) has a long-budget value for as many configs as possible.
    return [runs[i] for i in range(max(map(len, per_config), default=0)) for runs in per_config if i < len(runs)]


def run_validation(view: StudyView, *, steps: int | None = None, epochs: float | None = None, top: int = 3,
                   seeds: int = 2, defaults: bool = True, defaults_file: Path | None = None,
                   out: str | None = None, workers: int = 1, wandb: str | None = None,
                   say: Callable[[str], None] = print, grow: set[str] | None = None,
                   sequential: dict[str, Any] | None = None, pack: int = 1,
                   max_memory_mb: float | None = None) -> Validation:
    """Plan, enqueue and run the missing long runs in the linked study, and read the validation back (its files
    are written by harness.publish.documents.write_validation). Idempotent: runs already done (or waiting) are
    not added again; Ctrl-C leaves it resumable. `grow`: add seeds only to these configs (their keys);
    `sequential`: {max_seeds, resolution} of a sequential validation, kept in the linked study so that every
    read-out states its intervals at the looks' levels. `max_memory_mb`: the long runs' memory budget, pinned in
    the linked study (None: the study's own)."""
    import optuna

    from harness.config.experiment import build_sweep_spec
    from harness.search.launch import run_sweep
    from harness.search.study import open_study, public_url, resolve_url, storage_for_workers
    from harness.config.space import load_space

    if not view.sweep:
        raise SpecError(f"study {view.name!r} was not created by `harness sweep`; cannot re-train its configs")
    if not view.completed():
        raise SpecError(f"study {view.name!r} has no completed trials to validate")
    n = long_budget(view, steps, epochs)
    storage = resolve_url(view.storage)
    if workers > 1 and storage.startswith("sqlite"):
        raise SpecError(f"--workers {workers}: study {view.name!r} is in SQLite ({public_url(storage)}), which several "
                        "workers cannot share, and its validation lives in the same storage; use --workers 1, or "
                        "copy the study to a journal file or PostgreSQL with optuna.copy_study and pass --storage")
    plan = top_configs(view, top)
    skipped: dict[str, str] = {}
    if defaults:
        runnable, skipped = published(view, model_dims_of(view), defaults_file)
        plan += runnable
    name = linked_name(view.name, n)
    folder = view.out_dir(out) / f"validation@{n}"
    stored_plan = _merged_plan(view, name, plan)
    # a config outside the linked study's space goes to a continuation (longruns.fitting_generation), whose new
    # space is written from the study's configs and the plan, so that another --top later fits it too
    k = fitting_generation(folder, [p.params for p in plan], lambda: linked_space(view, plan))
    here, here_folder = generation_name(name, k), Path(generation_folder(str(folder), k))
    if here != name:
        say(f"validation: a config is outside study {name!r}'s space (its choices cannot grow); its runs go to "
            f"the continuation study {here}, read with it")
    # The long runs train the planned configs as they are: the source study's warm start (published defaults are
    # validated only when planned: --defaults) and its learning-rate range test (forced or by default) must not
    # add trials to, run again on, or narrow the linked study, whose trials are enqueued before it starts.

    def spec_of(study: str, where: Path) -> Any:
        flags = {"study": study, "max_steps": n, "storage": storage, "out": str(where), "pruner": "none",
                 "sampler": "random", "space": str(where / "space.yaml"), "wandb": wandb, "trials": 1,
                 "pack": pack, "lr_range_test": False, "warm_start": "none"}
        spec = storage_for_workers(build_sweep_spec(view.sweep, flags, f"study {view.name}"), workers)
        if max_memory_mb is not None:  # as crosseval does for its cells: the long runs' own budget
            spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, max_memory_mb=max_memory_mb))
        return spec

    first = open_study(spec_of(name, folder), load_space(folder / "space.yaml"))
    linked = first if here == name else open_study(spec_of(here, here_folder), load_space(here_folder / "space.yaml"))
    for study in {id(first): first, id(linked): linked}.values():
        _share_attrs(view, study, stored_plan, skipped)
        if sequential:
            study.set_user_attr("sequential", sequential)
    _record_link(view, name, n, folder)
    rows = [r for v in generation_views(name, view.storage, str(folder), skip_empty=True) for r in v.rows]
    missing = plan_runs(plan, rows, seeds, int(view.sweep.get("seed", 0)), grow)
    # Packed long runs: each config's first missing run trains alone when none of its runs did (or waits to),
    # so that its peak memory and seconds at the real budget are its own (readout.alone_rows reads them).
    alone = {planned.key for planned, _ in missing if pack > 1 and not measured_alone(
        r for r in rows if config_key(r.params, r.training) == planned.key)}
    for planned, seed in missing:
        attrs: dict[str, Any] = {"seed": seed, "validates": planned.source}
        if planned.key in alone:
            attrs["alone"] = True
            alone.discard(planned.key)
        if planned.training:
            attrs["training"] = planned.training
        variant = {k: v for k, v in planned.params.items() if k in OPTIONAL_AXES}
        if variant:  # not axes of the linked space: the trial's config takes them from here
            attrs["variant"] = variant
        linked.enqueue_trial({k: planned.params[k] for k in AXES}, user_attrs=attrs)
    configs = len(dict((p.key, p) for p in plan))
    counts = (f"{configs} configs x {seeds} seeds at {n} steps" if grow is None else
              f"{len(grow)} of {configs} configs, in unresolved comparisons, up to {seeds} seeds at {n} steps")
    for source, reason in skipped.items():
        say(f"skipped published default {source}: {reason}")
    # Every generation: a waiting run counts as planned (plan_runs), so one left waiting in an earlier
    # generation (a validation stopped before it ran) is run where it waits.
    waiting = 0
    for k, gen in enumerate(generation_names(name, view.storage), start=1):
        study = optuna.load_study(study_name=gen, storage=storage)
        left = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
        if left:
            say(f"validation: {left} long runs to go ({counts}) in study {gen}")
            spec = spec_of(gen, Path(generation_folder(str(folder), k)))
            run_sweep(dataclasses.replace(spec, trials=left), workers=workers)
            waiting += left
    if not waiting:
        say(f"validation: every long run is done ({counts}) in study {name}")
    result = read_validation(open_view(view.name, view.storage, str(view.out_dir(out))), n)
    result.ran = waiting
    return result


def _merged_plan(view: StudyView, name: str, plan: list[Planned]) -> list[dict[str, Any]]:
    """The plan merged with the one the linked study already holds (what every read-out reports)."""
    from harness.search.study import load_existing_study

    try:
        existing = load_existing_study(name, view.storage)
    except SpecError:
        existing = None
    stored = list((existing.user_attrs.get("validation_plan") or []) if existing is not None else [])
    keys = {config_key(p["params"], p.get("training")) for p in stored}
    return stored + [p.to_dict() for p in plan if p.key not in keys]


def _share_attrs(view: StudyView, linked: Any, plan: list[dict[str, Any]], skipped: dict[str, str]) -> None:
    """The source study's baselines and data description (the untuned model is not scored again), the plan and
    the published defaults that could not run here."""
    for key, value in view.attrs.items():
        if (key.startswith("baseline") or key in COPIED_ATTRS) and key not in linked.user_attrs:
            linked.set_user_attr(key, value)
    if view.attrs.get("space") and "searched_space" not in linked.user_attrs:
        linked.set_user_attr("searched_space", view.attrs["space"])  # edge-of-range warnings (harness.search.edges)
    linked.set_user_attr("validation_plan", plan)
    linked.set_user_attr("validation_of", {"study": view.name, "short_steps": view.sweep.get("max_steps")})
    linked.set_user_attr("skipped_defaults", {**(linked.user_attrs.get("skipped_defaults") or {}), **skipped})


def _record_link(view: StudyView, name: str, steps: int, folder: Path) -> None:
    """The source study lists its validations (recommend and report find them there)."""
    from harness.search.study import load_existing_study

    study = load_existing_study(view.name, view.storage)
    links = dict(study.user_attrs.get("validations") or {})
    links[str(steps)] = {"study": name, "out": str(folder)}
    study.set_user_attr("validations", links)


def validate_until_resolved(view: StudyView, max_seeds: int, resolution: str | None, *, say: Callable[[str], None] = print,
                            **options: Any) -> Validation:
    """Sequential validation (harness.evidence.sequential.until_resolved): every config gets 2 seeds at the
    long budget, then 2 more at a time for the configs of the comparisons still unresolved (the short-budget
    winner against the best; the runner-up and each published default against the recommended config), until
    all are resolved at `resolution` (intervals at each look's level) or `max_seeds` are spent. `options`:
    run_validation's."""
    sequential = {"max_seeds": max_seeds, "resolution": resolution or DEFAULT_RESOLUTION}

    def round_(seeds: int, grow: set[str] | None) -> tuple[Validation, set[str], int]:
        result = run_validation(view, seeds=seeds, say=say, grow=grow, sequential=sequential, **options)
        unresolved = unresolved_keys(result.doc)
        have = min((c["long"]["n"] for c in result.doc["configs"] if c["long"]
                    and _key(c, result.doc) in unresolved), default=seeds)
        return result, unresolved, have

    return until_resolved(round_, max_seeds, resolution, say, "validation", "config")


def _key(config: dict[str, Any], doc: dict[str, Any]) -> str:
    training = next((p.get("training") for p in doc.get("plan") or []
                     if p["source"] == config["source"] and p["params"] == config["params"]), None)
    return config_key(config["params"], training)


def _config_named(doc: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any] | None:
    """The validation doc's config with `ref`'s params and source (the recommended one, the runner-up)."""
    return next((c for c in doc["configs"] if c["params"] == ref.get("params") and c["source"] == ref.get("source")),
                None)


def unresolved_keys(doc: dict[str, Any]) -> set[str]:
    """The configs (keys) on either side of an unresolved comparison of a validation doc."""
    by_source: dict[str, list[dict[str, Any]]] = {}
    for config in doc["configs"]:
        by_source.setdefault(config["source"], []).append(config)
    recommended = doc.get("recommended") or {}
    best = _config_named(doc, recommended)
    keys: set[str] = set()
    loss = doc["regret"]
    if loss.get("value") is not None and loss.get("resolved") is False and best is not None:
        winner = next((c for c in doc["configs"] if c["params"] == doc.get("short_winner")), None)
        keys |= {_key(c, doc) for c in (winner, best) if c is not None}
    second = doc.get("runner_up") or {}
    if second.get("diff") is not None and second.get("resolved") is False and best is not None:
        keys |= {_key(c, doc) for c in (_config_named(doc, second), best) if c is not None}
    for row in doc["defaults"]:
        if row.get("diff") is not None and row.get("resolved") is False and best is not None:
            keys |= {_key(c, doc) for c in by_source.get(row["name"], [])} | {_key(best, doc)}
    return keys
