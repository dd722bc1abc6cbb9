"""The command line: one small function per subcommand, no logic of its own.

Exit codes: 0 success; 2 bad input (one line on stderr, no traceback); 130 interrupted (the
study stays resumable); 1 anything else.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from harness.spec import SpecError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=False,
                  help="Find out which LoRA / QLoRA settings to fine-tune with, and prove it.")


def _fail(message: str, code: int) -> None:
    typer.echo(f"harness: error: {message}", err=True)
    raise typer.Exit(code)


def _sweep_flags(**flags: Any) -> dict[str, Any]:
    return {k: v for k, v in flags.items() if v is not None}


HEARTBEAT_OPTION = typer.Option(None, "--heartbeat-interval", envvar="HARNESS_HEARTBEAT_INTERVAL",
                                help="Seconds between a running trial's heartbeats (relational storages; default 10).")
GRACE_OPTION = typer.Option(None, "--grace-period", envvar="HARNESS_GRACE_PERIOD",
                            help="Seconds without a heartbeat before a trial's worker counts as lost (default 60).")


@app.command()
def sweep(
    experiment: Optional[Path] = typer.Option(None, "--experiment", "-e", help="Experiment YAML (flags override it)."),
    model: Optional[str] = typer.Option(None, help="smollm2-135m, tiny-llama, a hub id, a folder or a .gguf file."),
    data: Optional[str] = typer.Option(None, help="Built-in dataset (stdlib-qa) or a local JSONL file."),
    space: Optional[str] = typer.Option(None, help="Search-space file or name in search_spaces/ (default, tiny, ...)."),
    trials: Optional[int] = typer.Option(None, help="How many more finished trials to run."),
    study: Optional[str] = typer.Option(None, help="Study name (default: the experiment file's name, or 'default')."),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default sqlite:///<out>/study.db)."),
    max_steps: Optional[int] = typer.Option(None, help="Optimizer steps per trial."),
    seed: Optional[int] = typer.Option(None, help="Sampler and training seed."),
    out: Optional[str] = typer.Option(None, help="Output folder (default experiments/<study>)."),
    wandb: Optional[str] = typer.Option(None, help="auto, offline, online or disabled."),
    sampler: Optional[str] = typer.Option(None, help="tpe, random or grid."),
    pruner: Optional[str] = typer.Option(None, help="none, median or hyperband."),
    objectives: Optional[str] = typer.Option(None, "--objectives", "--objective",
                                             help="Comma-separated: eval_loss, perplexity, peak_memory_mb, "
                                                  "train_seconds, tokens_per_second, or a task metric "
                                                  "(exact_match, accuracy, rouge_l, token_f1)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes on this machine, one GPU each (default 1); "
                                                     "more than 1 needs a journal file or PostgreSQL storage."),
    heartbeat_interval: Optional[int] = HEARTBEAT_OPTION,
    grace_period: Optional[int] = GRACE_OPTION,
) -> None:
    """Run (or resume) a study: each trial fine-tunes a LoRA/QLoRA adapter and scores it."""
    from harness.experiment import build_sweep_spec, load_experiment

    file_values = load_experiment(experiment) if experiment else {}
    flags = _sweep_flags(model=model, data=data, space=space, trials=trials, study=study, storage=storage,
                         max_steps=max_steps, seed=seed, out=out, wandb=wandb, sampler=sampler, pruner=pruner,
                         objectives=objectives)
    spec = build_sweep_spec(file_values, flags, str(experiment) if experiment else "flags")
    _run_sweep(_parallel_storage(spec, 1 if workers is None else workers), workers=workers or 1,
               heartbeat=_heartbeat(heartbeat_interval, grace_period))


@app.command()
def worker(
    study: str = typer.Option(..., help="Name of an existing study to join."),
    storage: str = typer.Option(..., help="The study's storage URL (postgresql://... across machines)."),
    trials: Optional[int] = typer.Option(None, help="Stop when the study holds this many finished (or running) "
                                                    "trials, counting every worker (default: the target of the "
                                                    "last `harness sweep` on it)."),
    out: Optional[str] = typer.Option(None, help="Where this worker writes trials.jsonl, adapters and W&B runs."),
    heartbeat_interval: Optional[int] = HEARTBEAT_OPTION,
    grace_period: Optional[int] = GRACE_OPTION,
) -> None:
    """Join an existing study and run trials of it with the settings it was created with."""
    from harness.experiment import build_sweep_spec
    from harness.study import load_existing_study

    if trials is not None and trials < 1:
        raise SpecError(f"--trials must be >= 1 (the study-wide number of trials to reach), got {trials}")
    loaded = load_existing_study(study, storage)
    stored = loaded.user_attrs.get("sweep")
    if not stored:
        _fail(f"study {study!r} was not created by `harness sweep` (no stored settings to join with)", 2)
    spec = build_sweep_spec(stored, _sweep_flags(storage=storage, out=out), f"study {study}")
    target = trials if trials is not None else loaded.user_attrs.get("target_trials")
    _run_sweep(spec, heartbeat=_heartbeat(heartbeat_interval, grace_period), target=target, joined=True)


def _parallel_storage(spec: Any, workers: int) -> Any:
    """Several workers need a storage that is safe for concurrent writers: a journal file by default
    (`<out>/study.journal`) or PostgreSQL; SQLite is refused."""
    import dataclasses

    if workers < 1:
        raise SpecError(f"--workers must be >= 1, got {workers}")
    if workers == 1:
        return spec
    alternatives = (f"leave --storage out for a journal file ({spec.out_dir}/study.journal), or give a journal "
                    "file path or a postgresql:// URL")
    if spec.storage and spec.storage.startswith("sqlite"):
        raise SpecError(f"--workers {workers} cannot share a SQLite storage ({spec.storage}): {alternatives}")
    if not spec.storage and Path(spec.out_dir, "study.db").exists():
        raise SpecError(f"study folder {spec.out_dir} already holds a SQLite study.db, which {workers} workers "
                        f"cannot share: resume it with --workers 1, or copy it with optuna.copy_study to a "
                        "journal file or PostgreSQL and pass that as --storage")
    return dataclasses.replace(spec, storage=spec.storage or f"{spec.out_dir}/study.journal")


def _heartbeat(interval: Optional[int], grace: Optional[int]) -> Any:
    """Heartbeat settings from the flags (or their environment variables); None: the study's or the defaults."""
    from harness.recovery import Heartbeat

    if interval is None and grace is None:
        return None
    default = Heartbeat()
    interval = default.interval if interval is None else interval
    return Heartbeat(interval, max(default.grace, 6 * interval) if grace is None else grace)


