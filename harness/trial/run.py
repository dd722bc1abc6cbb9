"""run_trial(config) -> TrialResult: one LoRA/QLoRA fine-tune and its evaluation, measured.

Imports neither optuna nor wandb. What is reused between trials (the converted checkpoint, the
tokenizer, the tokenized data) lives in one visible `TrialCache`; the base model itself is loaded
fresh for every trial, so nothing a trial does to it can leak into the next.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import re
import signal
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from harness.runtime.devices import compute_dtype, device_name, pick_device
from harness.data.encode import prompt_template
from harness.trial.families import family_of_type
from harness.trial.models import (attention_for, checkpoint_path, enable_checkpointing, load_base_model, load_tokenizer,
                                  quantized_checkpoint, resolve_model, target_modules)
from harness.trial.scoring import EvalScore, eval_loss
from harness.config.errors import one_line
from harness.config.hashing import stable_hash
from harness.config.trial import TrialConfig
from harness.trial.kept_layers import KeptChoice
from harness.trial.result import TrialResult
from harness.trial.train import NonFiniteLoss, StepInfo, StopTraining, optimizer_name, train
from harness.trial.weights import weight_breakdown

if TYPE_CHECKING:
    from harness.data.examples import Splits


@dataclass
class PreparedData:
    """Tokenized splits and the eval batches, built once per (checkpoint, data spec)."""

    tokenizer: Any
    tokenized: Any
    eval_batches: list[Any]
    split_hash: str
    source: str
    metrics: tuple[str, ...] = ()
    """The data's default task metrics (a built-in task's own, or chosen from the file's format)."""
    max_new_tokens: int = 0
    intermediate_batches: list[Any] = field(default_factory=list)
    """The batches intermediate evaluations score: `intermediate_subset` of the eval split (their
    `indices` are positions in the whole split)."""
    intermediate_examples: int = 0


@dataclass
class TrialCache:
    """The one place where anything outlives a trial: checkpoint paths and tokenized data."""

    checkpoints: dict[str, str] = field(default_factory=dict)
    data: dict[str, PreparedData] = field(default_factory=dict)
    kept: dict[str, KeptChoice] = field(default_factory=dict)
    """The layers kept in 16-bit per (checkpoint, quantization spec, calibration data), see kept_layers."""

    def kept_layers(self, config: TrialConfig, device: str) -> KeptChoice:
        """The layers `config` keeps in 16-bit (keep_16bit; none at 0), chosen once per quantization spec and data
        (the sensitivity scores behind them are cached on disk, harness.trial.sensitivity)."""
        from harness.trial.kept_layers import skip_list
        from harness.trial.sensitivity import kept_for

        quant = config.quant
        if quant.mode == "none" or (not quant.keep_16bit and not quant.kept_modules):
            return KeptChoice()
        path = self.checkpoint(config.model.name)
        key = stable_hash([path, device, quant.__dict__, config.data.__dict__])
        if key not in self.kept:
            data = self.prepared(config)
            choice = kept_for(quant, path, device, data.tokenized.train, data.tokenizer.pad_token_id)
            skip = tuple(skip_list(path, choice.modules)) if choice.modules else ()
            self.kept[key] = dataclasses.replace(choice, skip=skip)
        return self.kept[key]

    def checkpoint(self, model_name: str) -> str:
        if model_name not in self.checkpoints:
            self.checkpoints[model_name] = checkpoint_path(resolve_model(model_name))
        return self.checkpoints[model_name]

    def prepared(self, config: TrialConfig) -> PreparedData:
        from harness.data import intermediate_subset, load_examples, make_batches, tokenize_splits

        path = self.checkpoint(config.model.name)
        key = stable_hash([path, config.data.__dict__, config.eval.batch_size, config.eval.intermediate_size])
        if key not in self.data:
            tokenizer = load_tokenizer(path)
            splits = load_examples(config.data)
            tokenized = tokenize_splits(splits, tokenizer, config.data)
            eval_batches = make_batches(tokenized.eval, config.eval.batch_size, tokenizer.pad_token_id,
                                        shuffle_seed=None)
            subset = intermediate_subset(len(tokenized.eval), config.eval.intermediate_size, splits.split_hash)
            partial = make_batches([tokenized.eval[i] for i in subset], config.eval.batch_size,
                                   tokenizer.pad_token_id, shuffle_seed=None)
            partial = [dataclasses.replace(b, indices=tuple(subset[i] for i in b.indices)) for b in partial]
            self.data[key] = PreparedData(tokenizer, tokenized, eval_batches, splits.split_hash, splits.source,
                                          splits.metrics, splits.max_new_tokens, partial, len(subset))
        return self.data[key]


