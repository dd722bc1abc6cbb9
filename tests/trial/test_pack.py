"""A trial trained in a pack with three others ends where it would alone (harness.trial.pack).

fp32 on tiny-llama in every quantization mode: the same adapter weights and the same eval loss as the same
trial trained alone by harness.trial.train, within 1e-5 relative (the packed batch is wider and padded
further, so matmuls sum in another order; fp32 rounding then moves the last bits, far below 1e-5). The
controls show the comparison can fail: rows routed to the wrong member (in the grouped forward and in peft's
mixed-batch forward), one optimizer shared by all members, and clipping by the pack's joint gradient norm each
break it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from harness.config.dataset import DataSpec
from harness.config.evaluation import EvalSpec
from harness.config.lora import LoraSpec
from harness.config.model import QUANTIZATION_MODES, ModelSpec, QuantSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig
from harness.data import load_examples, make_batches, tokenize_splits
from harness.trial import models, pack
from harness.trial.models import load_base_model, load_tokenizer
from harness.trial.run import PreparedData, attach_adapter, training_epochs
from harness.trial.scoring import eval_loss
from harness.trial.train import train

pytestmark = pytest.mark.integration  # trains tiny-llama in-process

RTOL = 1e-5
"""Relative to the tensor as a whole (the norm of the difference over the norm of the weights): element by
element, an entry near zero differs relatively more by the same rounding."""


@pytest.fixture(autouse=True)
def _fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    """fp32 even where bf16 is native: the equivalence is stated for fp32."""
    monkeypatch.setattr(models, "compute_dtype", lambda device: torch.float32)


def _configs(mode: str) -> list[TrialConfig]:
    """Four members that differ in rank, alpha, rsLoRA, learning rate, schedule, clipping, batch size, LoRA+
    and seed (clipping at 0.05 so that it acts)."""
    def one(r: int, alpha: float, lr: float, seed: int, batch: int, **train: Any) -> TrialConfig:
        return TrialConfig(model=ModelSpec("tiny-llama"), quant=QuantSpec(mode),
                           lora=LoraSpec(r=r, alpha=alpha, use_rslora=train.pop("rslora", False)),
                           train=TrainSpec(learning_rate=lr, max_steps=3, batch_size=batch, seed=seed, grad_accum=2,
                                           max_grad_norm=train.pop("clip", 0.05), **train),
                           data=DataSpec(eval_size=12, train_size=48), eval=EvalSpec(metrics=()))

    return [one(4, 8.0, 3e-3, 0, 4), one(8, 8.0, 1e-3, 1, 2, rslora=True, scheduler="constant"),
            one(2, 4.0, 5e-3, 2, 3, clip=0.0), one(4, 16.0, 2e-3, 3, 4, loraplus_lr_ratio=4.0)]


@pytest.fixture(scope="module")
def prepared(tiny_checkpoint: str) -> PreparedData:
    cfg = _configs("none")[0]
    tokenizer = load_tokenizer(tiny_checkpoint)
    tokenized = tokenize_splits(load_examples(cfg.data), tokenizer, cfg.data)
    eval_batches = make_batches(tokenized.eval, 4, tokenizer.pad_token_id, shuffle_seed=None)
    return PreparedData(tokenizer=tokenizer, tokenized=tokenized, eval_batches=eval_batches, split_hash="",
                        source="")


def _weights(model: torch.nn.Module, name: str) -> dict[str, torch.Tensor]:
    return {n.replace(f".{name}.", "."): p.detach().clone() for n, p in model.named_parameters()
            if "lora_" in n and f".{name}." in n}


def _alone(checkpoint: str, cfg: TrialConfig, data: PreparedData) -> tuple[dict[str, torch.Tensor], float]:
    model = attach_adapter(load_base_model(checkpoint, cfg.quant.mode, "cpu"), cfg)
    train(model, training_epochs(data, cfg), cfg.train, "cpu")
    return _weights(model, "default"), eval_loss(model, data.eval_batches, "cpu").loss


def _packed(checkpoint: str, cfgs: list[TrialConfig], data: PreparedData, **hooks: Any
            ) -> tuple[list[dict[str, torch.Tensor]], list[float], list[pack.MemberOutcome]]:
    model = pack.attach_pack(load_base_model(checkpoint, cfgs[0].quant.mode, "cpu"), cfgs)
    members = [pack.Member(cfg, training_epochs(data, cfg)) for cfg in cfgs]
    outcomes = pack.train_pack(model, members, "cpu", data.tokenizer.pad_token_id, **hooks)
    weights, losses = [], []
    for k in range(len(cfgs)):
        name = pack.member_name(k)
        weights.append(_weights(model, name))
        with pack.only(model, name):
            losses.append(eval_loss(model, data.eval_batches, "cpu").loss)
    return weights, losses, outcomes


def _same(packed: dict[str, torch.Tensor], alone: dict[str, torch.Tensor]) -> None:
    assert packed.keys() == alone.keys() and packed
    for name in alone:
        error = float((packed[name] - alone[name]).norm() / alone[name].norm())
        assert error <= RTOL, (name, error)


@pytest.mark.parametrize("mode", QUANTIZATION_MODES)
def test_a_packed_trial_ends_where_it_would_alone(mode: str, tiny_checkpoint: str, prepared: PreparedData) -> None:
    cfgs = _configs(mode)
    weights, losses, outcomes = _packed(tiny_checkpoint, cfgs, prepared)
    assert all(o.stopped is None and o.outcome.steps == 3 for o in outcomes)
    checked = range(len(cfgs)) if mode == "none" else (3,)  # every member once; LoRA+ with clipping per mode
    for k in checked:
        alone_weights, alone_loss = _alone(tiny_checkpoint, cfgs[k], prepared)
        _same(weights[k], alone_weights)
        assert losses[k] == pytest.approx(alone_loss, rel=RTOL)


def test_peft_mixed_batch_forward_is_the_same_pack(tiny_checkpoint: str, prepared: PreparedData) -> None:
    """The grouped forward (default) and peft's per-member mixed-batch forward (members with dropout, and
    `grouped_forward=False`) train the same pack to the same weights."""
    cfgs = _configs("none")[:2]
    grouped_weights, _, _ = _packed(tiny_checkpoint, cfgs, prepared)
    mixed_weights, _, _ = _packed(tiny_checkpoint, cfgs, prepared, grouped_forward=False)
    for k in range(2):
        _same(grouped_weights[k], mixed_weights[k])
    model = pack.attach_pack(load_base_model(tiny_checkpoint, "none", "cpu"), cfgs)
    assert pack.groupable(model, ["m0", "m1"])
    dropout = [dataclasses.replace(c, lora=dataclasses.replace(c.lora, dropout=0.1)) for c in cfgs]
    assert not pack.groupable(pack.attach_pack(load_base_model(tiny_checkpoint, "none", "cpu"), dropout),
                              ["m0", "m1"])


def test_each_member_saves_as_an_ordinary_peft_adapter(tiny_checkpoint: str, prepared: PreparedData,
                                                       tmp_path: Any) -> None:
    from peft import PeftModel

    cfgs = _configs("none")[:2]
    model = pack.attach_pack(load_base_model(tiny_checkpoint, "none", "cpu"), cfgs)
    pack.train_pack(model, [pack.Member(c, training_epochs(prepared, c)) for c in cfgs], "cpu",
                    prepared.tokenizer.pad_token_id)
    with pack.only(model, "m1"):
        packed_loss = eval_loss(model, prepared.eval_batches, "cpu").loss
    pack.save_member(model, "m1", str(tmp_path / "m1"))
    loaded = PeftModel.from_pretrained(load_base_model(tiny_checkpoint, "none", "cpu"), str(tmp_path / "m1"))
    assert loaded.peft_config["default"].r == 8
    assert eval_loss(loaded, prepared.eval_batches, "cpu").loss == pytest.approx(packed_loss, rel=RTOL)


def test_a_member_that_diverges_leaves_the_others_unchanged(tiny_checkpoint: str, prepared: PreparedData) -> None:
    cfgs = _configs("none")[:3]
    nan_at_two = lambda k, step, loss: float("nan") if (k, step) == (1, 2) else loss  # noqa: E731
    weights, losses, outcomes = _packed(tiny_checkpoint, cfgs, prepared, loss_hook=nan_at_two)
    assert outcomes[1].stopped and "non-finite" in outcomes[1].stopped and outcomes[1].outcome.steps == 1
    assert all(outcomes[k].stopped is None for k in (0, 2))
    alone_weights, alone_loss = _alone(tiny_checkpoint, cfgs[2], prepared)
    _same(weights[2], alone_weights)
    assert losses[2] == pytest.approx(alone_loss, rel=RTOL)


@pytest.mark.parametrize("grouped_forward", [True, False], ids=["grouped", "mixed"])
def test_a_member_whose_own_computation_goes_non_finite_leaves_the_others_unchanged(
        grouped_forward: bool, tiny_checkpoint: str, prepared: PreparedData, monkeypatch: pytest.MonkeyPatch) -> None:
    # not a hook on the reported loss: the member's LoRA weights overflow its rows' activations at step 1, so its
    # loss and gradients are really NaN; in a grouped layer 0 x NaN would reach every member's weight gradient
    real_attach, real_train = pack.attach_pack, pack.train_pack

    def attach_overflowing(base: Any, cfgs: Any) -> Any:
        model = real_attach(base, cfgs)
        with torch.no_grad():
            for param in pack.member_params(model, pack.member_name(1)):
                param.fill_(1e30)
        return model

    with monkeypatch.context() as patch:
        patch.setattr(pack, "attach_pack", attach_overflowing)
        patch.setattr(pack, "train_pack", lambda *a, **k: real_train(*a, grouped_forward=grouped_forward, **k))
        weights, losses, outcomes = _packed(tiny_checkpoint, _configs("none")[:3], prepared)
    assert outcomes[1].stopped and "nan" in outcomes[1].stopped and outcomes[1].outcome.steps == 0
    assert outcomes[0].stopped is None and outcomes[2].stopped is None
    for k in (0, 2):
        alone_weights, alone_loss = _alone(tiny_checkpoint, _configs("none")[k], prepared)
        _same(weights[k], alone_weights)
        assert losses[k] == pytest.approx(alone_loss, rel=RTOL)


def test_a_pack_trains_under_the_autocast_a_trial_alone_trains_under(tiny_checkpoint: str, prepared: PreparedData,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # bf16 autocast on CUDA (devices.autocast_for): a pack without it would train its members in other numerics
    # than the same trials alone on a GPU. On the CPU, every forward of a step must at least ask for it.
    import contextlib

    from harness.trial import train as train_module

    asked: dict[str, list[str]] = {"pack": [], "alone": []}

    def recorder(side: str) -> Any:
        return lambda device: asked[side].append(device) or contextlib.nullcontext()

    monkeypatch.setattr(pack, "autocast_for", recorder("pack"))
    monkeypatch.setattr(train_module, "autocast_for", recorder("alone"))
    cfgs = [dataclasses.replace(c, train=dataclasses.replace(c.train, max_steps=1)) for c in _configs("none")[:2]]
    _packed(tiny_checkpoint, cfgs, prepared)
    _alone(tiny_checkpoint, cfgs[0], prepared)
    assert asked["pack"] == ["cpu"] * cfgs[0].train.grad_accum  # one packed forward per micro-batch
    assert asked["alone"] == ["cpu"] * cfgs[0].train.grad_accum


def test_configs_that_cannot_share_a_pack_are_refused_with_the_reason() -> None:
    cfgs = _configs("none")
    assert pack.refusal(cfgs) is None
    assert "DoRA" in pack.refusal([cfgs[0], dataclasses.replace(cfgs[1], lora=LoraSpec(r=4, use_dora=True))])
    assert "pissa" in pack.refusal([dataclasses.replace(cfgs[0], lora=LoraSpec(r=4, init="pissa"))])
    other_mode = dataclasses.replace(cfgs[1], quant=QuantSpec("nf4"))
    assert "quant" in pack.refusal([cfgs[0], other_mode])
    longer = dataclasses.replace(cfgs[1], train=dataclasses.replace(cfgs[1].train, max_steps=9))
    assert "max_steps" in pack.refusal([cfgs[0], longer])
    wider = dataclasses.replace(cfgs[1], data=dataclasses.replace(cfgs[1].data, max_seq_len=2048))
    assert "max_seq_len" in pack.refusal([cfgs[0], wider])


def test_plan_packs_groups_by_mode_and_says_why_a_trial_trains_alone() -> None:
    none, nf4 = _configs("none"), _configs("nf4")
    dora = dataclasses.replace(none[2], lora=LoraSpec(r=4, use_dora=True))
    plans = pack.plan_packs([none[0], nf4[0], dora, none[1], nf4[1], nf4[2], none[3]])
    assert plans[0] == ([0, 3, 6], None) and plans[1] == ([1, 4, 5], None)  # in the order of their first member
    assert plans[2][0] == [2] and "DoRA" in plans[2][1]
    alone = pack.plan_packs([none[0], nf4[0]])
    assert [members for members, _ in alone] == [[0], [1]] and all("quant" in why for _, why in alone)


def test_run_pack_gives_each_member_the_result_it_gets_alone(tiny_checkpoint: str, tmp_path: Any) -> None:
    """harness.trial.packed.run_pack (what `sweep --pack` runs) against harness.trial.run.run_trial, config
    by config: the same eval loss and training losses, every member's adapter saved and loadable alone, the
    pack's size recorded. Scoring every member through member 0's adapter (a wrong `only`) fails it."""
    from peft import PeftModel

    from harness.trial import packed
    from harness.trial.run import TrialCache, run_trial

    cfgs = [dataclasses.replace(c, adapter_dir=str(tmp_path / f"a{i}"))
            for i, c in enumerate(_configs("nf4")[:3])]
    cache = TrialCache()
    alone = [run_trial(dataclasses.replace(c, adapter_dir=None), cache) for c in cfgs]
    steps: list[int] = []
    together = packed.run_pack(cfgs, cache, on_step=lambda step, losses: steps.append(step))
    assert steps == [1, 2, 3]
    for one, member in zip(alone, together):
        assert member.status == "complete" and member.pack_size == 3
        assert member.eval_loss == pytest.approx(one.eval_loss, rel=RTOL)
        assert [h["loss"] for h in member.history if "loss" in h] == pytest.approx(
            [h["loss"] for h in one.history if "loss" in h], rel=RTOL)
        assert member.trainable_params == one.trainable_params and member.total_params == one.total_params
    assert len({m.eval_loss for m in together}) == 3
    base = load_base_model(tiny_checkpoint, "nf4", "cpu")
    loaded = PeftModel.from_pretrained(base, cfgs[1].adapter_dir)
    assert eval_loss(loaded, _prepared_eval(cfgs[1], cache), "cpu").loss == pytest.approx(together[1].eval_loss,
                                                                                           rel=RTOL)

    wrong = pack.only
    try:
        pack_only = packed.only
        packed.only = lambda model, name: wrong(model, pack.member_name(0))  # type: ignore[assignment]
        mistaken = packed.run_pack([dataclasses.replace(c, adapter_dir=None) for c in cfgs], cache)
    finally:
        packed.only = pack_only  # type: ignore[assignment]
    assert mistaken[1].eval_loss != pytest.approx(alone[1].eval_loss, rel=RTOL)


def test_each_member_is_scored_on_its_own_held_out_set(tiny_checkpoint: str) -> None:
    """Members whose data settings differ (here the held-out size) share a pack and are each scored on their
    own held-out examples, as alone: scoring every member on the first member's set fails it."""
    from harness.trial import packed
    from harness.trial.run import TrialCache, run_trial

    first, second = _configs("none")[:2]
    second = dataclasses.replace(second, data=dataclasses.replace(second.data, eval_size=8))
    cache = TrialCache()
    alone = [run_trial(c, cache) for c in (first, second)]
    together = packed.run_pack([first, second], cache)
    assert [m.eval_examples for m in together] == [12, 8] == [a.eval_examples for a in alone]
    for one, member in zip(alone, together):
        assert member.eval_loss == pytest.approx(one.eval_loss, rel=RTOL)


