"""--lr-range-test: what a range test's curve narrows the learning-rate axis to, and the sweep that uses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import load_study, loss_only_experiment, run_cli
from harness.config.errors import SpecError
from harness.config.space import parse_space
from harness.search.lr_range import (auto_reason, lr_axis, narrow_space, range_test_params, study_record,
                                     suggest_range)
from harness.trial.lr_range import RangeCurve, range_rates, smooth

LOW, HIGH = 1e-5, 1e-2


def _curve(losses: list[float], steps: int | None = None, **kw) -> RangeCurve:
    steps = steps or len(losses)
    return RangeCurve("none", LOW, HIGH, steps, lrs=tuple(range_rates(LOW, HIGH, steps)[:len(losses)]),
                      losses=tuple(losses), smoothed=tuple(smooth(losses, 0.0)), **kw)


def test_the_range_is_the_decade_below_the_lowest_loss() -> None:
    curve = _curve([3.0, 2.8, 2.5, 2.0, 1.5, 1.8, 2.6, 4.0])  # lowest at step 5 of 8
    top = curve.lrs[4]
    narrowed = suggest_range(curve, LOW, HIGH)
    assert (narrowed.low, narrowed.high) == pytest.approx((top / 10, top))
    assert f"{top:.3g}" in narrowed.reason


def test_a_loss_still_falling_at_the_end_of_the_axis_takes_its_top_decade() -> None:
    narrowed = suggest_range(_curve([3.0, 2.5, 2.0, 1.5, 1.0]), LOW, HIGH)
    assert (narrowed.low, narrowed.high) == pytest.approx((HIGH / 10, HIGH))
    assert "end of the axis" in narrowed.reason


@pytest.mark.parametrize("curve, why", [
    (_curve([2.0, 2.5, 3.0, 4.0, 5.0]), "never fell"),
    (_curve([2.0, 1.9, 3.0, 4.0, 5.0], steps=40), "within 2x of the axis's low end"),
    (_curve([2.0, 1.5], steps=20, stopped="loss exploded"), "stopped after 2 steps"),
    (RangeCurve("none", LOW, HIGH, 5, error="boom"), "range test failed (boom)"),
])
def test_a_curve_that_shows_no_range_keeps_the_axis_and_says_why(curve: RangeCurve, why: str) -> None:
    narrowed = suggest_range(curve, LOW, HIGH)
    assert (narrowed.low, narrowed.high) == (LOW, HIGH) and why in narrowed.reason


def test_the_study_searches_the_union_of_the_modes_ranges() -> None:
    space = parse_space({"axes": {"learning_rate": {"low": LOW, "high": HIGH, "log": True},
                                  "quantization": {"choices": ["none", "nf4"]}}})
    falling = _curve([3.0, 2.5, 2.0, 1.5, 1.0])
    valley = _curve([3.0, 2.0, 1.0, 2.0, 3.0])
    record = study_record(space, {"none": falling, "nf4": valley})
    assert record["modes"]["none"]["range"] == pytest.approx([HIGH / 10, HIGH])
    assert record["modes"]["nf4"]["range"] == pytest.approx([valley.lrs[2] / 10, valley.lrs[2]])
    assert record["range"] == pytest.approx([valley.lrs[2] / 10, HIGH])
    assert record["axis"] == [LOW, HIGH] and record["modes"]["nf4"]["losses"] == [3.0, 2.0, 1.0, 2.0, 3.0]


def test_narrowing_a_range_or_choices_axis() -> None:
    ranged = parse_space({"axes": {"learning_rate": {"low": LOW, "high": HIGH, "log": True}}})
    axis = narrow_space(ranged, 1e-4, 1e-3).axes["learning_rate"]
    assert (axis.low, axis.high, axis.log) == (1e-4, 1e-3, True)
    assert narrow_space(ranged, 1e-6, 1.0).axes["learning_rate"].low == LOW  # never wider than the axis
    chosen = parse_space({"axes": {"learning_rate": {"choices": [1e-5, 1e-4, 5e-4, 1e-3]}}})
    assert narrow_space(chosen, 1e-4, 5e-4).axes["learning_rate"].choices == (1e-4, 5e-4)
    assert narrow_space(chosen, 1.0, 2.0).axes["learning_rate"].choices == (1e-5, 1e-4, 5e-4, 1e-3)


def test_a_grid_search_is_not_range_tested() -> None:
    from harness.config.sweep import SweepSpec

    with pytest.raises(SpecError, match="lr_range_test narrows the learning-rate axis, which a grid covers"):
        SweepSpec(lr_range_test=True, sampler="grid")
    assert SweepSpec(lr_range_test=True).lr_range_test
    assert SweepSpec(sampler="grid").lr_range_test is None  # the default (auto) never tests a grid: auto_reason
    with pytest.raises(SpecError, match="lr_range_test must be true or false"):
        SweepSpec(lr_range_test="yes")


def test_by_default_a_range_test_runs_only_where_the_axis_spans_two_decades_or_more() -> None:
    def space(axis: object) -> object:
        return parse_space({"axes": {"learning_rate": axis}})

    wide = auto_reason(space({"low": 1e-5, "high": 1e-2, "log": True}), "tpe")
    assert wide == ("learning_rate spans 1000x (1e-05 to 0.01): a range test keeps the one decade the model trains "
                    "best in")
    assert auto_reason(space({"low": 1e-5, "high": 1e-2, "log": True}), "grid") is None  # a grid is not tested
    assert auto_reason(space({"low": 1e-4, "high": 1e-2, "log": True}), "random") is not None  # tiny.yaml's 100x
    assert auto_reason(space({"low": 1e-4, "high": 1e-3, "log": True}), "tpe") is None  # default.yaml's decade
    assert auto_reason(space({"low": 5e-5, "high": 8e-4, "log": True}), "tpe") is None  # --from-config's 16x
    assert auto_reason(space({"low": 1e-4, "high": 9.9e-3, "log": True}), "tpe") is None
    assert auto_reason(space({"choices": [1e-5, 1e-3]}), "tpe") is None  # choices: the user picked the points
    assert auto_reason(space(2e-4), "tpe") is None  # fixed


def test_a_fixed_learning_rate_has_nothing_to_narrow() -> None:
    with pytest.raises(SpecError, match="fixes learning_rate"):
        lr_axis(parse_space({"axes": {"learning_rate": 2e-4}}, "fixed.yaml"))


def test_the_test_trains_the_spaces_typical_config() -> None:
    space = parse_space({"axes": {"lora_r": {"choices": [4, 8, 64]}, "lora_alpha": {"ratio": {"choices": [1, 2]}},
                                  "lora_dropout": {"low": 0.05, "high": 0.15},
                                  "quantization": {"choices": ["none", "nf4"]}}})
    params = range_test_params(space, "nf4")
    # lora_r's default (16) is not a choice: the middle one; the ratio's middle; dropout's default 0 is
    # outside its range: the middle of it.
    assert params["quantization"] == "nf4" and params["lora_r"] == 8 and params["lora_alpha"] == 16.0
    assert params["lora_dropout"] == pytest.approx(0.1) and params["target_modules"] == "all-linear"


@pytest.mark.integration
def test_range_tested_sweeps_from_the_command_line(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("axes:\n  lora_r: 4\n  lora_alpha: {ratio: 2}\n"
                     "  learning_rate: {low: 1.0e-5, high: 5.0e-2, log: true}\n  quantization: {choices: [none, nf4]}\n")
    exp = loss_only_experiment(tmp_path)
    out = tmp_path / "r"
    common = ("sweep", "-e", str(exp), "--model", "tiny-llama", "--space", str(space), "--max-steps", "8",
              "--out", str(out), "--wandb", "disabled", "--study", "ranged")
    proc = run_cli(*common, "--trials", "2", "--lr-range-test", "--warm-start", "defaults")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load_study(out, "ranged")
    record = study.user_attrs["lr_range_test"]
    assert set(record["modes"]) == {"none", "nf4"} and record["axis"] == [1e-5, 5e-2]
    for mode, entry in record["modes"].items():
        assert entry["mode"] == mode and len(entry["losses"]) >= 4 and entry["reason"]
        assert f"learning-rate range test ({mode})" in proc.stderr
    low, high = record["range"]
    assert 1e-5 <= low < high <= 5e-2
    assert f"learning_rate searched in [{low:.3g}, {high:.3g}]" in proc.stderr
    assert all(low <= t.params["learning_rate"] <= high for t in study.trials)
    reports = tmp_path / "reports"
    proc = run_cli("report", "--study", "ranged", "--out", str(out), "--reports-dir", str(reports), "--wandb", "disabled")
    assert proc.returncode == 0, proc.stderr[-3000:]
    markdown = (reports / "report.md").read_text()
    assert "## Learning-rate range test" in markdown and (reports / "lr_range.png").stat().st_size > 10_000
    assert f"[{low:.3g}, {high:.3g}] (dashed)" in markdown and "| nf4 |" in markdown
    # Its long-budget validation trains the planned config as it is: no second range test, no refusal.
    proc = run_cli("validate", "--study", "ranged", "--out", str(out), "--steps", "10", "--top", "1", "--seeds", "1",
                   "--no-defaults", "--wandb", "disabled", "--reports-dir", str(tmp_path / "validation"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "range test" not in proc.stderr and "validation: 1 long runs to go" in proc.stdout + proc.stderr
    # ... and the sweep's warm start (--warm-start defaults above) added nothing to it: only the planned run.
    linked = load_study(out, "ranged@10")
    assert [t.user_attrs.get("validates") for t in linked.trials] == ["search"] and "warm start" not in proc.stderr
    # A resume reuses the stored test (no second test); a study that already has trials is refused.
    proc = run_cli(*common, "--trials", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rising from" not in proc.stderr and f"learning_rate searched in [{low:.3g}" in proc.stderr
    assert all(low <= t.params["learning_rate"] <= high for t in load_study(out, "ranged").trials)
    plain = ("sweep", "-e", str(exp), "--model", "tiny-llama", "--space", str(space), "--max-steps", "2",
             "--out", str(tmp_path / "p"), "--wandb", "disabled", "--study", "plain")
    proc = run_cli(*plain, "--trials", "1", "--no-lr-range-test")
    assert proc.returncode == 0 and "range test" not in proc.stderr
    proc = run_cli(*plain, "--trials", "1")  # the default on a study with trials: no test, and no refusal
    assert proc.returncode == 0 and "range test" not in proc.stderr
    proc = run_cli(*plain, "--trials", "1", "--lr-range-test")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "already has trials" in proc.stderr.strip().splitlines()[-1]
    plain_study = load_study(tmp_path / "p", "plain")
    assert len(plain_study.trials) == 2 and "lr_range_test" not in plain_study.user_attrs
    # The default on a new study whose axis spans 5000x: the range test runs, and says why.
    auto = ("sweep", "-e", str(exp), "--model", "tiny-llama", "--space", str(space), "--max-steps", "2",
            "--out", str(tmp_path / "a"), "--wandb", "disabled", "--study", "auto", "--trials", "1")
    proc = run_cli(*auto)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ("learning_rate spans 5000x (1e-05 to 0.05): a range test keeps the one decade the model trains best in, "
            "so one learning-rate range test per quantization mode narrows it first (--no-lr-range-test skips it)"
            ) in proc.stderr
    assert set(load_study(tmp_path / "a", "auto").user_attrs["lr_range_test"]["modes"]) == {"none", "nf4"}
