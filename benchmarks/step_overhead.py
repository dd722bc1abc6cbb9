"""Training steps per second: a bare peft loop, as users write it, against the harness's trial loop.

Both train the same LoRA adapter (same base, same initial weights, same batches, same AdamW and schedule)
in one process, in interleaved rounds (bare, harness, harness with full logits, then again), so machine
drift hits each alike. The **bare** loop is the one in peft's examples: `model(**batch).loss` (the model's
own loss on the full vocabulary logits), backward, clip, step, schedule, zero_grad. The **harness** loop
is `harness.trial.train.train` with the per-step bookkeeping a trial does (history, divergence check,
callbacks). **harness, full logits** is the same loop with the head run at every position (the
architecture treated as one `harness.trial.head` cannot select for): what the selected head alone buys.
Run from the repository root on a quiet machine::

    python benchmarks/step_overhead.py --json benchmarks/results/step_overhead_smollm2_cpu.json
    python benchmarks/step_overhead.py --model tiny-llama --rounds 6 --steps 20 \
        --json benchmarks/results/step_overhead_tiny_cpu.json

It prints, per loop: median seconds per step (min-max of the round medians), steps/s, tokens/s (real,
non-padding tokens) and the ratio of its tokens/s to the bare loop's. The first round is a warm-up and is
not counted. Timing is wall time around whole rounds of steps, so the harness loop's bookkeeping counts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOOPS = ("bare", "harness", "harness, full logits")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--quantization", default="none")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds; the first is a warm-up")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per loop per round")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--r", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.rounds < 2 or args.steps < 1:
        raise SystemExit("--rounds must be >= 2 (the first is a warm-up) and --steps >= 1")
    result = measure(args)
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written: {args.json}")


class StepTrial(NamedTuple):
    """What the step benchmarks (this script, step_ceiling.py) train: `trial_setup`."""

    resolved: Any
    path: str
    batches: list[Any]
    config: Any


def trial_setup(model: str, quantization: str, r: int, batch_size: int, max_steps: int) -> StepTrial:
    """The model resolved and its checkpoint, the default sweep's data (stdlib-qa, sequences of at most 128
    tokens) in the harness's batches (shuffle seed 0), and a LoRA trial on it: r, alpha 2r on every linear
    layer, learning rate 1e-4, `max_steps` steps."""
    from harness.config.dataset import DataSpec
    from harness.config.lora import LoraSpec
    from harness.config.model import ModelSpec, QuantSpec
    from harness.config.training import TrainSpec
    from harness.config.trial import TrialConfig
    from harness.data import load_examples, make_batches, tokenize_splits
    from harness.trial.models import checkpoint_path, load_tokenizer, resolve_model

    resolved = resolve_model(model)
    path = checkpoint_path(resolved)
    data = DataSpec()
    tokenizer = load_tokenizer(path)
    tokenized = tokenize_splits(load_examples(data), tokenizer, data)
    batches = make_batches(tokenized.train, batch_size, tokenizer.pad_token_id, shuffle_seed=0)
    spec = TrainSpec(learning_rate=1e-4, max_steps=max_steps, batch_size=batch_size)
    config = TrialConfig(model=ModelSpec(model), quant=QuantSpec(quantization), lora=LoraSpec(r=r, alpha=2.0 * r),
                         train=spec, data=data)
    return StepTrial(resolved, path, batches, config)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from harness.runtime.devices import device_name, pick_device
    from harness.trial import head
    from harness.trial.models import load_base_model
    from harness.trial.run import attach_adapter, release_memory
    from harness.trial.source import describe_source

    device = pick_device()
    resolved, path, batches, config = trial_setup(args.model, args.quantization, args.r, args.batch_size,
                                                  args.rounds * args.steps)
    spec, data = config.train, config.data
    models = {}
    for name in LOOPS:
        torch.manual_seed(0)  # the same initial adapter for every loop
        models[name] = attach_adapter(load_base_model(path, args.quantization, device), config)
    # An architecture harness.trial.head does not select the head for takes the full-logits path; the
    # model_type is only a label here (the forward does not read it).
    models["harness, full logits"].get_base_model().config.model_type = "not-selected"
    selected = head.selects_head(models["harness"])
    runners = {"bare": _bare_loop(models["bare"], batches, spec, device),
               "harness": _harness_loop(models["harness"], batches, spec, device),
               "harness, full logits": _harness_loop(models["harness, full logits"], batches, spec, device)}
    seconds: dict[str, list[float]] = {name: [] for name in LOOPS}
    tokens: dict[str, int] = {name: 0 for name in LOOPS}
    losses: dict[str, list[float]] = {name: [] for name in LOOPS}
    for round_index in range(args.rounds):
        for name in LOOPS:
            started = time.perf_counter()
            done = [runners[name]() for _ in range(args.steps)]
            elapsed = time.perf_counter() - started
            losses[name] += [loss for loss, _ in done]
            if round_index > 0:  # round 0 warms every loop up
                seconds[name].append(elapsed / args.steps)
                tokens[name] += sum(real for _, real in done)
            print(f"round {round_index}: {name}: {elapsed / args.steps:.3f} s/step", flush=True)
    drift = max(abs(a - b) / abs(b) for name in LOOPS for a, b in zip(losses[name], losses["bare"]))
    bare_rate = tokens["bare"] / (sum(seconds["bare"]) * args.steps)
    rows = []
    for name in LOOPS:
        timed = sum(seconds[name]) * args.steps
        rate = tokens[name] / timed
        rows.append({"loop": name, "seconds_per_step_median": statistics.median(seconds[name]),
                     "round_medians": seconds[name], "steps_per_second": (len(seconds[name]) * args.steps) / timed,
                     "tokens_per_second": rate, "ratio_to_bare": rate / bare_rate,
                     "losses": losses[name]})
    del models, runners
    release_memory(device)
    source = describe_source(resolved).to_dict()
    return {"model": source.get("label"), "source_precision": source.get("precision"),
            "quantization": args.quantization, "device": device_name(device), "r": args.r, "alpha": 2 * args.r,
            "batch_size": args.batch_size, "max_seq_len": data.max_seq_len, "selected_head": selected,
            "labelled_fraction": _labelled_fraction(batches),
            "max_relative_loss_difference": drift, "timed_steps_per_loop": (args.rounds - 1) * args.steps,
            "rounds": args.rounds, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "torch_threads": torch.get_num_threads(),
            "command": "python " + " ".join(sys.argv), "loops": rows}


def _labelled_fraction(batches: list[Any]) -> float:
    """Scored tokens over real tokens: the share of positions whose logits the loss reads."""
    return sum(b.scored_tokens for b in batches) / sum(b.real_tokens for b in batches)


def _bare_loop(model: Any, batches: list[Any], spec: Any, device: str) -> Callable[[], tuple[float, int]]:
    """One step per call of the loop in peft's examples: the model's own loss on the full logits."""
    import torch

    from harness.trial.train import make_optimizer, make_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(model, params, spec, device)
    scheduler = make_scheduler(optimizer, spec)
    position = iter(range(10**9))
    model.train()

    def step() -> tuple[float, int]:
        batch = batches[next(position) % len(batches)]
        loss = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                     labels=batch.labels.to(device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return float(loss.detach()), batch.real_tokens

    return step


def _harness_loop(model: Any, batches: list[Any], spec: Any, device: str) -> Callable[[], tuple[float, int]]:
    """One step per call of `harness.trial.train.train`, run as a generator that pauses after each step.

    `train` owns its loop, so it runs in a thread that hands over after every step (on_step): the timed
    work is exactly the trial's, bookkeeping included, and the other loops run between its steps."""
    import threading

    from harness.trial.train import train

    go, done = threading.Semaphore(0), threading.Semaphore(0)
    last: list[tuple[float, int]] = []
    history: list[dict[str, Any]] = []

    def on_step(info: Any) -> None:  # what run_trial's on_step records
        history.append({"step": info.step, "loss": info.loss, "lr": info.lr})
        last.append((info.loss, info.tokens))
        done.release()
        go.acquire()

    def run() -> None:
        go.acquire()
        train(model, lambda epoch: batches, spec, device, on_step=on_step)

    threading.Thread(target=run, daemon=True).start()

    def step() -> tuple[float, int]:
        go.release()
        done.acquire()
        return last[-1]

    return step


