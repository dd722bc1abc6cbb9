"""The head at the labelled positions gives the loss and gradients of the model's own full-logits loss.

Every quantization mode, right padding, two micro-batches of different widths (grad accumulation), a row
with no completion token and a micro-batch with none at all. The reference is transformers' own loss on
one batch that holds both micro-batches; the off-by-one control shows the comparison can fail. Every family's
tiny model (harness.trial.families) takes the selected head: tiny-llama in every mode, tiny-gemma3 (sliding-window
layers, scaled embedding, no chat template) and tiny-qwen2 (attention biases) in 16-bit and NF4-DQ.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from harness.config.dataset import DataSpec
from harness.config.evaluation import EvalSpec
from harness.config.lora import LoraSpec
from harness.config.model import QUANTIZATION_MODES, ModelSpec, QuantSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig
from harness.data import load_examples, make_batches, tokenize_splits
from harness.data.batching import Batch
from harness.data.examples import IGNORE_INDEX
from harness.trial import head, models
from harness.trial.models import load_base_model, load_tokenizer
from harness.trial.run import attach_adapter
from harness.trial.scoring import eval_loss
from harness.trial.train import _accumulate
from helpers import with_nonzero_lora_b

LOSS_RTOL = 1e-6  # fp32, the bound on the loss
GRAD_RTOL, GRAD_ATOL = 1e-5, 1e-7  # per element: a different summation order moves the last bits


def test_labelled_positions_score_each_position_against_the_next_label() -> None:
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 7, 8, IGNORE_INDEX],
                           [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
                           [IGNORE_INDEX, 5, 6, IGNORE_INDEX, IGNORE_INDEX]])
    rows, cols, targets = head.labelled_positions(labels)
    assert rows.tolist() == [0, 0, 2, 2]
    assert cols.tolist() == [1, 2, 0, 1]  # hidden state at t predicts the label at t + 1
    assert targets.tolist() == [7, 8, 5, 6]


@pytest.fixture(autouse=True)
def _fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    """The equivalences hold to 1e-6 in fp32: load the model in fp32 even where bf16 is native (AVX512-BF16),
    where harness would compute in bf16 and the two paths round differently."""
    monkeypatch.setattr(models, "compute_dtype", lambda device: torch.float32)


FAMILY_MODES = ([("tiny-llama", mode) for mode in QUANTIZATION_MODES]
                + [(tiny, mode) for tiny in ("tiny-gemma3", "tiny-qwen2") for mode in ("none", "nf4-dq")])
"""(tiny model, mode) pairs of the equivalence tests: every mode on one family, two on the others (each pair
costs seconds; the head does not depend on the mode, the weights' layout does)."""


def _config(mode: str, tiny: str = "tiny-llama") -> TrialConfig:
    return TrialConfig(model=ModelSpec(tiny), quant=QuantSpec(mode), lora=LoraSpec(r=4, alpha=8.0),
                       train=TrainSpec(max_steps=1, batch_size=4), data=DataSpec(eval_size=8, train_size=48),
                       eval=EvalSpec(metrics=()))


def _unscored_row(batch: Batch, row: int) -> Batch:
    labels = batch.labels.clone()
    labels[row] = IGNORE_INDEX
    return dataclasses.replace(batch, labels=labels, scored_tokens=int((labels[:, 1:] != IGNORE_INDEX).sum()))


def _joined(batches: list[Batch], pad_id: int) -> dict[str, torch.Tensor]:
    """One right-padded batch holding every row of `batches` (the grad-accumulation reference)."""
    width = max(b.input_ids.shape[1] for b in batches)

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    return {"input_ids": torch.cat([pad(b.input_ids, pad_id) for b in batches]),
            "attention_mask": torch.cat([pad(b.attention_mask, 0) for b in batches]),
            "labels": torch.cat([pad(b.labels, IGNORE_INDEX) for b in batches])}


@functools.lru_cache(maxsize=None)
def _checkpoint(tiny: str) -> str:
    return models.checkpoint_path(models.resolve_model(tiny))


@functools.lru_cache(maxsize=None)
def _family_data(tiny: str):
    """(pad id, two training micro-batches, eval batches) of the tiny model's tokenizer."""
    cfg = _config("none", tiny)
    tokenizer = load_tokenizer(_checkpoint(tiny))
    tokenized = tokenize_splits(load_examples(cfg.data), tokenizer, cfg.data)
    train = make_batches(tokenized.train, 4, tokenizer.pad_token_id, shuffle_seed=0)
    first = train[0]
    second = next(b for b in train if b.input_ids.shape[1] != first.input_ids.shape[1])
    assert (first.attention_mask == 0).any() or (second.attention_mask == 0).any(), "want padding"
    eval_batches = make_batches(tokenized.eval, 4, tokenizer.pad_token_id, shuffle_seed=None)
    eval_batches[0] = _unscored_row(eval_batches[0], 1)
    return tokenizer.pad_token_id, [_unscored_row(first, 0), second], eval_batches


@pytest.fixture(scope="module")
def data(tiny_checkpoint: str):
    return _family_data("tiny-llama")


def _adapted(checkpoint: str, mode: str, tiny: str = "tiny-llama") -> torch.nn.Module:
    return with_nonzero_lora_b(attach_adapter(load_base_model(checkpoint, mode, "cpu"), _config(mode, tiny)))


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return grads


def _reference_step(model: torch.nn.Module, batches: list[Batch], pad_id: int) -> tuple[float, dict]:
    """transformers' own loss (full logits) on one batch holding every micro-batch."""
    loss = model(**_joined(batches, pad_id)).loss
    loss.backward()
    return float(loss.detach()), _grads(model)


def _harness_step(model: torch.nn.Module, batches: list[Batch]) -> tuple[float, dict]:
    loss, _ = _accumulate(model, batches, "cpu")
    return float(loss), _grads(model)


def _assert_same_step(got: tuple[float, dict], want: tuple[float, dict], what: str) -> None:
    (loss, grads), (ref_loss, ref_grads) = got, want
    assert abs(loss - ref_loss) <= LOSS_RTOL * abs(ref_loss), f"{what}: loss {loss!r} != {ref_loss!r}"
    assert grads.keys() == ref_grads.keys() and grads
    assert all(g.abs().sum() > 0 for g in ref_grads.values()), "every LoRA parameter should get a gradient"
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=GRAD_RTOL, atol=GRAD_ATOL,
                                   msg=lambda m: f"{what}: gradient of {name}: {m}")


