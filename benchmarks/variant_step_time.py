"""Time per training step of each LoRA variant, side by side in one process: what a variant costs.

A sweep's per-trial seconds are noisy (other jobs, eval, generation). This measures only optimizer steps,
on the same batches, for plain LoRA, rsLoRA, DoRA, PiSSA init and LoRA+, in interleaved rounds (variant
A, B, C, ... then again) so machine drift hits every variant alike. Run from the repository root on a
quiet machine::

    python benchmarks/variant_step_time.py --json benchmarks/results/variant_step_time_smollm2_cpu.json
    python benchmarks/variant_step_time.py --model tiny-llama --rounds 2 --steps 3   # a smoke run, seconds

It prints, per variant: trainable parameters, median seconds per step over all timed steps (min-max over
rounds), tokens per second and the ratio to plain LoRA. The first round is a warm-up and is not counted.
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS: dict[str, tuple[dict[str, Any], float]] = {
    "plain": ({}, 1.0),
    "rslora": ({"use_rslora": True}, 1.0),
    "dora": ({"use_dora": True}, 1.0),
    "pissa": ({"init": "pissa"}, 1.0),
    "lora+": ({}, 16.0),
}
"""Variant name -> (LoraSpec fields, LoRA+ ratio of the B matrices' learning rate)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--quantization", default="none", help="quantization mode of the base (PiSSA needs none)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds; the first is a warm-up")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per variant per round")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--r", type=int, default=16)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = measure(args)
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written: {args.json}")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from harness.data import load_examples, make_batches, tokenize_splits
    from harness.runtime.devices import device_name, pick_device
    from harness.trial.models import checkpoint_path, load_base_model, load_tokenizer, resolve_model
    from harness.trial.source import describe_source
    from harness.config.dataset import DataSpec
    from harness.config.lora import LoraSpec
    from harness.config.model import ModelSpec, QuantSpec
    from harness.config.training import TrainSpec
    from harness.config.trial import TrialConfig
    from harness.trial.train import _accumulate, make_optimizer
    from harness.trial.run import attach_adapter, release_memory

    device = pick_device()
    resolved = resolve_model(args.model)
    path = checkpoint_path(resolved)
    data = DataSpec(name="stdlib-qa", max_seq_len=128)
    tokenized = tokenize_splits(load_examples(data), load_tokenizer(path), data)
    tokenizer = load_tokenizer(path)
    batches = make_batches(tokenized.train, args.batch_size, tokenizer.pad_token_id, shuffle_seed=0)
    models: dict[str, tuple[Any, Any, int]] = {}
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown or "plain" not in chosen:
        raise SystemExit(f"--variants: {unknown[0] if unknown else 'plain'!r}: give plain and any of {', '.join(VARIANTS)}")
    for name in chosen:
        fields, ratio = VARIANTS[name]
        config = TrialConfig(model=ModelSpec(args.model), quant=QuantSpec(args.quantization),
                             lora=LoraSpec(r=args.r, alpha=2.0 * args.r, **fields),
                             train=TrainSpec(learning_rate=1e-4, loraplus_lr_ratio=ratio))
        model = attach_adapter(load_base_model(path, args.quantization, device), config)
        params = [p for p in model.parameters() if p.requires_grad]
        models[name] = (model, make_optimizer(model, params, config.train, device), sum(p.numel() for p in params))
    seconds: dict[str, list[float]] = {name: [] for name in models}
    per_round: dict[str, list[float]] = {name: [] for name in models}
    tokens: dict[str, int] = {name: 0 for name in models}
    for round_index in range(args.rounds):
        for name, (model, optimizer, _) in models.items():
            model.train()
            times = []
            for step in range(args.steps):
                batch = batches[(round_index * args.steps + step) % len(batches)]
                started = time.perf_counter()
                _, real = _accumulate(model, [batch], device)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - started)
                if round_index > 0:
                    tokens[name] += real
            if round_index > 0:  # round 0 warms every variant up
                seconds[name] += times
                per_round[name].append(statistics.median(times))
    plain = statistics.median(seconds["plain"])
    rows = []
    for name, (_, _, trainable) in models.items():
        median = statistics.median(seconds[name])
        fields, ratio = VARIANTS[name]
        rows.append({"variant": name, "settings": {**fields, "loraplus_lr_ratio": ratio}, "trainable_params": trainable,
                     "seconds_per_step_median": median, "round_medians": per_round[name],
                     "tokens_per_second": tokens[name] / sum(seconds[name]), "ratio_to_plain": median / plain})
    for model, optimizer, _ in models.values():
        del model, optimizer
    release_memory(device)
    source = describe_source(resolved).to_dict()
    return {"model": source.get("label"), "source_precision": source.get("precision"),
            "quantization": args.quantization, "device": device_name(device), "r": args.r, "alpha": 2 * args.r,
            "batch_size": args.batch_size, "timed_steps_per_variant": (args.rounds - 1) * args.steps,
            "rounds": args.rounds, "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "command": "python " + " ".join(sys.argv), "variants": rows}


def print_table(result: dict[str, Any]) -> None:
    print(f"{result['model']} (source weights {result['source_precision']}), quantization {result['quantization']}, "
          f"{result['device']}; r {result['r']}, alpha {result['alpha']}, all linear layers, batch "
          f"{result['batch_size']}; {result['timed_steps_per_variant']} timed steps per variant in "
          f"{result['rounds'] - 1} interleaved rounds (after one warm-up round)")
    print(f"{'variant':8} {'trainable':>10} {'s/step':>8} {'round medians (min-max)':>24} {'tok/s':>7} {'x plain':>8}")
    for row in result["variants"]:
        low, high = min(row["round_medians"]), max(row["round_medians"])
        print(f"{row['variant']:8} {row['trainable_params']:>10,} {row['seconds_per_step_median']:>8.3f} "
              f"{f'{low:.3f}-{high:.3f}':>24} {row['tokens_per_second']:>7.0f} {row['ratio_to_plain']:>8.2f}")


if __name__ == "__main__":
    main()
