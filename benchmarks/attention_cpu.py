"""Eager attention against torch's scaled-dot-product attention (sdpa) in a CPU training loop: tokens/s and the
loss after the same steps, for the models a CPU sweep trains.

harness trains with `eager` attention on a CPU at sequences up to 1,024 tokens (harness.trial.models.attention_for)
because torch's CPU flash-attention backward costs more than eager attention there. This measures it: one LoRA
trial (r 16, all linear layers, 16-bit LoRA or NF4) per implementation, alternated twice in one process so that
drift in the machine shows as a difference between the repeats. Run from the repository root on a quiet machine::

    python benchmarks/attention_cpu.py --model tiny-llama --steps 40
    python benchmarks/attention_cpu.py --model smollm2-135m --steps 6
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--mode", default="none")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    from harness.config.dataset import DataSpec
    from harness.config.evaluation import EvalSpec
    from harness.config.lora import LoraSpec
    from harness.config.model import ModelSpec, QuantSpec
    from harness.config.training import TrainSpec
    from harness.config.trial import TrialConfig
    from harness.runtime.devices import compute_dtype, device_name
    from harness.runtime.quiet import filter_known_warnings
    from harness.trial.models import load_base_model
    from harness.trial.run import TrialCache, attach_adapter, training_epochs
    from harness.trial.train import train

    filter_known_warnings()
    config = TrialConfig(model=ModelSpec(args.model), quant=QuantSpec(args.mode), lora=LoraSpec(r=16, alpha=32.0),
                         train=TrainSpec(learning_rate=5e-4, max_steps=args.steps, batch_size=args.batch_size),
                         data=DataSpec(eval_size=16), eval=EvalSpec(metrics=()))
    cache = TrialCache()
    data = cache.prepared(config)
    checkpoint = cache.checkpoint(args.model)
    print(f"{args.model}, {args.mode}, {args.steps} steps x batch {args.batch_size} (max {config.data.max_seq_len} "
          f"tokens), stdlib-qa; {device_name('cpu')}, compute dtype {compute_dtype('cpu')}")
    rates: dict[str, list[float]] = {"sdpa": [], "eager": []}
    for impl in ("sdpa", "eager", "sdpa", "eager"):
        base = load_base_model(checkpoint, args.mode, "cpu", config.data.max_seq_len)
        base.set_attn_implementation(impl)
        model = attach_adapter(base, config)
        started = time.perf_counter()
        outcome = train(model, training_epochs(data, config), config.train, "cpu")
        rate = outcome.tokens / (time.perf_counter() - started)
        rates[impl].append(rate)
        print(f"  {impl:5}  {rate:8.0f} tokens/s  loss after {outcome.steps} steps {outcome.losses[-1]:.5f}", flush=True)
    sdpa, eager = max(rates["sdpa"]), max(rates["eager"])
    print(f"best of two: eager {eager:.0f} against sdpa {sdpa:.0f} tokens/s: {eager / sdpa:.2f}x")


if __name__ == "__main__":
    main()