@pytest.mark.integration
@pytest.mark.parametrize(("tiny", "mode"), FAMILY_MODES)
def test_selected_head_step_equals_the_models_own_loss(tiny: str, mode: str) -> None:
    pad_id, micro, _ = _family_data(tiny)
    model = _adapted(_checkpoint(tiny), mode, tiny)
    assert head.selects_head(model), f"{tiny}: its family's row says the selected head should be taken"
    want = _reference_step(model, micro, pad_id)
    _assert_same_step(_harness_step(model, micro), want, f"{mode}, selected head")
    # A micro-batch with no scored token at all adds nothing (the model's own mean over it is NaN).
    empty = _unscored_row(_unscored_row(_unscored_row(_unscored_row(micro[1], 0), 1), 2), 3)
    assert empty.scored_tokens == 0
    _assert_same_step(_harness_step(model, [micro[0], empty, micro[1]]), want, f"{mode}, an empty micro-batch")


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["none", "nf4-dq"])
def test_full_logits_path_gives_the_same_step(mode: str, tiny_checkpoint: str, data,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A model the head cannot be selected for (here: pretending to be Gemma 2) gets the same losses."""
    pad_id, micro, _ = data
    model = _adapted(tiny_checkpoint, mode)
    want = _reference_step(model, micro, pad_id)
    monkeypatch.setattr(model.get_base_model().config, "model_type", "gemma2")
    assert not head.selects_head(model)
    _assert_same_step(_harness_step(model, micro), want, f"{mode}, full logits")


@pytest.mark.integration
def test_gemma3_with_logit_soft_capping_takes_the_full_logits_and_gives_the_same_step(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Gemma 3's head is selected only while its final-logit soft-capping is off (Gemma-3-270M's is): with it
    on, the selected head would skip the tanh, so the full-logits path is taken and still equals the model."""
    pad_id, micro, _ = _family_data("tiny-gemma3")
    model = _adapted(_checkpoint("tiny-gemma3"), "none", "tiny-gemma3")
    monkeypatch.setattr(model.get_base_model().config, "final_logit_softcapping", 0.5)  # bites at these logits
    want = _reference_step(model, micro, pad_id)
    assert not head.selects_head(model)
    _assert_same_step(_harness_step(model, micro), want, "gemma3 soft-capped, full logits")


def _reference_row_losses(model: torch.nn.Module, batches: list[Batch]) -> dict[int, tuple[float, int]]:
    """Each eval row's summed loss from the full logits, as eval_loss computed it before."""
    out = {}
    with torch.inference_mode():
        for batch in batches:
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            shifted = batch.labels[:, 1:]
            losses = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), shifted,
                                                       ignore_index=IGNORE_INDEX, reduction="none")
            mask = shifted != IGNORE_INDEX
            for index, total, count in zip(batch.indices, (losses * mask).sum(1).tolist(), mask.sum(1).tolist()):
                out[index] = (total, count)
    return out


