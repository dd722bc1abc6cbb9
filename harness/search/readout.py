"""A finished (or running) study read back as plain rows, for compare, recommend and report.

Reads only the Optuna study (the source of truth, whichever worker ran a trial) and, when it is
there, the sweep's ``trials.jsonl`` for per-step training curves. Nothing here trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

from harness.search.adapters import TASK_METRICS_ATTR
from harness.search.records import read_records
from harness.config.errors import SpecError
from harness.config.objectives import TASK_METRICS, perplexity, ranked
from harness.config.paths import study_out_dir, study_storage_url
from harness.search.study import load_existing_study
from harness.runtime.redaction import redact_values


SMALL_EVAL = 50
"""Fewer held-out examples than this and every result says so. Measured on SmolLM2 / stdlib-qa: one
example's eval loss has a standard deviation of about 1.0 nat, and the per-example difference between two
trials about 0.3 nats, so at 50 examples a paired difference is uncertain by about +/- 0.08 nats (95%,
paired bootstrap; +/- 0.10 at 32 examples): the size of the gaps between good configs (0.02-0.1 nats).
Below 50, rankings and mode comparisons are mostly noise."""


PACK_SHARED = ("peak_memory_mb", "train_peak_memory_mb", "eval_peak_memory_mb", "train_seconds", "tokens_per_second")
"""Result fields that are the pack's, not the config's, for a run trained in a pack (TrialResult.pack_size)."""

ALONE_NOTE = "trains alone once to measure the peak memory and seconds its config needs alone"
"""The pack_note of a confirmation or validation run that a packed plan trains alone (user attr `alone`)."""


def packed_note(rows: Iterable[TrialRow]) -> str | None:
    """One line when some of these runs trained in packs (`--pack`): their peak memory and seconds are the pack's,
    so the read-outs take those figures from the runs that trained alone where there are any (None when no run
    was packed)."""
    finished = [r for r in rows if r.finished]
    packed = [r for r in finished if r.pack_size > 1]
    if not packed:
        return None
    sizes = ", ".join(map(str, sorted({r.pack_size for r in packed})))
    alone = sum(1 for r in finished if r.pack_size == 1)
    where = (f"memory and time figures come from the {alone} run(s) that trained alone" if alone else
             "no run trained alone, so memory and time figures are the packs', above what a config needs alone "
             "(`compare --confirm-seeds N --pack K` trains each confirmed config alone once)")
    return f"{len(packed)} run(s) trained in packs of {sizes} (--pack): their peak memory and seconds are the pack's; {where}"


def alone_rows(rows: Iterable[TrialRow]) -> list[TrialRow]:
    """The runs whose PACK_SHARED figures are a config's own: those trained alone, when any are; else all of
    them (packed_note says so)."""
    rows = list(rows)
    return [r for r in rows if r.pack_size == 1] or rows


def measured_alone(rows: Iterable[TrialRow]) -> bool:
    """Whether one of these runs (of one config) trained alone or waits to (user attr `alone`), so that the
    config's own peak memory is or will be known."""
    return any((r.state in ("COMPLETE", "PRUNED") and r.pack_size == 1) or (not r.finished and r.alone)
               for r in rows)


def small_eval_note(n_eval: int | None) -> str | None:
    """One line when the held-out split is too small to rank configs on (None when it is large enough)."""
    if n_eval is None or n_eval >= SMALL_EVAL:
        return None
    return (f"only {n_eval} held-out example{'s' * (n_eval != 1)}: differences between trials smaller than the "
            f"eval-set noise cannot be told apart (below {SMALL_EVAL}, rankings are mostly noise); give more with "
            "data_options eval_size / eval_fraction, or a validation split in the data")


SEQUENTIAL_ATTR = "sequential_confirmation"
"""The study's user attr that says its confirmations were added sequentially ({max_seeds, resolution}): every
read-out of it gives paired intervals at the looks' levels (harness.evidence.confirm.record_sequential; a
confirmation trial carries the same dict as its user attr `sequential`, so `harness import` restores it).
"""


