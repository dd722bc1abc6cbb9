"""The peer side of benchmarks/vs_trainer.py: `Trainer.hyperparameter_search(backend="optuna")` with peft in
`model_init(trial)`, run in its own process (`vs_trainer.py --peer-child OUT.json ...`).

It trains on harness's own tokenized data, scores with harness's own `eval_loss`, and uses the optimizer
harness uses (`harness.trial.train.optimizer_name`), so the two sides differ only where the benchmark says
so (the variant's autocast, and Trainer's own loop). Each trial's end is stamped with the wall clock
(`time.time()`, seconds since the epoch) so the parent can compute time-to-target from its own launch time.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vs_trainer_spec import (ALPHA_RATIO, EVAL_BATCH_SIZE, LORA_R_CHOICES, MAX_GRAD_NORM, SCHEDULER,
                             TPE_STARTUP_TRIALS, WARMUP_RATIO, WEIGHT_DECAY, sample_params, short_params)


@dataclass
class PeerLog:
    """What the peer child measures; written as JSON for the parent."""

    trials: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = 0.0
    """Wall clock (epoch seconds) when this process's Python code began (after interpreter start-up)."""
    import_seconds: float = 0.0
    data_seconds: float = 0.0
    trainer_init_seconds: float = 0.0
    """Trainer(...) construction, which calls model_init(None) once (a model no trial uses)."""
    search_seconds: float = 0.0
    best: dict[str, Any] = field(default_factory=dict)
    device: str = ""
    autocast: str = ""
    """What the peer was asked for: `off` or `bf16`."""
    mixed_precision: str = ""
    """What accelerate actually used (`no`, `bf16`, `fp16`)."""
    torch_threads: int = 0
    compute_dtype: str = ""


def prepare_data(checkpoint: str) -> tuple[Any, Any, list[Any]]:
    """harness's own tokenizer, tokenized splits and eval batches (DataSpec defaults, stdlib-qa)."""
    from harness.data import load_examples, make_batches, tokenize_splits
    from harness.trial.models import load_tokenizer
    from harness.config.dataset import DataSpec

    spec = DataSpec(name="stdlib-qa")
    tokenizer = load_tokenizer(checkpoint)
    tokenized = tokenize_splits(load_examples(spec), tokenizer, spec)
    eval_batches = make_batches(tokenized.eval, EVAL_BATCH_SIZE, tokenizer.pad_token_id, shuffle_seed=None)
    return tokenizer, tokenized, eval_batches


def make_dataset(pairs: list[tuple[list[int], list[int]]]) -> Any:
    """The train split as a map-style torch Dataset of {input_ids, labels} lists."""
    from torch.utils.data import Dataset

    class TokenDataset(Dataset):
        def __len__(self) -> int:
            return len(pairs)

        def __getitem__(self, index: int) -> dict[str, list[int]]:
            ids, labels = pairs[index]
            return {"input_ids": ids, "labels": labels}

    return TokenDataset()


def make_collator(pad_id: int) -> Any:
    """Right-pad input_ids with pad_id, attention_mask 1 on real tokens, labels padded with -100."""
    import torch

    def collate(features: list[dict[str, list[int]]]) -> dict[str, Any]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n], mask[row, :n] = torch.tensor(f["input_ids"]), 1
            labels[row, :n] = torch.tensor(f["labels"])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


