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
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar, get_args

Quantization = Literal["none", "int8", "nf4", "nf4-dq", "fp4", "fp4-dq"]
QUANTIZATION_MODES: tuple[str, ...] = get_args(Quantization)

TargetPreset = Literal["all-linear", "attention"]
TARGET_PRESETS: tuple[str, ...] = get_args(TargetPreset)

Scheduler = Literal["linear", "cosine", "constant"]
SCHEDULERS: tuple[str, ...] = get_args(Scheduler)

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
    targets: TargetPreset = "all-linear"
    """`all-linear` (attention and MLP projections) or `attention` (q, k, v, o only)."""

    def __post_init__(self) -> None:
        _check(isinstance(self.r, int) and not isinstance(self.r, bool) and self.r >= 1,
               f"lora_r must be a positive integer, got {self.r!r}")
        _positive("lora_alpha", self.alpha)
        _check(isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0,
               f"lora_dropout must be in [0, 1), got {self.dropout!r}")
        _check(self.targets in TARGET_PRESETS,
               f"target_modules {self.targets!r} is not one of {', '.join(TARGET_PRESETS)}")


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
    """Learning-rate decay after warm-up (lr_scheduler_type)."""
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
        _check(self.scheduler in SCHEDULERS, f"scheduler {self.scheduler!r} is not one of {', '.join(SCHEDULERS)}")
        _check(isinstance(self.eval_every, int) and self.eval_every >= 0,
               f"eval_every must be a non-negative integer, got {self.eval_every!r}")

    @property
    def warmup_steps(self) -> int:
        """Warm-up length in optimizer steps (rounded up, as TrainingArguments does)."""
        return math.ceil(self.max_steps * self.warmup_ratio)


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
