"""Reading each step's loss one step late (the default on CUDA) changes nothing but when it is read.

On the CPU nothing is asynchronous, so `defer_sync=True` is run here against the plain path: the same
losses, learning rates, tokens, callbacks in the same order, the same weights, and a divergence caught
(one step later) with the same message."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from harness.config.dataset import DataSpec
from harness.config.lora import LoraSpec
from harness.config.model import ModelSpec, QuantSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig
from harness.data import load_examples, make_batches, tokenize_splits
from harness.trial.models import load_base_model, load_tokenizer
from harness.trial.run import attach_adapter
from harness.trial.train import NonFiniteLoss, StopTraining, train

pytestmark = pytest.mark.integration  # trains tiny-llama in-process


def _run(checkpoint: str, defer: bool, *, max_steps: int = 5, eval_at: tuple[int, ...] = (2, 4),
         loss_hook: Any = None, stop_at: int | None = None) -> tuple[list[tuple], dict[str, torch.Tensor], Any]:
    cfg = TrialConfig(model=ModelSpec("tiny-llama"), quant=QuantSpec("none"), lora=LoraSpec(r=4, alpha=8.0),
                      train=TrainSpec(learning_rate=1e-2, max_steps=max_steps, batch_size=4, eval_at=eval_at),
                      data=DataSpec(eval_size=8, train_size=32))
    tokenizer = load_tokenizer(checkpoint)
    data = tokenize_splits(load_examples(cfg.data), tokenizer, cfg.data)
    model = attach_adapter(load_base_model(checkpoint, "none", "cpu"), cfg)
    events: list[tuple] = []

    def on_eval(step: int) -> bool:
        events.append(("eval", step))
        return step == stop_at

    outcome: Any = None
    try:
        outcome = train(model, lambda e: make_batches(data.train, 4, tokenizer.pad_token_id, shuffle_seed=e),
                        cfg.train, "cpu", on_step=lambda i: events.append(("step", i.step, i.loss, i.lr, i.tokens)),
                        on_eval=on_eval, loss_hook=loss_hook, defer_sync=defer)
    except (NonFiniteLoss, StopTraining) as err:
        outcome = err
    weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return events, weights, outcome


def test_deferred_reads_give_the_same_steps_callbacks_and_weights(tiny_checkpoint: str) -> None:
    plain_events, plain_weights, plain = _run(tiny_checkpoint, defer=False)
    events, weights, deferred = _run(tiny_checkpoint, defer=True)
    assert events == plain_events  # every step reported before the eval that follows it, same values
    assert [e[1] for e in events if e[0] == "step"] == [1, 2, 3, 4, 5]
    assert (deferred.steps, deferred.tokens, deferred.losses) == (plain.steps, plain.tokens, plain.losses)
    assert deferred.seconds > 0
    for name, tensor in plain_weights.items():
        assert torch.equal(tensor, weights[name]), name


def test_a_pruned_run_reports_every_step_up_to_the_eval(tiny_checkpoint: str) -> None:
    plain_events, _, plain = _run(tiny_checkpoint, defer=False, stop_at=2)
    events, _, deferred = _run(tiny_checkpoint, defer=True, stop_at=2)
    assert isinstance(deferred, StopTraining) and deferred.step == plain.step == 2
    assert events == plain_events and events[-1] == ("eval", 2)


@pytest.mark.parametrize("bad_step, max_steps", [(3, 5), (5, 5)])  # in the middle, and the last step
def test_a_divergence_is_caught_with_the_same_reason(tiny_checkpoint: str, bad_step: int, max_steps: int) -> None:
    def hook(step: int, loss: float) -> float:
        return math.nan if step == bad_step else loss

    plain_events, _, plain = _run(tiny_checkpoint, defer=False, loss_hook=hook, max_steps=max_steps, eval_at=())
    events, _, deferred = _run(tiny_checkpoint, defer=True, loss_hook=hook, max_steps=max_steps, eval_at=())
    assert isinstance(deferred, NonFiniteLoss) and str(deferred) == str(plain)
    assert f"at step {bad_step}" in str(deferred)
    assert events == plain_events and [e[1] for e in events] == list(range(1, bad_step))
