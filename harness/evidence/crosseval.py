"""`harness defaults`: cross-evaluate several studies' top configs on every study's model and data.

Each study is a cell: its model, data, held-out split, budget and evaluation settings. Every study's top K
configs per quantization mode are the candidates; each is trained in every cell as an ordinary trial of the
cell's linked study `<study>@defaults-<digest>` (digest: the set of studies), in the cell's storage, with the
cell's settings (nothing of the candidate's own study but its params) and the cell's shared seeds (the
cell's seed + 1, + 2, ...: harness.evidence.validate.plan_runs), so that within a cell every comparison is
paired by seed. Planning is idempotent: a run already finished or waiting is not added again, so a stopped
cross-evaluation resumes and a larger `--seeds` adds only the missing seeds. A cell's runs in another
cross-evaluation's linked study (`<study>@defaults-<other digest>`: the same cell with another set of studies,
such as the set before a study was added) are the same measurement (same cell, config and seed) and count too:
adding a study to a cross-evaluation trains only the new candidates in the old cells.

The published defaults (harness/config/published_defaults.yaml, those whose ranks fit the cell's model) are
trained in every cell too, on the same seeds, with their own training overrides: they are references, never
candidates. Each is compared with its mode's chosen default, paired by seed, so that "the default beats every
published default in every cell" is measured, not assumed. The statistics and the choice are
harness.evidence.transfer's; this module plans, runs and reads back.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.defaults import AXES
from harness.config.errors import SpecError
from harness.config.space import OPTIONAL_AXES
from harness.config.training import TrainSpec
from harness.evidence.compare import example_scores
from harness.evidence.longruns import config_key, fitting_generation, generation_folder, generation_name
from harness.evidence.validate import COPIED_ATTRS, Planned, model_dims_of, plan_runs, published
from harness.evidence.transfer import Runs
from harness.search.readout import StudyView, open_view

LINK_ATTR = "defaults_of"
"""The linked study's record of what it cross-evaluates: {cell, studies}."""
REFERENCE_ATTR = "defaults_reference"
"""A run's user attr naming the published default it trains (a reference); candidates' runs carry
`defaults_candidate`."""


def digest(studies: list[str]) -> str:
    """Six hex digits naming a set of studies (order and repeats do not matter)."""
    return hashlib.sha256("\n".join(sorted(set(studies))).encode()).hexdigest()[:6]


def cell_study(study: str, studies: list[str]) -> str:
    """The linked study that holds cell `study`'s runs of a cross-evaluation of `studies`."""
    return f"{study}@defaults-{digest(studies)}"


def budget_of(view: StudyView) -> tuple[int, int]:
    """A study's budget per trial: optimizer steps and sequences per optimizer step (batch x accumulation)."""
    train = view.sweep.get("train") or {}
    per_step = int(train.get("batch_size", TrainSpec.batch_size)) * int(train.get("grad_accum", TrainSpec.grad_accum))
    return int(view.sweep.get("max_steps") or 0), per_step


def check_studies(views: list[StudyView]) -> None:
    """At least two distinct studies, each made by `harness sweep`, with one objective and one budget: a
    candidate is trained at each cell's budget, and a regret across budgets would measure the budget."""
    names = [v.name for v in views]
    if len(set(names)) < 2:
        raise SpecError("harness defaults needs at least two different studies (--study S1 --study S2 ...)")
    if len(set(names)) != len(names):
        raise SpecError(f"--study: a study is named twice ({', '.join(names)})")
    for view in views:
        if not view.sweep:
            raise SpecError(f"study {view.name!r} was not created by `harness sweep`; cannot re-train its configs")
    budgets = {v.name: budget_of(v) for v in views}
    if len(set(budgets.values())) > 1:
        shown = ", ".join(f"{name} {steps} steps x {seqs} sequences" for name, (steps, seqs) in budgets.items())
        raise SpecError(f"the studies' budgets differ ({shown}); a cross-evaluation trains every candidate at each "
                        "cell's budget, so give studies that share one")
    objectives = {v.name: v.objective for v in views}
    if len(set(objectives.values())) > 1:
        raise SpecError(f"the studies rank by different objectives ({objectives}); give studies with one objective")


