"""The trial worker is reused across trials (start-up paid once); prove that memory does not grow."""

from __future__ import annotations

import dataclasses

import pytest

from harness.search.runner import TrialRunner
from harness.config.dataset import DataSpec
from harness.config.lora import LoraSpec
from harness.config.model import ModelSpec, QuantSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig

pytestmark = pytest.mark.integration  # 20 trials in a trial worker process


def test_memory_does_not_grow_over_20_trials_in_one_worker() -> None:
    import psutil

    base = TrialConfig(model=ModelSpec("tiny-llama"), lora=LoraSpec(r=8, alpha=16.0),
                       train=TrainSpec(learning_rate=5e-3, max_steps=3, batch_size=8),
                       data=DataSpec(eval_size=16, train_size=256))
    modes = ["none", "int8", "nf4", "nf4-dq"]
    runner = TrialRunner()
    peaks, idle, models, pids = [], [], [], set()
    try:
        for i in range(20):
            # The same seed, so every cycle sees the same batch shapes: with new shapes each trial,
            # oneDNN's kernel cache (bounded, 1024 primitives by default) grows too, which is not a leak.
            config = dataclasses.replace(base, quant=QuantSpec(modes[i % 4]))
            result = runner.run(config)
            assert result.status == "complete", result.reason
            peaks.append(result.peak_memory_mb)
            models.append(result.metrics["base_model_mb"])
            pids.add(runner._proc.pid)
            idle.append(psutil.Process(runner._proc.pid).memory_info().rss / 2**20)  # between trials
    finally:
        runner.close()
    assert len(pids) == 1  # one process ran all 20 trials
    # What the worker keeps between trials, warm-up excluded: over the 12 trials after the first cycle of modes
    # it may grow by 3 base models (measured: 12 MiB, about one; tiny-llama's weights are 6-12 MiB); a model
    # kept per trial would add 12. Peak memory is noisier (activations, the allocator; up to 70 MiB between
    # cycles when other tests run beside it), so it is only held to 10% (+16 MiB) of the second cycle's.
    assert idle[-1] - idle[3] <= 3 * max(models), (idle, models)
    second, last = peaks[4:8], peaks[16:20]
    assert max(last) <= max(second) * 1.10 + 16, peaks