def _joined_seed_offset() -> int:
    """A worker that joins from anywhere samples with a seed of its own (workers must not sample alike)."""
    import random

    return random.SystemRandom().randrange(1, 2**31)


def _run_sweep(spec: Any, show: bool = True, *, workers: int = 1, heartbeat: Any = None, target: Optional[int] = None,
               joined: bool = False) -> None:
    """Run the sweep here (one process), as `workers` processes, or as a worker that joined a study."""
    from harness.experiment import resolve_space
    from harness.progress import pareto_table, print_table, trials_table
    from harness.space import load_space
    from harness.sweep import Role, Sweep, SweepInterrupted
    from harness.workers import WorkersFailed, run_parallel

    space = load_space(resolve_space(spec.space))
    try:
        if workers > 1:
            outcome = run_parallel(spec, space, workers, heartbeat)
        else:
            role = Role(target=target, heartbeat=heartbeat, seed_offset=_joined_seed_offset() if joined else 0,
                        parallel=joined)
            outcome = Sweep(spec, space, role=role).run()
    except SweepInterrupted as stop:
        _fail(str(stop), 130)
    except WorkersFailed as failed:
        _fail(str(failed), 1)
    if not show:
        return
    ranked = _ranked(outcome.records, spec)
    print_table(trials_table(ranked[:10], f"study {spec.study}: {len(outcome.records)} trials this run, best first"))
    if outcome.pareto:
        print_table(pareto_table(outcome.pareto, spec.objectives))
    _print_where(outcome, spec.objectives[0])


def _ranked(records: list[dict[str, Any]], spec: Any) -> list[dict[str, Any]]:
    sign = 1 if spec.directions[0] == "minimize" else -1
    order = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2}

    def key(record: dict[str, Any]) -> tuple[int, float]:
        value = _objective_value(record, spec.objectives[0])
        return order.get(record["state"], 3), sign * value if value is not None else float("inf")

    return sorted(records, key=key)


