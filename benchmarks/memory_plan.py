"""Predicted vs measured peak memory and step time (issue 40): per model, quantization mode, batch shape and
gradient checkpointing setting, the planner's prediction (harness.trial.memory_plan, probes cached on this
machine, each made in a fresh process as a sweep's worker makes it) against a measurement in another fresh
process (3 steps on the widest batch of that shape, every token real and scored; peak resident memory on a CPU,
max allocated on CUDA; step time after the first step). Once per mode and checkpointing setting that process
also measures the final evaluation at the default eval batch (16 sequences scored, then generated from, as the
probe does at 1 and 4), against the planner's evaluation peak.

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


def measure_cell(model: str, mode: str, batch: int, ckpt: bool, seq: int, evaluate: bool) -> dict:
    """In this (fresh) process: the measured peak and step time of one config shape, and with `evaluate` the
    peak of the final evaluation at the config's eval batch after it."""
    from harness.runtime.devices import pick_device
    from harness.trial.memory_plan import eval_sequences, peaks_after_training
    from harness.trial.models import load_tokenizer, quantized_checkpoint
    from harness.trial.pack_fit import full_batch
    from harness.trial.run import MemoryMeter, TrialCache, release_memory

    device = pick_device()
    config = _config(model, mode, batch, ckpt, seq)
    path = TrialCache().checkpoint(model)
    if mode != "none":
        quantized_checkpoint(path, mode, device)
    tokenizer = load_tokenizer(path)
    batch_data = full_batch(tokenizer, batch, seq)
    release_memory(device)
    meter = MemoryMeter(device)
    meter.reset()
    measured: dict = {}
    after = peaks_after_training(meter, device, tokenizer, seq, eval_sequences(config) if evaluate else 0, measured)
    measured["step_seconds"] = _train_probe_at_rank(path, config, batch_data, device, after)
    return measured


def _train_probe_at_rank(path: str, config, batch, device: str, after) -> float:
    """The probe's training path, at the config's own rank (the probe itself trains at PROBE_RANK)."""
    from harness.trial import memory_plan

    rank = memory_plan.PROBE_RANK
    memory_plan.PROBE_RANK = config.lora.r
    try:
        return memory_plan._train_probe(path, config, batch, device, after)
    finally:
        memory_plan.PROBE_RANK = rank


def predict_cells(model: str, mode: str, ckpt: bool, seq: int, batches: list[int]) -> list[dict]:
    """In this (fresh) process, as a sweep's worker would: the predictions of one mode and checkpointing setting
    at each batch (the probe measured here when the machine has none)."""
    from harness.trial.memory_plan import make_predictor

    predict = make_predictor()
    out = []
    for batch in batches:
        p = predict(_config(model, mode, batch, ckpt, seq))
        out.append({"peak_mb": p.peak_memory_mb, "eval_peak_mb": p.eval_peak_mb, "step_seconds": p.step_seconds})
    return out


def _child(*args: str) -> dict | list | None:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        print(f"{' '.join(args)}: failed: {out.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    return json.loads(line[7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--modes", default="none,int8,nf4,nf4-dq,fp4,fp4-dq")
    parser.add_argument("--batches", default="2,4,8")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--checkpointing", default="false,true")
    parser.add_argument("--cell", nargs=6, metavar=("MODEL", "MODE", "BATCH", "CKPT", "SEQ", "EVAL"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--predict", nargs=5, metavar=("MODEL", "MODE", "CKPT", "SEQ", "BATCHES"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cell:
        model, mode, batch, ckpt, seq, evaluate = args.cell
        print("RESULT " + json.dumps(measure_cell(model, mode, int(batch), ckpt == "true", int(seq),
                                                  evaluate == "true")))
        return
    if args.predict:
        model, mode, ckpt, seq, batches = args.predict
        print("RESULT " + json.dumps(predict_cells(model, mode, ckpt == "true", int(seq),
                                                   [int(b) for b in batches.split(",")])))
        return

    started = time.perf_counter()
    load = os.getloadavg()[0]
    rows, mem_err, time_err, eval_rows, eval_err = [], [], [], [], []
    batches = [int(b) for b in args.batches.split(",")]
    for mode in args.modes.split(","):
        for ckpt in (c == "true" for c in args.checkpointing.split(",")):
            flag = "true" if ckpt else "false"
            predictions = _child("--predict", args.model, mode, flag, str(args.seq), args.batches)
            if predictions is None:
                continue
            for i, (batch, predicted) in enumerate(zip(batches, predictions)):
                got = _child("--cell", args.model, mode, str(batch), flag, str(args.seq),
                             "true" if i == 0 else "false")
                if got is None:
                    continue
                m = predicted["peak_mb"] / got["peak_mb"] - 1
                t = predicted["step_seconds"] / got["step_seconds"] - 1
                mem_err.append(m)
                time_err.append(t)
                rows.append(f"| {mode} | {'on' if ckpt else 'off'} | {batch} x {args.seq} | "
                            f"{predicted['peak_mb']:,.0f} | {got['peak_mb']:,.0f} | {m:+.1%} | "
                            f"{predicted['step_seconds']:.3f} | {got['step_seconds']:.3f} | {t:+.1%} |")
                print(rows[-1], flush=True)
                if got.get("eval_peak_mb") and predicted.get("eval_peak_mb"):
                    e = predicted["eval_peak_mb"] / got["eval_peak_mb"] - 1
                    eval_err.append(e)
                    eval_rows.append(f"| {mode} | {'on' if ckpt else 'off'} | {predicted['eval_peak_mb']:,.0f} | "
                                     f"{got['eval_peak_mb']:,.0f} | {e:+.1%} |")
                    print(eval_rows[-1], flush=True)
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
    if eval_err:
        print("\nThe final evaluation at 16 sequences x the same tokens (scored, then 16 tokens generated after "
              "each):\n")
        print("| mode | ckpt | predicted MiB | measured MiB | error |")
        print("|---|---|---|---|---|")
        print("\n".join(eval_rows))
        print(f"\nevaluation memory: {within(eval_err, 0.15)}/{len(eval_err)} within 15%, median |error| "
              f"{sorted(abs(e) for e in eval_err)[len(eval_err) // 2]:.1%}, worst {max(eval_err, key=abs):+.1%}")


if __name__ == "__main__":
    main()
