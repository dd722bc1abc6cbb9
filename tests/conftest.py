"""Test set-up for every tier (see tests/helpers.py for the helpers tests import) and the fixtures shared by the
whole suite; fixtures shared within one folder live in that folder's conftest.py.

Tiers: a bare `pytest` runs the unit tier (pyproject.toml's addopts deselect the markers below); `make test`
runs everything. `integration`: trains or loads a model, starts harness processes (sweeps, workers), writes
W&B runs or starts PostgreSQL. `slow`: the real SmolLM2-135M.
"""

from __future__ import annotations

import pytest

import helpers

helpers.prepare_test_process()


@pytest.fixture(scope="session")
def tiny_checkpoint() -> str:
    """The tiny random Llama's cached checkpoint folder (built once a run, seconds)."""
    from harness.trial.models import checkpoint_path, resolve_model

    return checkpoint_path(resolve_model("tiny-llama"))
