"""A learning-rate range test: one short run whose rate rises exponentially, its loss recorded per step.

Leslie Smith's test (fastai's `lr_find`): train a fresh adapter from `low` to `high` in `steps` optimizer
steps, the rate multiplied by the same factor every step, and record the training loss of each. Where the
smoothed loss stops falling is the largest rate that still helps. The run stops early once the smoothed
loss is STOP_FACTOR times its minimum (or the loss is not finite): past that, every higher rate is worse.

Imports neither optuna nor wandb: what the curve means for a search space is decided in
harness.search.lr_range.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from harness.config.errors import one_line
from harness.config.trial import TrialConfig
from harness.runtime.devices import pick_device
from harness.trial.models import load_base_model
from harness.trial.run import attach_adapter, fault_hook, release_memory, training_epochs
from harness.trial.train import NonFiniteLoss, StepInfo, StopTraining, train

SMOOTHING = 0.7
"""Exponential moving average of the loss (debiased), as fastai smooths it; lower than fastai's 0.98
because a range test here has tens of steps, not hundreds."""
STOP_FACTOR = 4.0
"""The run stops once the smoothed loss is this many times its minimum (fastai's divergence rule)."""
MIN_STEPS = 4


@dataclass(frozen=True)
class RangeCurve:
    """One range test: the rate and the training loss of every step it ran, and how it ended."""

    mode: str
    low: float
    high: float
    steps: int
    """Steps planned (the rate reaches `high` at the last)."""
    lrs: tuple[float, ...] = ()
    """The rate each step that ran trained at."""
    losses: tuple[float, ...] = ()
    smoothed: tuple[float, ...] = ()
    stopped: str = ""
    """Why it ended before `steps` ("" when it ran them all)."""
    seconds: float = 0.0
    error: str | None = None
    """Set when the test could not run (the model would not load, say): the curve is empty."""

    def to_dict(self) -> dict[str, Any]:
        """As JSON keeps it (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RangeCurve:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
        return cls(**values)


def range_rates(low: float, high: float, steps: int) -> list[float]:
    """The rate of each step: `low` at the first, `high` at the last, the same factor between neighbours."""
    if steps < 2:
        raise ValueError(f"a range test needs at least 2 steps, got {steps}")
    return [low * (high / low) ** (k / (steps - 1)) for k in range(steps)]


def smooth(losses: list[float], beta: float = SMOOTHING) -> list[float]:
    """Debiased exponential moving average (the first value is the first loss)."""
    out, average = [], 0.0
    for k, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        out.append(average / (1 - beta ** k))
    return out


def blown_up(losses: list[float]) -> bool:
    """Whether the smoothed loss has risen past STOP_FACTOR times its minimum: every higher rate is worse."""
    smoothed = smooth(losses)
    return smoothed[-1] > STOP_FACTOR * min(smoothed)


def run_range_test(config: TrialConfig, low: float, high: float, steps: int, cache: Any) -> RangeCurve:
    """Train a fresh adapter of `config` (its mode, rank, batches) at rates rising from `low` to `high` over
    `steps` steps; `cache` is the trial process's TrialCache. Never raises for a run that goes wrong: a
    loss that explodes ends the curve, anything else is the curve's `error`."""
    rates = range_rates(low, high, max(steps, MIN_STEPS))
    curve = RangeCurve(config.quant.mode, low, high, len(rates))
    device = pick_device()
    losses: list[float] = []
    stopped = ""
    started = time.perf_counter()
    try:
        data = cache.prepared(config)
        base = load_base_model(cache.checkpoint(config.model.name), config.quant.mode, device,
                               config.data.max_seq_len)
        model = attach_adapter(base, config)

        def record(info: StepInfo) -> None:
            losses.append(info.loss)
            if blown_up(losses):
                raise StopTraining(info.step, f"smoothed loss above {STOP_FACTOR:g}x its minimum at step {info.step}")

        spec = dataclasses.replace(config.train, learning_rate=low, max_steps=len(rates), eval_every=0, eval_at=())
        try:
            train(model, training_epochs(data, config), spec, device, on_step=record, loss_hook=fault_hook(config.fault),
                  lr_factor=lambda k: rates[min(k, len(rates) - 1)] / low)
        except StopTraining as stop:
            stopped = str(stop)
        except NonFiniteLoss as err:
            stopped = str(err)
        del model, base
    except Exception as err:  # reported, not raised: the search goes on with the axis as given
        return dataclasses.replace(curve, error=one_line(err), seconds=time.perf_counter() - started)
    finally:
        release_memory(device)
    return dataclasses.replace(curve, lrs=tuple(rates[:len(losses)]), losses=tuple(losses),
                               smoothed=tuple(smooth(losses)), stopped=stopped, seconds=time.perf_counter() - started)

