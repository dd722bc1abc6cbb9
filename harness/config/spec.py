"""Frozen, validated config types: one per concern, each checking itself when built.

Everything a trial needs is in a :class:`TrialConfig`; everything a sweep needs is in a
:class:`SweepSpec`. Errors are :class:`SpecError` with a message that names the field and
the fix, so the CLI can print one line and exit 2.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar, get_args

Quantization = Literal["none", "int8", "nf4", "nf4-dq", "fp4", "fp4-dq"]
QUANTIZATION_MODES: tuple[str, ...] = get_args(Quantization)

TargetPreset = Literal["all-linear", "attention", "mlp"]
TARGET_PRESETS: tuple[str, ...] = get_args(TargetPreset)

Scheduler = Literal["cosine", "linear", "constant", "warmup_stable_decay"]
SCHEDULERS: tuple[str, ...] = get_args(Scheduler)

LORA_INITS: tuple[str, ...] = ("true", "gaussian", "pissa", "olora")
"""peft `init_lora_weights` values a trial can use (`true`: peft's default, B = 0); `pissa_niter_N` (PiSSA by
N iterations of randomized SVD) is also accepted. Principal-component inits (PiSSA, PiSSA-niter, OLoRA)
replace the base weights by a residual, so their adapters are saved converted to plain LoRA (rank 2r)."""
_REFUSED_INITS = {
    "false": "init_lora_weights false starts B random (the adapter changes the model before training); use true",
    "loftq": "init_lora_weights loftq is not supported: it needs the base loaded unquantized and quantized by LoftQ "
             "itself, which bypasses the study's quantization mode; use pissa (16-bit) or olora",
}
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

TrialStatus = Literal["complete", "pruned", "diverged", "oom", "failed"]


class SpecError(ValueError):
    """A bad value in a config, flag or file. Its message is one line that names the field."""


def one_line(err: BaseException | str, limit: int = 300) -> str:
    """An exception as `Type: first line of its message` (a message string: its first line), at most `limit`
    characters: how errors are shown in records, notes and one-line failures."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, str):
        return text[:limit]
    line = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return line[:limit]


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise SpecError(message)


