"""How far a packed trial ends from the same trial alone, in the device's own numerics, per quantization mode.

tests/trial/test_pack.py holds a packed member to its trial alone within 1e-5 in fp32 on the CPU. A sweep does
not train in fp32 where bf16 is at hand: on CUDA a trial trains under bf16 autocast, on a CPU with native bf16
its base model computes in bf16, and 4-bit layers dequantize on the fly. In those numerics the packed batch
(wider, padded further, the grouped LoRA layers scaling before their second product rather than after) rounds
differently from the batch alone, so the same trial ends close, not equal. This script measures how close:
for each mode, 4 members that differ in rank, alpha, learning rate, batch size and seed are trained in one pack
and then each alone (a fresh copy of the base each time), and it prints, per mode, the largest relative
difference of a member's LoRA weights (norm of the difference over the norm of the weights, per tensor) and of
its eval loss. Run on the device to measure::

    python benchmarks/pack_equivalence.py --model tiny-llama --steps 10 \
        --json benchmarks/results/pack_equivalence_cpu.json

`benchmarks/gpu_check.sh` runs it on CUDA (step 5b).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = ("none", "int8", "nf4", "nf4-dq", "fp4", "fp4-dq")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--modes", nargs="+", default=list(MODES))
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per trial")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from harness.runtime.devices import pick_device
    from harness.runtime.quiet import filter_known_warnings
    from harness.trial.models import compute_dtype

    filter_known_warnings()  # the warnings harness has judged harmless, by their exact messages
    device = pick_device()
    dtype = str(compute_dtype(device)).removeprefix("torch.")
    numerics = "bf16 autocast" if device == "cuda" else f"compute dtype {dtype}"
    print(f"packed against alone: {args.model}, {args.steps} steps, 4 members, {device} ({numerics})", flush=True)
    rows = [_measure(args.model, mode, args.steps, device) for mode in args.modes]
    print(f"\n{'mode':8} {'weights: max rel diff':>22} {'eval loss: max rel diff':>24}")
    for row in rows:
        print(f"{row['mode']:8} {row['max_weight_rel_diff']:>22.2e} {row['max_eval_loss_rel_diff']:>24.2e}")
    result = {"benchmark": "pack_equivalence", "model": args.model, "steps": args.steps, "device": device,
              "numerics": numerics, "machine": platform.processor() or platform.machine(),
              "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written: {args.json}")


def _configs(model: str, mode: str, steps: int) -> list[Any]:
    from harness.config.dataset import DataSpec
    from harness.config.evaluation import EvalSpec
    from harness.config.lora import LoraSpec
    from harness.config.model import ModelSpec, QuantSpec
    from harness.config.training import TrainSpec
    from harness.config.trial import TrialConfig

    ranks, lrs, batches = (4, 8, 2, 16), (3e-3, 1e-3, 5e-3, 2e-3), (4, 2, 3, 4)
    return [TrialConfig(model=ModelSpec(model), quant=QuantSpec(mode),
                        lora=LoraSpec(r=ranks[i], alpha=2.0 * ranks[i]),
                        train=TrainSpec(learning_rate=lrs[i], max_steps=steps, batch_size=batches[i], seed=i),
                        data=DataSpec(eval_size=16, train_size=64), eval=EvalSpec(metrics=())) for i in range(4)]


def _measure(model: str, mode: str, steps: int, device: str) -> dict[str, Any]:
    """One mode: the pack, then each member alone; the largest differences over the members."""
    from harness.trial import pack
    from harness.trial.models import load_base_model
    from harness.trial.run import TrialCache, attach_adapter, prepare_once, training_epochs
    from harness.trial.scoring import eval_loss
    from harness.trial.train import train

    configs = _configs(model, mode, steps)
    cache = TrialCache()
    for config in configs:
        prepare_once(config, cache, device)
    data = cache.prepared(configs[0])
    checkpoint = cache.checkpoint(configs[0].model.name)
    packed_model = pack.attach_pack(load_base_model(checkpoint, mode, device), configs)
    outcomes = pack.train_pack(packed_model, [pack.Member(c, training_epochs(cache.prepared(c), c)) for c in configs],
                               device, data.tokenizer.pad_token_id)
    weight_diffs, loss_diffs = [], []
    for k, config in enumerate(configs):
        if outcomes[k].stopped is not None:
            raise SystemExit(f"{mode}: member {k} left the pack ({outcomes[k].stopped}); lower --steps")
        name = pack.member_name(k)
        packed = _lora(packed_model, name)
        with pack.only(packed_model, name):
            packed_loss = eval_loss(packed_model, data.eval_batches, device).loss
        alone_model = attach_adapter(load_base_model(checkpoint, mode, device), config)
        train(alone_model, training_epochs(cache.prepared(config), config), config.train, device)
        alone = _lora(alone_model, "default")
        alone_loss = eval_loss(alone_model, data.eval_batches, device).loss
        weight_diffs.append(max(float((packed[n] - alone[n]).norm() / alone[n].norm()) for n in alone))
        loss_diffs.append(abs(packed_loss - alone_loss) / abs(alone_loss))
        del alone_model
    row = {"mode": mode, "members": len(configs), "max_weight_rel_diff": max(weight_diffs),
           "max_eval_loss_rel_diff": max(loss_diffs), "weight_rel_diff": weight_diffs, "eval_loss_rel_diff": loss_diffs}
    print(f"  {mode:8} weights {row['max_weight_rel_diff']:.2e}  eval loss {row['max_eval_loss_rel_diff']:.2e}",
          flush=True)
    return row


def _lora(model: Any, name: str) -> dict[str, Any]:
    """One adapter's LoRA weights by their name without the adapter's, in fp32 (the comparison's precision)."""
    return {n.replace(f".{name}.", "."): p.detach().float().clone() for n, p in model.named_parameters()
            if "lora_" in n and f".{name}." in n}


if __name__ == "__main__":
    main()
