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


def test_a_study_budget_is_the_studys_own() -> None:
    from harness.config.budget import study_budget

    assert study_budget(None, 500.0, "s") == 500.0 and study_budget(500, 500.0, "s") == 500.0
    assert study_budget(None, None, "s") is None
    with pytest.raises(SpecError, match=r"--max-memory-mb 600: study 's' .* \(500 MiB\).*give --max-memory-mb 500"):
        study_budget(600, 500.0, "s")
    with pytest.raises(SpecError, match=r"\(none\).*leave --max-memory-mb out"):
        study_budget(600, None, "s")
    with pytest.raises(SpecError, match="must be a positive number"):
        study_budget(-1, -1.0, "s")


@pytest.mark.parametrize("command", [["worker", "--study", "w"], ["compare", "--study", "w"],
                                     ["validate", "--study", "w", "--steps", "40"]])
@pytest.mark.parametrize("value", ["-1", "0", "nan"])
def test_worker_compare_and_validate_refuse_a_bad_budget_in_one_line(tmp_path, command: list, value: str) -> None:
    done = run_cli(*command, "--out", str(tmp_path / "x"), "--max-memory-mb", value)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "--max-memory-mb must be a positive number" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "x").exists(), "the budget is checked before any study is read"