def make_model_init(checkpoint: str, device: str, log: PeerLog, lr: tuple[float, float]) -> Any:
    """model_init(trial): load, quantize as sampled, prepare for k-bit training, attach LoRA."""

    def model_init(trial: Any) -> Any:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM

        from harness.runtime.devices import compute_dtype
        from harness.trial.quantization import quantization_config

        started = time.perf_counter()
        params = sample_params(trial, lr) if trial is not None else {"lora_r": LORA_R_CHOICES[0], "quantization": "none"}
        dtype = compute_dtype(device)
        qconfig = quantization_config(params["quantization"], dtype)
        model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=dtype, quantization_config=qconfig,
                                                     device_map={"": 0 if device == "cuda" else "cpu"})
        model.config.use_cache = False
        if qconfig is not None:
            # peft's default would also turn on gradient checkpointing; harness does not use it.
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        r = params["lora_r"]
        lora = LoraConfig(r=r, lora_alpha=ALPHA_RATIO * r, lora_dropout=0.0, bias="none",
                          target_modules="all-linear", task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
        seconds = time.perf_counter() - started
        if trial is not None:
            log.trials.append({"number": trial.number, "state": "COMPLETE", "params": short_params(params),
                               "init_seconds": seconds})
        return model

    return model_init


def make_hp_space(lr: tuple[float, float]) -> Callable[[Any], dict[str, Any]]:
    """hp_space(trial): TrainingArguments overrides per trial, its learning rate drawn over `lr` (r and
    quantization are applied in model_init)."""
    return lambda trial: {"learning_rate": sample_params(trial, lr)["learning_rate"]}


def make_timer_callback(log: PeerLog) -> Any:
    """Times the training loop of each trial (from on_train_begin to the last on_step_end, seconds) and
    records the optimizer the Trainer actually built."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()
            log.trials[-1]["optim"] = str(getattr(args.optim, "value", args.optim))

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            log.trials[-1]["train_seconds"] = time.perf_counter() - self.started
            log.trials[-1]["steps"] = state.global_step
            optimizer = kwargs.get("optimizer")
            if optimizer is not None and "optimizer_class" not in log.trials[-1]:
                inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it
                log.trials[-1]["optimizer_class"] = type(inner).__name__

    return StepTimer()


def make_trainer(checkpoint: str, device: str, data: tuple[Any, Any, list[Any]], args: argparse.Namespace,
                 log: PeerLog) -> Any:
    """A Trainer whose evaluate() is harness's eval loss on the held-out batches (the trial objective)."""
    from transformers import Trainer

    from harness.trial.scoring import eval_loss

    tokenizer, tokenized, eval_batches = data

    class HarnessScoredTrainer(Trainer):
        def evaluate(self, *unused: Any, **kwargs: Any) -> dict[str, float]:
            # Under bf16, accelerate wrapped forward in autocast (+ fp32 outputs) for training. harness's
            # eval_loss applies harness's own eval numerics (bf16 autocast on CUDA, none on CPU), so score the
            # plain forward: both sides are then scored the same way (the model is dropped afterwards).
            wrapped = "_original_forward" in vars(self.model)
            model = self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)
            score = eval_loss(model, eval_batches, device)
            # The trial's result is known now: stamp it for time-to-target (wall clock, epoch seconds).
            log.trials[-1].update(eval_loss=score.loss, eval_seconds=score.seconds, autocast_unwrapped=wrapped,
                                  finished_at=time.time())
            return {"eval_loss": score.loss}

    return HarnessScoredTrainer(
        model_init=make_model_init(checkpoint, device, log, (args.lr_low, args.lr_high)), args=training_args(args, device),
        train_dataset=make_dataset(tokenized.train), data_collator=make_collator(tokenizer.pad_token_id),
        callbacks=[make_timer_callback(log)])


def training_args(args: argparse.Namespace, device: str) -> Any:
    """TrainingArguments matching harness's TrainSpec (learning_rate comes from each trial)."""
    from transformers import TrainingArguments

    from harness.trial.train import optimizer_name

    return TrainingArguments(
        output_dir=args.peer_out, max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1, learning_rate=args.lr_low, warmup_steps=WARMUP_RATIO,  # a float < 1 is a ratio
        weight_decay=WEIGHT_DECAY, lr_scheduler_type=SCHEDULER, max_grad_norm=MAX_GRAD_NORM,
        optim=optimizer_name(device),  # harness's optimizer for every mode, named as TrainingArguments names it
        train_sampling_strategy="group_by_length",  # like harness.data.make_batches: 50-batch length groups
        # The variant's autocast: `off` trains the model in its compute dtype with no autocast (harness on CPU);
        # `bf16` is accelerate's bf16 autocast (harness on CUDA; Trainer's usual setting).
        bf16=args.peer_autocast == "bf16", use_cpu=device == "cpu",
        eval_strategy="no", save_strategy="no", report_to="none", logging_steps=10**6, disable_tqdm=True,
        seed=args.seed, dataloader_num_workers=0, remove_unused_columns=False)


def run_peer(args: argparse.Namespace, log: PeerLog) -> PeerLog:
    """The whole peer search, timed in parts; fills and returns `log`."""
    import optuna
    import torch

    from harness.runtime.devices import compute_dtype, pick_device
    from harness.trial.models import checkpoint_path, resolve_model

    device = pick_device()
    if device == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))  # as harness.trial.models.load_base_model
    log.device, log.autocast = device, args.peer_autocast
    log.torch_threads, log.compute_dtype = torch.get_num_threads(), str(compute_dtype(device)).replace("torch.", "")
    started = time.perf_counter()
    checkpoint = checkpoint_path(resolve_model(args.model))
    data = prepare_data(checkpoint)
    log.data_seconds = time.perf_counter() - started
    trainer = make_trainer(checkpoint, device, data, args, log)
    log.trainer_init_seconds = time.perf_counter() - started - log.data_seconds
    log.mixed_precision = str(trainer.accelerator.mixed_precision)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search_started = time.perf_counter()
    best = trainer.hyperparameter_search(
        backend="optuna", n_trials=args.trials, direction="minimize", hp_space=make_hp_space((args.lr_low, args.lr_high)),
        compute_objective=lambda metrics: metrics["eval_loss"],
        sampler=optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=TPE_STARTUP_TRIALS))
    log.search_seconds = time.perf_counter() - search_started
    log.best = {"number": int(best.run_id), "eval_loss": best.objective, "params": best.hyperparameters}
    return log
