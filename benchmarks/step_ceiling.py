"""How close a trial's training step is to what this machine's matrix units allow (issue 22's "why not 0.5x").

It trains one LoRA trial the way a sweep does (`harness.trial.train.train`: the default data, stdlib-qa, batch
8, r 16 on every linear layer, 16-bit base) and measures, on the same machine and in one process:

- wall seconds per optimizer step, without the profiler (after warm-up steps);
- under torch's CPU profiler, the operator time of the same steps, split into matrix products (aten::mm,
  aten::bmm, aten::addmm), attention (the fused scaled-dot-product kernels), the optimizer's steps, and the
  rest (norms, activations, the loss, copies);
- the floating-point work of one step (torch.utils.flop_counter over one step), and the rate at which this
  machine multiplies bf16/fp32 matrices of the step's own largest shape, alone in a loop;

and prints the floor a step could reach if everything but its matrix products (at the measured rate)
vanished. Run from the repository root on a quiet machine (nothing else running)::

    python benchmarks/step_ceiling.py --json benchmarks/results/step_ceiling_smollm2_cpu.json
    python benchmarks/step_ceiling.py --model tiny-llama --steps 20
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
sys.path.insert(0, str(Path(__file__).resolve().parent))  # step_overhead, its sibling

from step_overhead import trial_setup  # noqa: E402

PRODUCTS = ("aten::mm", "aten::bmm", "aten::addmm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--quantization", default="none")
    parser.add_argument("--steps", type=int, default=8, help="timed steps (each of the two passes)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--r", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.steps < 2 or args.warmup < 1:
        raise SystemExit("--steps must be >= 2 and --warmup >= 1")
    result = measure(args)
    print_report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written: {args.json}")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from harness.runtime.devices import compute_dtype, device_name, pick_device
    from harness.runtime.quiet import filter_known_warnings
    from harness.trial.models import load_base_model
    from harness.trial.run import attach_adapter
    from harness.trial.source import describe_source
    from harness.trial.train import train

    filter_known_warnings()  # the warnings harness has judged harmless, by their exact messages
    device = pick_device()
    if device != "cpu":
        raise SystemExit(f"step_ceiling.py profiles the CPU; the device here is {device} (use gpu_check.sh)")
    resolved, path, batches, config = trial_setup(args.model, args.quantization, args.r, args.batch_size,
                                                  args.warmup + 2 * args.steps + 1)
    spec, data = config.train, config.data
    torch.manual_seed(0)
    model = attach_adapter(load_base_model(path, args.quantization, device, data.max_seq_len), config)
    phases = _Phases(args.warmup, args.steps)
    train(model, lambda epoch: batches, spec, device, on_step=phases.on_step)
    tokens = [b.real_tokens for b in batches]
    dtype = compute_dtype(device)
    source = describe_source(resolved).to_dict()
    products = phases.operator("products")
    flops = phases.flops
    shape = phases.largest_shape
    rate = _product_rate(shape, dtype)
    step = statistics.median(phases.wall)
    return {
        "model": source.get("label"), "source_precision": source.get("precision"),
        "quantization": args.quantization, "device": device_name(device), "compute_dtype": str(dtype).split(".")[-1],
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or
        platform.machine(), "r": args.r, "batch_size": args.batch_size, "max_seq_len": data.max_seq_len,
        "real_tokens_per_step": statistics.mean(tokens),
        "timed_steps": args.steps, "warmup_steps": args.warmup,
        "seconds_per_step": step, "seconds_per_step_range": [min(phases.wall), max(phases.wall)],
        "profiled_seconds_per_step": phases.profiled_wall / args.steps,
        "operator_seconds_per_step": {k: phases.operator(k) for k in ("products", "attention", "optimizer", "rest")},
        "product_calls_per_step": phases.product_calls / args.steps,
        "largest_other_operators_seconds_per_step": dict(phases.top_rest),
        "matmul_flops_per_step": flops,
        "largest_product_shape": list(shape),
        "product_rate_gflops": rate / 1e9,
        "in_step_product_rate_gflops": flops / products / 1e9 if products else None,
        "floor_at_step_rate": products + phases.operator("optimizer"),
        "floor_at_best_rate": flops / rate,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python " + " ".join(sys.argv),
    }


class _Phases:
    """Drives train() through warm-up, unprofiled timed steps, one FLOP-counted step and profiled steps, by its
    on_step callback (the trial's own loop is what is measured, bookkeeping included)."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.wall: list[float] = []
        self.flops = 0
        self.largest_shape: tuple[int, int, int] = (1, 1, 1)
        self.profiled_wall = 0.0
        self.product_calls = 0
        self.top_rest: list[tuple[str, float]] = []
        self._seconds: dict[str, float] = {}
        self._clock = time.perf_counter()
        self._counter: Any = None
        self._shapes: Any = None
        self._profiler: Any = None

    def on_step(self, info: Any) -> None:
        now = time.perf_counter()
        step = info.step
        first_timed, counted = self.warmup + 1, self.warmup + self.steps + 1
        if first_timed <= step <= self.warmup + self.steps:
            self.wall.append(now - self._clock)
        if step == self.warmup + self.steps:  # the next step is FLOP-counted (and its shapes recorded)
            self._start_counting()
        elif step == counted:
            self._stop_counting()
            self._start_profiling()
        elif step == counted + self.steps:
            self.profiled_wall = now - self._profile_started
            self._stop_profiling()
        self._clock = time.perf_counter()

    def operator(self, kind: str) -> float:
        return self._seconds.get(kind, 0.0) / self.steps

    def _start_counting(self) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        self._counter = FlopCounterMode(display=False)
        self._shapes = _ShapeRecorder()
        self._counter.__enter__()
        self._shapes.__enter__()

    def _stop_counting(self) -> None:
        self._shapes.__exit__(None, None, None)
        self._counter.__exit__(None, None, None)
        self.flops = self._counter.get_total_flops()
        self.largest_shape = self._shapes.largest

    def _start_profiling(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        self._profiler = profile(activities=[ProfilerActivity.CPU])
        self._profiler.__enter__()
        self._profile_started = time.perf_counter()

    def _stop_profiling(self) -> None:
        self._profiler.__exit__(None, None, None)
        events = self._profiler.key_averages()
        total = sum(e.self_cpu_time_total for e in events) / 1e6
        products = [e for e in events if e.key in PRODUCTS]
        self.product_calls = sum(e.count for e in products)
        seconds = {"products": sum(e.self_cpu_time_total for e in products) / 1e6,
                   "attention": sum(e.self_cpu_time_total for e in events if "scaled_dot_product" in e.key
                                    or "flash_attention" in e.key) / 1e6,
                   "optimizer": sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step#")) / 1e6}
        # the optimizer's own products are few and small (AdamW is elementwise); its time is counted once
        seconds["rest"] = max(0.0, total - seconds["products"] - seconds["attention"] - seconds["optimizer"])
        self._seconds = seconds
        counted = set(PRODUCTS)
        rest = sorted((e for e in events if e.key not in counted and not e.key.startswith("Optimizer.step#")),
                      key=lambda e: -e.self_cpu_time_total)[:6]
        self.top_rest = [(e.key, e.self_cpu_time_total / 1e6 / self.steps) for e in rest]


class _ShapeRecorder:
    """Records the (m, k, n) of every 2-D matrix product in a step; keeps the one with the most work."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        recorder = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                if func.__name__.startswith(("mm", "addmm")):
                    a, b = (args[0], args[1]) if func.__name__.startswith("mm") else (args[1], args[2])
                    shape = (int(a.shape[0]), int(a.shape[1]), int(b.shape[1]))
                    if shape[0] * shape[1] * shape[2] > recorder.largest[0] * recorder.largest[1] * recorder.largest[2]:
                        recorder.largest = shape
                return func(*args, **(kwargs or {}))

        self.largest: tuple[int, int, int] = (1, 1, 1)
        self._mode = Mode()

    def __enter__(self) -> "_ShapeRecorder":
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)


def _product_rate(shape: tuple[int, int, int], dtype: Any, seconds: float = 2.0) -> float:
    """FLOP/s of this machine multiplying (m x k) by (k x n) matrices in `dtype`, alone, median of rounds."""
    import torch

    m, k, n = shape
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(5):
        torch.mm(a, b)
    rates, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        for _ in range(10):
            torch.mm(a, b)
        rates.append(10 * 2 * m * k * n / (time.perf_counter() - started))
    return statistics.median(rates)


def print_report(r: dict[str, Any]) -> None:
    ops = r["operator_seconds_per_step"]
    operator_total = sum(ops.values())
    print(f"{r['model']} (source weights {r['source_precision']}), quantization {r['quantization']}, {r['device']} "
          f"({r['cpu']}), {r['compute_dtype']}, {r['torch_threads']} torch threads, torch {r['torch']}; LoRA r "
          f"{r['r']} on every linear layer; batch {r['batch_size']} x <= {r['max_seq_len']} tokens of stdlib-qa "
          f"({r['real_tokens_per_step']:.0f} real tokens a step); {r['timed_steps']} timed steps after "
          f"{r['warmup_steps']} warm-up; {r['date']}")
    low, high = r["seconds_per_step_range"]
    print(f"wall per step (harness.trial.train, no profiler): {r['seconds_per_step']:.3f} s (median; {low:.3f}-"
          f"{high:.3f}); under the profiler {r['profiled_seconds_per_step']:.3f} s")
    print(f"operator time per step: {operator_total:.3f} s = matrix products {ops['products']:.3f} s "
          f"({r['product_calls_per_step']:.0f} calls) + attention {ops['attention']:.3f} s + optimizer "
          f"{ops['optimizer']:.3f} s + rest {ops['rest']:.3f} s")
    others = ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in
                       r["largest_other_operators_seconds_per_step"].items())
    print(f"largest other operators (self time per step): {others}")
    m, k, n = r["largest_product_shape"]
    in_step = r["in_step_product_rate_gflops"]
    print(f"matrix work per step: {r['matmul_flops_per_step'] / 1e9:.1f} GFLOP; inside the step the products run "
          f"at {in_step:.0f} GFLOP/s; alone, the step's largest product ({m} x {k} by {k} x {n}, "
          f"{r['compute_dtype']}) runs at {r['product_rate_gflops']:.0f} GFLOP/s")
    print(f"floor per step: {r['floor_at_step_rate']:.3f} s with only the products and the optimizer left "
          f"({r['seconds_per_step'] / r['floor_at_step_rate']:.2f}x faster than now at most); "
          f"{r['floor_at_best_rate']:.3f} s if every product ran at the best rate above "
          f"({r['seconds_per_step'] / r['floor_at_best_rate']:.2f}x at most)")


if __name__ == "__main__":
    main()