def merge_sequential(*entries: dict[str, Any] | None) -> dict[str, Any] | None:
    """Several records of sequential confirmation ({max_seeds, resolution}) as one: the largest cap (more looks,
    a stricter level at each: the conservative reading) and the last resolution given; None when none is."""
    given = [e for e in entries if e and e.get("max_seeds")]
    if not given:
        return None
    resolution = next((e["resolution"] for e in reversed(given) if e.get("resolution")), None)
    return {"max_seeds": max(int(e["max_seeds"]) for e in given), "resolution": resolution}


def baseline_entry(attrs: dict[str, Any], mode: str) -> dict[str, Any]:
    """A mode's untuned-baseline record as the study stores it (`baseline_by_mode`: eval_loss, metrics,
    weights, or `missing` with its reason); {} when the mode was not scored."""
    entry = (attrs.get("baseline_by_mode") or {}).get(mode)
    if entry is None and mode == "none":  # studies recorded before per-mode baselines
        entry = {"eval_loss": attrs.get("baseline_eval_loss"), "metrics": attrs.get("baseline_metrics") or {}}
    return dict(entry or {})


def baseline_scores(attrs: dict[str, Any], mode: str) -> dict[str, float] | None:
    """Everything the untuned base model scored in quantization `mode` (eval_loss and the task metrics),
    from a study's user attrs; None when that mode's baseline was not scored."""
    entry = baseline_entry(attrs, mode)
    if entry.get("eval_loss") is None:
        return None
    metrics = {k: float(v) for k, v in (entry.get("metrics") or {}).items() if isinstance(v, (int, float))}
    return {"eval_loss": float(entry["eval_loss"]), **metrics}


def baseline_of(attrs: dict[str, Any], mode: str, metric: str) -> float | None:
    """The untuned base model's `metric` (eval_loss, perplexity or a task metric) in quantization `mode`;
    None when it was not scored. The one home of "what the untuned model scores", used by every command
    that shows it."""
    scores = baseline_scores(attrs, mode)
    if scores is None:
        return None
    if metric == "perplexity":
        return perplexity(scores["eval_loss"])
    return scores.get(metric)


INTERRUPTED = "interrupted by user (Ctrl-C)"
"""The reason recorded for a trial the user interrupted."""


@dataclass(frozen=True)
class TrialRow:
    """One trial as the read-out side sees it."""

    number: int
    state: str
    """Optuna's state name: COMPLETE, PRUNED, FAIL, RUNNING or WAITING."""
    status: str | None
    """The harness status: complete, pruned, diverged, oom or failed (None while running)."""
    reason: str | None
    params: dict[str, Any]
    values: list[float] | None
    result: dict[str, Any]
    """Scalar results: eval_loss, peak_memory_mb, train_seconds, steps, tokens_per_second, task metrics..."""
    config: dict[str, Any]
    seed: int | None
    """The training seed the trial ran with."""
    confirmation_of: int | None
    """For a confirmation trial: the number of the search trial whose params it re-runs."""
    training: dict[str, Any] = field(default_factory=dict)
    """TrainSpec overrides the trial was enqueued with (a published default's schedule in a validation)."""
    intermediate: dict[int, float] = field(default_factory=dict)
    """Intermediate eval losses reported to the pruner, by step."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Per-step training loss (from trials.jsonl; empty when that file is not at hand)."""
    per_example: dict[str, list[float]] = field(default_factory=dict)
    """Per held-out example: `loss`, `tokens` and task-metric scores (TrialResult.per_example)."""
    alone: bool = False
    """Enqueued to train alone although its plan packs (user attr `alone`: it measures its config's memory)."""

    @property
    def pack_size(self) -> int:
        """How many trials trained at once with this one (1: alone, and for trials recorded before packs)."""
        return int(self.result.get("pack_size") or 1)

    @property
    def device_name(self) -> str:
        """What the trial ran on (`unknown` for trials recorded before harness kept it)."""
        return str(self.result.get("device_name") or "unknown")

    @property
    def weights(self) -> dict[str, Any]:
        """The base model's weight memory by kind (weights.weight_breakdown), when recorded."""
        value = self.result.get("weights")
        return value if isinstance(value, dict) else {}

    @property
    def quantization(self) -> str:
        return str(self.params.get("quantization", "none"))

    @property
    def finished(self) -> bool:
        return self.state in ("COMPLETE", "PRUNED", "FAIL")

    @property
    def interrupted(self) -> bool:
        """Stopped by the user (Ctrl-C), not by anything in its config: no evidence for or against it (a
        confirmation plans its seed again)."""
        return self.state == "FAIL" and self.reason == INTERRUPTED

    @property
    def ran(self) -> bool:
        """Finished on a device: a failed or pruned trial that recorded none (interrupted before its model
        loaded) did not run anywhere."""
        return self.finished and (self.state == "COMPLETE" or bool(self.result.get("device_name")))

    def metric(self, name: str) -> float | None:
        """A result field or task metric by name (eval_loss, peak_memory_mb, exact_match, ...)."""
        value = self.result.get(name)
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def seconds_per_step(self) -> float | None:
        seconds, steps = self.metric("train_seconds"), self.metric("steps")
        return seconds / steps if seconds is not None and steps else None


