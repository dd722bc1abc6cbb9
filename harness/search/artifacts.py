"""A study's files in Optuna's artifact store, where optuna-dashboard serves them (`harness dashboard`): the kept
adapters (the best trial's, or the Pareto front's) as one zip, and the report's files, all attached to the study.
The store is a folder beside the study's other files, `<out>/artifacts`.

Storing is a courtesy to the dashboard: a failure is one warning line (returned, for the caller to print), never
a failed sweep or report.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.config.errors import one_line
from harness.search.study import load_existing_study

ARTIFACTS_DIR = "artifacts"
"""In a study's output folder: the artifact store's files, one per artifact, named by its id."""


def artifact_dir(out_dir: str | Path) -> Path:
    """Where a study's artifacts live: `<out>/artifacts`."""
    return Path(out_dir) / ARTIFACTS_DIR


def artifact_store(out_dir: str | Path) -> Any:
    """The study's `optuna.artifacts.FileSystemArtifactStore` (its folder created when missing)."""
    from optuna.artifacts import FileSystemArtifactStore

    folder = artifact_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(folder)


def store_kept_adapters(study: Any, out_dir: str | Path) -> str | None:
    """Attach the kept adapters to the study as one zip holding a `trial-N/` folder each: `best_adapter.zip`
    (the best trial's), or `pareto_adapters.zip` with several objectives. Optuna lets nothing be attached to a
    finished trial, so they go on the study, under a fixed name whose bytes a later sweep of the study rewrites
    (the dashboard always offers the current best). Returns a warning line, or None."""
    adapters = Path(out_dir) / "adapters"
    try:
        try:
            numbers = sorted(t.number for t in study.best_trials)
        except ValueError:  # no completed trial
            return None
        folders = [adapters / f"trial-{n}" for n in numbers if (adapters / f"trial-{n}").is_dir()]
        if not folders:
            return None
        name = "best_adapter.zip" if len(study.directions) == 1 else "pareto_adapters.zip"
        with tempfile.TemporaryDirectory(prefix="harness-artifact-") as tmp:
            archive = Path(tmp) / name
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
                for folder in folders:
                    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                        zipped.write(path, path.relative_to(adapters))
            _attach(study, archive, artifact_store(out_dir))
    except Exception as err:  # noqa: BLE001 - the sweep's results are complete without the dashboard's copy
        return f"the best adapter was not stored for optuna-dashboard ({one_line(err)})"
    return None


def store_study_files(name: str, storage_url: str, out_dir: str | Path, paths: Iterable[Path]) -> str | None:
    """Attach files (a report's markdown, html and plots) to study `name` in `storage_url`; a file of the same
    name already there is replaced (same artifact id, new bytes), so a report written again does not pile up
    copies. Returns a warning line, or None."""
    try:
        study = load_existing_study(name, storage_url)
        store = artifact_store(out_dir)
        for path in paths:
            _attach(study, Path(path), store)
    except Exception as err:  # noqa: BLE001 - the report is written whether or not the dashboard gets a copy
        return f"the report's files were not stored for optuna-dashboard ({one_line(err)})"
    return None


def _attach(study: Any, path: Path, store: Any) -> None:
    """Upload `path` to `store` and attach it to the study, or rewrite the bytes of the study's artifact of that
    name (same id: nothing piles up, and the dashboard's links stay valid)."""
    from optuna.artifacts import get_all_artifact_meta, upload_artifact

    existing = {m.filename: m.artifact_id for m in get_all_artifact_meta(study)}.get(path.name)
    if existing is None:
        upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study)
        return
    with open(path, "rb") as handle:
        store.write(existing, handle)