def test_a_member_the_pruner_stops_leaves_the_pack_and_the_others_end_as_alone(tiny_checkpoint: str) -> None:
    """Intermediate evaluations after steps 1 and 2 (eval_every 1): each member's scores are those its trial
    alone gets (harness.trial.run.run_trial with the same schedule), a member the pruner stops after step 1 is
    `pruned` with its last intermediate score as run_trial reports it, and the others end as they do alone.
    Scoring through member 0's adapter (a wrong `only`) makes the intermediate scores differ."""
    from harness.trial import packed
    from harness.trial.run import TrialCache, TrialCallbacks, run_trial

    cfgs = [dataclasses.replace(c, train=dataclasses.replace(c.train, eval_every=1)) for c in _configs("nf4")[:3]]
    cache = TrialCache()
    prune = {0: 1}  # member 0 is stopped at step 1 (peft's active adapter: its deletion must not freeze the others)

    def alone(k: int) -> tuple[Any, list[tuple[int, float]]]:
        seen: list[tuple[int, float]] = []

        def on_eval(step: int, loss: float) -> bool:
            seen.append((step, loss))
            return prune.get(k) == step

        return run_trial(cfgs[k], cache, TrialCallbacks(on_eval=on_eval)), seen

    alones = [alone(k) for k in range(3)]
    seen: dict[int, list[tuple[int, float]]] = {0: [], 1: [], 2: []}

    def on_eval(member: int, step: int, loss: float) -> bool:
        seen[member].append((step, loss))
        return prune.get(member) == step

    together = packed.run_pack(cfgs, cache, on_eval=on_eval)
    for k, ((one, one_seen), member) in enumerate(zip(alones, together)):
        assert member.status == one.status == ("pruned" if k in prune else "complete")
        assert [s for s, _ in seen[k]] == [s for s, _ in one_seen] == ([1] if k in prune else [1, 2])
        assert [v for _, v in seen[k]] == pytest.approx([v for _, v in one_seen], rel=RTOL)
        assert member.eval_loss == pytest.approx(one.eval_loss, rel=RTOL)
        assert member.steps == one.steps and member.eval_examples == one.eval_examples
        assert [(h["step"], "eval_loss" in h) for h in member.history] == [
            (h["step"], "eval_loss" in h) for h in one.history]  # the same entries in the same order
    assert together[0].reason == alones[0][0].reason == "pruned at step 1 by the study's pruner"

    wrong: dict[int, list[float]] = {0: [], 1: [], 2: []}
    right_only = packed.only
    try:
        packed.only = lambda model, name: right_only(model, pack.member_name(0))  # type: ignore[assignment]
        packed.run_pack(cfgs, cache, on_eval=lambda k, step, loss: bool(wrong[k].append(loss)))
    finally:
        packed.only = right_only  # type: ignore[assignment]
    assert any(wrong[k] != pytest.approx([v for _, v in seen[k]], rel=RTOL) for k in (1, 2)), \
        "the control does not tell the members' adapters apart"


