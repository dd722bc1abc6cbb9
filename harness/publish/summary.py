"""The W&B summary run of a study: trials table, comparison table, report plots, recommended config.

A sink at the edge like the per-trial runs: offline without an account, never raises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.search import tracking
from harness.evidence.compare import Comparison
from harness.search.readout import StudyView

def trial_table_rows(view: StudyView) -> list[dict[str, Any]]:
    """One flat row per trial for the W&B table."""
    rows = []
    for r in view.rows:
        rows.append({"number": r.number, "state": r.state, "quantization": r.quantization,
                     "lora_r": r.params.get("lora_r"), "lora_alpha": r.params.get("lora_alpha"),
                     "learning_rate": r.params.get("learning_rate"), "seed": r.seed,
                     "confirmation_of": r.confirmation_of, "eval_loss": r.metric("eval_loss"),
                     "peak_memory_mb": r.metric("peak_memory_mb"), "seconds_per_step": r.seconds_per_step,
                     "tokens_per_second": r.metric("tokens_per_second"), "reason": r.reason})
    return rows


def comparison_rows(comparison: Comparison) -> list[dict[str, Any]]:
    return [{"mode": m.label, "trials": m.trials, "completed": m.completed,
             "pruned": m.pruned, "failed": m.failed, "oom": m.oom, "best": m.best, "median": m.median,
             "confirmed_mean": m.confirmed.objective.mean if m.confirmed and m.confirmed.objective else None,
             "confirmed_std": m.confirmed.objective.std if m.confirmed and m.confirmed.objective else None,
             "peak_memory_mb": m.peak_memory_mb, "weights_mb": m.weights_mb,
             "seconds_per_step": m.seconds_per_step, "tokens_per_second": m.tokens_per_second}
            for m in comparison.modes]


def log_summary_run(view: StudyView, comparison: Comparison, files: Any, recommended: Path, mode: str | None,
                    study_dir: Path) -> Path | None:
    """Write the study's summary run (job_type `summary`, group = study); returns its W&B folder."""
    resolved = tracking.resolve_mode(mode)
    if resolved == "disabled":
        return None
    run = tracking.start_study_run(study=view.name, config={"study": view.name, "sweep": view.sweep,
                                                            "objectives": list(view.objectives)},
                                   mode=resolved, study_dir=study_dir)
    run.log_table("trials", trial_table_rows(view))
    run.log_table("comparison", comparison_rows(comparison))
    run.log_images(dict(files.plots))
    if recommended.exists():
        run.log_artifact(recommended, f"{view.name}-recommended", "config")
    best = {f"best/{m.mode}": m.quality() for m in comparison.modes if m.quality() is not None}
    summary = {"trials": len(view.rows), "completed": len(view.completed()), "headlines": comparison.headlines,
               **best}
    run.finish(summary, failed=False)
    return study_dir / "wandb"