@dataclass(frozen=True)
class CrossCandidate:
    """One candidate: a config of one study, named `<study>#<trial>`."""

    study: str
    trial: int
    params: dict[str, Any]
    note: str

    @property
    def name(self) -> str:
        return f"{self.study}#{self.trial}"

    @property
    def mode(self) -> str:
        return str(self.params.get("quantization", "none"))

    @property
    def key(self) -> str:
        return config_key(self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "study": self.study, "trial": self.trial, "mode": self.mode,
                "params": self.params, "note": self.note}

    def planned(self) -> Planned:
        return Planned(self.name, self.params, note=self.note)


def study_candidates(view: StudyView, top: int) -> list[CrossCandidate]:
    """A study's top `top` distinct configs of each quantization mode: confirmed ones by their confirmed mean
    first (when the study has confirmations), then search trials by their value (as `harness validate` picks)."""
    from harness.evidence.recommend import candidates

    if top < 1:
        raise SpecError(f"--top must be >= 1, got {top}")
    search = view.ranked(r for r in view.search_rows() if r.state == "COMPLETE" and r.values)
    if not search:
        raise SpecError(f"study {view.name!r} has no completed trials to take candidates from")
    confirmed = [(c.source, f"confirmed over {c.objective.n} seeds") for c in candidates(view) if c.confirmed]
    out: list[CrossCandidate] = []
    for mode in dict.fromkeys(r.quantization for r in search):
        picked: dict[str, CrossCandidate] = {}
        for row, how in confirmed + [(r, "single trial") for r in search]:
            if row.quantization != mode:
                continue
            params = {k: v for k, v in row.params.items() if k in AXES or k in OPTIONAL_AXES}
            candidate = CrossCandidate(view.name, row.number, params, f"trial #{row.number} of {view.name}, {how}")
            if candidate.key not in picked and len(picked) < top:
                picked[candidate.key] = candidate
        out += picked.values()
    return out


def cell_space(views: list[StudyView], planned: list[Planned]) -> dict[str, Any]:
    """A linked study's space file: each axis a categorical of every value the studies' completed configs, the
    candidates and the references use, so that another --top later fits the same space."""
    values: dict[str, set[Any]] = {name: set() for name in AXES}
    for view in views:
        for row in view.completed():
            for name in AXES:
                if name in row.params:
                    values[name].add(row.params[name])
    for p in planned:
        for name in AXES:
            values[name].add(p.params[name])
    axes = {name: {"choices": sorted(v, key=lambda x: (str(type(x)), x))} for name, v in values.items()}
    return {"description": "cross-evaluation cell: the values of the studies' configs (written by harness "
                           "defaults)", "axes": axes}


