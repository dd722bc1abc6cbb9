"""Where a study's files go when the user names no place: experiments/<study>/ and reports/<study>/."""

from __future__ import annotations

import os

STORAGE_ENV = "HARNESS_STORAGE"
"""The environment variable that names the storage wherever `--storage` is accepted: the flag wins, then an
experiment file's `storage`, then this, then the SQLite file of the study's folder. Keeps a storage URL (and a
password in it) off every command line."""


def storage_from_env() -> str | None:
    """The storage URL HARNESS_STORAGE names, or None when it is unset or empty."""
    return os.environ.get(STORAGE_ENV) or None


def study_out_dir(study: str, out: str | None = None) -> str:
    """A study's output folder (trials.jsonl, adapters, W&B runs): `out`, else experiments/<study>."""
    return out or f"experiments/{study}"


def study_storage_url(study: str, storage: str | None = None, out: str | None = None) -> str:
    """A study's Optuna storage: `storage`, else HARNESS_STORAGE, else the SQLite file in its output folder."""
    return storage or storage_from_env() or f"sqlite:///{study_out_dir(study, out)}/study.db"


def study_reports_dir(study: str, reports_dir: str | None = None) -> str:
    """Where a study's report files go: `reports_dir`, else reports/<study>."""
    return reports_dir or f"reports/{study}"
