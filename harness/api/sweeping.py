"""Studies from Python: `sweep` (run or resume one), `worker` (join one), `import_` (rebuild one from its
trials.jsonl) and `status` (read one back), each returning a StudyHandle."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from harness.api.calls import Say, interruptible
from harness.api.results import StudyHandle
from harness.config.errors import SpecError


def sweep(experiment: str | Path | None = None, *, model: str | None = None, data: str | None = None,
          space: str | None = None, trials: int | None = None, study: str | None = None,
          storage: str | None = None, max_steps: int | None = None, seed: int | None = None,
          out: str | None = None, wandb: str | None = None, sampler: str | None = None, pruner: str | None = None,
          warm_start: str | None = None, task_metrics: str | None = None, lr_range_test: bool | None = None,
          objectives: str | None = None, workers: int | None = None, pack: int | None = None,
          heartbeat_interval: int | None = None, grace_period: int | None = None,
          from_config: str | Path | None = None, from_format: str | None = None, max_memory_mb: float | None = None,
          time_budget: str | float | None = None, say: Say = print) -> StudyHandle:
    """Run (or resume) a study: each trial fine-tunes a LoRA/QLoRA adapter and scores it.

    The keyword arguments are `harness sweep`'s flags (`--max-steps` is `max_steps`), with the same defaults
    and checks; `experiment` is an experiment YAML whose values the arguments override. Returns the study's
    handle (`.best`, `.trials`, `.study`, `.paths`). Raises SpecError for bad input, KeyboardInterrupt on
    Ctrl-C (the trial in flight is recorded and the study resumes where it stopped), and WorkersFailed when
    `workers` > 1 processes failed. `say` receives the lines printed before the sweep (a --from-config summary).
    `time_budget` (`20m`, `2h`, `90s` or seconds): no trial starts that is predicted to end past it, counted from
    this call (harness.search.time_budget); it is this call's alone, not stored in the study."""
    from harness.config.budget import duration_seconds
    from harness.config.experiment import build_sweep_spec, load_experiment
    from harness.search.launch import run_sweep
    from harness.search.recovery import Heartbeat
    from harness.search.study import storage_for_workers

    seconds = duration_seconds(time_budget)  # bad input fails before anything is read
    file_values = load_experiment(Path(experiment)) if experiment else {}
    if from_format is not None and from_config is None:
        raise SpecError("--from-format names the tool of a --from-config file; give --from-config FILE too")
    tool = None
    if from_config is not None:
        from harness.config.tools.reading import read_tool_config, summary_lines, sweep_values

        tool = read_tool_config(Path(from_config), from_format)
        file_values = sweep_values(tool, file_values)
        for line in summary_lines(tool):
            say(line)
    flags = dict(model=model, data=data, space=space, trials=trials, study=study, storage=storage,
                 max_steps=max_steps, seed=seed, out=out, wandb=wandb, sampler=sampler, pruner=pruner,
                 objectives=objectives, warm_start=warm_start, lr_range_test=lr_range_test,
                 task_metrics=task_metrics, pack=pack)
    spec = build_sweep_spec(file_values, flags, str(experiment) if experiment else "flags")
    if max_memory_mb is not None:  # the trials' memory budget: pinned in the study like the other train settings
        from harness.config.budget import memory_budget

        budget = memory_budget(max_memory_mb)
        spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, max_memory_mb=budget))
    if tool is not None and space is None and "space" not in file_values:
        spec = _space_around(spec, tool, say)
    spec = storage_for_workers(spec, 1 if workers is None else workers)
    with interruptible():
        outcome = run_sweep(spec, workers=workers or 1,
                            heartbeat=Heartbeat.from_flags(heartbeat_interval, grace_period), time_budget=seconds)
    return StudyHandle(spec.study, spec.storage_url, Path(spec.out_dir), outcome=outcome, spec=spec)