def _positive(name: str, value: float) -> None:
    _check(isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0,
           f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class ModelSpec:
    """Which base model to fine-tune."""

    name: str = "smollm2-135m"
    """A built-in name (`smollm2-135m`, `tiny-llama`), a hub id, a model folder or a `.gguf` file."""

    def __post_init__(self) -> None:
        _check(isinstance(self.name, str) and self.name.strip() != "",
               "model must be a non-empty name or path (try --model tiny-llama)")


@dataclass(frozen=True)
class QuantSpec:
    """How the frozen base weights are stored while the adapter trains."""

    mode: Quantization = "none"
    """`none` is 16-bit LoRA (bf16 where the device supports it); the rest are QLoRA modes."""

    def __post_init__(self) -> None:
        _check(self.mode in QUANTIZATION_MODES,
               f"quantization {self.mode!r} is not one of {', '.join(QUANTIZATION_MODES)}")


@dataclass(frozen=True)
class LoraSpec:
    """The adapter attached to the frozen base model."""

    r: int = 16
    """Rank of the update matrices."""
    alpha: float = 32.0
    """Scaling numerator: the update is scaled by alpha / r (alpha usually r or 2r)."""
    dropout: float = 0.0
    """Dropout on the adapter input."""
    targets: str = "all-linear"
    """A preset, `all-linear` (attention and MLP projections), `attention` (q, k, v, o) or `mlp` (gate, up,
    down), or module names separated by commas (`q_proj,v_proj`; checked against the model before a sweep)."""
    use_rslora: bool = False
    """rank-stabilised LoRA: the update is scaled by alpha / sqrt(r) instead of alpha / r."""
    use_dora: bool = False
    """DoRA: a trained magnitude vector per output feature on top of the low-rank direction update."""
    init: str = "true"
    """peft `init_lora_weights`: one of LORA_INITS or `pissa_niter_N`."""
    pissa_niter: int = 0
    """With init `pissa`: iterations of randomized SVD (peft's `pissa_niter_N`); 0 is the full SVD."""

    def __post_init__(self) -> None:
        _check(isinstance(self.r, int) and not isinstance(self.r, bool) and self.r >= 1,
               f"lora_r must be a positive integer, got {self.r!r}")
        _positive("lora_alpha", self.alpha)
        _check(isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0,
               f"lora_dropout must be in [0, 1), got {self.dropout!r}")
        _check_targets(self.targets)
        for name in ("use_rslora", "use_dora"):
            _check(isinstance(getattr(self, name), bool), f"{name} must be true or false, got {getattr(self, name)!r}")
        _check(isinstance(self.init, str), f"init_lora_weights must be a name, got {self.init!r}")
        _check(self.init not in _REFUSED_INITS, _REFUSED_INITS.get(self.init, ""))
        _check(self.init in LORA_INITS or re.fullmatch(r"pissa_niter_[1-9][0-9]*", self.init) is not None,
               f"init_lora_weights {self.init!r} is not one of {', '.join(LORA_INITS)} or pissa_niter_N")
        _check(isinstance(self.pissa_niter, int) and not isinstance(self.pissa_niter, bool) and self.pissa_niter >= 0,
               f"pissa_niter must be a non-negative integer, got {self.pissa_niter!r}")
        _check(self.pissa_niter == 0 or self.init == "pissa",
               f"pissa_niter {self.pissa_niter} applies only with init_lora_weights pissa, not {self.init!r}")

    @property
    def peft_init(self) -> bool | str:
        """The `init_lora_weights` value peft takes (True for `true`)."""
        if self.init == "true":
            return True
        return f"pissa_niter_{self.pissa_niter}" if self.init == "pissa" and self.pissa_niter else self.init

    @property
    def residual_init(self) -> bool:
        """PiSSA and OLoRA: the adapter starts from the base's principal components and the base keeps the
        residual, so the trained adapter alone is not a delta on the original base (see trial.save_adapter)."""
        return self.init.startswith("pissa") or self.init == "olora"


def _check_targets(targets: Any) -> None:
    """A preset or module names separated by commas (no duplicates, no empty names)."""
    _check(isinstance(targets, str) and targets.strip() != "",
           f"target_modules must be one of {', '.join(TARGET_PRESETS)} or module names, got {targets!r}")
    if targets in TARGET_PRESETS:
        return
    names = [n.strip() for n in targets.split(",")]
    bad = next((n for n in names if not _MODULE_NAME.match(n)), None)
    _check(bad is None, f"target_modules {targets!r} is not one of {', '.join(TARGET_PRESETS)} or a list of module "
                        f"names ({bad!r} is not a module name)")
    _check(len(set(names)) == len(names), f"target_modules {targets!r} names a module twice")


def explicit_modules(targets: str) -> list[str] | None:
    """The module names of an explicit target_modules list, or None for a preset."""
    return None if targets in TARGET_PRESETS else [n.strip() for n in targets.split(",")]


@dataclass(frozen=True)
class TrainSpec:
    """The short fine-tune. Field names follow transformers.TrainingArguments where one exists."""

    learning_rate: float = 2e-4
    """Peak learning rate of AdamW (after warm-up)."""
    max_steps: int = 30
    """Optimizer steps per trial."""
    batch_size: int = 8
    """Sequences per micro-batch (per_device_train_batch_size)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step: effective batch = batch_size * grad_accum."""
    warmup_ratio: float = 0.05
    """Fraction of max_steps spent warming the learning rate up from 0."""
    weight_decay: float = 0.01
    """AdamW weight decay on the adapter weights."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 turns clipping off."""
    scheduler: Scheduler = "cosine"
    """Learning-rate shape after the warm-up (transformers' lr_scheduler_type): cosine or linear decay to 0,
    constant (flat at the peak after the warm-up: transformers' `constant_with_warmup`; warmup_ratio 0 for none)
    or warmup_stable_decay (flat, then transformers' default cosine decay to 0 over the last decay_ratio of the
    steps)."""
    decay_ratio: float = 0.1
    """warmup_stable_decay only: the fraction of max_steps spent decaying to 0 at the end."""
    loraplus_lr_ratio: float = 1.0
    """LoRA+: the B matrices learn at learning_rate x this ratio (peft's create_loraplus_optimizer); 1 is plain
    LoRA (one learning rate for A and B)."""
    seed: int = 0
    """Seeds adapter initialisation, dropout and batch order."""
    eval_every: int = 0
    """Report an intermediate eval loss every k optimizer steps (0: only at the end)."""

    def __post_init__(self) -> None:
        _positive("learning_rate", self.learning_rate)
        _check(self.learning_rate < 1.0, f"learning_rate {self.learning_rate} is too large (expected < 1)")
        for name in ("max_steps", "batch_size", "grad_accum"):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                   f"{name} must be a positive integer, got {value!r}")
        _check(0.0 <= self.warmup_ratio < 1.0, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        _check(self.weight_decay >= 0.0, f"weight_decay must be >= 0, got {self.weight_decay!r}")
        _check(self.max_grad_norm >= 0.0, f"max_grad_norm must be >= 0, got {self.max_grad_norm!r}")
        _check(self.scheduler != "constant_with_warmup",
               "scheduler constant_with_warmup: write constant (harness's constant keeps the warmup_ratio warm-up; "
               "recommended.yaml names it constant_with_warmup for transformers)")
        _check(self.scheduler in SCHEDULERS, f"scheduler {self.scheduler!r} is not one of {', '.join(SCHEDULERS)}")
        _check(isinstance(self.decay_ratio, (int, float)) and 0.0 < self.decay_ratio <= 1.0,
               f"decay_ratio must be in (0, 1], got {self.decay_ratio!r}")
        _check(self.scheduler != "warmup_stable_decay" or self.warmup_ratio + self.decay_ratio <= 1.0,
               f"warmup_ratio {self.warmup_ratio} + decay_ratio {self.decay_ratio} exceed the run "
               "(warmup_stable_decay needs their sum <= 1)")
        _positive("loraplus_lr_ratio", self.loraplus_lr_ratio)
        _check(self.loraplus_lr_ratio >= 1.0,
               f"loraplus_lr_ratio must be >= 1 (B learns ratio times faster than A; 1 is plain LoRA), "
               f"got {self.loraplus_lr_ratio!r}")
        _check(isinstance(self.eval_every, int) and self.eval_every >= 0,
               f"eval_every must be a non-negative integer, got {self.eval_every!r}")

    @property
    def warmup_steps(self) -> int:
        """Warm-up length in optimizer steps (rounded up, as TrainingArguments does)."""
        return math.ceil(self.max_steps * self.warmup_ratio)

    @property
    def decay_steps(self) -> int:
        """warmup_stable_decay: the steps of the final decay (rounded up)."""
        return math.ceil(self.max_steps * self.decay_ratio)


DATA_FORMATS: tuple[str, ...] = ("messages", "prompt_completion", "instruction", "text", "classification")
"""Record shapes a data file or hub dataset can have (DataSpec.format, besides `auto`)."""
DATA_COLUMNS: tuple[str, ...] = ("messages", "prompt", "completion", "instruction", "input", "output", "text",
                                 "label", "split")
"""Column names the data formats read (the keys DataSpec.column_map may map)."""


def _column_pairs(value: Any) -> tuple[tuple[str, str], ...]:
    """column_map as sorted (ours, theirs) pairs, from pairs or a mapping (YAML, JSON round trip)."""
    try:
        pairs = tuple((k, v) for k, v in (value.items() if isinstance(value, dict) else value))
    except (TypeError, ValueError):
        raise SpecError(f"column_map must map our column names to yours, e.g. {{prompt: question}}, "
                        f"got {value!r}") from None
    for ours, theirs in pairs:
        _check(ours in DATA_COLUMNS, f"column_map key {ours!r} is not one of {', '.join(DATA_COLUMNS)}")
        _check(isinstance(theirs, str) and theirs != "", f"column_map[{ours!r}] must be a column name, got {theirs!r}")
    _check(len({ours for ours, _ in pairs}) == len(pairs), "column_map names one of our columns twice")
    _check(len({theirs for _, theirs in pairs}) == len(pairs), "column_map maps two of our columns to one column")
    return tuple(sorted(pairs))


@dataclass(frozen=True)
class DataSpec:
    """Where the examples come from and how they become token sequences."""

    name: str = "stdlib-qa"
    """A built-in dataset name, a local data file (JSONL, JSON, CSV, Parquet) or folder, or a hub dataset id."""
    max_seq_len: int = 128
    """Longer examples are truncated (and counted)."""
    eval_fraction: float = 0.1
    """Held-out fraction when the data has no validation split of its own."""
    eval_size: int = 64
    """At most this many held-out examples are scored (the same ones for every trial)."""
    train_size: int = 0
    """Use at most this many training examples (0: all)."""
    completion_only_loss: bool = True
    """Train and score only on the completion (assistant) tokens."""
    format: str = "auto"
    """Record shape of a file or hub dataset: `auto` (detected from its columns) or one of DATA_FORMATS."""
    column_map: tuple[tuple[str, str], ...] = ()
    """(our column name, the data's column name) pairs, e.g. (("prompt", "question"),); YAML may give a mapping."""
    system_prompt: str | None = None
    """Prepended as a system message to every prompt that has none (needs a chat template)."""
    template: str | None = None
    """Classification prompt with `{text}` and optionally `{labels}`; None: DEFAULT_TEMPLATE in harness.data."""

    def __post_init__(self) -> None:
        _check(isinstance(self.name, str) and self.name.strip() != "", "data must be a name or a file path")
        _check(self.format in ("auto",) + DATA_FORMATS,
               f"format {self.format!r} is not one of auto, {', '.join(DATA_FORMATS)}")
        object.__setattr__(self, "column_map", _column_pairs(self.column_map))  # frozen: normalise once
        for key in ("system_prompt", "template"):
            value = getattr(self, key)
            _check(value is None or (isinstance(value, str) and value.strip() != ""),
                   f"{key} must be a non-empty string or null, got {value!r}")
        _check(isinstance(self.max_seq_len, int) and self.max_seq_len >= 8,
               f"max_seq_len must be an integer >= 8, got {self.max_seq_len!r}")
        _check(0.0 < self.eval_fraction < 1.0, f"eval_fraction must be in (0, 1), got {self.eval_fraction!r}")
        _check(isinstance(self.eval_size, int) and self.eval_size >= 1,
               f"eval_size must be a positive integer, got {self.eval_size!r}")
        _check(isinstance(self.train_size, int) and self.train_size >= 0,
               f"train_size must be a non-negative integer, got {self.train_size!r}")


@dataclass(frozen=True)
class EvalSpec:
    """How the held-out split is scored."""

    batch_size: int = 16
    """Sequences per eval forward pass (and per generation batch)."""
    metrics: tuple[str, ...] | None = None
    """Task metrics scored on generated answers; None: the data's defaults (a built-in task's own,
    or chosen from the file's format); () turns generation off."""
    generate_size: int = 32
    """Generate answers for this many held-out examples (the first ones of the eval split)."""
    max_new_tokens: int = 0
    """Generation budget per answer in tokens; 0: the data's default."""
    samples: int = 5
    """Generated samples kept per trial (trials.jsonl and a W&B table)."""

    def __post_init__(self) -> None:
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1,
               f"eval batch_size must be a positive integer, got {self.batch_size!r}")
        if self.metrics is not None:
            metrics = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
            _check(all(isinstance(m, str) and m for m in metrics), f"eval metrics must be names, got {metrics!r}")
            object.__setattr__(self, "metrics", metrics)
        for name in ("generate_size", "max_new_tokens", "samples"):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                   f"eval {name} must be a non-negative integer, got {value!r}")