def _objective_value(record: dict[str, Any], name: str) -> float | None:
    """An objective's value in a trials.jsonl record: a top-level key, a result field or a task metric."""
    for source in (record, record.get("result") or {}, record.get("metrics") or {}):
        if source.get(name) is not None:
            return source[name]
    return None


def _print_where(outcome: Any, objective: str) -> None:
    base = outcome.baseline_eval_loss if objective == "eval_loss" else outcome.baseline_metrics.get(objective)
    if outcome.best is not None:
        best = outcome.best["values"][0]
        line = f"best trial #{outcome.best['number']}: {objective} {best:.4f}"
        if base is not None:
            line += f"  (untuned base model: {base:.4f}, change {best - base:+.4f})"
        typer.echo(line)
    out = outcome.out_dir
    typer.echo(f"study:   {outcome.storage} (study name {outcome.study!r})")
    typer.echo(f"trials:  {out / 'trials.jsonl'}")
    if (out / "best_adapter").exists():
        typer.echo(f"adapter: {out / 'best_adapter'} (peft: PeftModel.from_pretrained(base, path))")
    if (out / "wandb").exists():
        typer.echo(f"wandb:   {out / 'wandb'} (offline runs: wandb sync {out / 'wandb'}/offline-run-*)")


def _study_url(study: str, storage: str | None, out: str | None) -> str:
    return storage or f"sqlite:///{out or f'experiments/{study}'}/study.db"


def _study_dir(study: str, out: str | None, view: Any = None) -> Path:
    """The sweep's output folder: --out, else where the study was created to write, else the default."""
    stored = (view.sweep.get("out") if view is not None else None) if not out else None
    return Path(out or stored or f"experiments/{study}")


def _reports_dir(study: str, reports_dir: str | None) -> Path:
    return Path(reports_dir or f"reports/{study}")


STUDY_OPTION = typer.Option("default", help="Study name.")
STORAGE_OPTION = typer.Option(None, help="Storage URL (default sqlite:///<out>/study.db).")
OUT_OPTION = typer.Option(None, help="The sweep's --out folder (default experiments/<study>).")
REPORTS_OPTION = typer.Option(None, "--reports-dir", help="Where report files go (default reports/<study>).")
DEVICE_OPTION = typer.Option(None, "--device", help="Only the trials that ran on this device (the name compare lists "
                                                    "when a study ran on several); tables never mix devices.")


@app.command()
def status(study: str = STUDY_OPTION, storage: Optional[str] = STORAGE_OPTION, out: Optional[str] = OUT_OPTION) -> None:
    """A table of the study's trials."""
    from harness.progress import print_table, trials_table
    from harness.study import load_existing_study, study_rows

    url = _study_url(study, storage, out)
    loaded = load_existing_study(study, url)
    rows = study_rows(loaded)
    print_table(trials_table(rows, f"study {study}: {len(rows)} trials ({url})"))
    base = loaded.user_attrs.get("baseline_eval_loss")
    if base is not None:
        typer.echo(f"untuned base model eval_loss: {base:.4f}")


def _view(study: str, url: str, out: str | None, confirm_seeds: int = 0, confirm_top: int = 1) -> Any:
    """The study read back, after running the confirmation trials asked for (if any)."""
    from harness.readout import load_view

    view = load_view(study, url, _study_dir(study, out) / "trials.jsonl")
    if confirm_seeds:
        _confirm(view, url, out, confirm_seeds, confirm_top)
        view = load_view(study, url, _study_dir(study, out, view) / "trials.jsonl")
    return view


def _confirm(view: Any, url: str, out: str | None, seeds: int, top: int) -> None:
    """Enqueue the missing confirmation re-runs and run every waiting trial with the study's settings."""
    import optuna

    from harness.confirm import enqueue, plan_confirmations
    from harness.experiment import build_sweep_spec
    from harness.study import load_existing_study

    if not view.sweep:
        _fail(f"study {view.name!r} was not created by `harness sweep`; cannot re-run its configs", 2)
    study = load_existing_study(view.name, url)
    plans = plan_confirmations(view, seeds, top)
    enqueue(study, plans)
    waiting = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))
    if not waiting:
        typer.echo(f"confirmation: every config already has its {seeds} seeds")
        return
    typer.echo(f"confirmation: {waiting} re-runs ({seeds} fresh seeds x the top {top} config(s) of each mode)")
    flags = _sweep_flags(storage=url, trials=waiting, out=str(_study_dir(view.name, out, view)))
    _run_sweep(build_sweep_spec(view.sweep, flags, f"study {view.name}"), show=False)


