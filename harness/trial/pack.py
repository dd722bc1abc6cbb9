"""Packed trials: K LoRA adapters trained at once on one copy of the frozen base model.

One peft model holds every member's adapter (`m0` .. `mK-1`), each initialised exactly as `attach_adapter`
initialises it alone (from the member's own seed). A packed step joins one micro-batch of every member
(right-padded to the widest) into one batch, and a forward pre-hook on every LoRA layer hands peft the
adapter of each row: peft's mixed-batch forward runs the frozen base path once on the whole batch and each
member's A/B only on its own rows. Each member's loss is the mean over its own scored tokens; the members'
losses are summed and backpropagated once, and because a member's adapter touches only its own rows, its
gradient is the gradient of its own loss alone. Each member keeps its own AdamW state, learning-rate
schedule, gradient clipping (by its own gradient norm), loss history and divergence check; a member that
diverges, or that the pruner stops, leaves the pack (its rows leave the batch) and the others go on
unchanged; the next trial may take its place (`train_pack`'s refill) and trains from its own first step.

Members share the base model, quantization mode, target modules, `max_seq_len` (which picks the attention the
base loads with), `max_steps`, `grad_accum` and evaluation schedule (each counts its own steps); each is
scored on its own data and evaluation settings (`harness.trial.packed`); they may differ in rank, alpha,
rsLoRA, learning rate, schedule, warm-up, weight decay, clipping, batch size, LoRA+ ratio and seed. DoRA and
PiSSA/OLoRA initialisation and gradient checkpointing run unpacked (`refusal` says why): DoRA changes the base
path per adapter, PiSSA/OLoRA rewrite the base weights per member, and checkpointing's recomputation runs in the
backward pass, outside the rows' routing.
With dropout the members are statistically, not bitwise, the trials they would be alone (the dropout masks
draw from one generator in another order); tests/trial/test_pack.py holds the packed members equal to the
same trials trained alone with dropout 0.

Knows nothing of Optuna or W&B, like the rest of harness.trial.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.config.trial import TrialConfig
from harness.trial.head import token_losses
from harness.runtime.devices import autocast_for
from harness.trial.train import (NonFiniteLoss, TrainOutcome, batches_forever, check_loss, make_optimizer,
                                 make_scheduler)

SHARED_FIELDS = ("model", "quant", "targets", "max_seq_len", "max_steps", "grad_accum", "eval_schedule")
"""What every member of a pack must have in common."""


def member_name(index: int) -> str:
    """The peft adapter name of the pack's index-th member."""
    return f"m{index}"


def shared(config: TrialConfig) -> dict[str, Any]:
    """The config's values of SHARED_FIELDS: what every member of its pack must have equal."""
    return {"model": config.model, "quant": config.quant, "targets": config.lora.targets,
            "max_seq_len": config.data.max_seq_len, "max_steps": config.train.max_steps,
            "grad_accum": config.train.grad_accum,
            "eval_schedule": (config.train.eval_every, tuple(config.train.eval_at or ()))}


def refusal(configs: Sequence[TrialConfig]) -> str | None:
    """Why these configs cannot train in one pack (None when they can)."""
    if not configs:
        return "a pack needs at least one member"
    first = configs[0]
    for config in configs:
        if config.lora.use_dora:
            return "DoRA changes the base path per adapter: it trains unpacked"
        if config.train.gradient_checkpointing:
            return ("gradient checkpointing recomputes the base path in the backward pass, outside the routing of "
                    "rows to members: it trains unpacked")
        if config.lora.init not in ("true", "gaussian"):
            return f"init_lora_weights {config.lora.init} rewrites the base weights per adapter: it trains unpacked"
        mine, theirs = shared(config), shared(first)
        differing = [name for name in SHARED_FIELDS if mine[name] != theirs[name]]
        if differing:
            return f"members differ in {', '.join(differing)}: they train in separate packs"
    return None


def plan_packs(configs: Sequence[TrialConfig]) -> list[tuple[list[int], str | None]]:
    """Split configs into packs that can train together: (indices, None) for each pack, in the order of its
    first member; ([i], reason) for a config that trains alone, with the reason (its own refusal, such as
    DoRA, or no other config sharing its mode, targets and step count)."""
    plans: list[tuple[list[int], str | None]] = []
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, config in enumerate(configs):
        own = refusal([config])
        if own is not None:
            plans.append(([index], own))
            continue
        key = tuple(shared(config).values())
        if key not in groups:
            groups[key] = []
            plans.append((groups[key], None))
        groups[key].append(index)
    return [(group, why if why is not None or len(group) > 1 else
             "no other trial claimed with it has the same model, quantization mode, targets, max_seq_len, "
             "max_steps, grad_accum and evaluation schedule")
            for group, why in plans]