def combination_error(mode: str, init: str, use_dora: bool = False) -> str | None:
    """Why a quantization mode and a LoRA variant cannot train together here, or None. PiSSA takes the SVD of
    the base weights, which peft refuses on quantized (int8 / 4-bit) weights. DoRA on an int8 base trains but
    its first eval fails inside bitsandbytes (peft 0.21, bitsandbytes 0.50 on the CPU; CUDA not checked), so
    it is refused rather than discovered as failed trials. rsLoRA, OLoRA and LoRA+ train in every mode, and
    DoRA in the 4-bit ones (tests/test_variants.py trains them on int8 and NF4-DQ)."""
    if mode != "none" and init.startswith("pissa"):
        return (f"init_lora_weights {init} cannot be combined with quantization {mode}: peft computes PiSSA's SVD "
                "on 16-bit weights only; use quantization none, or init olora / true with this mode")
    if mode == "int8" and use_dora:
        return ("use_dora true cannot be combined with quantization int8: DoRA's eval on an int8 base fails inside "
                "bitsandbytes here; use a 4-bit mode (nf4, nf4-dq, fp4, fp4-dq) or none with DoRA")
    return None


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs: a trial is a function of this and nothing else."""

    model: ModelSpec = field(default_factory=ModelSpec)
    quant: QuantSpec = field(default_factory=QuantSpec)
    lora: LoraSpec = field(default_factory=LoraSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    data: DataSpec = field(default_factory=DataSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    adapter_dir: str | None = None
    """Where to save the trained adapter (safetensors); None keeps nothing."""
    fault: str | None = None
    """Test hook: `raise`, `nan`, `oom`, `kill` or `slow` makes the trial fail or crawl in that way (never set by users)."""

    def __post_init__(self) -> None:
        problem = combination_error(self.quant.mode, self.lora.init, self.lora.use_dora)
        _check(problem is None, problem or "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialConfig":
        return cls(
            model=ModelSpec(**data.get("model", {})),
            quant=QuantSpec(**data.get("quant", {})),
            lora=LoraSpec(**data.get("lora", {})),
            train=TrainSpec(**data.get("train", {})),
            data=DataSpec(**data.get("data", {})),
            eval=EvalSpec(**data.get("eval", {})),
            adapter_dir=data.get("adapter_dir"),
            fault=data.get("fault"),
        )


@dataclass(frozen=True)
class TrialResult:
    """What came out of one trial. Failure is a result, not an exception."""

    status: TrialStatus
    reason: str | None = None
    """One line saying why the trial did not complete (None when it did)."""
    eval_loss: float | None = None
    """Mean cross-entropy per scored token on the held-out split (nats)."""
    perplexity: float | None = None
    train_loss: float | None = None
    """Mean training loss over the last 5 optimizer steps."""
    steps: int = 0
    """Optimizer steps actually taken."""
    peak_memory_mb: float | None = None
    """The larger of the training and eval peaks (MiB). CUDA: max allocated; CPU: the peak resident
    memory of the trial process."""
    train_peak_memory_mb: float | None = None
    """Peak from loading the base model to the last optimizer step (intermediate evals included), MiB;
    building a cached quantized checkpoint is done before and not counted."""
    eval_peak_memory_mb: float | None = None
    """Peak of the final eval and generation alone (the meter is reset before them), MiB."""
    train_seconds: float | None = None
    eval_seconds: float | None = None
    load_seconds: float | None = None
    tokens_per_second: float | None = None
    """Real (non-padding) training tokens per second of training time."""
    train_tokens: int = 0
    trainable_params: int | None = None
    total_params: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    """Per optimizer step: step, loss, lr; and eval_loss where evaluated."""
    adapter_dir: str | None = None
    device: str | None = None
    """`cuda` or `cpu`."""
    device_name: str | None = None
    """What the trial ran on: the GPU's name, or the CPU's model name with its core count."""
    compute_dtype: str | None = None
    """dtype of the 16-bit weights and of 4-bit compute (`bfloat16`, `float16` or `float32`)."""
    optimizer: str | None = None
    """The optimizer the adapter trained with, as a TrainingArguments `optim` value (`adamw_torch`...)."""
    weights: dict[str, Any] = field(default_factory=dict)
    """The base model's weight memory by kind (MiB): see weights.weight_breakdown."""
    per_example: dict[str, list[float]] = field(default_factory=dict)
    """Per held-out example, in eval-split order: `loss` (mean over its scored tokens), `tokens` (its
    scored tokens), and each task metric's score on the generated examples (the first generate_size)."""
    samples: list[dict[str, str]] = field(default_factory=list)
    """A few generated answers: prompt, prediction, reference."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialResult":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def stable_hash(obj: Any) -> str:
    """A short hash of a JSON-able object that is stable across runs and machines."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# objective name -> direction. Metrics of the trial result that a study can optimize.