def print_table(result: dict[str, Any]) -> None:
    print(f"{result['model']} (source weights {result['source_precision']}), quantization {result['quantization']}, "
          f"{result['device']}, {result['torch_threads']} torch threads; LoRA r {result['r']}, alpha "
          f"{result['alpha']}, all linear layers; batch {result['batch_size']} x <= {result['max_seq_len']} tokens "
          f"of stdlib-qa, {result['labelled_fraction']:.0%} of real tokens labelled; selected head "
          f"{'on' if result['selected_head'] else 'off (architecture not in SELECTED_HEAD_TYPES)'}; "
          f"{result['timed_steps_per_loop']} timed steps per loop in {result['rounds'] - 1} interleaved rounds "
          f"(after one warm-up round); every loop's loss at every step within "
          f"{result['max_relative_loss_difference']:.1e} (relative) of the bare loop's")
    print(f"{'loop':22} {'s/step':>8} {'round medians (min-max)':>24} {'steps/s':>8} {'tok/s':>8} {'x bare':>7}")
    for row in result["loops"]:
        low, high = min(row["round_medians"]), max(row["round_medians"])
        print(f"{row['loop']:22} {row['seconds_per_step_median']:>8.3f} {f'{low:.3f}-{high:.3f}':>24} "
              f"{row['steps_per_second']:>8.3f} {row['tokens_per_second']:>8.0f} {row['ratio_to_bare']:>7.2f}")


if __name__ == "__main__":
    main()