@dataclass(frozen=True)
class StudyView:
    """Everything the read-out side needs from one study."""

    name: str
    storage: str
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    rows: tuple[TrialRow, ...]
    sweep: dict[str, Any]
    """The settings the study was created with (model, data, space, max_steps, ...)."""
    attrs: dict[str, Any]
    """The study's user attrs (baselines, model source, n_eval, ...)."""

    @property
    def source(self) -> dict[str, Any]:
        """The base model's label and the precision of its source weights (harness.trial.source)."""
        return self.attrs.get("model_source") or {"label": str(self.sweep.get("model", "?")),
                                                  "precision": "not recorded", "four_bit_source": False}

    @property
    def n_eval(self) -> int | None:
        value = self.attrs.get("n_eval")
        return int(value) if isinstance(value, int) else None

    def baseline(self, mode: str = "none", metric: str | None = None) -> float | None:
        """The untuned base model's score in a quantization mode (eval_loss, perplexity or a task metric;
        the objective by default); None when it was not scored."""
        return baseline_of(self.attrs, mode, metric or self.objective)

    def ranked(self, items: Iterable[T], value: Callable[[T], float | None] | None = None) -> list[T]:
        """Items best first under the study's first objective (spec.ranked): trial rows by their objective
        value unless `value` says how to score an item (a confirmed mean, a recorded metric...)."""
        return ranked(items, self.directions[0], value or _objective_value)  # type: ignore[arg-type]

    def baseline_scores(self, mode: str = "none") -> dict[str, float] | None:
        """Everything the untuned model scored in a mode (eval_loss and task metrics), or None."""
        return baseline_scores(self.attrs, mode)

    def baseline_missing(self, mode: str) -> str | None:
        """Why a mode's baseline is missing (its worker died twice, say), or None."""
        return baseline_entry(self.attrs, mode).get("missing")

    def baseline_weights(self, mode: str) -> dict[str, Any]:
        """The untuned base model's weight memory by kind in a mode (weights.weight_breakdown), or {}."""
        return baseline_entry(self.attrs, mode).get("weights") or {}

    def baseline_modes(self) -> list[str]:
        """The modes the study scored (or tried to score) its untuned base model in."""
        return list(self.attrs.get("baseline_by_mode") or ["none"])

    def baseline_per_example(self, mode: str = "none") -> dict[str, list[float]]:
        return dict(self.attrs.get(f"baseline_per_example_{mode}") or {})

    def out_dir(self, out: str | None = None) -> Path:
        """The sweep's output folder: `out` when given, else the one the study was created to write to."""
        return Path(study_out_dir(self.name, out or self.sweep.get("out")))

    def devices(self) -> list[str]:
        """Devices the finished trials ran on, most trials first. A failed or pruned trial that recorded no device
        (interrupted before its model loaded) ran on none: it does not make an `unknown` device."""
        from collections import Counter

        return [d for d, _ in Counter(r.device_name for r in self.rows if r.ran).most_common()]

    def on_device(self, device: str) -> "StudyView":
        """The same study restricted to the trials that ran on one device (for per-device tables)."""
        import dataclasses

        return dataclasses.replace(self, rows=tuple(r for r in self.rows if r.device_name == device))

    @property
    def objective(self) -> str:
        return self.objectives[0]

    @property
    def minimize(self) -> bool:
        return self.directions[0] == "minimize"

    @property
    def task_metric(self) -> str | None:
        """The task metric reports show next to eval loss: a task objective, else the first one scored."""
        for name in (*self.objectives, *(baseline_scores(self.attrs, "none") or {})):
            if name in TASK_METRICS:
                return name
        return None

    def completed(self) -> list[TrialRow]:
        return [r for r in self.rows if r.state == "COMPLETE" and r.values is not None]

    def search_rows(self) -> list[TrialRow]:
        """Trials the sampler proposed (confirmation re-runs excluded)."""
        return [r for r in self.rows if r.confirmation_of is None]