OBJECTIVES: dict[str, str] = {
    "eval_loss": "minimize",
    "perplexity": "minimize",
    "peak_memory_mb": "minimize",
    "train_seconds": "minimize",
    "tokens_per_second": "maximize",
}
# Task metrics (scored on generated answers; see harness.metrics) that a study can optimize.
TASK_METRICS: dict[str, str] = {"exact_match": "maximize", "accuracy": "maximize", "rouge_l": "maximize",
                                "token_f1": "maximize", "contains_answer": "maximize"}
_UNPINNED = {("train", "learning_rate"), ("train", "max_steps"), ("train", "seed"), ("train", "eval_every"),
             ("data_options", "name")}
"""Settings a resumed study may change: sampled per trial, given elsewhere, or not measured."""


def direction_of(objective: str) -> str:
    """`minimize` or `maximize`: the direction a study optimizes an objective in."""
    return OBJECTIVES.get(objective, TASK_METRICS.get(objective, "maximize"))


T = TypeVar("T")


def better_sign(direction: str) -> float:
    """+1 when lower values are better (`minimize`), -1 when higher are (`maximize`): a value times this
    sign is smallest for the best."""
    _check(direction in ("minimize", "maximize"), f"direction must be minimize or maximize, got {direction!r}")
    return 1.0 if direction == "minimize" else -1.0