@dataclass
class TrialCallbacks:
    """How a running trial talks to whoever runs it (the study, a test, a script)."""

    on_step: Callable[[StepInfo], None] | None = None
    on_eval: Callable[[int, float], bool] | None = None
    """Called with (step, intermediate eval loss); returns True to stop the trial (pruned)."""


@dataclass
class Measured:
    """What a trial has measured so far, filled in as it goes: a trial that stops early (pruned, diverged,
    out of memory, failed) still reports all of it."""

    device: str
    device_name: str
    compute_dtype: str
    optimizer: str
    weights: dict[str, Any] | None = None
    """The frozen base model's weight memory as stored (weight_breakdown), before the adapter."""
    load_seconds: float | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    """Per step {step, loss, lr} and per eval {step, eval_loss}, in order."""
    last_eval: EvalScore | None = None
    last_eval_examples: int | None = None
    """Held-out examples `last_eval` scored (the intermediate subset)."""
    intermediate_seconds: float = 0.0
    """Wall time of the intermediate evaluations so far."""
    steps: int = 0
    train_tokens: int = 0
    train_seconds: float | None = None
    """Wall time from the end of loading to the last finished step (intermediate evals included)."""
    train_peak: float | None = None
    """Peak memory in MB of the training loop (None until it ends)."""
    eval_peak: float | None = None
    """Peak memory in MB of the final eval and generation."""
    seed: int | None = None
    """The trial's training seed: it seeds the data order and the adapter initialisation alike."""
    attention: str | None = None
    """transformers' attention implementation the trial ran with (models.attention_for)."""
    prompt_template: str | None = None
    """How the trial's prompts were formatted (harness.data.encode.prompt_template)."""
    kept: KeptChoice = field(default_factory=KeptChoice)
    """The linear layers kept in 16-bit (keep_16bit), and their weight memory (`kept_mb`)."""
    kept_mb: dict[str, float] = field(default_factory=dict)

    def described(self) -> dict[str, Any]:
        """The fields every result carries, whatever its status: where it ran and with what."""
        return {"device": self.device, "device_name": self.device_name, "compute_dtype": self.compute_dtype,
                "optimizer": self.optimizer, "attention": self.attention, "weights": self.weights or {},
                "prompt_template": self.prompt_template,
                "data_seed": self.seed, "init_seed": self.seed,
                "kept_16bit_modules": list(self.kept.modules), "kept_16bit_fraction": self.kept.fraction,
                "kept_16bit_added_mb": self.kept_mb.get("added_mb", 0.0),
                "kept_16bit_skip_modules": list(self.kept.skip)}


class MemoryMeter:
    """Peak memory of one trial: CUDA max allocated, or the process's peak resident set on CPU."""

    def __init__(self, device: str) -> None:
        self.device = device

    def reset(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
        else:
            _reset_peak_rss()

    def peak_mb(self) -> float | None:
        if self.device == "cuda":
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        return _peak_rss_mb()


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so the peak is this trial's own.
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float | None:
    try:
        return process_status_mb("VmHWM")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (VmHWM: peak resident, VmRSS: resident now) in MiB; None when the
    kernel does not report it. Raises OSError where there is no /proc (not Linux)."""
    with open("/proc/self/status") as handle:
        match = re.search(rf"{field}:\s+(\d+) kB", handle.read())
    return int(match.group(1)) / 1024 if match else None


def seed_all(seed: int) -> None:
    """Seed Python, NumPy and torch: what makes an adapter's initial weights depend on the seed alone."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lora_config(config: TrialConfig, model: Any = None) -> Any:
    """The trial's adapter as a peft LoraConfig (presets named in `model`'s family, see trial.families)."""
    from peft import LoraConfig

    lora = config.lora
    family = family_of_type(getattr(getattr(model, "config", None), "model_type", None))
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none",
                      target_modules=target_modules(lora.targets, family), task_type="CAUSAL_LM",
                      use_rslora=lora.use_rslora, use_dora=lora.use_dora, init_lora_weights=lora.peft_init)