def _objective_value(row: TrialRow) -> float | None:
    return row.values[0] if row.values else None


def open_view(study: str, storage: str | None = None, out: str | None = None) -> StudyView:
    """A study read back the way every read-out command finds it: in `storage`, else in the SQLite file
    of the sweep's folder `out` (default experiments/<study>), with the per-step curves of the trials.jsonl
    in its folder (`out`, else the folder the study was created to write to)."""
    url = study_storage_url(study, storage, out)
    loaded = load_existing_study(study, url)
    stored_out = (loaded.user_attrs.get("sweep") or {}).get("out")
    return view_of(loaded, url, Path(study_out_dir(study, out or stored_out)) / "trials.jsonl")


def view_of(study: Any, storage_url: str, trials_jsonl: Path | None = None) -> StudyView:
    attrs = redact_values(dict(study.user_attrs))  # a study stored by an older harness may hold a password
    sweep = attrs.get("sweep") or {}
    objectives = tuple(attrs.get("objectives") or sweep.get("objectives") or ("eval_loss",))
    directions = tuple(d.name.lower() for d in study.directions)
    histories = _histories(trials_jsonl)
    later = attrs.get(TASK_METRICS_ATTR) or {}  # --task-metrics top-K: scored after the sweep, on saved adapters
    rows = []
    for trial in study.get_trials(deepcopy=False):
        user = trial.user_attrs
        after = later.get(str(trial.number)) or {}
        config = user.get("config") or {}
        seed = user.get("seed", (config.get("train") or {}).get("seed"))
        rows.append(TrialRow(
            number=trial.number, state=trial.state.name, status=user.get("status"), reason=user.get("reason"),
            params={**(user.get("variant") or {}), **(trial.params or trial.system_attrs.get("fixed_params") or {})},
            values=list(trial.values) if trial.values is not None else None,
            result={**(user.get("result") or {}), **(after.get("metrics") or {})}, config=config, seed=seed,
            confirmation_of=user.get("confirmation_of"), training=dict(user.get("training") or {}),
            intermediate={int(k): float(v) for k, v in trial.intermediate_values.items()},
            history=histories.get(trial.number, []),
            per_example={**(user.get("per_example") or {}), **(after.get("per_example") or {})},
            alone=bool(user.get("alone"))))
    if not rows:
        raise SpecError(f"study {study.study_name!r} has no trials yet; run `harness sweep --study "
                        f"{study.study_name}` first")
    return StudyView(name=study.study_name, storage=storage_url, objectives=objectives, directions=directions,
                     rows=tuple(rows), sweep=sweep, attrs=attrs)


def _histories(path: Path | None) -> dict[int, list[dict[str, float]]]:
    if path is None or not path.exists():
        return {}
    return {record["number"]: record.get("history") or [] for record in read_records(path)}
