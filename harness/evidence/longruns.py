"""A study's validations read back: which linked long-budget study holds them, what makes two validated configs
the same runs (`config_key`), and each config's short- and long-budget values with their statistics
(harness.evidence.validation). `harness validate` writes them (harness.evidence.validate); recommend and
report read them here. Nothing here trains.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.config.defaults import AXES
from harness.config.errors import SpecError
from harness.config.space import OPTIONAL_AXES
from harness.evidence.compare import example_scores
from harness.evidence.validation import ConfigRuns, validation_doc
from harness.search.readout import StudyView, open_view


def config_key(params: dict[str, Any], training: dict[str, Any] | None = None) -> str:
    """What makes two validated configs the same runs: the six axes, the optional axes a config has (use_dora,
    a sampled batch size, ...) and the training overrides."""
    chosen = {k: params.get(k) for k in AXES} | {k: v for k, v in params.items() if k in OPTIONAL_AXES}
    return json.dumps({"params": chosen, "training": training or {}}, sort_keys=True, default=str)


@dataclass
class Validation:
    """A validation read back: the linked study, the statistics (`doc`) and how many long runs this call ran."""

    study: str
    long_steps: int
    doc: dict[str, Any]
    ran: int = 0
    long_view: StudyView | None = None
    """The linked study read back (its completed long runs are the evidence for a validated recommendation)."""


def latest_link(view: StudyView) -> tuple[int, dict[str, Any]] | None:
    """The study's longest validation (steps and where its linked study is), or None."""
    links = view.attrs.get("validations") or {}
    if not links:
        return None
    steps = max(links, key=int)
    return int(steps), links[steps]


def read_validation(view: StudyView, steps: int | None = None) -> Validation:
    """A study's validation read back from the storage: configs with their short- and long-budget values and
    the statistics (validation.validation_doc)."""
    link = latest_link(view) if steps is None else (steps, (view.attrs.get("validations") or {}).get(str(steps)))
    if link is None or link[1] is None:
        at = "" if steps is None else f" at {steps} steps"
        have = ", ".join(sorted(view.attrs.get("validations") or {}, key=int))
        raise SpecError(f"study {view.name!r} has no validation{at}" + (f" (it has: {have} steps)" if have else "")
                        + f"; run `harness validate --study {view.name} --steps N`")
    n, where = link
    views = generation_views(where["study"], view.storage, where.get("out"))
    long_view = dataclasses.replace(views[0], rows=tuple(r for v in views for r in v.rows))
    configs = collect(view, long_view)
    sequential = long_view.attrs.get("sequential") or {}  # set by `validate --confirm-until resolved`
    doc = validation_doc(view.objective, view.directions[0], int(view.sweep.get("max_steps") or 0), n, configs,
                         sequential.get("resolution"), sequential.get("max_seeds"))
    doc.update(_context(view, long_view, views))
    return Validation(where["study"], n, doc, long_view=long_view)


def generation_name(linked: str, n: int) -> str:
    """A validation's linked study (n = 1) or its n-th generation, a continuation study `<linked>+<n>`: an
    Optuna study's categorical choices cannot grow, so a config outside the first one's space (a defaults file
    given to a later `harness validate`) trains in a continuation, read with the others."""
    return linked if n == 1 else f"{linked}+{n}"


def generation_names(linked: str, storage: str) -> list[str]:
    """The linked study and every continuation of it in the storage (`<linked>+2`, `+3`, ...), in order."""
    import optuna

    from harness.search.study import resolve_url

    names = set(optuna.get_all_study_names(storage=resolve_url(storage)))
    found: list[str] = []
    while generation_name(linked, len(found) + 1) in names:
        found.append(generation_name(linked, len(found) + 1))
    return found


def generation_folder(out: str, n: int) -> str:
    """The folder of a validation's n-th generation: the linked study's, with the continuation's suffix."""
    return out if n == 1 else f"{out}+{n}"


def fitting_generation(folder: Path, params: list[dict[str, Any]], space: Callable[[], dict[str, Any]]) -> int:
    """The first generation (1: the linked study; n: its continuation `+n`, folder with the same suffix) whose
    space file holds every axis value of `params`; one without a space file is new, and `space()` is written
    there now. Shared by validations and the cross-evaluation's cells."""
    n = 1
    while True:
        where = Path(generation_folder(str(folder), n))
        path = where / "space.yaml"
        if not path.exists():
            where.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(space(), sort_keys=False))
            return n
        axes = (yaml.safe_load(path.read_text()) or {}).get("axes") or {}
        if all(p[axis] in (axes.get(axis) or {}).get("choices", []) for p in params for axis in AXES):
            return n
        n += 1


def generation_views(linked: str, storage: str, out: str | None = None, *,
                     skip_empty: bool = False) -> list[StudyView]:
    """The linked study and its continuations read back, in order (`out`: the linked study's folder); a study
    with no trials yet is an error (the read-outs) or, with `skip_empty`, left out (planning)."""
    views = []
    for n, name in enumerate(generation_names(linked, storage) or [linked], start=1):
        try:
            views.append(open_view(name, storage, None if out is None else generation_folder(out, n)))
        except SpecError:
            if not skip_empty:
                raise
    return views


def collect(view: StudyView, long_view: StudyView) -> list[ConfigRuns]:
    """One ConfigRuns per planned config: its completed short-budget values in the study (its confirmation
    runs when it has any: the search trial was picked for being good, so it would bias the mean; else its
    search trials; none for a published default with its own training settings, or one the study's own configs
    already stand for) and its completed long-budget values."""
    plan = long_view.attrs.get("validation_plan") or []
    searched = {config_key(p["params"]) for p in plan if p["source"] == "search"}
    out = []
    for p in plan:
        key = config_key(p["params"], p.get("training"))
        short: tuple[float, ...] = ()
        if p["source"] == "search" or (not p.get("training") and key not in searched):
            same = [r for r in view.completed() if config_key(r.params) == key]
            confirmed = [r for r in same if r.confirmation_of is not None]
            short = tuple(r.values[0] for r in (confirmed or same))
        runs = [r for r in long_view.completed() if config_key(r.params, r.training) == key]
        examples = {r.seed: found for r in runs if r.seed is not None
                    and (found := example_scores(r.per_example, long_view.objective)) is not None}
        out.append(ConfigRuns(dict(p["params"]), p["source"], short, tuple(r.values[0] for r in runs),  # type: ignore[index]
                              long_by_seed={r.seed: r.values[0] for r in runs if r.seed is not None},  # type: ignore[index]
                              long_examples=examples))
    return out


def _context(view: StudyView, long_view: StudyView, views: list[StudyView]) -> dict[str, Any]:
    """What the numbers were measured on (STYLE: every number says what it is) and what could not run (`views`:
    the generations whose rows `long_view` holds; a failed run in a continuation names its study)."""
    failed = [f"trial #{r.number}{'' if v is views[0] else ' of ' + v.name} ({r.status or r.state.lower()}): "
              f"{r.reason}" for v in views for r in v.rows if r.finished and r.state != "COMPLETE"]
    return {"study": view.name, "linked_study": long_view.name, "continuation_studies": [v.name for v in views[1:]],
            "model": view.source.get("label"),
            "source_precision": view.source.get("precision"), "data": view.sweep.get("data"),
            "held_out_examples": view.n_eval,
            "devices": sorted({r.device_name for r in long_view.completed()}),
            "seeds": sorted({r.seed for r in long_view.completed() if r.seed is not None}),
            "plan": long_view.attrs.get("validation_plan") or [],
            "skipped_defaults": long_view.attrs.get("skipped_defaults") or {}, "failed_runs": failed}
