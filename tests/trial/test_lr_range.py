"""The learning-rate range test: the rate each step trains at, the recorded curve, and where it stops."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from harness.config.dataset import DataSpec
from harness.config.evaluation import EvalSpec
from harness.config.lora import LoraSpec
from harness.config.model import ModelSpec, QuantSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig
from harness.trial.lr_range import RangeCurve, blown_up, range_rates, run_range_test, smooth
from harness.trial.run import TrialCache


def test_the_rate_rises_by_one_factor_from_low_to_high() -> None:
    rates = range_rates(1e-5, 1e-1, 5)
    assert rates[0] == pytest.approx(1e-5) and rates[-1] == pytest.approx(1e-1)
    assert [b / a for a, b in zip(rates, rates[1:])] == pytest.approx([10.0] * 4)
    with pytest.raises(ValueError, match="at least 2 steps"):
        range_rates(1e-5, 1e-1, 1)


def test_smoothing_is_a_debiased_moving_average() -> None:
    assert smooth([3.0, 3.0, 3.0]) == pytest.approx([3.0, 3.0, 3.0])  # debiased: no pull towards 0
    beta = 0.7
    expected = ((1 - beta) * beta * 4.0 + (1 - beta) * 2.0) / (1 - beta ** 2)
    assert smooth([4.0, 2.0], beta) == pytest.approx([4.0, expected])


def test_a_curve_survives_the_round_trip_through_the_study() -> None:
    curve = RangeCurve("nf4", 1e-5, 1e-2, 4, lrs=(1e-5, 1e-4), losses=(3.0, 2.5), smoothed=(3.0, 2.7),
                       stopped="x", seconds=1.5)
    assert RangeCurve.from_dict(curve.to_dict()) == curve
    assert RangeCurve.from_dict({**curve.to_dict(), "range": [1, 2]}) == curve  # the study's extra keys


def _config(mode: str = "none") -> TrialConfig:
    return TrialConfig(model=ModelSpec("tiny-llama"), quant=QuantSpec(mode), lora=LoraSpec(r=4, alpha=8.0),
                       train=TrainSpec(learning_rate=1e-4, max_steps=30, batch_size=4, seed=0),
                       data=DataSpec(eval_size=8, train_size=32), eval=EvalSpec(metrics=(), generate_size=0))


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["none", "nf4-dq"])
def test_each_step_trains_at_its_planned_rate_and_the_curve_records_it(mode: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    trained_at: list[float] = []
    real_step = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        trained_at.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    curve = run_range_test(_config(mode), 1e-5, 1e-3, 6, TrialCache())
    assert curve.error is None and curve.stopped == "" and curve.mode == mode
    assert trained_at == pytest.approx(range_rates(1e-5, 1e-3, 6))
    assert list(curve.lrs) == pytest.approx(trained_at)
    assert len(curve.losses) == 6 and all(math.isfinite(v) for v in curve.losses)
    assert list(curve.smoothed) == pytest.approx(smooth(list(curve.losses)))
    assert curve.seconds > 0


def test_the_run_stops_once_the_smoothed_loss_is_four_times_its_minimum() -> None:
    assert not blown_up([3.0, 2.0, 1.0, 1.5, 2.5])
    assert blown_up([3.0, 2.0, 1.0, 1.0, 30.0])  # smoothed: about 11.8 > 4 x 1.46
    assert not blown_up([3.0, 2.0, 1.0, 1.0, 5.0])  # one bad step does not end the curve


@pytest.mark.integration
def test_a_loss_that_is_not_finite_ends_the_curve_and_keeps_the_axis() -> None:
    from harness.search.lr_range import suggest_range

    curve = run_range_test(dataclasses.replace(_config(), fault="nan"), 1e-5, 1e-3, 6, TrialCache())
    assert curve.error is None and "non-finite training loss" in curve.stopped and curve.losses == ()
    assert suggest_range(curve, 1e-5, 1e-3).reason.startswith("range test stopped after 0 steps")


@pytest.mark.integration
def test_a_test_that_cannot_run_is_a_curve_with_the_reason() -> None:
    bad = TrialConfig(model=ModelSpec("tiny-llama"), quant=QuantSpec("none"), lora=LoraSpec(r=4, alpha=8.0),
                      train=TrainSpec(batch_size=4), data=DataSpec(name="/nonexistent/data.jsonl"),
                      eval=EvalSpec(metrics=(), generate_size=0))
    curve = run_range_test(bad, 1e-5, 1e-3, 6, TrialCache())
    assert curve.error and "nonexistent" in curve.error and curve.losses == ()
