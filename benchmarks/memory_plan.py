"""Predicted vs measured peak memory and step time (issue 40): per model, quantization mode, batch shape and
gradient checkpointing setting, the planner's prediction (harness.trial.memory_plan, probes cached on this
machine) against a measurement in a fresh process (3 steps on the widest batch of that shape, every token real
and scored; peak resident memory on a CPU, max allocated on CUDA; step time after the first step).

    .venv/bin/python benchmarks/memory_plan.py --model smollm2-135m --modes none,nf4-dq --batches 2,4,8 --seq 128

Prints a markdown table and the error distribution (goals: memory within 15% on a CPU, 10% on CUDA; step time
within 20%). Run it on a quiet machine: other processes move both the step time and, through the allocator,
the peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _config(model: str, mode: str, batch: int, ckpt: bool, seq: int):
    from harness.config.dataset import DataSpec
    from harness.config.lora import LoraSpec
    from harness.config.model import ModelSpec, QuantSpec
    from harness.config.training import TrainSpec
    from harness.config.trial import TrialConfig

    return TrialConfig(model=ModelSpec(model), quant=QuantSpec(mode), lora=LoraSpec(r=16, alpha=32.0),
                       train=TrainSpec(max_steps=3, batch_size=batch, gradient_checkpointing=ckpt),
                       data=DataSpec(max_seq_len=seq))


def measure_cell(model: str, mode: str, batch: int, ckpt: bool, seq: int) -> dict:
    """In this (fresh) process: the measured peak and step time of one config shape."""
    from harness.runtime.devices import pick_device
    from harness.trial.memory_plan import _train_probe
    from harness.trial.models import load_tokenizer, quantized_checkpoint
    from harness.trial.pack_fit import full_batch
    from harness.trial.run import MemoryMeter, TrialCache, release_memory

    device = pick_device()
    config = _config(model, mode, batch, ckpt, seq)
    path = TrialCache().checkpoint(model)
    if mode != "none":
        quantized_checkpoint(path, mode, device)
    batch_data = full_batch(load_tokenizer(path), batch, seq)
    release_memory(device)
    meter = MemoryMeter(device)
    meter.reset()
    seconds = _train_probe_at_rank(path, config, batch_data, device)
    return {"peak_mb": meter.peak_mb(), "step_seconds": seconds}


def _train_probe_at_rank(path: str, config, batch, device: str) -> float:
    """The probe's training path, at the config's own rank (the probe itself trains at PROBE_RANK)."""
    from harness.trial import memory_plan

    rank = memory_plan.PROBE_RANK
    memory_plan.PROBE_RANK = config.lora.r
    try:
        return memory_plan._train_probe(path, config, batch, device)
    finally:
        memory_plan.PROBE_RANK = rank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--modes", default="none,int8,nf4,nf4-dq,fp4,fp4-dq")
    parser.add_argument("--batches", default="2,4,8")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--checkpointing", default="false,true")
    parser.add_argument("--cell", nargs=5, metavar=("MODEL", "MODE", "BATCH", "CKPT", "SEQ"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        model, mode, batch, ckpt, seq = args.cell
        print("CELL " + json.dumps(measure_cell(model, mode, int(batch), ckpt == "true", int(seq))))
        return
    from harness.trial.memory_plan import make_predictor

    predict = make_predictor()
    started = time.perf_counter()
    load = os.getloadavg()[0]
    rows, mem_err, time_err = [], [], []
    for mode in args.modes.split(","):
        for ckpt in (c == "true" for c in args.checkpointing.split(",")):
            for batch in (int(b) for b in args.batches.split(",")):
                predicted = predict(_config(args.model, mode, batch, ckpt, args.seq))
                out = subprocess.run([sys.executable, __file__, "--cell", args.model, mode, str(batch),
                                      "true" if ckpt else "false", str(args.seq)], capture_output=True, text=True)
                line = next((x for x in out.stdout.splitlines() if x.startswith("CELL ")), None)
                if line is None:
                    print(f"{mode} ckpt {ckpt} batch {batch}: failed: {out.stderr.strip().splitlines()[-1:]}")
                    continue
                got = json.loads(line[5:])
                m = predicted.peak_memory_mb / got["peak_mb"] - 1
                t = predicted.step_seconds / got["step_seconds"] - 1
                mem_err.append(m)
                time_err.append(t)
                rows.append(f"| {mode} | {'on' if ckpt else 'off'} | {batch} x {args.seq} | "
                            f"{predicted.peak_memory_mb:,.0f} | {got['peak_mb']:,.0f} | {m:+.1%} | "
                            f"{predicted.step_seconds:.3f} | {got['step_seconds']:.3f} | {t:+.1%} |")
                print(rows[-1], flush=True)
    print(f"\n{args.model}, LoRA r 16 all-linear, 1-minute load average at start {load:.1f}, "
          f"{time.perf_counter() - started:.0f} s\n")
    print("| mode | ckpt | batch | predicted MiB | measured MiB | error | predicted s/step | measured s/step | error |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if mem_err:
        within = lambda errs, bound: sum(abs(e) <= bound for e in errs)  # noqa: E731
        print(f"\nmemory: {within(mem_err, 0.15)}/{len(mem_err)} within 15%, median |error| "
              f"{sorted(abs(e) for e in mem_err)[len(mem_err) // 2]:.1%}, worst {max(mem_err, key=abs):+.1%}")
        print(f"step time: {within(time_err, 0.20)}/{len(time_err)} within 20%, median |error| "
              f"{sorted(abs(e) for e in time_err)[len(time_err) // 2]:.1%}, worst {max(time_err, key=abs):+.1%}")


if __name__ == "__main__":
    main()