def attach_adapter(base: Any, config: TrialConfig) -> Any:
    """A fresh LoRA adapter on the frozen base model (seeded), with gradient checkpointing when the config asks."""
    from peft import get_peft_model

    if config.train.gradient_checkpointing:
        enable_checkpointing(base)
    peft_config = lora_config(config, base)
    seed_all(config.train.seed)
    return get_peft_model(base, peft_config)


INITIAL_ADAPTER = "initial_adapter"
"""Where a PiSSA / OLoRA trial keeps its adapter as initialised (inside adapter_dir while it trains)."""


def keep_initial(model: Any, adapter_dir: str | None, lora: Any) -> str | None:
    """PiSSA and OLoRA move the base's principal components into the adapter and leave the residual in the
    base, so a trained adapter is only right on that residual base. Saving the initial adapter first lets
    `save_adapter` convert the trained one into a plain LoRA delta (rank 2r) on the original base."""
    if not (adapter_dir and lora.residual_init):
        return None
    path = os.path.join(adapter_dir, INITIAL_ADAPTER)
    init = model.peft_config["default"].init_lora_weights
    model.peft_config["default"].init_lora_weights = True  # loading the saved init must not re-run the SVD
    with _conversion_warning_filtered():
        model.save_pretrained(path)
    model.peft_config["default"].init_lora_weights = init
    return path


def save_adapter(model: Any, adapter_dir: str, initial: str | None) -> None:
    """adapter_model.safetensors + adapter_config.json, loadable by plain peft on the original base model
    (PiSSA / OLoRA converted to a plain LoRA delta with peft's `path_initial_model_for_weight_conversion`)."""
    import shutil

    if initial is None:
        model.save_pretrained(adapter_dir)
        return
    with _conversion_warning_filtered():  # peft loads the initial adapter beside the trained one to convert
        model.save_pretrained(adapter_dir, path_initial_model_for_weight_conversion=initial)
    shutil.rmtree(initial, ignore_errors=True)


@contextlib.contextmanager
def _conversion_warning_filtered() -> Iterator[None]:
    """peft's advice "PiSSA/OLoRA changes the base weights ... consider converting the adapter into a normal
    LoRA adapter", raised while we do exactly that conversion (and only then: filtered by its message)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(PiSSA|OLoRA) changes the base weights of the model")
        yield


def fault_hook(fault: str | None) -> Callable[[int, float], float] | None:
    """Test faults: make a trial raise, produce NaN, run out of memory, die, or crawl (`slow`: 30 s a step,
    so that a test can interrupt a trial that is surely running)."""
    if fault is None:
        return None

    def hook(step: int, loss: float) -> float:
        if fault == "slow":
            time.sleep(30.0)
        if fault == "raise":
            raise RuntimeError("injected failure")
        if fault == "oom":
            raise MemoryError("injected out-of-memory")
        if fault == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        return math.nan if fault == "nan" else loss

    return hook


def run_trial(config: TrialConfig, cache: TrialCache | None = None,
              callbacks: TrialCallbacks | None = None) -> TrialResult:
    """Fine-tune a fresh adapter as the config says and score it. Never raises for a bad trial."""
    cache = cache or TrialCache()
    callbacks = callbacks or TrialCallbacks()
    device = pick_device()
    meter = MemoryMeter(device)
    measured = measured_for(config, device)
    try:
        prepare_once(config, cache, device)  # one-time work (tokenizing, quantizing the cache) is not the trial's peak
        meter.reset()
        return _run(config, cache, callbacks, device, meter, measured)
    except StopTraining as stop:
        return _ended("pruned", str(stop), meter, measured)
    except NonFiniteLoss as err:
        return _ended("diverged", str(err), meter, measured)
    except Exception as err:  # failure is a result: the study goes on
        return _ended(*failure_of(err), meter, measured)
    finally:
        release_memory(device)


def score_intermediate(model: Any, data: PreparedData, device: str, measured: Measured, step: int) -> EvalScore:
    """An intermediate evaluation after `step` (the intermediate subset of the held-out split), recorded in
    `measured`: its history, its last score (what a pruned trial reports) and the seconds it took."""
    score = eval_loss(model, data.intermediate_batches, device)
    measured.history.append({"step": step, "eval_loss": score.loss, "eval_examples": data.intermediate_examples})
    measured.last_eval, measured.last_eval_examples = score, data.intermediate_examples
    measured.intermediate_seconds += score.seconds
    return score


def measured_for(config: TrialConfig, device: str) -> Measured:
    """A trial's measurements before anything ran: where it runs and with what (Measured.described)."""
    return Measured(device, device_name(device), str(compute_dtype(device)).replace("torch.", ""),
                    optimizer_name(device), seed=config.train.seed,
                    attention=attention_for(device, config.data.max_seq_len))