def plan(experiment: str | Path | None = None, *, model: str | None = None, data: str | None = None,
         space: str | None = None, trials: int | None = None, max_steps: int | None = None,
         seed: int | None = None, max_memory_mb: float | None = None) -> dict[str, Any]:
    """`harness sweep --plan`: for each quantization mode, checkpointing setting and batch shape the space can
    sample, the predicted peak memory and step time, whether it fits `max_memory_mb` (fitted or infeasible;
    default: this device's available memory less 10%, named in `budget_source`), and the sweep's estimated wall
    time, as one dict (`configs`, `budget_mb`, `budget_source`, `estimated_total_seconds`, ...).
    Runs short probes where this machine has none cached (`planning_seconds` says how long it took); creates
    no storage, no study and no output folder."""
    from harness.config.budget import memory_budget
    from harness.config.experiment import build_sweep_spec, load_experiment, resolve_space
    from harness.config.space import load_space
    from harness.search.planning import GIVEN_BUDGET, plan_sweep
    from harness.search.runner import TrialRunner
    from harness.search.sweep import trial_config

    budget = memory_budget(max_memory_mb)
    file_values = load_experiment(Path(experiment)) if experiment else {}
    flags = dict(model=model, data=data, space=space, trials=trials, max_steps=max_steps, seed=seed)
    spec = build_sweep_spec(file_values, flags, str(experiment) if experiment else "flags")
    source = GIVEN_BUDGET
    if budget is None:  # what fits this machine: its available memory, less a margin, said in the plan
        from harness.runtime.devices import pick_device
        from harness.search.planning import available_budget
        from harness.trial.pack_fit import available_mb

        budget, source = available_budget(available_mb(pick_device(), own=False))
    runner = TrialRunner()  # probes run in a trial worker, as they will in the sweep
    try:
        return plan_sweep(spec, load_space(resolve_space(spec.space)), budget, runner.predictor(), trial_config,
                          source)
    finally:
        runner.close()


def _space_around(spec: Any, tool: Any, say: Say) -> Any:
    """The sweep's space when it starts from a tool's file and names none: around the file's LoRA settings,
    written into the study's folder (and said)."""
    import yaml

    from harness.config.tools.reading import space_around

    space = space_around(tool)
    path = Path(spec.out_dir) / "space_from_config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# Written by harness sweep --from-config {tool.path}\n" + yaml.safe_dump(space, sort_keys=False))
    say(f"search space: {path} ({space['description']})")
    return dataclasses.replace(spec, space=str(path))


def worker(*, study: str, storage: str | None = None, trials: int | None = None, out: str | None = None, pack: int | None = None,
           heartbeat_interval: int | None = None, grace_period: int | None = None,
           time_budget: str | float | None = None, max_memory_mb: float | None = None) -> StudyHandle:
    """Join an existing study and run trials of it with the settings it was created with (`harness worker`);
    `storage` is the study's storage URL (default: HARNESS_STORAGE). `time_budget`: this worker's own, as for
    `sweep` (the sweep's budget, if it had one, is not inherited). `max_memory_mb`: the study's memory budget,
    which its trials run under anyway; a positive number, and another than the study's is refused."""
    from harness.config.budget import duration_seconds, memory_budget, study_budget
    from harness.search.launch import run_sweep
    from harness.search.recovery import Heartbeat
    from harness.search.study import joined_spec

    seconds = duration_seconds(time_budget)
    memory_budget(max_memory_mb)  # bad input fails before the study is read
    spec, target = joined_spec(study, storage, out, trials)
    study_budget(max_memory_mb, spec.train.max_memory_mb, study)
    if pack is not None:
        spec = dataclasses.replace(spec, pack=pack)
    with interruptible():
        outcome = run_sweep(spec, heartbeat=Heartbeat.from_flags(heartbeat_interval, grace_period), target=target,
                            joined=True, time_budget=seconds)
    return StudyHandle(spec.study, spec.storage_url, Path(spec.out_dir), outcome=outcome, spec=spec)


def import_(records: str | Path, experiment: str | Path | None = None, *, study: str | None = None,
            storage: str | None = None, out: str | None = None, model: str | None = None, space: str | None = None,
            max_steps: int | None = None, seed: int | None = None, say: Say = print) -> StudyHandle:
    """Rebuild a study from the trials.jsonl a sweep wrote (`harness import`; `import` is a Python keyword):
    compare, recommend, report and further confirmation seeds then work on it. Refused (SpecError) when the
    study exists already."""
    from harness.config.experiment import build_sweep_spec, load_experiment, resolve_space
    from harness.config.space import load_space
    from harness.search.importing import import_records

    file_values = load_experiment(Path(experiment)) if experiment else {}
    flags = dict(model=model, space=space, study=study, storage=storage, max_steps=max_steps, seed=seed, out=out)
    spec = build_sweep_spec(file_values, flags, str(experiment) if experiment else "flags")
    imported = import_records(Path(records), spec, load_space(resolve_space(spec.space)), say=say)
    return StudyHandle(spec.study, spec.storage_url, Path(spec.out_dir), imported=imported, spec=spec)


def status(study: str = "default", *, storage: str | None = None, out: str | None = None) -> StudyHandle:
    """The study's trials (`harness status`): a handle whose `.trials` is the status table as a DataFrame.
    SpecError when no such study exists."""
    from harness.config.paths import study_out_dir, study_storage_url

    handle = StudyHandle(study, study_storage_url(study, storage, out), Path(study_out_dir(study, out)))
    handle.study  # noqa: B018 - load now: a missing study is a SpecError here, not on first use
    return handle
