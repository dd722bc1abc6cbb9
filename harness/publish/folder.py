"""`harness report` in one call: everything a study's report folder holds. comparison.md/json,
recommended.yaml (unless the folder already has one: a hand-tuned or confirmed file is never overwritten),
report.md and report.html with their plots, the study's W&B summary run, and a copy of the report's files in
the study's artifact store (where `harness dashboard` serves them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.evidence.compare import build_comparison
from harness.evidence.compare_doc import comparison_markdown, write_comparison
from harness.evidence.grouping import Grouping
from harness.search.artifacts import store_study_files
from harness.search.readout import StudyView
from harness.evidence.recommend import recommend_study, write_recommended
from harness.publish.report import ReportFiles, write_report
from harness.publish.summary import log_summary_run


@dataclass(frozen=True)
class Published:
    """What `publish` wrote."""

    files: ReportFiles
    wandb_dir: Path | None
    """The W&B folder holding the summary run (None when W&B is disabled)."""
    warnings: tuple[str, ...] = ()
    """One line each: what could not be done besides the report itself (a copy for optuna-dashboard)."""


def publish(view: StudyView, reports_dir: Path, wandb_mode: str, command: str, out: str | None = None,
            by: Grouping | None = None) -> Published:
    """Write the study's report folder and its W&B summary run (`out`: the sweep's folder, where W&B
    runs live; default the one the study was created to write to; `by`: what the comparison groups by,
    default quantization). `command` is recorded in recommended.yaml's header."""
    comparison = build_comparison(view, by=by)
    write_comparison(comparison, reports_dir)
    recommended = reports_dir / "recommended.yaml"
    if not recommended.exists():
        write_recommended(recommend_study(view), recommended, command)
    files = write_report(view, reports_dir, comparison_markdown(comparison), comparison_title=comparison.title)
    where = log_summary_run(view, comparison, files, recommended, wandb_mode, view.out_dir(out))
    shared = [files.markdown, files.html, *files.plots.values(), recommended]
    warning = store_study_files(view.name, view.storage, view.out_dir(out), shared)
    return Published(files, where, (warning,) if warning else ())