def failure_of(err: Exception) -> tuple[str, str]:
    """(status, one-line reason) of a trial that raised: `oom` for running out of host or device memory,
    else `failed`."""
    if isinstance(err, MemoryError):
        return "oom", f"out of memory: {err}".strip(": ")
    return ("oom" if type(err).__name__ == "OutOfMemoryError" else "failed"), one_line(err)


def prepare_once(config: TrialConfig, cache: TrialCache, device: str) -> None:
    """What is built once and then reused: the tokenized data and, for a quantized mode, the cached
    quantized checkpoint (building it peaks well above a trial, so it must not count as one)."""
    cache.prepared(config)
    if config.quant.mode != "none":
        kept = cache.kept_layers(config, device).modules  # measuring sensitivity once is not the trial's either
        quantized_checkpoint(cache.checkpoint(config.model.name), config.quant.mode, device, kept)


def release_memory(device: str) -> None:
    """Give a finished trial's memory back: collect garbage, empty CUDA's cache, and on Linux
    return freed heap pages to the OS (without malloc_trim, glibc keeps them and a long-lived
    worker's resident memory creeps up by megabytes per trial)."""
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def training_epochs(data: PreparedData, config: TrialConfig) -> Callable[[int], list[Any]]:
    """`make_epoch(e)`: the training micro-batches of epoch e for `config`, reshuffled per epoch, seeded by its
    seed; grad_accum of them per optimizer step, each step the same sequences whatever the split
    (harness.data.make_step_batches: a config fitted to a memory budget trains as the one it was fitted from)."""
    from harness.data import make_step_batches

    def make_epoch(epoch: int) -> list[Any]:
        return make_step_batches(data.tokenized.train, config.train.batch_size, config.train.grad_accum,
                                 data.tokenizer.pad_token_id, shuffle_seed=config.train.seed * 100_003 + epoch)

    return make_epoch


