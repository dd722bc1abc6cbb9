"""Where a packed step's time goes: torch's profiler over K trials packed against the same K one at a time.

On `tiny-llama-vocab128` (pack_throughput.py's host-bound stand-in), one thread, it trains K members for
`--steps` packed steps and then the same K trials one at a time, under torch's CPU profiler, and prints each
way's total operator time, the time in matrix products (aten::mm, aten::bmm) and in the optimizers' steps, and
the best a pack could do if every other cost vanished: (one at a time) / (packed products + packed optimizer
steps). Run from the repository root on a quiet machine::

    python benchmarks/pack_profile.py --k 4 --steps 60
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # pack_throughput, its sibling
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pack_throughput import SMALL_VOCAB, _configs, _small_vocab  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=4, help="members of the pack")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per trial")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from harness.runtime.quiet import filter_known_warnings
    from harness.trial.models import load_base_model

    filter_known_warnings()  # the warnings harness has judged harmless, by their exact messages
    torch.set_num_threads(args.threads)
    configs = _configs(SMALL_VOCAB, "none", args.k, args.steps, 4)
    checkpoint, epochs, pad_id = _small_vocab(configs)
    print(f"{SMALL_VOCAB}, K = {args.k}, {args.steps} steps x batch 4 per trial, {args.threads} thread(s), "
          f"torch {torch.__version__}")
    rows = {way: _profile(way, load_base_model(checkpoint, "none", "cpu"), configs, epochs, pad_id)
            for way in ("packed", "one at a time")}
    for way, row in rows.items():
        print(f"{way:14} wall {row['wall']:6.2f} s  operator time {row['total']:6.3f} s  matrix products "
              f"{row['products']:6.3f} s ({row['product_calls']} calls, {row['per_call_us']:.1f} us each)  "
              f"optimizer steps {row['optimizer']:6.3f} s")
    packed, one = rows["packed"], rows["one at a time"]
    print(f"operator time, one at a time / packed: {one['total'] / packed['total']:.2f}x; at most "
          f"{one['total'] / (packed['products'] + packed['optimizer']):.2f}x were every other packed cost gone")


def _profile(way: str, base: Any, configs: list[Any], epochs: dict[int, Any], pad_id: int) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    from harness.trial import pack
    from harness.trial.run import attach_adapter
    from harness.trial.train import train

    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        if way == "packed":
            model = pack.attach_pack(base, configs)
            pack.train_pack(model, [pack.Member(c, epochs[id(c)]) for c in configs], "cpu", pad_id)
        else:  # on one base, each adapter removed before the next (what a worker does)
            for config in configs:
                model = attach_adapter(base, config)
                train(model, epochs[id(config)], config.train, "cpu")
                base = model.unload()
    wall = time.perf_counter() - started
    events = profiler.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    products = [e for e in events if e.key in ("aten::mm", "aten::bmm")]
    calls = sum(e.count for e in products)
    product_seconds = sum(e.self_cpu_time_total for e in products) / 1e6
    optimizer = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step#")) / 1e6
    return {"wall": wall, "total": total, "products": product_seconds, "product_calls": calls,
            "per_call_us": product_seconds / max(calls, 1) * 1e6, "optimizer": optimizer}


if __name__ == "__main__":
    main()