def ranked(items: Iterable[T], direction: str, value: Callable[[T], float | None] | None = None) -> list[T]:
    """Items best first under an objective's direction (`minimize` / `maximize`), by `value(item)` (the
    item itself when no `value` is given). Items without a value go last; ties keep their order. The one
    home of "best first": every table, pick and plan that ranks configs goes through here."""
    sign = better_sign(direction)
    get = value or (lambda item: item)  # type: ignore[assignment,return-value]

    def key(item: T) -> tuple[int, float]:
        score = get(item)
        return (1, 0.0) if score is None or score != score else (0, sign * float(score))

    return sorted(items, key=key)


def perplexity(eval_loss: float) -> float:
    """exp of the mean token loss (nats), capped at e^50 so a diverged run stays a finite number."""
    return math.exp(min(float(eval_loss), 50.0))


def study_out_dir(study: str, out: str | None = None) -> str:
    """A study's output folder (trials.jsonl, adapters, W&B runs): `out`, else experiments/<study>."""
    return out or f"experiments/{study}"


def study_storage_url(study: str, storage: str | None = None, out: str | None = None) -> str:
    """A study's Optuna storage: `storage`, else the SQLite file in its output folder."""
    return storage or f"sqlite:///{study_out_dir(study, out)}/study.db"


