"""Budgets on the command line: `--max-memory-mb` is a positive number everywhere (one line, exit 2 otherwise),
`--time-budget` a positive duration."""

from __future__ import annotations

import math

import pytest

from harness.config.budget import duration_seconds, memory_budget
from harness.config.errors import SpecError
from tests.helpers import run_cli


@pytest.mark.parametrize("bad", [-1, 0, -0.5, math.inf, math.nan, True, "12"])
def test_memory_budget_is_a_positive_finite_number(bad: object) -> None:
    with pytest.raises(SpecError, match="--max-memory-mb must be a positive number"):
        memory_budget(bad)


def test_memory_budget_passes_none_and_positive_numbers() -> None:
    assert memory_budget(None) is None and memory_budget(512) == 512.0 and memory_budget(0.5) == 0.5


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("20m", 1200), ("2h", 7200),
                                               ("1h30m", 5400), (45, 45)])
def test_durations(text: object, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("bad", ["", "soon", "-5m", "0", "0m", "2d"])
def test_bad_durations_are_one_line(bad: str) -> None:
    with pytest.raises(SpecError, match="--time-budget"):
        duration_seconds(bad)


def test_recommend_refuses_a_negative_budget_in_one_line(tmp_path) -> None:
    done = run_cli("recommend", "--study", "nothing-here", "--out", str(tmp_path), "--max-memory-mb", "-1")
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "--max-memory-mb must be a positive number" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
