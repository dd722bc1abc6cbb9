"""Edge-of-range warnings: the rule on hand-built space descriptions, and every read-out that shows a best
config (sweep's last lines, compare, recommend, report) on a hand-built study (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution

from harness.evidence.compare import build_comparison
from harness.evidence.compare_doc import comparison_markdown, write_comparison
from harness.search.edges import edge_warnings
from harness.search.progress import print_sweep_end
from harness.search.readout import StudyView, view_of
from harness.evidence.recommend import recommend_study, summary_lines
from harness.publish.report import build_markdown
from harness.config.space import parse_space
from harness.search.sweep import SweepOutcome

LOG_LR = {"learning_rate": {"low": 1e-5, "high": 1e-3, "step": None, "log": True, "int": False}}
RANK_GRID = {"lora_r": {"choices": [8, 16, 32]}}
CONFIG = {"lora_r": 16, "lora_alpha": 32.0, "learning_rate": 1e-4, "lora_dropout": 0.0, "quantization": "none",
          "target_modules": "all-linear"}


def warnings(space: dict, **params: object) -> list[str]:
    return edge_warnings(space, {**CONFIG, **params})


# --- the rule -------------------------------------------------------------------------------------

def test_top_of_a_log_range_warns_and_suggests_four_times_beyond() -> None:
    (line,) = warnings(LOG_LR, learning_rate=9.5e-4)  # within 2% of the log span of the top
    assert line == ("learning_rate 0.00095 is at the top of the range searched (range 1e-05 to 0.001, log scale): "
                    "the best may lie above it; widen the range, e.g. up to 0.004")


def test_bottom_of_a_log_range_warns_downwards() -> None:
    (line,) = warnings(LOG_LR, learning_rate=1.05e-5)
    assert "at the bottom of the range searched" in line and "below it" in line and "down to 2.5e-06" in line


def test_inside_a_log_range_is_quiet_and_the_tolerance_is_in_log_space() -> None:
    assert warnings(LOG_LR, learning_rate=1e-4) == []  # the middle in log space
    assert warnings(LOG_LR, learning_rate=8e-4) == []  # 95% of the log span: not at the edge
    assert warnings(LOG_LR, learning_rate=5e-4) == []  # 85% of the log span (50% of a linear one would differ)


def test_linear_range_tolerance_is_a_share_of_the_span() -> None:
    dropout = {"lora_dropout": {"low": 0.0, "high": 0.3, "step": None, "log": False, "int": False}}
    (line,) = warnings(dropout, lora_dropout=0.296)
    assert line.startswith("lora_dropout 0.296 is at the top") and line.endswith("up to 0.5")
    assert warnings(dropout, lora_dropout=0.29) == []


def test_first_and_last_of_a_grid_warn_and_the_middle_does_not() -> None:
    (top,) = warnings(RANK_GRID, lora_r=32)
    assert top == ("lora_r 32 is the largest value searched (choices 8 to 32): the best may lie above it; "
                   "widen the range, e.g. up to 64")
    (bottom,) = warnings(RANK_GRID, lora_r=8)
    assert "lora_r 8 is the smallest value searched" in bottom and "down to 4" in bottom
    assert warnings(RANK_GRID, lora_r=16) == []


def test_a_fixed_axis_and_text_axes_are_no_searched_range() -> None:
    space = {"lora_r": {"choices": [16]}, "lora_dropout": {"choices": [0.0]},
             "quantization": {"choices": ["none", "nf4"]}, "target_modules": {"choices": ["all-linear"]},
             "lora_alpha": {"ratio_of_r": {"choices": [2.0]}}}
    assert warnings(space, quantization="nf4") == []
    assert edge_warnings(None, CONFIG) == [] and edge_warnings({}, CONFIG) == []


def test_a_ratio_axis_compares_alpha_over_r() -> None:
    space = {"lora_alpha": {"ratio_of_r": {"choices": [1.0, 2.0]}}}
    (top,) = warnings(space, lora_r=16, lora_alpha=32.0)  # derived: 32 / 16 = 2
    assert top.startswith("lora_alpha / lora_r 2 is the largest value searched (choices 1 to 2)")
    assert top.endswith("up to 4")
    (bottom,) = warnings(space, lora_alpha_ratio=1.0, lora_alpha=16.0)  # the recorded ratio param wins
    assert "lora_alpha / lora_r 1 is the smallest" in bottom and "down to 0.5" in bottom
    assert warnings({"lora_alpha": {"ratio_of_r": {"choices": [1.0, 2.0, 4.0]}}}, lora_alpha=32.0) == []


def test_an_integer_range_ends_at_its_last_stepped_value() -> None:
    space = {"lora_r": {"low": 4, "high": 62, "step": 4, "log": False, "int": True}}  # 4, 8, ..., 60
    (top,) = warnings(space, lora_r=60)
    assert "lora_r 60 is the largest value searched (range 4 to 60, step 4)" in top and "up to 120" in top
    (bottom,) = warnings(space, lora_r=4)
    assert "down to 2" in bottom
    assert warnings(space, lora_r=32) == []


def test_no_warning_where_the_axis_allows_nothing_beyond() -> None:
    assert warnings({"lora_r": {"choices": [1, 2, 4]}}, lora_r=1) == []  # r >= 1
    assert warnings({"lora_dropout": {"choices": [0.0, 0.1]}}, lora_dropout=0.0) == []  # dropout >= 0
    assert warnings({"lora_dropout": {"choices": [0.1, 0.5]}}, lora_dropout=0.5) == []  # sensible limit
    assert warnings({"learning_rate": {"choices": [0.1, 0.5]}}, learning_rate=0.5) == []  # 2.0: lr must be < 1
    (line,) = warnings({"lora_dropout": {"choices": [0.05, 0.1]}}, lora_dropout=0.05)
    assert line.endswith("down to 0")


# --- through the read-outs ------------------------------------------------------------------------

SPACE = {"lora_r": 16, "lora_alpha": {"ratio": 2}, "quantization": {"choices": ["none", "nf4"]}}
DISTS = {"quantization": CategoricalDistribution(["none", "nf4"]), "lora_r": CategoricalDistribution([16]),
         "lora_alpha": CategoricalDistribution([32.0]), "lora_dropout": CategoricalDistribution([0.0]),
         "target_modules": CategoricalDistribution(["all-linear"])}


def _study(tmp_path: Path, lrs: list[float]) -> tuple[StudyView, dict]:
    """A study as `harness sweep` leaves one, searching lr in `lrs`: the largest lr is best in every mode."""
    space = parse_space({"axes": {**SPACE, "learning_rate": {"choices": lrs}}})
    url = f"sqlite:///{tmp_path}/edges.db"
    study = optuna.create_study(study_name="e", storage=url)
    for key, value in {"sweep": {"model": "tiny-llama", "data": "stdlib-qa", "max_steps": 10},
                       "objectives": ["eval_loss"], "space": space.describe(), "space_source": "test"}.items():
        study.set_user_attr(key, value)
    dists = {**DISTS, "learning_rate": CategoricalDistribution(lrs)}
    for mode in ("none", "nf4"):
        for lr, loss in ((2e-4, 2.5), (1e-3, 2.0)):
            params = {**CONFIG, "quantization": mode, "learning_rate": lr}
            result = {"eval_loss": loss, "peak_memory_mb": 100.0, "train_seconds": 10.0, "steps": 10,
                      "device": "cpu", "device_name": "cpu"}
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions=dists, value=loss,
                user_attrs={"status": "complete", "result": result, "seed": 0}))
    return view_of(study, url), dict(study.user_attrs)


@pytest.mark.parametrize("lrs, warned", [([2e-4, 1e-3], True), ([2e-4, 1e-3, 4e-3], False)],
                         ids=["best-lr-at-the-top", "best-lr-inside"])
def test_every_read_out_of_a_best_config_warns_at_the_edge(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                          lrs: list[float], warned: bool) -> None:
    view, attrs = _study(tmp_path, lrs)
    expected = ["learning_rate 0.001 is the largest value searched (choices 0.0002 to 0.001): the best may lie "
                "above it; widen the range, e.g. up to 0.004"] if warned else []

    comparison = build_comparison(view)
    assert comparison.edge_warnings == [f"{w} (best config of {comparison.modes[0].label}, nf4)" for w in expected]
    md, js = write_comparison(comparison, tmp_path / "r")
    assert json.loads(js.read_text())["edge_warnings"] == comparison.edge_warnings
    assert ("Edge of the searched range" in md.read_text()) is warned
    assert ("Edge of the searched range" in comparison_markdown(comparison)) is warned

    doc = recommend_study(view)
    assert doc["evidence"]["edge_warnings"] == expected
    assert doc["per_quantization"]["nf4"]["evidence"]["edge_warnings"] == expected
    assert [line for line in summary_lines(doc, tmp_path / "rec.yaml") if line.startswith("warning: ")] == \
        [f"warning: {w}" for w in expected]

    report = build_markdown(view, "t", {}, {}, {}, None)
    assert ("## Edge of the searched range" in report) is warned
    assert all(w in report for w in expected)

    best = {"number": 1, "values": [2.0], "params": {**CONFIG, "learning_rate": 1e-3}}
    print_sweep_end(SweepOutcome("e", tmp_path, view.storage, study_attrs=attrs, best=best), ("eval_loss",))
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning: ")]
    assert printed == [f"warning: {w}" for w in expected]
