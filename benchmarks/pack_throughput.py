"""Packed trials against one trial at a time and against K worker processes: total tokens/s and peak memory.

For K = 1, 2, 4, 8 LoRA trials of one base model and quantization mode (they differ in rank, alpha, learning
rate and seed, as a sweep's trials do), three ways to train them, each in its own fresh process so that its
peak resident memory is its own:

- **one at a time**: one process trains the K trials in turn (`harness.trial.train`), the base model loaded
  once: what a harness worker does today;
- **packed**: one process trains the K trials at once in one pack (`harness.trial.pack`), its LoRA layers
  grouped (every member's update in two matrix products per layer);
- **mixed** (with `--ways mixed`): the same pack through peft's mixed-batch forward (a loop over the members
  in every LoRA layer), what packs with dropout or DoRA-free variants fall back to;
- **K workers**: K processes train one trial each at the same time (each with its own copy of the base
  model), the cores shared between them.

Timing is the training loop only (model load and adapter set-up excluded), wall time for the K trials to end;
tokens are real (non-padding) training tokens of all K trials. Memory: the peak resident set of the process
(the sum over the K processes for K workers). Run from the repository root on a quiet machine::

    python benchmarks/pack_throughput.py --model tiny-llama --json benchmarks/results/pack_throughput_tiny_cpu.json
    python benchmarks/pack_throughput.py --model smollm2-135m --ks 1 4 --steps 4 --ways packed workers \
        --json benchmarks/results/pack_throughput_smollm2_cpu.json

On a GPU (benchmarks/gpu_check.sh) the same script measures what the CPU cannot show: a host-bound GPU step
costs about the same at batch 4 as at batch 16, so a pack of 4 should run near 4x the tokens/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WAYS = ("one at a time", "packed", "workers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--modes", nargs="+", default=["none"])
    parser.add_argument("--ks", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--ways", nargs="+", default=["one", "packed", "workers"],
                        help="one (one at a time), packed, mixed (packed through peft's mixed-batch forward), workers")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per trial")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: one measurement
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args)))
        return
    rows = []
    for mode in args.modes:
        for k in args.ks:
            for way in args.ways:
                rows.append({"mode": mode, "k": k, "way": way, **_measure(args, mode, k, way)})
                _print_row(rows[-1])
    result = {"benchmark": "pack_throughput", "model": args.model, "steps": args.steps,
              "batch_size": args.batch_size, "machine": _machine(),
              "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "rows": rows}
    _print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written: {args.json}")


def _configs(model: str, mode: str, k: int, steps: int, batch: int) -> list[Any]:
    from harness.config.dataset import DataSpec
    from harness.config.evaluation import EvalSpec
    from harness.config.lora import LoraSpec
    from harness.config.model import ModelSpec, QuantSpec
    from harness.config.training import TrainSpec
    from harness.config.trial import TrialConfig

    ranks, lrs = (8, 16, 8, 16), (1e-3, 3e-4, 3e-3, 5e-4)
    return [TrialConfig(model=ModelSpec(model), quant=QuantSpec(mode),
                        lora=LoraSpec(r=ranks[i % 4], alpha=2.0 * ranks[i % 4]),
                        train=TrainSpec(learning_rate=lrs[i % 4], max_steps=steps, batch_size=batch, seed=i),
                        data=DataSpec(eval_size=16), eval=EvalSpec(metrics=())) for i in range(k)]


def _measure(args: argparse.Namespace, mode: str, k: int, way: str) -> dict[str, Any]:
    """Run the measurement in fresh processes; K workers are K processes started together."""
    base = [sys.executable, str(Path(__file__).resolve()), "--model", args.model, "--modes", mode, "--steps",
            str(args.steps), "--batch-size", str(args.batch_size)]
    env = dict(os.environ)
    if way == "workers":
        threads = max(1, (os.cpu_count() or 1) // k)  # the cores shared, as `harness sweep --workers K` does
        env["HARNESS_TORCH_THREADS"] = str(threads)
        procs = [subprocess.Popen([*base, "--child", f"one:1:{i}"], stdout=subprocess.PIPE, text=True, env=env)
                 for i in range(k)]
        started = time.perf_counter()
        outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        wall = time.perf_counter() - started  # includes loading: the workers' loops overlap, not their starts
        train_wall = max(o["seconds"] for o in outs)
        return {"tokens": sum(o["tokens"] for o in outs), "seconds": train_wall, "wall_with_load": wall,
                "peak_rss_mb": sum(o["peak_rss_mb"] for o in outs)}
    out = subprocess.run([*base, "--child", f"{way}:{k}:0"], stdout=subprocess.PIPE, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child(args: argparse.Namespace) -> dict[str, Any]:
    import resource

    from harness.data import load_examples, make_batches, tokenize_splits
    from harness.runtime.devices import pick_device
    from harness.trial import pack
    from harness.trial.models import load_base_model, load_tokenizer
    from harness.trial.models import checkpoint_path, resolve_model
    from harness.trial.run import PreparedData, attach_adapter, training_epochs
    from harness.trial.train import train

    from harness.runtime.quiet import filter_known_warnings

    filter_known_warnings()  # the warnings harness has judged harmless, by their exact messages
    way, k, offset = args.child.split(":")
    k, offset = int(k), int(offset)
    mode = args.modes[0]
    configs = _configs(args.model, mode, k + offset, args.steps, args.batch_size)[offset:]
    device = pick_device()
    if args.model == SMALL_VOCAB:
        checkpoint, epochs, pad_id = _small_vocab(configs)
    else:
        checkpoint = checkpoint_path(resolve_model(args.model))
        tokenizer = load_tokenizer(checkpoint)
        tokenized = tokenize_splits(load_examples(configs[0].data), tokenizer, configs[0].data)
        data = PreparedData(tokenizer=tokenizer, tokenized=tokenized, split_hash="", source="",
                            eval_batches=make_batches(tokenized.eval, 4, tokenizer.pad_token_id, shuffle_seed=None))
        epochs = {id(c): training_epochs(data, c) for c in configs}
        pad_id = tokenizer.pad_token_id
    base = load_base_model(checkpoint, mode, device)
    tokens, seconds = 0, 0.0
    if way in ("packed", "mixed"):
        model = pack.attach_pack(base, configs)
        started = time.perf_counter()
        outcomes = pack.train_pack(model, [pack.Member(c, epochs[id(c)]) for c in configs], device, pad_id,
                                   grouped_forward=way == "packed")
        seconds = time.perf_counter() - started
        tokens = sum(o.outcome.tokens for o in outcomes)
    else:
        for config in configs:  # one at a time on the one base: each adapter removed before the next
            model = attach_adapter(base, config)
            started = time.perf_counter()
            outcome = train(model, epochs[id(config)], config.train, device)
            seconds += time.perf_counter() - started
            tokens += outcome.tokens
            base = model.unload()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"tokens": tokens, "seconds": seconds, "peak_rss_mb": peak}


SMALL_VOCAB = "tiny-llama-vocab128"
"""tiny-llama's layers with a 128-token vocabulary (the model `harness doctor` trains) on random token
sequences: a step that is host-bound (tiny-llama itself keeps SmolLM2's 49,152-token head, which dominates its
step on a CPU), the CPU's stand-in for a small model at a small batch on a GPU."""