@app.command()
def compare(
    study: str = STUDY_OPTION, storage: Optional[str] = STORAGE_OPTION, out: Optional[str] = OUT_OPTION,
    reports_dir: Optional[str] = REPORTS_OPTION,
    confirm_seeds: int = typer.Option(0, "--confirm-seeds", help="Re-run each mode's top configs with K fresh seeds first."),
    confirm_top: int = typer.Option(1, "--confirm-top", help="How many configs per mode to confirm."),
    device: Optional[str] = DEVICE_OPTION,
) -> None:
    """LoRA vs QLoRA: per quantization mode, quality, memory and time; writes comparison.md/json."""
    from harness.compare import build_comparison, write_comparison
    from harness.progress import comparison_table, print_table

    view = _view(study, _study_url(study, storage, out), out, confirm_seeds, confirm_top)
    comparison = build_comparison(view, device)
    md, js = write_comparison(comparison, _reports_dir(study, reports_dir))
    for line in comparison.setup:
        typer.echo(line)
    print_table(comparison_table(comparison))
    for line in comparison.headlines + comparison.costs + [f"note: {n}" for n in comparison.notes]:
        typer.echo(line)
    typer.echo(f"written: {md} and {js}")


@app.command()
def recommend(
    study: str = STUDY_OPTION, storage: Optional[str] = STORAGE_OPTION,
    out: Optional[Path] = typer.Option(None, "--out", help="The YAML to write (default reports/<study>/recommended.yaml)."),
    sweep_dir: Optional[str] = typer.Option(None, "--sweep-dir", help="The sweep's --out folder, if it had one."),
    from_: Optional[list[str]] = typer.Option(None, "--from", help="Aggregate several studies (repeat the flag)."),
    max_memory_mb: Optional[float] = typer.Option(None, help="Also recommend the best config under this peak memory."),
    confirm_seeds: int = typer.Option(0, "--confirm-seeds", help="Re-run each mode's top configs with K fresh seeds first."),
    confirm_top: int = typer.Option(1, "--confirm-top", help="How many configs per mode to confirm."),
    allow_diverged: bool = typer.Option(False, "--allow-diverged",
                                        help="Also recommend configs one of whose confirmation seeds diverged or failed."),
) -> None:
    """The recommended config(s) as YAML that peft.LoraConfig, BitsAndBytesConfig and TrainingArguments load."""
    from harness.recommend import recommend_many, recommend_study, write_recommended

    names = list(from_ or [])
    if names:
        views = [_view(n, _study_url(n, storage, None), None, confirm_seeds, confirm_top) for n in names]
        doc, path = recommend_many(views), out or Path("reports") / ("+".join(names)) / "recommended.yaml"
    else:
        view = _view(study, _study_url(study, storage, sweep_dir), sweep_dir, confirm_seeds, confirm_top)
        doc = recommend_study(view, max_memory_mb, allow_diverged)
        path = out or _reports_dir(study, None) / "recommended.yaml"
    write_recommended(doc, path, "harness " + " ".join(sys.argv[1:]))
    evidence = doc["evidence"]
    typer.echo(f"recommended: {path}")
    typer.echo(f"rule: {evidence['rule']}")
    if "metrics" in evidence:
        typer.echo(f"best: {_describe(doc)} from trial #{evidence['source_trial']} "
                   f"({'confirmed' if evidence['confirmed'] else 'unconfirmed'}): {_metric_line(evidence)}")
        typer.echo(f"measured on: {evidence['model_label']}; {evidence.get('device')}")
    for line in evidence.get("left_out", []):
        typer.echo(f"left out: {line} (--allow-diverged keeps it)")
    for line in evidence.get("notes", []):
        typer.echo(f"note: {line}")