def test_the_next_trial_takes_a_pruned_members_place_and_ends_as_alone(tiny_checkpoint: str, tmp_path: Any) -> None:
    """run_pack with a refill: member 0 is pruned after step 1 and a fourth config takes its place, training
    from its own step 1 beside members 1 and 2 (then alone, one step longer). Every member's result is the one
    its trial gets alone, each result is handed over as its member leaves, the refill's adapter is saved and
    loads on the plain base, and every record states the pack's 3 places."""
    from peft import PeftModel

    from harness.trial import packed
    from harness.trial.run import TrialCache, TrialCallbacks, run_trial

    cfgs = [dataclasses.replace(c, train=dataclasses.replace(c.train, eval_every=1), adapter_dir=str(tmp_path / f"a{i}"))
            for i, c in enumerate(_configs("nf4"))]
    cache = TrialCache()
    pruned_first = {0: 1}
    alone = [run_trial(dataclasses.replace(c, adapter_dir=None), cache, TrialCallbacks(
        on_eval=lambda step, loss, k=k: pruned_first.get(k) == step)) for k, c in enumerate(cfgs)]
    queue = [cfgs[3]]
    order: list[int] = []
    together = packed.run_pack(cfgs[:3], cache, on_eval=lambda k, step, loss: pruned_first.get(k) == step,
                               on_result=lambda k, result: order.append(k),
                               refill=lambda: queue.pop() if queue else None)
    assert order == [0, 1, 2, 3] and len(together) == 4 and not queue
    assert [r.status for r in together] == [a.status for a in alone] == ["pruned", "complete", "complete", "complete"]
    for one, member in zip(alone, together):
        assert member.pack_size == 3 and member.steps == one.steps
        assert member.eval_loss == pytest.approx(one.eval_loss, rel=RTOL)
        assert [h.get("eval_loss", h.get("loss")) for h in member.history] == pytest.approx(
            [h.get("eval_loss", h.get("loss")) for h in one.history], rel=RTOL)
    loaded = PeftModel.from_pretrained(load_base_model(tiny_checkpoint, "nf4", "cpu"), cfgs[3].adapter_dir)
    assert eval_loss(loaded, _prepared_eval(cfgs[3], cache), "cpu").loss == pytest.approx(together[3].eval_loss,
                                                                                           rel=RTOL)


