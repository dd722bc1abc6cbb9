"""The commands that read a study back and re-train its configs as evidence: compare, recommend, export,
validate and defaults. Plain functions with typer's options; harness.cli registers them on the app."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.cli.common import (CONFIRM_SEEDS_OPTION, CONFIRM_TOP_OPTION, DEVICE_OPTION, FORMAT_OPTION,
                                MAX_SEEDS_OPTION, OUT_OPTION, QUANTIZATION_EXPORT_OPTION, REPORTS_OPTION,
                                RERUN_PACK_OPTION, RERUN_WORKERS_OPTION, RESOLUTION_OPTION, STORAGE_OPTION,
                                STUDY_MEMORY_OPTION, STUDY_OPTION, command_line, print_documents,
                                print_recommendation, refused_exports, sweep_errors)


def compare(
    study: str = STUDY_OPTION, storage: Optional[str] = STORAGE_OPTION, out: Optional[str] = OUT_OPTION,
    reports_dir: Optional[str] = REPORTS_OPTION,
    confirm_seeds: int = CONFIRM_SEEDS_OPTION,
    confirm_top: int = CONFIRM_TOP_OPTION,
    device: Optional[str] = DEVICE_OPTION,
    by: str = typer.Option("quantization", "--by",
                           help="Group trials by this categorical axis (or several, comma-separated: their "
                                "combinations), e.g. use_dora or init_lora_weights,use_dora; each group is compared "
                                "with the one at the axes' defaults. Confirmation re-runs each group's best config."),
    confirm_until: Optional[str] = typer.Option(None, "--confirm-until",
                                                help="resolved: sequential confirmation; add seeds (2, then 2 at a "
                                                     "time) to the groups of unresolved comparisons until every one "
                                                     "is resolved or --max-seeds are spent."),
    max_seeds: int = MAX_SEEDS_OPTION,
    resolution: Optional[str] = RESOLUTION_OPTION,
    pack: int = RERUN_PACK_OPTION,
    max_memory_mb: Optional[float] = STUDY_MEMORY_OPTION,
) -> None:
    """LoRA vs QLoRA (or any categorical axis, --by): per group, quality, memory and time; writes
    comparison.md/json (comparison_by_<axes>.md/json with --by)."""
    import harness
    from harness.search.progress import comparison_table, print_table

    with sweep_errors():
        result = harness.compare(study, storage=storage, out=out, reports_dir=reports_dir,
                                 confirm_seeds=confirm_seeds, confirm_top=confirm_top, device=device, by=by,
                                 confirm_until=confirm_until, max_seeds=max_seeds, resolution=resolution,
                                 pack=pack, max_memory_mb=max_memory_mb, say=typer.echo)
    setup, tail = result.lines()
    for line in setup:
        typer.echo(line)
    print_table(comparison_table(result.comparison))
    for line in tail:
        typer.echo(line)
    typer.echo(f"written: {result.markdown} and {result.json}")


def recommend(
    study: str = STUDY_OPTION, storage: Optional[str] = STORAGE_OPTION, out: Optional[str] = OUT_OPTION,
    reports_dir: Optional[str] = typer.Option(None, "--reports-dir",
                                              help="Where recommended.yaml goes (default reports/<study>, or "
                                                   "reports/<S1+S2...> with --from)."),
    sweep_dir: Optional[str] = typer.Option(None, "--sweep-dir", hidden=True, help="Deprecated spelling of --out."),
    from_: Optional[list[str]] = typer.Option(None, "--from", help="Aggregate several studies (repeat the flag)."),
    max_memory_mb: Optional[float] = typer.Option(None, help="Also recommend the best config under this peak memory."),
    confirm_seeds: int = CONFIRM_SEEDS_OPTION,
    confirm_top: int = CONFIRM_TOP_OPTION,
    allow_diverged: bool = typer.Option(False, "--allow-diverged",
                                        help="Also recommend configs one of whose confirmation seeds diverged or failed."),
    formats: Optional[list[str]] = FORMAT_OPTION,
    quantization: Optional[str] = QUANTIZATION_EXPORT_OPTION,
) -> None:
    """The recommended config(s) as YAML that peft.LoraConfig, BitsAndBytesConfig and TrainingArguments load,
    and (--format) as Axolotl, LLaMA-Factory, TRL or Unsloth configs, or your own file tuned."""
    import harness

    out, path = _recommend_paths(out, sweep_dir)
    with refused_exports(), sweep_errors():
        print_recommendation(harness.recommend(
            study, storage=storage, out=out, reports_dir=reports_dir, from_=from_, max_memory_mb=max_memory_mb,
            confirm_seeds=confirm_seeds, confirm_top=confirm_top, allow_diverged=allow_diverged, formats=formats,
            quantization=quantization, file=path, command=command_line(), say=typer.echo))


def export(
    recommended: Path = typer.Argument(..., help="A recommended.yaml written by `harness recommend`."),
    formats: Optional[list[str]] = FORMAT_OPTION,
    quantization: Optional[str] = QUANTIZATION_EXPORT_OPTION,
) -> None:
    """An existing recommended.yaml as Axolotl, LLaMA-Factory, TRL or Unsloth configs, written beside it."""
    import harness

    with refused_exports():
        print_recommendation(harness.export(recommended, formats=formats, quantization=quantization,
                                             command=command_line()))


def _recommend_paths(out: Optional[str], sweep_dir: Optional[str]) -> tuple[Optional[str], Optional[Path]]:
    """`--out` is the sweep's folder, as for status, compare and report. The old spellings still work, with
    a deprecation line: `--sweep-dir DIR` (now --out DIR) and `--out FILE.yaml` (now --reports-dir)."""
    yaml_path = None
    if out is not None and out.endswith((".yaml", ".yml")):
        typer.echo("harness: deprecated: `recommend --out FILE.yaml`; --out is now the sweep's folder (as for "
                   "status, compare and report) and --reports-dir DIR writes DIR/recommended.yaml", err=True)
        out, yaml_path = None, Path(out)
    if sweep_dir is not None:
        typer.echo("harness: deprecated: `recommend --sweep-dir DIR`; use --out DIR (as for status, compare and "
                   "report)", err=True)
        out = out or sweep_dir
    return out, yaml_path


def validate(
    study: str = STUDY_OPTION, storage: Optional[str] = STORAGE_OPTION, out: Optional[str] = OUT_OPTION,
    reports_dir: Optional[str] = REPORTS_OPTION,
    steps: Optional[int] = typer.Option(None, "--steps", help="The long budget in optimizer steps (larger than the "
                                                              "study's steps per trial)."),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="The long budget in epochs of the training split "
                                                                  "(instead of --steps)."),
    top: int = typer.Option(3, "--top", help="How many of the study's best configs to re-train."),
    seeds: int = typer.Option(2, "--seeds", help="Fresh seeds per config at the long budget."),
    defaults: bool = typer.Option(True, "--defaults/--no-defaults",
                                  help="Also re-train the published defaults (harness/config/published_defaults.yaml)."),
    defaults_file: Optional[Path] = typer.Option(None, "--defaults-file",
                                                 help="Your own defaults to compare against, in the format of "
                                                      "harness/config/published_defaults.yaml (instead of the shipped ones)."),
    workers: int = RERUN_WORKERS_OPTION,
    wandb: Optional[str] = typer.Option(None, help="auto, offline, online or disabled (default: the study's)."),
    confirm_until: Optional[str] = typer.Option(None, "--confirm-until",
                                                help="resolved: sequential validation; 2 seeds per config, then 2 "
                                                     "more at a time for the configs of unresolved comparisons "
                                                     "(instead of --seeds)."),
    max_seeds: int = MAX_SEEDS_OPTION,
    resolution: Optional[str] = RESOLUTION_OPTION,
    pack: int = RERUN_PACK_OPTION,
    max_memory_mb: Optional[float] = typer.Option(None, "--max-memory-mb",
                                                  help="Peak memory (MiB) a long run may use (fitted or infeasible, "
                                                       "as sweep's); pinned in the linked study; default the "
                                                       "study's own."),
    report_only: bool = typer.Option(False, "--report-only", help="Train nothing: write the read-out of the long runs "
                                                                  "done so far (a validation stopped part-way)."),
) -> None:
    """Re-train the top configs and the published defaults at the real budget; does the ranking hold?"""
    import harness

    with sweep_errors():
        result = harness.validate(study, storage=storage, out=out, reports_dir=reports_dir, steps=steps,
                                  epochs=epochs, top=top, seeds=seeds, defaults=defaults, defaults_file=defaults_file,
                                  workers=workers, wandb=wandb, confirm_until=confirm_until, max_seeds=max_seeds,
                                  resolution=resolution, pack=pack, max_memory_mb=max_memory_mb,
                                  report_only=report_only, command=command_line(),
                                  say=typer.echo)
    print_documents(result)


def defaults(
    study: list[str] = typer.Option(..., "--study", help="A study whose model and data are a cell and whose top "
                                                        "configs are candidates (repeat: at least two)."),
    storage: Optional[str] = typer.Option(None, help="Storage URL of every study (default $HARNESS_STORAGE, else "
                                                     "each study's sqlite:///experiments/<study>/study.db)."),
    reports_dir: Optional[str] = typer.Option(None, "--reports-dir", help="Where defaults.md/json/png/yaml go "
                                                                          "(default reports/defaults)."),
    top: int = typer.Option(1, "--top", help="Candidates per study and quantization mode: its K best configs."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Shared seeds per candidate in every cell (default 2)."),
    confirm_until: Optional[str] = typer.Option(None, "--confirm-until",
                                                help="resolved: 2 seeds, then 2 more at a time for the candidates "
                                                     "of unresolved regrets (instead of --seeds)."),
    max_seeds: int = MAX_SEEDS_OPTION,
    resolution: Optional[str] = RESOLUTION_OPTION,
    published: bool = typer.Option(True, "--published/--no-published",
                                   help="Also train the published defaults in every cell, on the same seeds, and "
                                        "compare each with its mode's choice."),
    defaults_file: Optional[Path] = typer.Option(None, "--defaults-file",
                                                 help="Other defaults to compare against, in the format of "
                                                      "harness/config/published_defaults.yaml (instead of the "
                                                      "shipped ones)."),
    report_only: bool = typer.Option(False, "--report-only", help="Train nothing: write the read-out of the runs "
                                                                  "done so far (a cross-evaluation stopped part-way)."),
    workers: int = RERUN_WORKERS_OPTION,
    pack: int = RERUN_PACK_OPTION,
    max_memory_mb: Optional[float] = typer.Option(None, "--max-memory-mb", help="Peak memory (MiB) a run may use "
                                                                                "(fitted or infeasible, as sweep's)."),
    wandb: Optional[str] = typer.Option(None, help="auto, offline, online or disabled (default: each study's)."),
    formats: Optional[list[str]] = FORMAT_OPTION,
) -> None:
    """Default configs that transfer: each study's top configs trained on every study's model and data, and per
    quantization mode the one with the smallest worst-cell regret."""
    import harness

    with refused_exports(), sweep_errors():
        print_documents(harness.defaults(study, storage=storage, top=top, seeds=seeds, confirm_until=confirm_until,
                                          max_seeds=max_seeds, resolution=resolution, published=published,
                                          defaults_file=defaults_file, report_only=report_only,
                                          reports_dir=reports_dir,
                                          workers=workers, pack=pack, max_memory_mb=max_memory_mb, wandb=wandb,
                                          formats=formats, command=command_line(), say=typer.echo))