def study_reports_dir(study: str, reports_dir: str | None = None) -> str:
    """Where a study's report files go: `reports_dir`, else reports/<study>."""
    return reports_dir or f"reports/{study}"


SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "hyperband")
WANDB_MODES = ("auto", "offline", "online", "disabled")


@dataclass(frozen=True)
class SweepSpec:
    """One sweep: which study, on what, how many trials, where results go. Flags override YAML."""

    study: str = "default"
    """Study name; outputs go to experiments/<study>/ unless `out` says otherwise."""
    model: str = "smollm2-135m"
    data: str = "stdlib-qa"
    space: str = "default"
    """A search-space file, or the name of one in search_spaces/ (`default`, `lora_vs_qlora`, `tiny`)."""
    trials: int = 8
    """How many more finished trials to run (a resumed study adds this many)."""
    max_steps: int = 30
    seed: int = 0
    out: str | None = None
    storage: str | None = None
    """Any Optuna storage URL; default sqlite:///<out>/study.db."""
    wandb: str = "auto"
    """`auto` (online when an API key is set, else offline), offline, online or disabled."""
    sampler: str = "tpe"
    pruner: str = "none"
    objectives: tuple[str, ...] = ("eval_loss",)
    train: TrainSpec = field(default_factory=TrainSpec)
    """Fixed training settings (learning_rate and max_steps are overridden per trial)."""
    data_spec: DataSpec = field(default_factory=DataSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)

    def __post_init__(self) -> None:
        _check(isinstance(self.study, str) and self.study.strip() != "" and "/" not in self.study,
               f"study must be a name without '/', got {self.study!r}")
        _check(isinstance(self.trials, int) and self.trials >= 1, f"trials must be >= 1, got {self.trials!r}")
        _check(isinstance(self.max_steps, int) and self.max_steps >= 1,
               f"max_steps must be >= 1, got {self.max_steps!r}")
        _check(self.sampler in SAMPLERS, f"sampler {self.sampler!r} is not one of {', '.join(SAMPLERS)}")
        _check(self.pruner in PRUNERS, f"pruner {self.pruner!r} is not one of {', '.join(PRUNERS)}")
        _check(self.wandb in WANDB_MODES, f"wandb {self.wandb!r} is not one of {', '.join(WANDB_MODES)}")
        _check(len(self.objectives) >= 1, "objectives must name at least one metric, e.g. eval_loss")
        for name in self.objectives:
            _check(name in OBJECTIVES or name in TASK_METRICS,
                   f"objective {name!r} is not one of {', '.join([*OBJECTIVES, *TASK_METRICS])}")
        _check(len(set(self.objectives)) == len(self.objectives), "objectives has duplicates")
        _check(self.pruner == "none" or len(self.objectives) == 1,
               "a pruner needs a single objective (Optuna cannot prune multi-objective studies); "
               "use --pruner none with several --objectives")
        _check(self.pruner == "none" or self.objectives[0] in ("eval_loss", "perplexity"),
               f"a pruner judges trials on their intermediate eval loss, so it needs --objectives eval_loss, "
               f"not {self.objectives[0]}")

    @property
    def out_dir(self) -> str:
        return study_out_dir(self.study, self.out)

    @property
    def storage_url(self) -> str:
        return study_storage_url(self.study, self.storage, self.out)

    @property
    def directions(self) -> list[str]:
        return [direction_of(name) for name in self.objectives]

    def measured_settings(self) -> dict[str, Any]:
        """Every setting that changes what a trial measures, flattened (`train.batch_size`, ...): a resumed
        study must keep each of them, or its trials would not be one experiment. The learning rate is
        sampled per trial; intermediate evals (`train.eval_every`) no longer change what is measured."""
        flat: dict[str, Any] = {"model": self.model, "data": self.data, "max_steps": self.max_steps,
                                "seed": self.seed, "objectives": list(self.objectives)}
        for section, spec in (("train", self.train), ("data_options", self.data_spec), ("eval", self.eval)):
            for key, value in dataclasses.asdict(spec).items():
                if (section, key) in _UNPINNED:
                    continue
                flat[f"{section}.{key}"] = value
        return json.loads(json.dumps(flat))  # as the study stores it: tuples become lists

    @property
    def task_objectives(self) -> tuple[str, ...]:
        """Objectives that are task metrics (scored on generated answers)."""
        return tuple(name for name in self.objectives if name in TASK_METRICS)
