"""Redaction of credentials (harness.runtime.redaction): what a storage URL or a command line looks like outside
the process that needs it. The end-to-end check, on a real PostgreSQL server, is tests/search/test_postgres.py."""

from __future__ import annotations

import pytest

from harness.config.errors import SpecError
from harness.config.paths import STORAGE_ENV, study_storage_url
from harness.runtime.redaction import (has_password, redact_command, redact_text, redact_url, redact_values,
                                       secret_in_args)


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://alice:s3cret@db.example:5432/optuna", "postgresql://alice:***@db.example:5432/optuna"),
    ("postgresql+psycopg2://alice:p@ss:w/rd@db/optuna", "postgresql+psycopg2://alice:***@db/optuna"),  # unescaped
    ("mysql://:s3cret@db/optuna", "mysql://:***@db/optuna"),
    ("postgresql://alice@db/optuna?password=s3cret&sslmode=require",
     "postgresql://alice@db/optuna?password=***&sslmode=require"),
    ("postgresql:///optuna?host=/run/pg&sslpassword=s3cret&PASSWD=s3cret",
     "postgresql:///optuna?host=/run/pg&sslpassword=***&PASSWD=***"),
    ("postgresql://db.example/optuna?host=/tmp/pg&port=5432", "postgresql://db.example/optuna?host=/tmp/pg&port=5432"),
    ("sqlite:///experiments/a/study.db", "sqlite:///experiments/a/study.db"),
    ("experiments/alice:s3cret@x/study.journal", "experiments/alice:s3cret@x/study.journal"),  # a path: as it is
])
def test_a_url_loses_its_password_and_secret_parameters_and_nothing_else(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # idempotent
    assert has_password(url) == (url != shown)


def test_a_command_line_and_free_text_lose_every_credential_in_them() -> None:
    argv = ["recommend", "--storage", "postgresql://alice:s3cret@db/optuna", "--max-context-tokens=512",
            "--storage=postgresql://bob:hunter2@db/o?api_key=k3y", "--out", "runs/a"]
    shown = redact_command(argv)
    assert shown == ("harness recommend --storage postgresql://alice:***@db/optuna --max-context-tokens=512 "
                     "--storage=postgresql://bob:***@db/o?api_key=*** --out runs/a")
    assert secret_in_args(argv) and not secret_in_args(["status", "--storage", "postgresql://alice@db/o"])
    error = "(psycopg2.OperationalError) could not parse 'postgresql://alice:s3cret@db/x' password=s3cret; token=t0k"
    assert "s3cret" not in redact_text(error) and "t0k" not in redact_text(error)
    assert "alice:***@db/x" in redact_text(error)


def test_stored_settings_lose_the_password_deep_inside() -> None:
    settings = {"storage": "postgresql://alice:s3cret@db/o", "max_steps": 2, "lists": [("sqlite:///a.db", None)],
                "nested": {"url": "redis://:s3cret@cache:6379/0"}}
    assert "s3cret" not in repr(redact_values(settings))
    assert redact_values(settings)["lists"] == [("sqlite:///a.db", None)] and redact_values(settings)["max_steps"] == 2


def test_the_storage_comes_from_the_flag_then_harness_storage_then_the_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.search.study import joined_spec

    monkeypatch.delenv(STORAGE_ENV, raising=False)
    assert study_storage_url("s", None, "runs/s") == "sqlite:///runs/s/study.db"
    with pytest.raises(SpecError, match="HARNESS_STORAGE"):
        joined_spec("s", None, None, None)
    monkeypatch.setenv(STORAGE_ENV, "postgresql://alice@db/optuna")
    assert study_storage_url("s", None, "runs/s") == "postgresql://alice@db/optuna"
    assert study_storage_url("s", "runs/s/study.journal", None) == "runs/s/study.journal"
    from harness.config.sweep import SweepSpec
    from harness.search.study import storage_for_workers

    assert storage_for_workers(SweepSpec(study="s", out="runs/s"), 2).storage == "postgresql://alice@db/optuna"
