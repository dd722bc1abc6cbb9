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
) -> None:
    """Run (or resume) a study: each trial fine-tunes a LoRA/QLoRA adapter and scores it."""
    from harness.experiment import build_sweep_spec, load_experiment

    file_values = load_experiment(experiment) if experiment else {}
    flags = _sweep_flags(model=model, data=data, space=space, trials=trials, study=study, storage=storage,
                         max_steps=max_steps, seed=seed, out=out, wandb=wandb, sampler=sampler, pruner=pruner,
                         objectives=objectives)
    spec = build_sweep_spec(file_values, flags, str(experiment) if experiment else "flags")
    _run_sweep(spec)


@app.command()
def worker(
    study: str = typer.Option(..., help="Name of an existing study to join."),
    storage: str = typer.Option(..., help="The study's storage URL."),
    trials: Optional[int] = typer.Option(None, help="How many trials this worker runs (default: the study's)."),
    out: Optional[str] = typer.Option(None, help="Where this worker writes trials.jsonl, adapters and W&B runs."),
) -> None:
    """Join an existing study and run trials of it with the settings it was created with."""
    from harness.experiment import build_sweep_spec
    from harness.study import load_existing_study

    stored = load_existing_study(study, storage).user_attrs.get("sweep")
    if not stored:
        _fail(f"study {study!r} was not created by `harness sweep` (no stored settings to join with)", 2)
    spec = build_sweep_spec(stored, _sweep_flags(storage=storage, trials=trials, out=out), f"study {study}")
    _run_sweep(spec)


def _run_sweep(spec: Any) -> None:
    from harness.experiment import resolve_space
    from harness.progress import pareto_table, print_table, trials_table
    from harness.space import load_space
    from harness.sweep import Sweep, SweepInterrupted

    space = load_space(resolve_space(spec.space))
    try:
        outcome = Sweep(spec, space).run()
    except SweepInterrupted as stop:
        _fail(str(stop), 130)
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


@app.command()
def status(
    study: str = typer.Option("default", help="Study name."),
    storage: Optional[str] = typer.Option(None, help="Storage URL (default sqlite:///experiments/<study>/study.db)."),
    out: Optional[str] = typer.Option(None, help="The sweep's --out folder, if it had one."),
) -> None:
    """A table of the study's trials."""
    from harness.progress import print_table, trials_table
    from harness.study import load_existing_study, study_rows

    url = storage or f"sqlite:///{out or f'experiments/{study}'}/study.db"
    loaded = load_existing_study(study, url)
    rows = study_rows(loaded)
    print_table(trials_table(rows, f"study {study}: {len(rows)} trials ({url})"))
    base = loaded.user_attrs.get("baseline_eval_loss")
    if base is not None:
        typer.echo(f"untuned base model eval_loss: {base:.4f}")


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
    """Console-script entry: maps bad input to exit 2 with one line, anything else to exit 1."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        code = app(standalone_mode=False)
    except SpecError as err:
        typer.echo(f"harness: error: {err}", err=True)
        sys.exit(2)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except KeyboardInterrupt:
        typer.echo("harness: interrupted", err=True)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - the last line of defence: one line, exit 1
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Abort):
            sys.exit(130)
        if os.environ.get("HARNESS_DEBUG"):
            raise
        typer.echo(f"harness: {type(err).__name__}: {err} (set HARNESS_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
