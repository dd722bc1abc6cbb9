"""What a trial will cost before it runs: predicted peak memory and seconds per optimizer step.

    peak = overhead + weights(mode) + adapter state(r, targets) + activations per token x micro-batch tokens

- **weights**: from the checkpoint's tensor shapes (safetensors headers, nothing loaded) x the mode's bytes per
  parameter: linear layers of the decoder at 1 byte (int8, plus an fp32 scale per row) or 0.5 byte (4-bit, plus
  an fp32 absmax per 64 weights; with double quantization an 8-bit absmax per 64 and an fp32 one per 256 of
  those); every other tensor at the compute dtype's size (fp32 in a quantized mode: peft's
  prepare_model_for_kbit_training casts them up).
- **adapter state**: LoRA parameters r x (in + out) per targeted layer, each with its gradient and AdamW's two
  moments: 16 bytes per parameter (all fp32).
- **activations** and **overhead**: from a probe, two short training runs at two batch shapes of one model,
  mode and checkpointing setting (every position a real, scored token, as `doctor --pack-fit` measures: its
  meter, memory release and full batch), on the trial's own code path (`attach_adapter` + `train`). The two
  peaks give the memory per token (slope) and the rest (intercept), less the probe's analytic weights and
  adapter, is the runtime's fixed overhead. Step seconds are the same line through the two step times.

The final evaluation (held-out loss, then generated answers) has a peak of its own, which on a CPU in 16-bit mode
passes the training peak (generation's allocations stay in the resident high-water mark; SmolLM2-135M: 3.1 GB
against 2.3 GB at batch 8), and which halving the training micro-batch does not lower. The probe measures it
after each training run, from memory released as a trial releases it: scoring a full batch of that many
sequences and generating PROBE_NEW_TOKENS tokens after as many prompts of max_seq_len tokens; the line
through the two gives the memory per evaluated sequence, and a trial's evaluation is predicted at its widest
eval batch (scoring or generation).

Probes are kept on this machine (`cache_dir()/memory_probes/`), keyed like the untuned baselines by everything
they depend on: the checkpoint and its quantization stamp (mode, compute dtype, device, torch/transformers/
bitsandbytes versions), peft's and harness's versions, the checkpointing setting, the sequence length, the
probe's shapes and the attention implementation. Knows nothing of Optuna (the fit/infeasible decision is
harness.search.planning's).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.config.hashing import stable_hash
from harness.config.trial import TrialConfig

ADAPTER_BYTES_PER_PARAM = 16  # fp32 weight + fp32 gradient + AdamW exp_avg + exp_avg_sq
PROBE_BATCHES = (1, 4)
"""The two micro-batch sizes a probe trains at (x the trial's max_seq_len tokens each)."""
PROBE_STEPS = 2
PROBE_RANK = 8
PROBE_NEW_TOKENS = 16
"""Tokens the probe's evaluation generates after each prompt (greedy, no stop token)."""
PROBE_VERSION = 4
"""Bumped when what a probe measures changes: older cached probes are then not reused."""


def bytes_per_linear_param(mode: str, dtype_bytes: int) -> float:
    """Bytes a frozen linear weight parameter takes in a quantization mode (its scales included)."""
    if mode == "none":
        return float(dtype_bytes)
    if mode == "int8":
        return 1.0  # + one fp32 scale per output row, added by weights_mb
    absmax = 4 / 64 if not mode.endswith("-dq") else 1 / 64 + 4 / (64 * 256)
    return 0.5 + absmax


def tensor_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in the checkpoint's safetensors files, read from their headers (nothing loaded)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(Path(path).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes


def _is_linear(name: str, shape: tuple[int, ...]) -> bool:
    """A decoder layer's linear weight (what bitsandbytes quantizes): 2-D, inside `layers.`."""
    return len(shape) == 2 and ".layers." in name and name.endswith(".weight")


def weights_mb(shapes: dict[str, tuple[int, ...]], mode: str, dtype_bytes: int) -> float:
    """The frozen base model's memory in a mode, from its tensor shapes."""
    total = 0.0
    other = dtype_bytes if mode == "none" else 4
    for name, shape in shapes.items():
        count = _numel(shape)
        if _is_linear(name, shape):
            total += count * bytes_per_linear_param(mode, dtype_bytes) + (4 * shape[0] if mode == "int8" else 0)
        else:
            total += count * other
    return total / 2**20


def kept_extra_mb(shapes: dict[str, tuple[int, ...]], mode: str, dtype_bytes: int, keep: float) -> float:
    """What keeping a `keep` fraction of the linear-layer parameters unquantized (`keep_16bit`, in the compute
    dtype) adds to the mode's weights: that share at dtype_bytes instead of the mode's bytes per parameter. The
    kept layers are whole layers, so the kept share is close to `keep`, not exactly it (SmolLM2 at 0.1: 9.9%)."""
    if mode == "none" or keep <= 0:
        return 0.0
    linear = sum(_numel(shape) for name, shape in shapes.items() if _is_linear(name, shape))
    return keep * linear * (dtype_bytes - bytes_per_linear_param(mode, dtype_bytes)) / 2**20


def adapter_mb(shapes: dict[str, tuple[int, ...]], rank: int, targets: list[str] | str) -> float:
    """LoRA parameters, gradients and AdamW states for rank `rank` on the targeted layers ('all-linear' or short
    layer names)."""
    params = 0
    for name, shape in shapes.items():
        short = name.rsplit(".", 2)[-2] if name.count(".") >= 2 else name
        if _is_linear(name, shape) and (targets == "all-linear" or short in targets):
            params += rank * (shape[0] + shape[1])
    return params * ADAPTER_BYTES_PER_PARAM / 2**20


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


@dataclass(frozen=True)
class Probe:
    """Two short training runs of one model, mode and checkpointing setting at two micro-batch shapes."""

    key: str
    tokens: tuple[int, int]
    """Tokens per micro-batch of the two runs (batch x seq)."""
    peaks_mb: tuple[float, float]
    step_seconds: tuple[float, float]
    """Seconds per optimizer step (one micro-batch), after the first step (warm-up)."""
    weights_mb: float
    adapter_mb: float
    """The probe's own adapter state (rank PROBE_RANK, all linear layers)."""
    seconds: float
    """How long the probe took to run."""
    dtype_bytes: int
    """Bytes per parameter of the compute dtype the probe ran in (what a kept 16-bit layer takes)."""
    eval_peaks_mb: tuple[float, float] | None = None
    """The evaluation's peaks after the two runs, at PROBE_BATCHES sequences (scored, then generated from);
    None where evaluation was not probed (then no evaluation peak is predicted)."""

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Probe":
        eval_peaks = raw.get("eval_peaks_mb")
        return cls(**{**raw, "tokens": tuple(raw["tokens"]), "peaks_mb": tuple(raw["peaks_mb"]),
                      "step_seconds": tuple(raw["step_seconds"]),
                      "eval_peaks_mb": tuple(eval_peaks) if eval_peaks is not None else None})

    @property
    def mb_per_token(self) -> float:
        return max(0.0, (self.peaks_mb[1] - self.peaks_mb[0]) / (self.tokens[1] - self.tokens[0]))

    @property
    def overhead_mb(self) -> float:
        """The runtime's fixed share: the line's intercept less the weights and the probe's adapter."""
        return self.peaks_mb[0] - self.mb_per_token * self.tokens[0] - self.weights_mb - self.adapter_mb

    def eval_peak_at(self, sequences: int) -> float | None:
        """The evaluation's peak at `sequences` per batch, on the line through the probe's two (None: not probed)."""
        if self.eval_peaks_mb is None:
            return None
        low, high = self.eval_peaks_mb
        slope = max(0.0, (high - low) / (PROBE_BATCHES[1] - PROBE_BATCHES[0]))
        return low + slope * (sequences - PROBE_BATCHES[0])

    def seconds_at(self, tokens: int) -> float:
        slope = (self.step_seconds[1] - self.step_seconds[0]) / (self.tokens[1] - self.tokens[0])
        return max(1e-6, self.step_seconds[0] + max(0.0, slope) * (tokens - self.tokens[0]))


@dataclass(frozen=True)
class Prediction:
    """A trial config's predicted peak memory (MiB, the meter trials use) and seconds per optimizer step."""

    peak_memory_mb: float
    step_seconds: float
    weights_mb: float
    adapter_mb: float
    activations_mb: float
    overhead_mb: float
    eval_peak_mb: float | None = None
    """The final evaluation's peak (scoring and generation at the config's eval batch widths); None where the
    probe did not measure evaluation."""

    @property
    def trial_peak_mb(self) -> float:
        """The whole trial's predicted peak: training's or evaluation's, whichever is higher."""
        return max(self.peak_memory_mb, self.eval_peak_mb or 0.0)


def eval_sequences(config: TrialConfig) -> int:
    """Sequences in the widest batch of a trial's final evaluation: the eval batch, or the generation batch where
    the trial may generate (task metrics not turned off)."""
    generates = config.eval.metrics != () and config.eval.generate_size > 0
    return max(config.eval.batch_size, config.eval.generate_batch_size if generates else 0)


def predict(config: TrialConfig, probe: Probe, shapes: dict[str, tuple[int, ...]]) -> Prediction:
    """The config's peak and step time from a probe of its model, mode and checkpointing setting (a probe of the
    plain mode serves `keep_16bit` too: the kept layers add only weights, kept_extra_mb). Memory counts
    one micro-batch of batch_size x max_seq_len tokens (the widest batch: an upper bound); time is
    grad_accum micro-batches of that width. The adapter's rank changes memory, not the predicted time (the
    frozen base's matmuls dominate a step)."""
    from harness.trial.models import target_modules

    tokens = config.train.batch_size * config.data.max_seq_len
    adapter = adapter_mb(shapes, config.lora.r, target_modules(config.lora.targets))
    activations = probe.mb_per_token * tokens
    weights = probe.weights_mb + kept_extra_mb(shapes, config.quant.mode, probe.dtype_bytes,
                                               config.quant.keep_16bit)
    peak = probe.overhead_mb + weights + adapter + activations
    evaluation = probe.eval_peak_at(eval_sequences(config))
    if evaluation is not None:  # the weights and the adapter's own parameters (no gradient, no AdamW state then)
        evaluation += weights - probe.weights_mb + (adapter - probe.adapter_mb) * 4 / ADAPTER_BYTES_PER_PARAM
    return Prediction(peak, config.train.grad_accum * probe.seconds_at(tokens), weights, adapter,
                      activations, probe.overhead_mb, evaluation)


def probe_key(path: str, mode: str, checkpointing: bool, seq: int, device: str, dtype: str) -> str:
    """The hash of everything a probe depends on (see the module docstring)."""
    from importlib import metadata

    from harness.trial.models import attention_for, quantized_stamp

    versions = [(name, metadata.version(name)) for name in ("peft", "harness")]
    return stable_hash([quantized_stamp(path, mode, dtype, device), versions, bool(checkpointing), seq,
                        PROBE_BATCHES, PROBE_STEPS, PROBE_RANK, PROBE_VERSION, attention_for(device, seq, path)])


def probe_path(key: str) -> Path:
    from harness.trial.models import cache_dir

    return cache_dir() / "memory_probes" / f"{key}.json"


def cached_probe(config: TrialConfig, cache: Any = None, *, measure: bool = True) -> tuple[Probe | None, bool]:
    """The probe for `config`'s model, mode, checkpointing setting and sequence length, and whether it came
    from this machine's cache (measured and kept when it did not; with `measure=False`, (None, False) then)."""
    from harness.runtime.devices import compute_dtype, pick_device
    from harness.trial.baselines import _write
    from harness.trial.run import TrialCache

    cache = cache or TrialCache()
    device = pick_device()
    path = cache.checkpoint(config.model.name)
    dtype = str(compute_dtype(device)).replace("torch.", "")
    key = probe_key(path, config.quant.mode, config.train.gradient_checkpointing, config.data.max_seq_len,
                    device, dtype)
    try:
        return Probe.from_dict(json.loads(probe_path(key).read_text())), True
    except (OSError, ValueError, TypeError, KeyError):
        pass
    if not measure:
        return None, False
    probe = run_probe(config, path, key, device, dtype)
    _write(probe_path(key), dataclasses.asdict(probe))
    return probe, False


def run_probe(config: TrialConfig, path: str, key: str, device: str, dtype: str) -> Probe:
    """Train PROBE_STEPS steps at each of PROBE_BATCHES x max_seq_len, measuring each run's peak and step time
    with `doctor --pack-fit`'s meter, memory release and full batch."""
    from harness.trial.models import load_tokenizer, quantized_checkpoint
    from harness.trial.pack_fit import full_batch
    from harness.trial.run import MemoryMeter, release_memory

    started = time.perf_counter()
    seq = config.data.max_seq_len
    if config.quant.mode != "none":
        quantized_checkpoint(path, config.quant.mode, device)  # built once, before any peak is measured
    shapes = tensor_shapes(path)
    tokenizer = load_tokenizer(path)
    meter = MemoryMeter(device)
    runs, seconds = [], []
    for batch in PROBE_BATCHES:
        release_memory(device)
        meter.reset()
        runs.append({})
        seconds.append(_train_probe(path, config, full_batch(tokenizer, batch, seq), device,
                                    peaks_after_training(meter, device, tokenizer, seq, batch, runs[-1])))
    release_memory(device)
    peaks = [run["peak_mb"] for run in runs]
    eval_peaks = [run["eval_peak_mb"] for run in runs]
    dtype_bytes = 2 if dtype in ("bfloat16", "float16") else 4
    return Probe(key, (PROBE_BATCHES[0] * seq, PROBE_BATCHES[1] * seq), (peaks[0], peaks[1]),
                 (seconds[0], seconds[1]), weights_mb(shapes, config.quant.mode, dtype_bytes),
                 adapter_mb(shapes, PROBE_RANK, "all-linear"), time.perf_counter() - started, dtype_bytes,
                 (eval_peaks[0], eval_peaks[1]))


def peaks_after_training(meter: Any, device: str, tokenizer: Any, seq: int, sequences: int,
                         into: dict[str, float]) -> Callable[[Any], None]:
    """`_train_probe`'s `after`: record training's peak (`peak_mb`), then, with `sequences` > 0, release memory
    as a trial does between training and its final evaluation and record the evaluation's (`eval_peak_mb`,
    `eval_probe` at that many sequences)."""
    from harness.trial.run import release_memory

    def after(model: Any) -> None:
        into["peak_mb"] = meter.peak_mb() or 0.0
        if sequences:
            release_memory(device)
            meter.reset()
            eval_probe(model, tokenizer, sequences, seq, device)
            into["eval_peak_mb"] = meter.peak_mb() or 0.0

    return after


def eval_probe(model: Any, tokenizer: Any, sequences: int, seq: int, device: str) -> None:
    """A trial's final evaluation at `sequences` per batch, widest case: the held-out loss of a full batch of
    sequences x seq tokens, then PROBE_NEW_TOKENS greedy tokens after as many prompts of seq tokens."""
    from harness.trial.generation import generate_ids
    from harness.trial.pack_fit import full_batch
    from harness.trial.scoring import eval_loss

    batch = full_batch(tokenizer, sequences, seq)
    eval_loss(model, [batch], device)
    generate_ids(model, tokenizer, batch.input_ids.tolist(), max_new_tokens=PROBE_NEW_TOKENS,
                 batch_size=sequences, device=device, stop_ids=[])


def _train_probe(path: str, config: TrialConfig, batch: Any, device: str,
                 after: Callable[[Any], None] | None = None) -> float:
    """Seconds per step of a few steps on one full batch, on the trial's own path; the first step is warm-up.
    `after(model)` runs once training has ended, before the model is freed (the probe's evaluation)."""
    from harness.config.lora import LoraSpec
    from harness.trial.models import load_base_model
    from harness.trial.run import attach_adapter
    from harness.trial.train import train

    probe = dataclasses.replace(config, lora=LoraSpec(r=PROBE_RANK, alpha=2.0 * PROBE_RANK),
                                train=dataclasses.replace(config.train, max_steps=PROBE_STEPS + 1, grad_accum=1,
                                                          batch_size=batch.input_ids.shape[0], eval_every=0,
                                                          eval_at=()))
    base = load_base_model(path, config.quant.mode, device, config.data.max_seq_len)
    model = attach_adapter(base, probe)
    times: list[float] = []
    clock = [time.perf_counter()]

    def on_step(_: Any) -> None:
        now = time.perf_counter()
        times.append(now - clock[0])
        clock[0] = now

    train(model, lambda epoch: [batch], probe.train, device, on_step=on_step)
    if after is not None:
        after(model)
    del model, base
    steady = times[1:] or times
    return sum(steady) / len(steady)


def make_predictor(cache: Any = None, probe_of: Any = None) -> Any:
    """config -> Prediction, probing each model, mode, checkpointing setting and sequence length once (the
    machine's cache first) and reading each checkpoint's tensor shapes once. `probe_of(config) -> Probe` runs
    the probe elsewhere (the sweep's trial worker, whose process the trials run in); default: this process.
    Where `probe_of` returns None (it only looks in the cache) the prediction is None."""
    from harness.trial.run import TrialCache

    cache = cache or TrialCache()
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}

    def predict_config(config: TrialConfig) -> Prediction | None:
        probe = probe_of(config) if probe_of is not None else cached_probe(config, cache)[0]
        if probe is None:  # probe_of may only look in the cache
            return None
        path = cache.checkpoint(config.model.name)
        if path not in shapes:
            shapes[path] = tensor_shapes(path)
        return predict(config, probe, shapes[path])

    return predict_config
