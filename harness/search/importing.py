"""A study rebuilt from its trials.jsonl (`harness import`).

trials.jsonl holds every finished trial with its params, config, results and per-example scores; the
study's database holds the same plus the sampler's state. When the database is gone (a deleted folder,
a report committed without it), `harness import` makes a new study from the records and the experiment
that produced them, so that every read-out (compare, recommend, report) works on it and more seeds can be
confirmed on it. The sampler's internal state and the untuned baselines are not in the records: a later
sweep or confirmation on the study scores the baselines again (or reads them from the machine's cache).

Records written before trials.jsonl carried `confirmation_of` name no source trial: a trial with another
seed than the sweep's and the same params as an earlier search trial is taken for its confirmation (what
`harness compare --confirm-seeds` enqueues), and the import says how many it inferred.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.errors import SpecError
from harness.config.experiment import spec_to_dict
from harness.runtime.redaction import redact_url, redact_values
from harness.config.space import SearchSpace
from harness.config.sweep import SweepSpec
from harness.search.readout import SEQUENTIAL_ATTR, merge_sequential
from harness.search.records import read_records


@dataclass(frozen=True)
class Imported:
    """What an import made: the new study's trial count, by state, and what it had to infer."""

    study: str
    storage: str
    trials: int
    states: dict[str, int]
    inferred_confirmations: int
    renumbered: bool


def import_records(path: Path, spec: SweepSpec, space: SearchSpace,
                   say: Callable[[str], None] = print) -> Imported:
    """Create study `spec.study` in `spec.storage_url` from the records in `path` (refused when the study
    exists or the file holds no records)."""
    from harness.search.study import load_existing_study, open_study

    records = _read(path)
    try:
        load_existing_study(spec.study, spec.storage_url)
        exists = True
    except SpecError:
        exists = False
    if exists:
        raise SpecError(f"study {spec.study!r} already exists in {redact_url(spec.storage_url)}; import into a new "
                        "--study name")
    numbers = {int(r["number"]): i for i, r in enumerate(records)}
    renumbered = sorted(numbers) != list(range(len(records)))
    new_number = {old: i for i, old in enumerate(sorted(numbers))}
    confirmations, inferred = _confirmations(records, int(spec.seed))
    study = open_study(spec, space, create=True)
    study.set_user_attr("sweep", redact_values(spec_to_dict(spec)))  # no password kept
    study.set_user_attr("imported_from", {"records": str(path), "trials": len(records)})
    first_losses = next((r["result"].get("per_example", {}).get("loss") for r in records
                         if (r.get("result") or {}).get("per_example")), None)
    if first_losses:
        study.set_user_attr("n_eval", len(first_losses))
    source = _model_source(spec)
    if source:
        study.set_user_attr("model_source", source)
    sequential = merge_sequential(*(r.get("sequential") for r in records))
    if sequential:  # confirmations added sequentially: read back at the looks' levels, as the original study
        study.set_user_attr(SEQUENTIAL_ATTR, sequential)
    distributions = _distributions(records)
    for old in sorted(numbers):
        record = records[numbers[old]]
        of = confirmations.get(old)
        study.add_trial(_frozen(record, distributions, None if of is None else new_number[of], spec))
    states: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    say(f"imported {len(records)} trials from {path} into study {spec.study!r} ({redact_url(spec.storage_url)}): "
        + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())))
    if inferred:
        say(f"{inferred} of them are confirmation runs inferred from their seed and params (records written before "
            "trials.jsonl named the trial they confirm)")
    if renumbered:
        say("trial numbers were not 0..N-1 in the records: the study numbers them in the records' order of numbers")
    return Imported(spec.study, spec.storage_url, len(records), states, inferred, renumbered)


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise SpecError(f"{path}: no such file (give the trials.jsonl a sweep wrote)")
    records = [r for r in read_records(path) if "number" in r and "params" in r]
    if not records:
        raise SpecError(f"{path}: no trial records in it (a trials.jsonl has one JSON object per finished trial)")
    seen: set[int] = set()
    for record in records:
        if int(record["number"]) in seen:
            raise SpecError(f"{path}: trial #{record['number']} appears twice; give one study's trials.jsonl")
        seen.add(int(record["number"]))
    return records


def _seed(record: dict[str, Any]) -> int | None:
    seed = ((record.get("config") or {}).get("train") or {}).get("seed")
    return None if seed is None else int(seed)


def _confirmations(records: list[dict[str, Any]], sweep_seed: int) -> tuple[dict[int, int], int]:
    """Trial number -> the number of the search trial it confirms, and how many were inferred."""
    found, inferred = {}, 0
    search: list[dict[str, Any]] = []
    for record in sorted(records, key=lambda r: int(r["number"])):
        number = int(record["number"])
        if record.get("confirmation_of") is not None:
            found[number] = int(record["confirmation_of"])
            continue
        seed = _seed(record)
        if seed is not None and seed != sweep_seed:
            source = next((s for s in search if s["params"] == record["params"]), None)
            if source is not None:
                found[number] = int(source["number"])
                inferred += 1
                continue
        search.append(record)
    return found, inferred


def _distributions(records: list[dict[str, Any]]) -> dict[str, Any]:
    """A categorical distribution per param over the values the records hold (what Optuna needs to store
    params; the sampler of a later sweep reads the space, not these)."""
    from optuna.distributions import CategoricalDistribution

    values: dict[str, list[Any]] = {}
    for record in records:
        for name, value in record["params"].items():
            if value not in values.setdefault(name, []):
                values[name].append(value)
    return {name: CategoricalDistribution(choices) for name, choices in values.items()}


def _frozen(record: dict[str, Any], distributions: dict[str, Any], confirmation_of: int | None,
            spec: SweepSpec) -> Any:
    import optuna

    from harness.search.sweep import objective_values, result_summary, status_attrs
    from harness.trial.result import TrialResult

    body = dict(record.get("result") or {})
    result = TrialResult.from_dict({**body, "status": record.get("status") or "complete",
                                    "reason": record.get("error"), "metrics": record.get("metrics") or {},
                                    "eval_loss": record.get("eval_loss")})
    state = getattr(optuna.trial.TrialState, str(record.get("state") or "COMPLETE"))
    attrs: dict[str, Any] = {**status_attrs(result), "result": result_summary(result),
                             "config": record.get("config") or {}, "imported": True}
    if result.per_example:
        attrs["per_example"] = result.per_example
    seed = _seed(record)
    if seed is not None:
        attrs["seed"] = seed
    if confirmation_of is not None:
        attrs["confirmation_of"] = confirmation_of
    for key in ("training", "variant", "sequential"):  # sweep.RECORDED_ATTRS besides confirmation_of
        if record.get(key):
            attrs[key] = record[key]
    values = objective_values(spec, result) if result.status == "complete" else None
    params = record["params"]
    return optuna.trial.create_trial(
        state=state, params=params, distributions={k: distributions[k] for k in params}, user_attrs=attrs,
        values=values if state == optuna.trial.TrialState.COMPLETE else None)


def _model_source(spec: SweepSpec) -> dict[str, Any] | None:
    """The base model's label and source precision, read from its files (no weights loaded); None when the
    model is not on this machine."""
    from harness.trial.models import resolve_model
    from harness.trial.source import describe_source

    try:
        return describe_source(resolve_model(spec.model)).to_dict()
    except (OSError, SpecError, ValueError):
        return None