@pytest.mark.integration
@pytest.mark.parametrize(("tiny", "mode"), FAMILY_MODES)
def test_eval_loss_per_example_equals_the_full_logits(tiny: str, mode: str) -> None:
    _, _, eval_batches = _family_data(tiny)
    model = _adapted(_checkpoint(tiny), mode, tiny).eval()  # int8 layers compute differently in train mode
    want = _reference_row_losses(model, eval_batches)
    score = eval_loss(model, eval_batches, "cpu")
    order = sorted(want)
    assert score.example_tokens == [want[i][1] for i in order]
    assert 0 in score.example_tokens, "one eval row has no scored token"
    for index, got in zip(order, score.example_losses):
        total, count = want[index]
        if count == 0:
            assert got != got, "a row with no scored token has no loss (NaN)"
        else:
            assert abs(got - total / count) <= LOSS_RTOL * (total / count), f"{mode}: example {index}"
    mean = sum(t for t, _ in want.values()) / sum(c for _, c in want.values())
    assert abs(score.loss - mean) <= LOSS_RTOL * mean


@pytest.mark.integration
def test_control_an_off_by_one_selection_is_caught(tiny_checkpoint: str, data,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring each hidden state against its own token instead of the next one fails the comparison."""
    pad_id, micro, _ = data
    model = _adapted(tiny_checkpoint, "none")
    want = _reference_step(model, micro, pad_id)
    right = head.labelled_positions

    def off_by_one(labels: torch.Tensor):
        rows, cols, targets = right(labels)
        return rows, (cols - 1).clamp(min=0), targets  # the hidden state before the right one

    monkeypatch.setattr(head, "labelled_positions", off_by_one)
    with pytest.raises(AssertionError, match="loss"):
        _assert_same_step(_harness_step(model, micro), want, "off by one")


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["none", "nf4-dq"])
def test_eval_loss_does_not_depend_on_the_eval_batch_size(mode: str) -> None:
    """The planner fits an evaluation over the memory budget by halving its batch (harness.search.planning):
    the token-weighted held-out loss and each example's loss are the same at any eval batch size (fp32)."""
    pad_id, _, _ = _family_data("tiny-llama")
    cfg = _config(mode)
    tokenized = tokenize_splits(load_examples(cfg.data), load_tokenizer(_checkpoint("tiny-llama")), cfg.data)
    model = _adapted(_checkpoint("tiny-llama"), mode).eval()
    wide = eval_loss(model, make_batches(tokenized.eval, 8, pad_id, shuffle_seed=None), "cpu")
    for size in (3, 1):
        narrow = eval_loss(model, make_batches(tokenized.eval, size, pad_id, shuffle_seed=None), "cpu")
        assert abs(narrow.loss - wide.loss) <= LOSS_RTOL * wide.loss, f"eval batch {size} moved the loss"
        assert narrow.example_tokens == wide.example_tokens
        for a, b in zip(narrow.example_losses, wide.example_losses):
            assert abs(a - b) <= LOSS_RTOL * b
