"""How many members of a pack fit this device's memory for a given model and mode (`harness doctor --pack-fit`).

Measured, not estimated from parameter counts: a pack of 1 and a pack of 2 each train a few steps on one copy of
the base model at the batch shape asked for (every position a real, scored token: the widest batch of that
shape), and the difference of their peaks is what one more member costs. The base's share is the pack of 1's
peak less one member. On CUDA the peaks are CUDA's max allocated and the room is the device's free memory; on
a CPU they are the process's peak resident memory (the same meter trials use) and the room is the memory the
kernel reports available plus what this process already holds.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

from harness.config.dataset import DataSpec
from harness.config.errors import SpecError
from harness.config.lora import LoraSpec
from harness.config.model import QUANTIZATION_MODES, ModelSpec, QuantSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig
from harness.runtime.devices import pick_device


@dataclass(frozen=True)
class PackFit:
    """What a pack of this model and mode costs here, and how many members the device's memory holds."""

    model: str
    mode: str
    batch: int
    seq: int
    rank: int
    device: str
    peak_one_mb: float
    peak_two_mb: float
    available_mb: float
    """Memory a pack may use: free device memory on CUDA; on a CPU, available memory plus this process's own."""
    seconds: float

    @property
    def per_member_mb(self) -> float:
        return self.peak_two_mb - self.peak_one_mb

    @property
    def base_mb(self) -> float:
        return self.peak_one_mb - self.per_member_mb

    @property
    def fits(self) -> int | None:
        """Members that fit; None when one more member's cost is below what the meter resolves."""
        return members_that_fit(self.available_mb, self.peak_one_mb, self.peak_two_mb)

    def line(self) -> str:
        shape = (f"{self.model} {self.mode}, LoRA r {self.rank} on all linear layers, batch {self.batch} x "
                 f"{self.seq} tokens")
        meter = "CUDA max allocated" if self.device.startswith("cuda") else "peak resident memory"
        if self.fits is None:
            return (f"{shape}: a pack of 2 peaked at {self.peak_two_mb:,.0f} MiB against {self.peak_one_mb:,.0f} "
                    f"for 1 ({meter}): one more member costs less than this meter resolves here; "
                    f"{self.available_mb:,.0f} MiB available")
        return (f"{shape}: base {self.base_mb:,.0f} MiB + {self.per_member_mb:,.0f} MiB per member (measured with "
                f"packs of 1 and 2, {meter}, {self.seconds:.0f} s); {self.available_mb:,.0f} MiB available: "
                f"about {self.fits} members fit")


def members_that_fit(available_mb: float, peak_one_mb: float, peak_two_mb: float) -> int | None:
    """floor((available - base) / per member), base = peak(1) - per member; None when a member costs nothing
    measurable (at most 1 MiB: the meter's noise)."""
    per_member = peak_two_mb - peak_one_mb
    if per_member <= 1.0:
        return None
    return max(0, math.floor((available_mb - (peak_one_mb - per_member)) / per_member))


def check_args(mode: str, *, batch: int, seq: int, rank: int, steps: int = 2) -> None:
    """The arguments of a pack-fit measurement, checked before anything loads (a one-line SpecError)."""
    if mode not in QUANTIZATION_MODES:
        raise SpecError(f"--mode {mode!r} is not one of {', '.join(QUANTIZATION_MODES)}")
    if batch < 1 or seq < 8 or rank < 1 or steps < 1:
        raise SpecError(f"--pack-fit needs --batch >= 1, --seq >= 8 and --rank >= 1, got batch {batch}, seq {seq}, "
                        f"rank {rank}")


def measure_pack_fit(model: str, mode: str, *, batch: int = 8, seq: int = 128, rank: int = 16,
                     steps: int = 2) -> PackFit:
    """Train packs of 1 and 2 members `steps` steps each at batch x seq and measure their peaks."""
    from harness.trial.run import MemoryMeter, TrialCache, release_memory

    check_args(mode, batch=batch, seq=seq, rank=rank, steps=steps)
    started = time.perf_counter()
    device = pick_device()
    cache = TrialCache()
    config = TrialConfig(model=ModelSpec(model), quant=QuantSpec(mode), lora=LoraSpec(r=rank, alpha=2.0 * rank),
                         train=TrainSpec(max_steps=steps, batch_size=batch), data=DataSpec(max_seq_len=seq))
    path = cache.checkpoint(model)
    if mode != "none":
        from harness.trial.models import quantized_checkpoint

        quantized_checkpoint(path, mode, device)  # built once, before any peak is measured
    meter = MemoryMeter(device)
    peaks = []
    for members in (1, 2):
        release_memory(device)
        meter.reset()
        _train(path, config, members, device)
        peaks.append(meter.peak_mb() or 0.0)
    release_memory(device)
    return PackFit(model, mode, batch, seq, rank, device, peaks[0], peaks[1], available_mb(device),
                   time.perf_counter() - started)


def full_batch(tokenizer: Any, batch: int, seq: int) -> Any:
    """The widest batch of a shape: batch x seq random tokens of `tokenizer`'s vocabulary, every position real and
    scored (seeded)."""
    import torch

    from harness.data.batching import Batch

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, len(tokenizer), (batch, seq), generator=generator)
    return Batch(ids, torch.ones_like(ids), ids.clone(), real_tokens=batch * seq, scored_tokens=batch * (seq - 1))


def _train(path: str, config: TrialConfig, members: int, device: str) -> None:
    from harness.trial.models import load_base_model, load_tokenizer
    from harness.trial.pack import Member, attach_pack, train_pack

    tokenizer = load_tokenizer(path)
    seq = config.data.max_seq_len
    full = full_batch(tokenizer, config.train.batch_size, seq)
    base = load_base_model(path, config.quant.mode, device, seq)
    model = attach_pack(base, [config] * members)
    train_pack(model, [Member(config, lambda epoch: [full]) for _ in range(members)], device,
               tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    del model, base


def available_mb(device: str, *, own: bool = True) -> float:
    """Memory a new trial on `device` could use now: CUDA free memory, or on a CPU the kernel's MemAvailable plus
    (`own`: the trial will run in this process, as a pack-fit probe's does) this process's own resident memory.
    A sweep's trials run in a worker beside the sweep's process, so a plan for them passes own=False."""
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info()
        return free / 2**20
    return _meminfo_mb("MemAvailable") + (_own_rss_mb() if own else 0.0)


def _meminfo_mb(key: str) -> float:
    with open("/proc/meminfo") as handle:
        match = re.search(rf"^{key}:\s+(\d+) kB", handle.read(), re.MULTILINE)
    return int(match.group(1)) / 1024 if match else 0.0


def _own_rss_mb() -> float:
    from harness.trial.run import process_status_mb

    try:
        return process_status_mb("VmRSS") or 0.0
    except OSError:
        return 0.0