@dataclass(frozen=True)
class Cell:
    """One cell of a cross-evaluation: its study, its linked study, the linked study's folder, the published
    defaults trained there as references and those that cannot run on the cell's model (name -> why)."""

    view: StudyView
    linked: str
    folder: Path
    references: tuple[Planned, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()

    def plan(self, candidates: list[CrossCandidate]) -> list[Planned]:
        """Everything the cell trains: the candidates, then the references."""
        return [c.planned() for c in candidates] + list(self.references)


def cells_of(views: list[StudyView], *, references: bool = False, defaults_file: Path | None = None) -> list[Cell]:
    """The cells of a cross-evaluation of `views`; `references`: with the published defaults that fit each
    cell's model (harness.evidence.validate.published: the shipped ones, or `defaults_file`'s)."""
    names = [v.name for v in views]
    cells = []
    for v in views:
        runnable, skipped = published(v, model_dims_of(v), defaults_file) if references else ([], {})
        cells.append(Cell(v, cell_study(v.name, names), v.out_dir() / f"defaults-{digest(names)}",
                          tuple(runnable), tuple(skipped.items())))
    return cells


def run_cell(cell: Cell, views: list[StudyView], candidates: list[CrossCandidate], seeds: int, *,
             grow: set[str] | None = None, workers: int = 1, pack: int = 1, wandb: str | None = None,
             max_memory_mb: float | None = None, say: Callable[[str], None] = print) -> int:
    """Enqueue the cell's missing runs (every candidate and reference, or those whose keys are in `grow`, up to
    `seeds` seeds each, the cell's shared seeds) and run every waiting trial with the cell's settings; returns
    how many ran."""
    import optuna

    from harness.config.experiment import build_sweep_spec
    from harness.config.space import load_space
    from harness.search.launch import run_sweep
    from harness.search.study import open_study, public_url, resolve_url, storage_for_workers

    view = cell.view
    storage = resolve_url(view.storage)
    if workers > 1 and storage.startswith("sqlite"):
        raise SpecError(f"--workers {workers}: study {view.name!r} is in SQLite ({public_url(storage)}), which several "
                        "workers cannot share, and its cell lives in the same storage; use --workers 1, or copy "
                        "the studies to a journal file or PostgreSQL with optuna.copy_study and pass --storage")
    cell, space_path = generation(cell, views, cell.plan(candidates))

    def spec_of(name: str, folder: Path) -> Any:
        # the cell's settings, all of them (model, data, split, budget, training, evaluation), with the candidates'
        # params as the only thing from elsewhere; no warm start or range test may add trials to the cell
        flags = {"study": name, "storage": storage, "out": str(folder), "pruner": "none", "sampler": "random",
                 "space": str(folder / "space.yaml"), "wandb": wandb, "trials": 1, "pack": pack,
                 "lr_range_test": False, "warm_start": "none"}
        spec = storage_for_workers(build_sweep_spec(view.sweep, flags, f"study {view.name}"), workers)
        if max_memory_mb is not None:
            spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, max_memory_mb=max_memory_mb))
        return spec

    linked = open_study(spec_of(cell.linked, cell.folder), load_space(space_path))
    for key, value in view.attrs.items():  # the untuned model is not scored again; the split is the cell's
        if (key.startswith("baseline") or key in COPIED_ATTRS) and key not in linked.user_attrs:
            linked.set_user_attr(key, value)
    linked.set_user_attr(LINK_ATTR, {"cell": view.name, "studies": [v.name for v in views]})
    withdraw_unneeded(cell, cell.plan(candidates), seeds, grow, storage)
    references = {r.source for r in cell.references}
    for planned, seed in missing_runs(cell, candidates, seeds, grow):
        attrs: dict[str, Any] = {"seed": seed}
        attrs[REFERENCE_ATTR if planned.source in references else "defaults_candidate"] = planned.source
        if planned.training:  # a published default's schedule, warm-up, clipping (the trial reads them here)
            attrs["training"] = planned.training
        variant = {k: v for k, v in planned.params.items() if k in OPTIONAL_AXES}
        if variant:
            attrs["variant"] = variant
        linked.enqueue_trial({k: planned.params[k] for k in AXES}, user_attrs=attrs)
    # Every linked study of the cell: a waiting run counts as planned (missing_runs), so one left waiting in an
    # earlier generation or another set's study (a cross-evaluation stopped before it ran) is run there.
    ran = 0
    for name, folder in linked_studies(cell):
        waiting = len(optuna.load_study(study_name=name, storage=storage).get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
        if waiting:
            say(f"defaults: cell {view.name}: {waiting} runs to go in study {name}")
            run_sweep(dataclasses.replace(spec_of(name, folder), trials=waiting), workers=workers)
            ran += waiting
    if not ran:
        say(f"defaults: cell {view.name}: every run is done ({cell.linked})")
    return ran


def withdraw_unneeded(cell: Cell, planned: list[Planned], seeds: int, grow: set[str] | None, storage: str) -> int:
    """Runs left waiting in the cell's linked studies that this round does not plan (a config outside `grow`, a
    seed past `seeds`, a config no longer planned), e.g. from a stopped run that planned more, are withdrawn:
    marked failed with status `withdrawn`, so that they are not run; a later round that needs them plans them
    again. Returns how many."""
    import optuna

    from harness.search.recovery import fail_trial

    wanted = {p.key for p in planned if grow is None or p.key in grow}
    last_seed = int(cell.view.sweep.get("seed", 0)) + seeds
    withdrawn = 0
    for name, _ in linked_studies(cell):
        study = optuna.load_study(study_name=name, storage=storage)
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            params = {**t.system_attrs.get("fixed_params", {}), **(t.user_attrs.get("variant") or {})}
            if (config_key(params, t.user_attrs.get("training")) in wanted
                    and int(t.user_attrs.get("seed", last_seed + 1)) <= last_seed):
                continue
            withdrawn += fail_trial(study, t._trial_id, "withdrawn", "planned by an earlier round that is no "
                                    "longer needed (its comparison resolved, or it was planned for another cell)")
    return withdrawn


def generation(cell: Cell, views: list[StudyView], planned: list[Planned]) -> tuple[Cell, Path]:
    """The cell as it runs now, with its space file: linked study `<linked>`, else `<linked>+2`, `+3`, ... (the
    first whose space file holds every planned config; a new one's file is written now). An Optuna study's
    categorical choices cannot grow, so a config outside the space of the cell's study (a published default
    added to a cross-evaluation first run with --no-published, a larger --top) goes to a continuation study of
    the same cell, whose runs are read with the others (cell_views)."""
    n = fitting_generation(cell.folder, [p.params for p in planned], lambda: cell_space(views, planned))
    here = cell if n == 1 else dataclasses.replace(cell, linked=generation_name(cell.linked, n),
                                                   folder=Path(generation_folder(str(cell.folder), n)))
    return here, here.folder / "space.yaml"


def linked_studies(cell: Cell) -> list[tuple[str, Path]]:
    """Every linked study of the cell in its storage (`<study>@defaults-<suffix>`: any set of studies, any
    generation), this one first, with its folder (`defaults-<suffix>` beside the cell's)."""
    import optuna

    from harness.search.study import resolve_url

    prefix = f"{cell.view.name}@defaults-"
    names = sorted(n for n in optuna.get_all_study_names(storage=resolve_url(cell.view.storage))
                   if n.startswith(prefix))
    return [(name, cell.folder.parent / f"defaults-{name[len(prefix):]}")
            for name in sorted(names, key=lambda n: n != cell.linked)]


def missing_runs(cell: Cell, candidates: list[CrossCandidate], seeds: int,
                 grow: set[str] | None = None) -> list[tuple[Planned, int]]:
    """The cell's runs still missing: every candidate and reference (those whose keys are in `grow`, when
    given) up to `seeds` runs on the cell's shared seeds (the cell's seed + 1, + 2, ...); finished and waiting
    runs count, failed ones are planned again (harness.evidence.validate.plan_runs)."""
    rows = [r for view in cell_views(cell) for r in view.rows]
    return plan_runs(cell.plan(candidates), rows, seeds, int(cell.view.sweep.get("seed", 0)), grow)


def cell_views(cell: Cell) -> list[StudyView]:
    """Every linked study holding the cell's runs: this cross-evaluation's (when it exists and has trials), then
    other cross-evaluations' of the same cell (`<study>@defaults-<digest>`, any other set of studies) and
    continuation studies (`+2`, ...: generation)."""
    views = []
    for name, folder in linked_studies(cell):
        try:
            view = open_view(name, cell.view.storage, str(folder))
        except SpecError:  # created, nothing enqueued yet
            continue
        if view.rows and (view.attrs.get(LINK_ATTR) or {}).get("cell") == cell.view.name:
            views.append(view)
    return views


def read_cell(cell: Cell, candidates: list[CrossCandidate]) -> tuple[dict[str, Runs], dict[str, Any]]:
    """The cell's completed runs per candidate and reference (by seed, with per-example scores) and what the
    cell is."""
    views = cell_views(cell)
    done = [r for v in views for r in v.completed()]
    runs: dict[str, Runs] = {}
    objective = cell.view.objective
    for p in cell.plan(candidates):
        mine = [r for r in done if config_key(r.params, r.training) == p.key and r.seed is not None]
        examples = {r.seed: found for r in mine if (found := example_scores(r.per_example, objective))}
        runs[p.source] = Runs({r.seed: r.values[0] for r in mine}, examples)  # type: ignore[index,misc]
    return runs, _describe(cell, views)


def _describe(cell: Cell, views: list[StudyView]) -> dict[str, Any]:
    """What a cell was measured on (STYLE: every number says what it is)."""
    view = cell.view
    done = [r for v in views for r in v.completed()]
    failed = [f"{v.name} trial #{r.number} ({r.status or r.state.lower()}): {r.reason}"
              for v in views for r in v.rows if r.finished and r.state != "COMPLETE" and r.status != "withdrawn"]
    steps, per_step = budget_of(view)
    return {"name": view.name, "linked_study": cell.linked, "out": str(cell.folder),
            "runs_from": [v.name for v in views if v.name != cell.linked],
            "model": view.source.get("label"), "source_precision": view.source.get("precision"),
            "data": view.sweep.get("data"), "held_out_examples": view.n_eval, "max_steps": steps,
            "sequences_per_step": per_step, "seeds": sorted({r.seed for r in done if r.seed is not None}),
            "devices": sorted({r.device_name for r in done}), "failed_runs": failed,
            "references": [r.source for r in cell.references], "references_skipped": dict(cell.skipped),
            "untuned": {mode: scores.get(view.objective) for mode, scores in
                        (view.attrs.get("baseline_by_mode") or {}).items() if isinstance(scores, dict)}}


def open_views(studies: list[str], storage: str | None) -> list[StudyView]:
    """The studies read back (each from `storage`, else its own folder's SQLite file); an unknown name is a
    SpecError naming it."""
    return [open_view(name, storage) for name in studies]


@dataclass
class CrossEvaluation:
    """A cross-evaluation read back: the doc (harness.evidence.transfer.defaults_doc), its cells and candidates,
    and how many runs this call ran."""

    doc: dict[str, Any]
    cells: list[Cell]
    candidates: list[CrossCandidate]
    ran: int = 0


def read_cross(cells: list[Cell], candidates: list[CrossCandidate], resolution: str | None = None,
               max_seeds: int | None = None) -> CrossEvaluation:
    """Every cell read back and the regret matrices computed (transfer.defaults_doc)."""
    from harness.evidence.transfer import defaults_doc

    runs, described = {}, []
    for cell in cells:
        runs[cell.view.name], about = read_cell(cell, candidates)
        described.append(about)
    first = cells[0].view
    references = {r.source: {"name": r.source, "mode": str(r.params.get("quantization", "none")), "params": r.params,
                             "training": r.training, "source": r.note} for cell in cells for r in cell.references}
    doc = defaults_doc(first.objective, first.directions[0], budget_of(first)[0], described,
                       [c.to_dict() for c in candidates], runs, resolution, max_seeds, list(references.values()))
    return CrossEvaluation(doc, cells, candidates)


def cross_evaluate(studies: list[str], *, storage: str | None = None, top: int = 1, seeds: int = 2,
                   sequential: dict[str, Any] | None = None, references: bool = True,
                   defaults_file: Path | None = None, workers: int = 1, pack: int = 1,
                   wandb: str | None = None, max_memory_mb: float | None = None, train: bool = True,
                   say: Callable[[str], None] = print) -> CrossEvaluation:
    """Plan, run and read back a cross-evaluation of `studies` (see the module's docstring). `references`: train
    the published defaults in every cell too (the shipped ones, or `defaults_file`'s). `sequential`:
    {max_seeds, resolution}: 2 seeds for every candidate and reference in every cell, then 2 more at a time for
    the configs of unresolved comparisons (a regret, or a reference against its mode's choice:
    harness.evidence.sequential.until_resolved), intervals at each look's level. `train=False`: nothing is
    trained; the read-out of the runs done so far (a cross-evaluation stopped part-way)."""
    from harness.evidence.sequential import until_resolved
    from harness.evidence.transfer import fewest_pairs, unresolved_by_cell

    views = open_views(studies, storage)
    check_studies(views)
    candidates = [c for v in views for c in study_candidates(v, top)]
    cells = cells_of(views, references=references, defaults_file=defaults_file)
    for cell in cells:
        for name, why in cell.skipped:
            say(f"defaults: cell {cell.view.name}: published default {name} is not trained there: {why}")
    options = dict(workers=workers, pack=pack, wandb=wandb, max_memory_mb=max_memory_mb, say=say)
    if not train:
        result = read_cross(cells, candidates, *((sequential["resolution"], sequential["max_seeds"])
                                                 if sequential else ()))
        missing = sum(len(missing_runs(cell, candidates, seeds)) for cell in cells)
        say(f"defaults: nothing trained (--report-only); {missing} runs of the first {seeds} seeds still missing")
        return result
    if not sequential:
        ran = sum(run_cell(cell, views, candidates, seeds, **options) for cell in cells)  # type: ignore[arg-type]
        result = read_cross(cells, candidates)
        result.ran = ran
        return result
    keys = {p.source: p.key for cell in cells for p in cell.plan(candidates)}

    # grow: "<cell>\n<config key>" pairs: a comparison is within a cell, so seeds are added only where it is open
    def round_(n: int, grow: set[str] | None) -> tuple[CrossEvaluation, set[str], int]:
        for cell in cells:
            mine = None if grow is None else {k.split("\n", 1)[1] for k in grow
                                               if k.split("\n", 1)[0] == cell.view.name}
            run_cell(cell, views, candidates, n, grow=mine, **options)  # type: ignore[arg-type]
        result = read_cross(cells, candidates, sequential["resolution"], sequential["max_seeds"])
        modes = result.doc["modes"].values()
        open_ = {f"{cell}\n{keys[name]}" for m in modes for cell, names in unresolved_by_cell(m).items()
                 for name in names}
        have = min((fewest_pairs(m, n) for m in modes), default=n)
        return result, open_, have

    return until_resolved(round_, sequential["max_seeds"], sequential["resolution"], say, "cross-evaluation",
                          "config-in-a-cell pair")