def _small_vocab(configs: list[Any]) -> tuple[str, dict[int, Any], int]:
    """The small-vocabulary checkpoint (saved to a temporary folder) and each config's random training batches:
    64 sequences of 48 tokens, the second half scored, shuffled per epoch by the config's seed."""
    import random
    import tempfile

    from harness.data import make_batches
    from harness.trial.doctor import _save_tiny_llama

    folder = tempfile.mkdtemp(prefix="pack-bench-")
    _save_tiny_llama(Path(folder))
    rng = random.Random(0)
    seqs = []
    for _ in range(64):
        ids = [rng.randrange(1, 128) for _ in range(48)]
        seqs.append((ids, [-100] * 24 + ids[24:]))

    def epochs_of(config: Any) -> Any:
        return lambda epoch: make_batches(seqs, config.train.batch_size, 0, shuffle_seed=config.train.seed * 100_003 + epoch)

    return folder, {id(c): epochs_of(c) for c in configs}, 0


def _print_row(row: dict[str, Any]) -> None:
    print(f"  {row['mode']:7} K={row['k']:<2} {row['way']:8} {row['tokens'] / row['seconds']:9.0f} tok/s  "
          f"peak {row['peak_rss_mb']:7.0f} MiB", flush=True)


def _print_table(result: dict[str, Any]) -> None:
    rows = result["rows"]
    m = result["machine"]
    print(f"\n{result['model']}, {result['steps']} steps x batch {result['batch_size']} per trial; "
          f"{m['cpu']}, torch {m['torch']}; {result['when']}")
    print(f"{'mode':8} {'K':>3} {'way':10} {'tokens/s':>9} {'vs one at a time':>17} {'peak MiB':>9}")
    for row in rows:
        ref = next((r for r in rows if r["mode"] == row["mode"] and r["k"] == row["k"] and r["way"] == "one"), None)
        ratio = "" if ref is None else f"{(row['tokens'] / row['seconds']) / (ref['tokens'] / ref['seconds']):.2f}x"
        print(f"{row['mode']:8} {row['k']:>3} {row['way']:10} {row['tokens'] / row['seconds']:9.0f} {ratio:>17} "
              f"{row['peak_rss_mb']:9.0f}")


def _machine() -> dict[str, Any]:
    import torch

    from harness.runtime.devices import device_name, pick_device

    device = pick_device()
    return {"cpu": device_name(device) if device == "cuda" else platform.processor() or device_name(device),
            "cores": os.cpu_count(), "torch": torch.__version__, "device": device}


if __name__ == "__main__":
    main()
