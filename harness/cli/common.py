"""What the command line's modules share: the options several commands take, the one-line failure, and the
wrappers that turn the API's errors and results into lines on the terminal."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import typer


def fail(message: str, code: int) -> None:
    typer.echo(f"harness: error: {message}", err=True)
    raise typer.Exit(code)


HEARTBEAT_OPTION = typer.Option(None, "--heartbeat-interval", envvar="HARNESS_HEARTBEAT_INTERVAL",
                                help="Seconds between a running trial's heartbeats (relational storages; default 10).")
GRACE_OPTION = typer.Option(None, "--grace-period", envvar="HARNESS_GRACE_PERIOD",
                            help="Seconds without a heartbeat before a trial's worker counts as lost (default 60).")
RERUN_PACK_OPTION = typer.Option(1, "--pack", help="Train up to K of the planned re-runs at once on one copy of the "
                                "base model (those of one quantization mode and target set), as `sweep --pack` does.")
TIME_BUDGET_OPTION = typer.Option(None, "--time-budget", metavar="DURATION",
                                  help="Wall time for this run (90s, 20m, 2h, 1h30m): no trial starts that is "
                                       "predicted to end past it (the measured mean trial time once a trial has "
                                       "finished, the planner's prediction before). Per invocation: counted from "
                                       "this command's start, not stored in the study; a resume or a joining "
                                       "worker runs under its own --time-budget, or none.")
STUDY_MEMORY_OPTION = typer.Option(None, "--max-memory-mb",
                                   help="The study's memory budget in MiB, which its trials run under (pinned when "
                                        "the sweep created it): a positive number; another than the study's is "
                                        "refused.")
PACK_OPTION = typer.Option(None, "--pack", help="Train up to K trials at once on one copy of the base model (those "
                          "of one quantization mode and target set; DoRA and PiSSA/OLoRA trials train alone), each "
                          "with its own optimizer, schedule, clipping and pruning decision (default 1).")


STUDY_OPTION = typer.Option("default", help="Study name.")
STORAGE_OPTION = typer.Option(None, help="Storage URL (default $HARNESS_STORAGE, else sqlite:///<out>/study.db).")
OUT_OPTION = typer.Option(None, help="The sweep's --out folder (default experiments/<study>).")
REPORTS_OPTION = typer.Option(None, "--reports-dir", help="Where report files go (default reports/<study>).")
DEVICE_OPTION = typer.Option(None, "--device", help="Only the trials that ran on this device (the name compare lists "
                                                    "when a study ran on several); tables never mix devices.")


CONFIRM_SEEDS_OPTION = typer.Option(0, "--confirm-seeds",
                                    help="Re-run each mode's top configs with K fresh seeds first.")
CONFIRM_TOP_OPTION = typer.Option(1, "--confirm-top", help="How many configs per mode to confirm.")
RERUN_WORKERS_OPTION = typer.Option(1, "--workers", help="Worker processes (more than 1 needs journal or PostgreSQL "
                                                         "storage).")
MAX_SEEDS_OPTION = typer.Option(10, "--max-seeds", help="The most seeds per config --confirm-until spends.")
RESOLUTION_OPTION = typer.Option(None, "--resolution",
                                 help="A comparison is resolved when its interval excludes zero or is at most this "
                                      "wide on each side: a percent of the reference (1%, the default) or the "
                                      "objective's units (0.02).")


QUANTIZATION_EXPORT_OPTION = typer.Option(None, "--quantization",
                                          help="With --format: export the best config of this quantization mode "
                                               "(recommended.yaml's per_quantization) instead of the overall best.")
FORMAT_OPTION = typer.Option(None, "--format",
                             help="Also write the config for: peft (recommended.yaml itself), axolotl, llamafactory, "
                                  "trl, unsloth, or same (the --from-config file the sweep started from, tuned); "
                                  "comma-separated or repeated.")


@contextlib.contextmanager
def sweep_errors() -> Iterator[None]:
    """Around a command that runs trials. Failed parallel workers: one `harness: error:` line, exit 1. Ctrl-C:
    the API raises KeyboardInterrupt from the sweep's Interrupted (what was in flight recorded), which is raised
    again here, so that main prints its message and exits 130 (a KeyboardInterrupt out of a command would
    reach main as click's Abort, without the message)."""
    from harness.search.exits import Interrupted
    from harness.search.workers import WorkersFailed

    try:
        yield
    except WorkersFailed as failed:
        fail(str(failed), 1)
    except KeyboardInterrupt as stop:
        if isinstance(stop.__cause__, Interrupted):
            raise stop.__cause__ from None
        raise


def command_line() -> str:
    """This command line as the documents it writes record it, credentials redacted."""
    from harness.runtime.redaction import redact_command

    return redact_command(sys.argv[1:])


def print_recommendation(result: Any) -> None:
    for line in result.summary + result.exports:
        typer.echo(line)


@contextlib.contextmanager
def refused_exports() -> Iterator[None]:
    """A refused --format: the files written first, then one line for the refused ones, exit 2."""
    from harness.api.readouts import ExportRefused

    try:
        yield
    except ExportRefused as refused:
        print_recommendation(refused.result)
        fail(str(refused), 2)


def print_documents(result: Any) -> None:
    for line in result.lines:
        typer.echo(line)
    typer.echo(f"written: {', '.join(map(str, result.files))}")