def _prepared_eval(cfg: TrialConfig, cache: Any) -> Any:
    return cache.prepared(cfg).eval_batches


# --- the controls: each mistake the equivalence must catch ---------------------------------------------------

@pytest.mark.parametrize("mistake", ["rows to the wrong member", "one optimizer for all", "joint clipping"])
def test_the_equivalence_fails_on_each_mistake(mistake: str, tiny_checkpoint: str, prepared: PreparedData,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfgs = _configs("none")[:2]  # two members are enough for each mistake to show
    with monkeypatch.context() as mistaken:  # undone before the trial alone; the fp32 fixture's patch stays
        _make(mistake, mistaken)
        weights, _, _ = _packed(tiny_checkpoint, cfgs, prepared)
    assert models.compute_dtype("cpu") == torch.float32  # the trial alone in fp32 too, or any control would pass
    member = 1  # lr 1e-3 and its own clipping: the first member's optimizer or the pack's norm would move it
    alone_weights, _ = _alone(tiny_checkpoint, cfgs[member], prepared)
    with pytest.raises(AssertionError):
        _same(weights[member], alone_weights)


def _make(mistake: str, mistaken: pytest.MonkeyPatch) -> None:
    """Patch the pack to make one mistake (the pack's LoRA weights are collected as it is attached)."""
    everything: list[Any] = []
    real_attach = pack.attach_pack

    def attach(base: Any, cfgs: Any) -> Any:
        model = real_attach(base, cfgs)
        everything.extend(p for n, p in model.named_parameters() if "lora_" in n)
        return model

    mistaken.setattr(pack, "attach_pack", attach)
    if mistake == "rows to the wrong member":  # in the grouped forward and in peft's mixed-batch one
        real, real_grouped = pack.routed, pack.grouped
        mistaken.setattr(pack, "routed", lambda model, names: real(
            model, lambda rows: (lambda n: n[1:] + n[:1])(names(rows))))
        mistaken.setattr(pack, "grouped", lambda model, names, owners, layers=None: real_grouped(
            model, names, [(k + 1) % len(names) for k in owners], layers))
    elif mistake == "one optimizer for all":  # one AdamW (and schedule) over every member, at the first's rate
        shared: dict[str, Any] = {}
        real_make = pack.make_optimizer

        def one_for_all(model: Any, params: list[Any], spec: Any, device: str) -> Any:
            if "opt" not in shared:
                shared["opt"] = real_make(model, everything, spec, device)
                return shared["opt"]
            return real_make(model, [torch.nn.Parameter(torch.zeros(1))], spec, device)  # steps nothing

        mistaken.setattr(pack, "make_optimizer", one_for_all)
    else:  # every member clipped by the norm of the whole pack's gradient
        mistaken.setattr(pack, "_norm", lambda params: torch.nn.utils.get_total_norm(
            [p.grad for p in everything if p.grad is not None]))
