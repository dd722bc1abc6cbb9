"""The Optuna side: storage, samplers, pruners, study creation and the checks that make resume safe.

Everything here is an adapter around `run_trial`; nothing here trains.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from harness.config.experiment import build_sweep_spec
from harness.search.pruning import study_pruner
from harness.search.recovery import Heartbeat, enable_heartbeat
from harness.config.space import SearchSpace
from harness.config.errors import SpecError, one_line
from harness.config.objectives import TASK_METRICS
from harness.config.sweep import SweepSpec
from harness.config.paths import STORAGE_ENV, storage_from_env
from harness.runtime.redaction import redact_text, redact_url


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def make_storage(url: str) -> Any:
    """An Optuna storage for a URL; SQLite folders are created, other URLs are passed through."""
    import optuna

    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    if "://" not in url:  # a journal file: safe for several processes on one machine (or a shared disk)
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))
    # Several processes opening a new database at once (parallel workers, or a reader while the sweep
    # starts) race to create the schema; the loser sees an IntegrityError or a locked database. The
    # schema is there by the time it retries, so a few retries make concurrent opening safe.
    for attempt in range(STORAGE_OPEN_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as err:  # bad URL, missing driver, unreachable server, schema race
            if attempt + 1 < STORAGE_OPEN_ATTEMPTS and _is_schema_race(err):
                time.sleep(0.2 * (attempt + 1))
                continue
            hint = (" (PostgreSQL needs a driver: pip install 'harness[postgres]', i.e. psycopg2-binary)"
                    if isinstance(err, ModuleNotFoundError) else "")
            raise SpecError(f"storage {public_url(url)}: cannot open it ({redact_text(one_line(err))}){hint}") from None
    raise AssertionError("unreachable")


STORAGE_OPEN_ATTEMPTS = 8


def public_url(url: str) -> str:
    """A storage URL fit to print or commit: its password and secret query parameters replaced by *** (a journal
    file path as it is); harness.runtime.redaction decides."""
    return redact_url(url)


def storage_for_workers(spec: SweepSpec, workers: int) -> SweepSpec:
    """The spec with a storage `workers` processes can share: one worker keeps whatever it was given;
    several need a store safe for concurrent writers, a journal file by default (`<out>/study.journal`)
    or PostgreSQL; SQLite is refused."""
    import dataclasses

    if workers < 1:
        raise SpecError(f"--workers must be >= 1, got {workers}")
    if workers == 1:
        return spec
    alternatives = (f"leave --storage out for a journal file ({spec.out_dir}/study.journal), or give a journal "
                    "file path or a postgresql:// URL")
    storage = spec.storage or storage_from_env()
    if storage and storage.startswith("sqlite"):
        raise SpecError(f"--workers {workers} cannot share a SQLite storage ({public_url(storage)}): {alternatives}")
    if not storage and Path(spec.out_dir, "study.db").exists():
        raise SpecError(f"study folder {spec.out_dir} already holds a SQLite study.db, which {workers} workers "
                        f"cannot share: resume it with --workers 1, or copy it with optuna.copy_study to a "
                        "journal file or PostgreSQL and pass that as --storage")
    return dataclasses.replace(spec, storage=storage or f"{spec.out_dir}/study.journal")


def _is_schema_race(err: Exception) -> bool:
    text = f"{type(err).__name__} {err}".lower()
    return any(key in text for key in ("integrityerror", "already exists", "database is locked", "duplicate key"))


def make_sampler(spec: SweepSpec, space: SearchSpace, finished: int, offset: int = 0,
                 parallel: bool = False) -> Any:
    """TPE (seeded), random or grid. The seed is offset by the trials already run so a resumed
    sweep does not replay the same random start-up samples, and by `offset` (the worker's index) so
    parallel workers do not all sample the same params; `parallel` makes TPE treat the trials other
    workers are running as already scored badly (constant liar), so it does not pile onto them."""
    import optuna

    seed = spec.seed + finished + offset
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid" and space.conditional:
        return points_sampler(space.points(), seed=seed)
    if spec.sampler == "grid":
        return _ask_tell_grid_sampler()(space.grid(), seed=seed)
    # Few trials per sweep: start modelling after 4 random trials rather than Optuna's 10.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4, constant_liar=parallel)


def _ask_tell_grid_sampler() -> type:
    """GridSampler whose after_trial does not call study.stop() (only legal inside optimize());
    the sweep loop asks `is_exhausted` itself and stops when the grid is done."""
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return AskTellGridSampler


def points_sampler(points: list[dict[str, Any]], seed: int = 0) -> Any:
    """A PointsSampler (below) over `points`."""
    import optuna

    class PointsSampler(optuna.samplers.BaseSampler):
        """Grid search over an explicit list of points: the combinations of a conditional space (an axis whose
        conditions do not hold is absent from a point, so no combination is run twice, as GridSampler's product
        would). Each trial takes the first point, in a seeded order, that no other trial holds; like GridSampler
        it keeps the point's index in the trial's system attrs. Enqueued trials (confirmations) keep their params."""

        ATTR = "harness:point"

        def __init__(self, points: list[dict[str, Any]], seed: int = 0) -> None:
            import random

            self._points = list(points)
            self._order = list(range(len(points)))
            random.Random(seed).shuffle(self._order)

        def _taken(self, study: Any, exclude: int | None = None) -> set[int]:
            return {t.system_attrs[self.ATTR] for t in study.get_trials(deepcopy=False)
                    if self.ATTR in t.system_attrs and t.number != exclude}

        def is_exhausted(self, study: Any) -> bool:
            return len(self._taken(study)) >= len(self._points)

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return {}

        def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
            return {}

        def before_trial(self, study: Any, trial: Any) -> None:
            if "fixed_params" in trial.system_attrs or self.ATTR in trial.system_attrs:
                return
            taken = self._taken(study, exclude=trial.number)
            free = [i for i in self._order if i not in taken]
            index = free[0] if free else self._order[trial.number % len(self._order)]  # exhausted: repeat
            study._storage.set_trial_system_attr(trial._trial_id, self.ATTR, index)  # as GridSampler does

        def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
            point = self._points[trial.system_attrs[self.ATTR]]
            if name not in point:
                raise SpecError(f"grid point {point} has no value for {name!r}: the space changed under the study")
            return point[name]

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return PointsSampler(points, seed)


def open_study(spec: SweepSpec, space: SearchSpace, *, create: bool = True, heartbeat: Heartbeat | None = None,
               seed_offset: int = 0, parallel: bool = False) -> Any:
    """Create or load the study; refuse to resume it with a different space, objectives, model or data.
    Relational storages get heartbeats: the study's stored settings, or `heartbeat` (default Heartbeat())
    for a new study. `seed_offset` and `parallel`: see make_sampler."""
    import optuna

    _quiet_optuna()
    storage = make_storage(resolve_url(spec.storage_url))
    existing = _existing(storage, spec.study)
    if existing is None and not create:
        raise SpecError(f"study {spec.study!r} does not exist in {public_url(spec.storage_url)}")
    beat = _heartbeat(existing, heartbeat, spec.study)
    enable_heartbeat(storage, beat)
    finished = 0 if existing is None else len(existing.get_trials(deepcopy=False))
    study = optuna.create_study(storage=storage, study_name=spec.study, directions=spec.directions,
                                sampler=make_sampler(spec, space, finished, seed_offset, parallel),
                                pruner=study_pruner(spec),
                                load_if_exists=True)
    pinned = {"space_hash": space.hash, "objectives": list(spec.objectives), "model": spec.model,
              "data": spec.data}
    if existing is None:
        for key, value in pinned.items():
            study.set_user_attr(key, value)
        study.set_user_attr("settings", spec.measured_settings())
        study.set_user_attr("space", space.describe())
        study.set_user_attr("space_source", space.source)
        study.set_user_attr("heartbeat", {"interval": beat.interval, "grace": beat.grace})
    else:
        _check_resume(study, pinned, space, spec)
    if study.metric_names is None:  # a new study, or one created before harness named its objectives
        # optuna-dashboard and Optuna's plots label the values with them ("experimental" since Optuna 3.2: known)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"optuna\.study\.study\.Study\.set_metric_names is experimental",
                                    category=optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(spec.objectives))
    return study


def _heartbeat(existing: Any, requested: Heartbeat | None, name: str) -> Heartbeat:
    """Every worker of a study must use the same heartbeat settings: a worker with a shorter grace period
    would take its colleagues' healthy trials for lost ones. The study stores them when it is created."""
    stored = (existing.user_attrs.get("heartbeat") if existing is not None else None) or None
    if stored is None:
        return requested or Heartbeat()
    beat = Heartbeat(int(stored["interval"]), int(stored["grace"]))
    if requested is not None and requested != beat:
        raise SpecError(f"study {name!r} uses a heartbeat every {beat.interval} s with a {beat.grace} s grace period "
                        f"(set when it was created); every worker must use the same, not "
                        f"{requested.interval} s / {requested.grace} s")
    return beat


def resolve_url(url: str) -> str:
    """A study folder holds `study.db` (one worker) or `study.journal` (`--workers N`): the default SQLite URL
    of a folder that only has a journal means the journal."""
    if url.startswith("sqlite:///") and url.endswith("/study.db"):
        path = Path(url[len("sqlite:///"):])
        journal = path.with_name("study.journal")
        if not path.exists() and journal.exists():
            return str(journal)
    return url


def _existing(storage: Any, name: str) -> Any:
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def _check_resume(study: Any, pinned: dict[str, Any], space: SearchSpace, spec: SweepSpec) -> None:
    """Refuse a resume that would change what a trial measures: the space, objectives, model, data, and
    every setting in SweepSpec.measured_settings (max_steps, seed, train, data options, eval)."""
    attrs = study.user_attrs
    for key, value in pinned.items():
        if key in attrs and attrs[key] != value:
            hint = {"space_hash": f"it was created with {attrs.get('space_source', 'another space')}, "
                                  f"not {space.source}"}.get(key, f"it was created with {attrs[key]!r}, not {value!r}")
            raise SpecError(f"study {spec.study!r} cannot be resumed with a different {key.replace('_hash', '')}: "
                            f"{hint}; use a new --study name or the original settings")
    stored = _stored_settings(attrs)
    for key, value in spec.measured_settings().items():
        if key in stored and stored[key] != value:
            raise SpecError(f"study {spec.study!r} cannot be resumed with a different {key}: it was created with "
                            f"{stored[key]!r}, not {value!r}; use a new --study name or the original settings")


def _stored_settings(attrs: dict[str, Any]) -> dict[str, Any]:
    """The measured settings a study was created with (derived from its stored sweep for older studies)."""
    if "settings" in attrs:
        return attrs["settings"]
    if not attrs.get("sweep"):
        return {}
    return build_sweep_spec(attrs["sweep"], {}, "the stored sweep").measured_settings()


def joined_spec(study: str, storage: str | None, out: str | None,
                trials: int | None) -> tuple[SweepSpec, int | None]:
    """What `harness worker` runs: the settings a study was created with (only its storage, `storage` else
    HARNESS_STORAGE, and output folder come from the worker), and the study-wide number of trials to stop at
    (`trials`, else the target of the last `harness sweep` on it)."""
    storage = storage or storage_from_env()
    if not storage:
        raise SpecError(f"harness worker needs the study's storage: --storage URL, or {STORAGE_ENV} in the "
                        "environment (the same URL the sweep used)")
    if trials is not None and trials < 1:
        raise SpecError(f"--trials must be >= 1 (the study-wide number of trials to reach), got {trials}")
    loaded = load_existing_study(study, storage)
    stored = loaded.user_attrs.get("sweep")
    if not stored:
        raise SpecError(f"study {study!r} was not created by `harness sweep` (no stored settings to join with)")
    spec = build_sweep_spec(stored, {"storage": storage, "out": out}, f"study {study}")
    return spec, trials if trials is not None else loaded.user_attrs.get("target_trials")


def check_split(study: Any, split_hash: str, name: str) -> None:
    """The held-out split must be the one the study's trials were scored on (a changed data file, or
    stdlib-qa on another Python, gives another split): refuse with exit 2 rather than mix them."""
    stored = study.user_attrs.get("split_hash")
    if stored is not None and stored != split_hash:
        raise SpecError(f"study {name!r} cannot be resumed: its held-out split changed (hash {stored}, now "
                        f"{split_hash}; the data file, its options, or the Python version of stdlib-qa differ); "
                        "use a new --study name or the original data")


def load_existing_study(name: str, storage_url: str) -> Any:
    """Load a study for reading (status, compare, report); a clear error when it is not there."""
    import optuna

    _quiet_optuna()
    storage_url = resolve_url(storage_url)
    if storage_url.startswith("sqlite:///") and not Path(storage_url[len("sqlite:///"):]).exists():
        raise SpecError(f"no study database at {storage_url[len('sqlite:///'):]} (run `harness sweep --study {name}` "
                        "first, or pass --storage/--out)")
    storage = make_storage(storage_url)
    study = _existing(storage, name)
    if study is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise SpecError(f"study {name!r} not found in {public_url(storage_url)} "
                        f"(studies there: {', '.join(names) or 'none'})")
    return study


def study_rows(study: Any) -> list[dict[str, Any]]:
    """One row per trial, read from the study alone (works for any storage, any worker)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        result = trial.user_attrs.get("result") or {}
        rows.append({"number": trial.number, "state": trial.state.name, "params": trial.params,
                     "eval_loss": result.get("eval_loss"), "perplexity": result.get("perplexity"),
                     "peak_memory_mb": result.get("peak_memory_mb"), "train_seconds": result.get("train_seconds"),
                     "tokens_per_second": result.get("tokens_per_second"),
                     "metrics": {k: v for k, v in result.items() if k in TASK_METRICS},
                     "error": trial.user_attrs.get("reason")})
    return rows