def _run(config: TrialConfig, cache: TrialCache, callbacks: TrialCallbacks, device: str,
         meter: MemoryMeter, measured: Measured) -> TrialResult:
    data = cache.prepared(config)
    measured.prompt_template = prompt_template(data.tokenizer)
    path = cache.checkpoint(config.model.name)
    started = time.perf_counter()
    kept = cache.kept_layers(config, device)
    base = load_base_model(path, config.quant.mode, device, config.data.max_seq_len, kept.modules)
    measured.attention = base.config._attn_implementation  # the family may override attention_for's rule
    measured.weights = weights = weight_breakdown(base)  # frozen weights as stored, before the adapter
    measured.kept, measured.kept_mb = kept, kept_memory(base, kept, config.quant.mode)
    model = attach_adapter(base, config)
    initial = keep_initial(model, config.adapter_dir, config.lora)
    measured.load_seconds = load_seconds = time.perf_counter() - started
    measured.trainable_params, measured.total_params = _param_counts(model)
    history = measured.history

    make_epoch = training_epochs(data, config)

    def on_eval(step: int) -> bool:
        score = score_intermediate(model, data, device, measured, step)
        return bool(callbacks.on_eval and callbacks.on_eval(step, score.loss))

    def on_step(info: StepInfo) -> None:
        history.append({"step": info.step, "loss": info.loss, "lr": info.lr})
        measured.steps, measured.train_tokens = info.step, measured.train_tokens + info.tokens
        measured.train_seconds = time.perf_counter() - started - load_seconds
        if callbacks.on_step:
            callbacks.on_step(info)

    outcome = train(model, make_epoch, config.train, device, on_step=on_step, on_eval=on_eval,
                    loss_hook=fault_hook(config.fault))
    measured.train_peak = train_peak = meter.peak_mb()
    release_memory(device)  # training's freed memory goes back first, as the planner's probe measures it
    meter.reset()  # the final eval and generation get a peak of their own
    score = eval_loss(model, data.eval_batches, device)
    examples = len(data.tokenized.eval)
    history.append({"step": outcome.steps, "eval_loss": score.loss, "eval_examples": examples})
    if not math.isfinite(score.loss):
        raise NonFiniteLoss(f"non-finite eval loss ({score.loss}) after step {outcome.steps}")
    generated = score_task(model, data, config, device)
    measured.eval_peak = eval_peak = meter.peak_mb()
    adapter_dir = None
    if config.adapter_dir:
        save_adapter(model, config.adapter_dir, initial)
        adapter_dir = config.adapter_dir
    return TrialResult(
        status="complete", eval_loss=score.loss, perplexity=score.perplexity, train_loss=outcome.final_loss,
        steps=outcome.steps, peak_memory_mb=_larger(train_peak, eval_peak),
        train_peak_memory_mb=train_peak, eval_peak_memory_mb=eval_peak,
        train_seconds=outcome.seconds, eval_examples=examples,
        eval_seconds=score.seconds + (generated.seconds if generated else 0.0), load_seconds=load_seconds,
        generation_seconds=generated.seconds if generated else 0.0,
        intermediate_eval_seconds=measured.intermediate_seconds,
        tokens_per_second=outcome.tokens / outcome.seconds if outcome.seconds else None,
        train_tokens=outcome.tokens, trainable_params=measured.trainable_params,
        total_params=measured.total_params,
        metrics={**(generated.metrics if generated else {}), "base_model_mb": weights["total_mb"]},
        history=history, adapter_dir=adapter_dir, samples=generated.samples if generated else [],
        per_example=per_example_scores(score, generated), **measured.described())


def kept_memory(base: Any, kept: KeptChoice, mode: str) -> dict[str, float]:
    """The kept layers' weight memory in the loaded base (kept_layers.kept_weight_mb: as stored, as they would be
    quantized, and what keeping them adds), MiB; empty when none are kept."""
    from harness.trial.kept_layers import kept_weight_mb

    if not kept.modules:
        return {}
    modules = dict(base.named_modules())
    sizes = {name: modules[name].weight.numel() for name in kept.modules}
    return kept_weight_mb(sizes, kept.modules, mode, modules[kept.modules[0]].weight.element_size())


def per_example_scores(score: EvalScore, generated: Any) -> dict[str, list[float]]:
    """Per held-out example: loss and scored tokens, and the task metrics of the generated ones."""
    return {"loss": score.example_losses, "tokens": score.example_tokens,
            **(generated.per_example if generated else {})}


def _larger(a: float | None, b: float | None) -> float | None:
    present = [v for v in (a, b) if v is not None]
    return max(present) if present else None