def attach_pack(base: Any, configs: Sequence[TrialConfig]) -> Any:
    """A peft model with one adapter per config (`member_name(i)`), each initialised from its own seed as
    `attach_adapter` would initialise it alone; every member's LoRA weights are trainable."""
    from peft import get_peft_model

    from harness.trial.run import lora_config, seed_all

    why = refusal(configs)
    if why is not None:
        raise ValueError(why)
    model = None
    for index, config in enumerate(configs):
        seed_all(config.train.seed)
        if model is None:
            model = get_peft_model(base, lora_config(config, base), adapter_name=member_name(index))
        else:
            model.add_adapter(member_name(index), lora_config(config, model))
    _all_trainable(model)
    return model


def member_params(model: Any, name: str) -> list[Any]:
    """The trainable LoRA weights of one member, in the model's parameter order."""
    return [p for n, p in model.named_parameters() if "lora_" in n and f".{name}." in f"{n}."]


def _lora_layers(model: Any) -> list[Any]:
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


@contextlib.contextmanager
def routed(model: Any, names: Callable[[int], list[str]]) -> Iterator[None]:
    """Every LoRA layer applies, to row i of its input, the adapter `names(rows)[i]` (peft's mixed-batch
    forward) while the context is open."""
    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        kwargs["adapter_names"] = names(args[0].shape[0] if args else kwargs["x"].shape[0])
        return args, kwargs

    handles = [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in _lora_layers(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def groupable(model: Any, names: Sequence[str], layers: Sequence[Any] | None = None) -> bool:
    """Whether `grouped` can run these members: every LoRA layer a plain low-rank linear update (no DoRA, no
    dropout) for each of them. `layers`: the model's LoRA layers when the caller has them (`_lora_layers`)."""
    import torch

    for layer in _lora_layers(model) if layers is None else layers:
        for name in names:
            if name not in layer.lora_A or not isinstance(layer.lora_A[name], torch.nn.Linear):
                return False
            if layer.use_dora.get(name) or not isinstance(layer.lora_dropout[name], torch.nn.Identity):
                return False
    return True


@contextlib.contextmanager
def grouped(model: Any, names: Sequence[str], owners: Sequence[int],
            layers: Sequence[Any] | None = None) -> Iterator[None]:
    """Every LoRA layer applies all the members' updates in two matrix products while the context is open: row i
    (of member owners[i]) computes `x A_cat^T`, keeps only its member's rank slice scaled by that member's
    alpha/r (a row mask, zero elsewhere), and multiplies by B_cat: `((x A_cat^T) * mask) B_cat`. The other
    members' slices are exact zeros, so each row gets its own member's update and each member's gradient
    comes from its own rows only; the number of operations per layer does not grow with the pack (peft's
    mixed-batch forward, `routed`, loops over the members). Needs `groupable`. `layers`: the model's LoRA layers
    when the caller has them (`_lora_layers` walks every module)."""
    import torch

    layers = _lora_layers(model) if layers is None else layers
    masks: dict[tuple[Any, Any], Any] = {}

    def mask_for(layer: Any, like: Any) -> Any:
        ranks = tuple(layer.r[n] for n in names)
        scales = tuple(float(layer.scaling[n]) for n in names)
        key = (ranks, scales, like.dtype, like.device)
        if key not in masks:
            rows = torch.zeros(len(owners), sum(ranks), dtype=like.dtype, device=like.device)
            start = [sum(ranks[:k]) for k in range(len(ranks))]
            for i, k in enumerate(owners):
                rows[i, start[k]:start[k] + ranks[k]] = scales[k]
            masks[key] = rows
        return masks[key]

    def forward_of(layer: Any) -> Callable[..., Any]:
        def forward(x: Any, *args: Any, **kwargs: Any) -> Any:
            result = layer.base_layer(x, *args, **kwargs)
            a = torch.cat([layer.lora_A[n].weight for n in names])  # (sum of ranks, in)
            b = torch.cat([layer.lora_B[n].weight for n in names], dim=1)  # (out, sum of ranks)
            h = torch.nn.functional.linear(x.to(a.dtype), a)
            mask = mask_for(layer, h)
            h = h * mask.view(mask.shape[0], *([1] * (h.dim() - 2)), mask.shape[1])
            return result + torch.nn.functional.linear(h, b).to(result.dtype)
        return forward

    for layer in layers:
        layer.forward = forward_of(layer)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward


def only(model: Any, name: str) -> contextlib.AbstractContextManager[None]:
    """Every row goes through one member's adapter: score, generate or save that member as if alone."""
    return routed(model, lambda rows: [name] * rows)


def save_member(model: Any, name: str, path: str) -> None:
    """The member's adapter as an ordinary peft adapter folder (`PeftModel.from_pretrained(base, path)`)."""
    import shutil
    from pathlib import Path

    model.save_pretrained(path, selected_adapters=[name])
    nested = Path(path) / name  # peft writes a non-default adapter into a subfolder named after it
    if nested.is_dir():
        for item in nested.iterdir():
            shutil.move(str(item), str(Path(path) / item.name))
        nested.rmdir()


@dataclass
class Member:
    """One trial of a pack: its config and its training batches (`make_epoch(e)`, as train() takes them)."""

    config: TrialConfig
    make_epoch: Callable[[int], Sequence[Any]]


@dataclass
class MemberOutcome:
    """What training did for one member: train()'s outcome, and why it left the pack early (None: it did not)."""

    outcome: TrainOutcome = field(default_factory=TrainOutcome)
    stopped: str | None = None
    """`diverged: <reason>` when its loss went non-finite or exploded (the others trained on)."""
    pruned: str | None = None
    """Why the pruner stopped it after an intermediate evaluation (the others trained on), or None."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Per step {step, loss, lr}, as a trial trained alone records it (lr: the rate after the step's scheduler
    step, as train() reports it)."""


def _join(batches: list[Any], pad_id: int) -> tuple[Any, Any, Any, list[int]]:
    """One right-padded batch of every member's micro-batch, and each row's member index."""
    import torch

    from harness.data.examples import IGNORE_INDEX

    width = max(b.input_ids.shape[1] for b in batches)

    def pad(t: Any, value: int) -> Any:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    owners = [k for k, b in enumerate(batches) for _ in range(b.input_ids.shape[0])]
    return (torch.cat([pad(b.input_ids, pad_id) for b in batches]),
            torch.cat([pad(b.attention_mask, 0) for b in batches]),
            torch.cat([pad(b.labels, IGNORE_INDEX) for b in batches]), owners)


def add_member(model: Any, index: int, config: TrialConfig) -> None:
    """A new member's adapter on a pack's model (`member_name(index)`), initialised from its seed as
    `attach_pack` initialises every member; every member's LoRA weights stay trainable."""
    from harness.trial.run import lora_config, seed_all

    seed_all(config.train.seed)
    model.add_adapter(member_name(index), lora_config(config, model))
    _all_trainable(model)


def drop_member(model: Any, index: int) -> None:
    """Delete a member's adapter from the pack's model (after it was scored and saved), so that its weights'
    memory goes back while the others train on. peft then makes another adapter the active one, which also
    freezes every other adapter (`set_adapter`): the members' weights are made trainable again. The active
    adapter itself plays no part in a pack (every forward names each row's adapter)."""
    import warnings

    with warnings.catch_warnings():  # peft announces the new active adapter, which a pack never uses
        warnings.filterwarnings("ignore", message=r"Adapter m\d+ was active which is now deleted\. Setting active "
                                r"adapter to m\d+\.", category=UserWarning)
        model.delete_adapter(member_name(index))
    _all_trainable(model)


def _all_trainable(model: Any) -> None:
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.requires_grad_(True)


def train_pack(model: Any, members: Sequence[Member], device: str, pad_id: int, *,
               loss_hook: Callable[[int, int, float], float] | None = None,
               grouped_forward: bool = True,
               on_step: Callable[[int, dict[int, float]], None] | None = None,
               on_eval: Callable[[int, int], bool] | None = None,
               on_leave: Callable[[int, MemberOutcome], None] | None = None,
               refill: Callable[[], Member | None] | None = None) -> list[MemberOutcome]:
    """Train every member's adapter for max_steps, each with its own optimizer, schedule, clipping and step
    count, on one forward/backward of the packed batch per micro-batch. The LoRA layers run `grouped` when
    they can (`grouped_forward=False`, or dropout or DoRA: peft's per-member mixed-batch forward, `routed`).
    A member whose gradient norm is not finite leaves the pack before its step (diverged): in the grouped
    forward a non-finite weight would reach the other members' rows as 0 x inf, and a non-finite activation in
    one member's rows spoils every member's gradient (each member's weight gradient sums over all rows), so a
    grouped step whose norms or losses are not all finite is taken again through peft's per-member forward,
    which tells the diverged member from the others exactly. The host reads every member's gradient norm and
    loss in one transfer per packed step (not two per member), so a pack of K on a GPU waits for the device
    once a step, as one trial does. `loss_hook(member, step, loss)` lets tests inject a bad loss;
    `on_step(tick, {member: loss})` hears of every packed step (the members still in the pack). After each
    member's step at which its schedule evaluates (`TrainSpec.evaluates_at`), `on_eval(member, step)` scores it
    (in eval mode) and returns True when the pruner stops it.

    `on_leave(member, outcome)` hears of each member as it leaves (finished, diverged or pruned), in eval mode,
    before anything else trains: it can score and save that member then. When a member leaves early (diverged
    or pruned), `refill()` may give a new Member to take its place: it gets the next index, its own adapter
    (`add_member`), optimizer and schedule, and trains from its own step 1 beside the others. Returns one
    MemberOutcome per member, in order of their indices (refills after the first members)."""
    import torch

    members = list(members)
    names = [member_name(k) for k in range(len(members))]
    params: dict[str, list[Any]] = {}
    optimizers: dict[str, Any] = {}
    schedulers: dict[str, Any] = {}
    batches: dict[str, Iterator[Any]] = {}
    outcomes: list[MemberOutcome] = []

    def join(member: Member) -> int:
        k = len(outcomes)
        name = member_name(k)
        if k >= len(names):  # a refill: its adapter is new
            add_member(model, k, member.config)
            names.append(name)
            members.append(member)
        params[name] = member_params(model, name)
        with _trainable_only(model, params[name]):  # LoRA+ groups the model's trainable B weights: its own
            optimizers[name] = make_optimizer(model, params[name], member.config.train, device)
        schedulers[name] = make_scheduler(optimizers[name], member.config.train)
        batches[name] = batches_forever(member.make_epoch)
        outcomes.append(MemberOutcome())
        return k

    alive = [join(member) for member in list(members)]
    spec = members[0].config.train
    layers = _lora_layers(model)  # the same modules whoever joins or leaves (adapters live inside them)
    use_grouped = grouped_forward and groupable(model, names, layers)
    model.train()
    tick = 0
    while alive:
        tick += 1
        clock = time.perf_counter()
        micro = {k: [next(batches[names[k]]) for _ in range(spec.grad_accum)] for k in alive}
        scored = torch.tensor([max(sum(b.scored_tokens for b in micro[k]), 1) for k in alive], dtype=torch.float64)
        tokens = {k: sum(b.real_tokens for b in micro[k]) for k in alive}

        def forward_backward(grouped_layers: bool) -> tuple[list[Any], list[float]]:
            """This step's micro-batches forward and backward (grouped LoRA layers or peft's per-member
            forward); every member's gradient norm (a device tensor) and [norms..., losses...] on the host."""
            totals: Any = 0.0  # each alive member's loss so far this step, a tensor in the order of `alive`
            for i in range(spec.grad_accum):
                ids, mask, labels, owners = _join([micro[k][i] for k in alive], pad_id)
                row_names = [names[alive[j]] for j in owners]
                route = (grouped(model, [names[k] for k in alive], owners, layers) if grouped_layers
                         else routed(model, lambda rows: row_names))
                with route, autocast_for(device):
                    scores = token_losses(model, ids.to(device), mask.to(device), labels.to(device))
                mine = _member_losses(scores, owners, scored)
                mine.sum().backward()
                totals = totals + mine.detach()
            norms = [_norm(params[names[k]]) for k in alive]
            # the one host synchronisation of a packed step: every member's gradient norm and loss at once
            return norms, torch.cat([torch.stack(norms).float(), totals.float().to(norms[0].device)]).tolist()

        norms, read = forward_backward(use_grouped)
        if use_grouped and not all(math.isfinite(value) for value in read):
            # A grouped layer sums every row into each member's weight gradient, so one member's NaN or inf
            # (0 x inf) spoils the others' gradients too: this step again through peft's per-member forward,
            # where each member's gradient comes from its own rows only, says which member it was.
            for k in alive:
                for param in params[names[k]]:
                    param.grad = None
            norms, read = forward_backward(False)
        seconds = time.perf_counter() - clock
        leaving: list[int] = []
        for j, k in enumerate(alive):
            name, train_spec, outcome = names[k], members[k].config.train, outcomes[k].outcome
            step = outcome.steps + 1
            norm, value = read[j], read[len(alive) + j]
            if not math.isfinite(norm):
                outcomes[k].stopped = f"diverged: the gradient norm is {norm} at step {step}"
                leaving.append(k)
                continue
            _clip(params[name], train_spec.max_grad_norm, norms[j])
            optimizers[name].step()
            schedulers[name].step()
            optimizers[name].zero_grad(set_to_none=True)
            if loss_hook is not None:
                value = loss_hook(k, step, value)
            try:
                check_loss(value, outcome.losses[0] if outcome.losses else None, step)
            except NonFiniteLoss as err:
                outcomes[k].stopped = f"diverged: {err}"
                leaving.append(k)
                continue
            outcome.steps, outcome.tokens = step, outcome.tokens + tokens[k]
            outcome.seconds += seconds
            outcome.losses.append(value)
            outcomes[k].history.append({"step": step, "loss": value, "lr": schedulers[name].get_last_lr()[0]})
        alive = [k for k in alive if k not in leaving]
        if on_step is not None and alive:
            on_step(tick, {k: outcomes[k].outcome.losses[-1] for k in alive})
        evaluating = [k for k in alive if on_eval is not None
                      and members[k].config.train.evaluates_at(outcomes[k].outcome.steps)]
        leaving += [k for k in alive if outcomes[k].outcome.steps >= members[k].config.train.max_steps]
        if not evaluating and not leaving:
            continue
        model.eval()
        for k in evaluating:
            if on_eval(k, outcomes[k].outcome.steps):  # type: ignore[misc]
                outcomes[k].pruned = f"pruned at step {outcomes[k].outcome.steps} by the study's pruner"
                leaving.append(k)
        alive = [k for k in alive if k not in leaving]
        for k in leaving:  # its optimizer state and batches go now, not when the pack ends
            optimizers.pop(names[k]).zero_grad(set_to_none=True)
            schedulers.pop(names[k])
            batches.pop(names[k])
            if on_leave is not None:
                on_leave(k, outcomes[k])
        for k in leaving:
            early = outcomes[k].stopped is not None or outcomes[k].pruned is not None
            new = refill() if early and refill is not None else None
            if new is not None:
                alive.append(join(new))
        use_grouped = grouped_forward and groupable(model, [names[k] for k in alive], layers)
        model.train()
    model.eval()
    return outcomes


def _member_losses(scores: Any, owners: Sequence[int], scored: Any) -> Any:
    """Each member's loss on one packed micro-batch: the sum of its rows' token losses over its scored tokens
    in the whole step (`scored`, in the order of the members in the batch), one tensor for all members."""
    import torch

    losses = scores.losses
    owner = torch.tensor(owners, device=losses.device)[scores.rows]
    sums = torch.zeros(len(scored), dtype=losses.dtype, device=losses.device).index_add_(0, owner, losses)
    return sums / scored.to(device=losses.device, dtype=losses.dtype)


def _norm(params: list[Any]) -> Any:
    """One member's gradient norm (its own, not the pack's), a tensor on the device: nothing waits for it."""
    import torch

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros((), device=params[0].device if params else None)
    return torch.nn.utils.get_total_norm(grads)


def _clip(params: list[Any], max_norm: float, norm: Any) -> None:
    """Clip one member's gradients to max_norm given their norm (`_norm`) as clip_grad_norm_ does (0: no
    clipping)."""
    import torch

    if max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)


@contextlib.contextmanager
def _trainable_only(model: Any, params: list[Any]) -> Iterator[None]:
    """Only `params` require grad while the context is open (then every LoRA weight again)."""
    keep = {id(p) for p in params}
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in lora:
        p.requires_grad_(id(p) in keep)
    try:
        yield
    finally:
        for p in lora:
            p.requires_grad_(True)
