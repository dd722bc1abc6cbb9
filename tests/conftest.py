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

# What a test costs, by its markers, for ordering the work: the real model takes minutes, a harness process or
# a model load seconds, a unit test milliseconds.
COST = {"slow": 300.0, "integration": 15.0}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The costliest test files first, each file's tests in their own order: under `make test` (pytest-xdist,
    `--dist loadfile --no-loadscope-reorder`: a file is one unit of work, so its module fixtures are built
    once) a long file started last would leave the other core idle at the end. A bare `pytest` (the unit tier,
    every test of one cost) keeps the collected order."""
    cost: dict[str, float] = {}
    for item in items:
        marks = {m.name for m in item.iter_markers()}
        path = item.nodeid.split("::")[0]
        cost[path] = cost.get(path, 0.0) + max([COST[m] for m in marks if m in COST], default=0.1)
    items.sort(key=lambda item: -cost[item.nodeid.split("::")[0]])


@pytest.fixture(autouse=True)
def _tiny_llama_converted(request: pytest.FixtureRequest) -> None:
    """Every test that runs harness has tiny-llama converted before it starts, whichever test of the run came
    first: a sweep that converts prints "converting ... (once)", which would be a second line beside a
    one-line error, and its seconds would land in a timed wait. The unit tier loads nothing."""
    if request.node.get_closest_marker("integration") or request.node.get_closest_marker("slow"):
        request.getfixturevalue("tiny_checkpoint")


@pytest.fixture(scope="session")
def tiny_checkpoint() -> str:
    """The tiny random Llama's cached checkpoint folder (built once a run, seconds)."""
    from harness.trial.models import checkpoint_path, resolve_model

    return checkpoint_path(resolve_model("tiny-llama"))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Nothing left running when this test process ends: a command a failed or timed-out test left alive, and the
    fork server of tests/forked_cli.py (its atexit does the same, for a process that ends another way)."""
    import forked_cli

    forked_cli.stop_everything()