def _param_counts(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def _ended(status: str, reason: str, meter: MemoryMeter, measured: Measured) -> TrialResult:
    """A trial that did not complete still reports what it measured before it stopped."""
    last = measured.last_eval
    train_seconds = measured.train_seconds
    tokens = measured.train_tokens
    # Stopped inside the training loop: its peak is the meter's now.
    train_peak = measured.train_peak if measured.train_peak is not None else meter.peak_mb()
    return TrialResult(
        status=status, reason=reason, eval_loss=last.loss if last else None,
        perplexity=last.perplexity if last else None, eval_examples=measured.last_eval_examples if last else None,
        intermediate_eval_seconds=measured.intermediate_seconds, steps=measured.steps,
        peak_memory_mb=_larger(train_peak, measured.eval_peak), train_peak_memory_mb=train_peak,
        train_seconds=train_seconds, load_seconds=measured.load_seconds,
        tokens_per_second=tokens / train_seconds if train_seconds else None, train_tokens=tokens,
        trainable_params=measured.trainable_params, total_params=measured.total_params,
        metrics={"base_model_mb": measured.weights["total_mb"]} if measured.weights is not None else {},
        history=measured.history, **measured.described())


def task_metric_names(config: TrialConfig, data: PreparedData | Splits) -> tuple[str, ...]:
    """The metrics to score on generated answers: the eval spec's, else the data's defaults (from the prepared
    data of a trial, or the loaded splits before any tokenizer exists: `harness advise`)."""
    if data.max_new_tokens == 0 and not config.eval.max_new_tokens:
        return ()  # plain text: nothing to generate from
    return data.metrics if config.eval.metrics is None else config.eval.metrics


def score_task(model: Any, data: PreparedData, config: TrialConfig, device: str) -> Any:
    """Greedy answers for the first `generate_size` held-out prompts, scored with the task metrics."""
    from harness.trial.generation import score_generations

    names = task_metric_names(config, data)
    size = min(config.eval.generate_size, len(data.tokenized.eval_prompts))
    if not names or size == 0:
        return None
    return score_generations(model, data.tokenizer, data.tokenized.eval_prompts[:size],
                             data.tokenized.eval_references[:size], names,
                             max_new_tokens=config.eval.max_new_tokens or data.max_new_tokens,
                             batch_size=config.eval.generate_batch_size, device=device, n_samples=config.eval.samples)


@dataclass(frozen=True)
class TaskScore:
    """The task metrics of a saved adapter on the held-out split (generated answers scored)."""

    metrics: dict[str, float]
    samples: list[dict[str, str]]
    per_example: dict[str, list[float]]
    seconds: float


def score_saved_adapter(config: TrialConfig, adapter_dir: str, cache: TrialCache | None = None) -> TaskScore:
    """What a trial's final evaluation would have generated and scored, for the adapter it saved: the base model
    in `config`'s mode with the adapter loaded, greedy answers to the first `generate_size` held-out prompts
    (`--task-metrics top-K` scores the K best trials this way when the sweep ends)."""
    from peft import PeftModel

    cache = cache or TrialCache()
    device = pick_device()
    data = cache.prepared(config)
    base = load_base_model(cache.checkpoint(config.model.name), config.quant.mode, device,
                            config.data.max_seq_len, cache.kept_layers(config, device).modules)
    model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()
    try:
        generated = score_task(model, data, config, device)
        if generated is None:
            return TaskScore({}, [], {}, 0.0)
        return TaskScore(dict(generated.metrics), list(generated.samples), dict(generated.per_example),
                         generated.seconds)
    finally:
        del model, base
        release_memory(device)


@dataclass(frozen=True)
class BaselineScore:
    """The untuned base model on the held-out split, in one quantization mode: the row every trial of
    that mode is read against (and, against 16-bit, the cost of quantizing before any training)."""

    mode: str
    eval_loss: float
    tokens: int
    seconds: float
    metrics: dict[str, float]
    samples: list[dict[str, str]]
    per_example: dict[str, list[float]] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)


def run_baseline(config: TrialConfig, cache: TrialCache | None = None) -> BaselineScore:
    """Eval loss and task metrics of the untuned base model in `config.quant.mode` on the held-out split."""
    cache = cache or TrialCache()
    device = pick_device()
    data = cache.prepared(config)
    model = load_base_model(cache.checkpoint(config.model.name), config.quant.mode, device,
                            config.data.max_seq_len)
    try:
        score = eval_loss(model, data.eval_batches, device)
        generated = score_task(model, data, config, device)
        return BaselineScore(config.quant.mode, score.loss, score.tokens,
                             score.seconds + (generated.seconds if generated else 0.0),
                             generated.metrics if generated else {}, generated.samples if generated else [],
                             per_example_scores(score, generated), weight_breakdown(model))
    finally:
        del model
        release_memory(device)