def _describe(doc: dict[str, Any]) -> str:
    from harness.compare import mode_label

    evidence = doc["evidence"]
    mode = mode_label(evidence["quantization"], evidence.get("compute_dtype"))
    return f"{mode}, r {doc['lora']['r']}, alpha {doc['lora']['lora_alpha']:g}, lr {doc['training']['learning_rate']:.3g}"


def _metric_line(evidence: dict[str, Any]) -> str:
    summary = evidence["metrics"][evidence["objective"]]
    spread = f" +/- {summary['std']:.4f}" if summary.get("std") is not None else ""
    return f"{evidence['objective']} {summary['mean']:.4f}{spread} (n={summary['n']})"


@app.command()
def report(
    study: str = STUDY_OPTION, storage: Optional[str] = STORAGE_OPTION, out: Optional[str] = OUT_OPTION,
    reports_dir: Optional[str] = REPORTS_OPTION,
    wandb: str = typer.Option("auto", help="W&B summary run: auto, offline, online or disabled."),
) -> None:
    """report.md and a self-contained report.html with plots; a W&B summary run."""
    from harness.compare import build_comparison, comparison_markdown, write_comparison
    from harness.recommend import recommend_study, write_recommended
    from harness.report import write_report
    from harness.summary import log_summary_run

    view = _view(study, _study_url(study, storage, out), out)
    target = _reports_dir(study, reports_dir)
    comparison = build_comparison(view)
    write_comparison(comparison, target)
    recommended = target / "recommended.yaml"
    if not recommended.exists():
        write_recommended(recommend_study(view), recommended, "harness " + " ".join(sys.argv[1:]))
    files = write_report(view, target, comparison_markdown(comparison))
    for name, reason in files.skipped.items():
        typer.echo(f"skipped {name}: {reason}")
    typer.echo(f"written: {files.markdown} and {files.html} ({len(files.plots)} plots)")
    where = log_summary_run(view, comparison, files, recommended, wandb, _study_dir(study, out, view))
    if where:
        typer.echo(f"wandb:   summary run in {where}")


@app.command()
def datasets() -> None:
    """The built-in datasets: what each holds, its size and the task metrics it is scored with."""
    from rich.table import Table

    from harness.data import describe_builtins
    from harness.progress import print_table

    table = Table(title="built-in datasets (use with --data NAME)", title_justify="left")
    for name in ("name", "train", "eval", "metrics", "description"):
        table.add_column(name, justify="right" if name in ("train", "eval") else "left")
    for name, description, n_train, n_eval, metrics in describe_builtins():
        table.add_row(name, str(n_train), str(n_eval), ", ".join(metrics), description)
    print_table(table)
    typer.echo("Local files: JSONL/JSON/CSV/Parquet with messages, prompt/completion, instruction/input/output, "
               "text, or text/label columns.")


@app.command()
def doctor(
    quick: bool = typer.Option(False, "--quick", help="Skip the per-mode training check."),
) -> None:
    """What this machine can run: device, dtypes, bitsandbytes, which quantization modes work."""
    from harness.doctor import format_report, run_doctor

    typer.echo(format_report(run_doctor(check_modes=not quick)))


def main() -> None:
    """Console-script entry: one line on stderr for a failure, the exit code from harness.exits."""
    from harness.exits import FAILED, Interrupted, exit_code, is_usage_error

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        code = app(standalone_mode=False)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - the last line of defence: one line
        code = exit_code(err)
        if isinstance(err, (SpecError, Interrupted)):
            typer.echo(f"harness: error: {err}", err=True)
        elif isinstance(err, KeyboardInterrupt):
            typer.echo("harness: interrupted", err=True)
        elif is_usage_error(err):
            # A usage error (unknown flag, bad value) from click or the click copy typer bundles: one line.
            context = getattr(getattr(err, "ctx", None), "command_path", "harness")
            typer.echo(f"harness: error: {err.format_message()} (see `{context} --help`)", err=True)
        elif code == FAILED:
            if os.environ.get("HARNESS_DEBUG"):
                raise
            typer.echo(f"harness: {type(err).__name__}: {err} (set HARNESS_DEBUG=1 for the traceback)", err=True)
        sys.exit(code)
    sys.exit(code if isinstance(code, int) else 0)
