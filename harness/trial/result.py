"""TrialResult: what came out of one trial, as data. Failure is a result (a status and a one-line reason,
memory and time still recorded), not an exception."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

TrialStatus = Literal["complete", "pruned", "diverged", "oom", "failed", "infeasible"]


@dataclass(frozen=True)
class TrialResult:
    """What came out of one trial. Failure is a result, not an exception."""

    status: TrialStatus
    reason: str | None = None
    """One line saying why the trial did not complete (None when it did)."""
    eval_loss: float | None = None
    """Mean cross-entropy per scored token on the held-out split (nats); for a trial stopped before its
    final evaluation (pruned, diverged), its last intermediate evaluation's, on `eval_examples` of them."""
    eval_examples: int | None = None
    """Held-out examples `eval_loss` is over: the whole split after the final evaluation, the study's
    intermediate subset (`eval.intermediate_size`) when the trial stopped before it."""
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
    """The final evaluation: eval loss on the whole held-out split plus generation (`generation_seconds`)."""
    generation_seconds: float | None = None
    """Of `eval_seconds`, the generated answers and their task metrics (0.0 when nothing is generated)."""
    intermediate_eval_seconds: float | None = None
    """The intermediate evaluations a pruner reads (subset, loss only), in all; inside neither
    `train_seconds` nor `eval_seconds`."""
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
    attention: str | None = None
    """transformers' attention implementation (`eager` on a CPU at short sequences, else `sdpa`; Gemma 3
    always `eager`, see trial.families)."""
    prompt_template: str | None = None
    """How prompts were formatted: the tokenizer's chat template, or the plain template of a base model
    without one (harness.data.encode.prompt_template)."""
    weights: dict[str, Any] = field(default_factory=dict)
    """The base model's weight memory by kind (MiB): see weights.weight_breakdown."""
    data_seed: int | None = None
    """The seed of the training data order (epoch e shuffles with data_seed * 100003 + e): every config run
    with the same seed sees the same batches in the same order (common random numbers)."""
    init_seed: int | None = None
    """The seed the adapter was initialised with: configs whose adapters have the same shapes start from the
    same weights under the same seed."""
    per_example: dict[str, list[float]] = field(default_factory=dict)
    """Per held-out example, in eval-split order: `loss` (mean over its scored tokens), `tokens` (its
    scored tokens), and each task metric's score on the generated examples (the first generate_size)."""
    samples: list[dict[str, str]] = field(default_factory=list)
    """A few generated answers: prompt, prediction, reference."""
    pack_size: int = 1
    """How many trials trained at once with this one, on one copy of the base model (harness.trial.pack):
    when above 1, `peak_memory_mb`, `train_peak_memory_mb` and the seconds are the pack's, not this config's
    alone, and tokens/s is this member's tokens over the pack's time."""
    predicted_peak_memory_mb: float | None = None
    """The planner's prediction of the training peak (`train_peak_memory_mb`) before the trial ran
    (harness.trial.memory_plan), when the study has a memory budget or the machine has the probe; None otherwise."""
    predicted_eval_peak_memory_mb: float | None = None
    """The planner's prediction of the final evaluation's peak (`eval_peak_memory_mb`), where its probe measured
    evaluation."""
    predicted_step_seconds: float | None = None
    """The planner's predicted seconds per optimizer step, beside the measured `train_seconds` / `steps`."""
    fit: dict[str, Any] | None = None
    """What fitting to the memory budget changed, {setting: [from, to], why}; None when nothing did. An
    `infeasible` trial loaded nothing: its reason names the prediction and the budget."""
    kept_16bit_modules: list[str] = field(default_factory=list)
    """Full names of the base's linear layers kept in 16-bit in a quantized mode (keep_16bit), in the order they
    were chosen; empty at keep_16bit 0 and in mode none."""
    kept_16bit_fraction: float = 0.0
    """Their share of the base's quantizable linear-layer parameters (at most the asked keep_16bit)."""
    kept_16bit_added_mb: float = 0.0
    """Weight memory keeping them adds (MiB): their 16-bit size less their size quantized in the trial's mode."""
    kept_16bit_skip_modules: list[str] = field(default_factory=list)
    """The `llm_int8_skip_modules` the base was quantized with when layers were kept (transformers' default skips,
    the output head, plus the kept layers): what recommended.yaml's quantization section carries; else empty."""
    pack_note: str | None = None
    """Why a trial that was to train in a pack trained alone (a DoRA or PiSSA adapter, a different
    quantization mode...), or None."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialResult":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
