"""harness vs `transformers.Trainer.hyperparameter_search`: the same LoRA/QLoRA sweep, timed end to end.

Run from the repository root, with the project's virtualenv active::

    python benchmarks/vs_trainer.py                          # SmolLM2-135M, 6 trials x 20 steps
    python benchmarks/vs_trainer.py --model tiny-llama --trials 2 --max-steps 3   # a smoke run
    python benchmarks/vs_trainer.py --pruner median --json bench.json

Both sides get the same base model (harness's cached checkpoint), the same tokenized `stdlib-qa`
train and held-out examples, the same search space (r, alpha = 2r, learning rate, quantization),
the same Optuna sampler (TPE, same seed, 4 start-up trials), the same trials, steps, batch size and
schedule, and are scored by the same function (`harness.scoring.eval_loss`, a token-weighted mean
over the same 64 held-out examples):

- harness: `python -m harness sweep ...` run as a child process; wall clock from process start to
  exit. Per-trial times come from its trials.jsonl, the untuned baseline from its study.
- peer: this script run again as a child process (`--peer-child`), in which
  `Trainer.hyperparameter_search(backend="optuna")` builds a fresh model in `model_init(trial)` for
  every trial (load, bitsandbytes quantization, `prepare_model_for_kbit_training`, `get_peft_model`).
  The same process-start-to-exit wall clock, so both sides pay their own imports.

It prints (and writes with `--json`) both wall times and their ratio, the best eval loss of each,
the untuned baseline, the share of harness wall time spent in training and eval steps, the mean
per-trial overhead of each side (wall / trials minus train + eval time), and with `--pruner median`
how many harness optimizer steps it took to match the peer's best. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# The search space both sides sample, in harness's axis order (lora_r, learning_rate, quantization):
# with the same seeded TPE sampler both then draw the same values in the random start-up trials.
LORA_R_CHOICES = [8, 16]
ALPHA_RATIO = 2  # lora_alpha = 2 * r on both sides
LR_LOW, LR_HIGH = 1e-4, 1e-3  # log-uniform
QUANT_CHOICES = ["none", "nf4-dq"]
TPE_STARTUP_TRIALS = 4  # as harness.study.make_sampler

# Fixed training settings, given to harness (experiment file) and Trainer (TrainingArguments) alike.
WARMUP_RATIO = 0.05
WEIGHT_DECAY = 0.01
SCHEDULER = "cosine"
MAX_GRAD_NORM = 1.0
EVAL_BATCH_SIZE = 16  # harness EvalSpec default
PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "optuna", "accelerate", "harness")


# ---------------------------------------------------------------- inputs shared by both sides


def space_yaml() -> str:
    """The search space as harness search-space YAML (lora_dropout 0 and all-linear are its defaults)."""
    return "\n".join([
        "description: benchmarks/vs_trainer.py space (harness vs Trainer.hyperparameter_search)",
        "axes:",
        f"  lora_r: {{choices: {json.dumps(LORA_R_CHOICES)}}}",
        f"  lora_alpha: {{ratio: {ALPHA_RATIO}}}",
        f"  learning_rate: {{low: {LR_LOW!r}, high: {LR_HIGH!r}, log: true}}",
        f"  quantization: {{choices: [{', '.join(QUANT_CHOICES)}]}}",
        "  lora_dropout: 0.0",
        "  target_modules: all-linear", ""])


def experiment_yaml(batch_size: int) -> str:
    """The training settings harness has no flag for, pinned to what the peer is given. Task metrics
    (generated answers) are off: the peer scores eval loss only, so harness does too."""
    return (f"train: {{batch_size: {batch_size}, warmup_ratio: {WARMUP_RATIO}, weight_decay: {WEIGHT_DECAY}, "
            f"scheduler: {SCHEDULER}, max_grad_norm: {MAX_GRAD_NORM}, grad_accum: 1}}\n"
            "eval: {metrics: []}\n")


def sample_params(trial: Any) -> dict[str, Any]:
    """The peer's draw: same names, distributions and order as harness.space.suggest (keyword args)."""
    return {"lora_r": trial.suggest_categorical("lora_r", LORA_R_CHOICES),
            "learning_rate": trial.suggest_float("learning_rate", LR_LOW, LR_HIGH, log=True),
            "quantization": trial.suggest_categorical("quantization", QUANT_CHOICES)}


def harness_command(args: argparse.Namespace, space: Path, experiment: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "harness", "sweep", "-e", str(experiment), "--model", args.model,
           "--space", str(space), "--trials", str(args.trials), "--max-steps", str(args.max_steps),
           "--study", "bench", "--out", str(out), "--wandb", "disabled", "--seed", str(args.seed),
           "--pruner", args.pruner]


def peer_command(args: argparse.Namespace, result: Path, out: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--peer-child", str(result), "--peer-out", str(out),
            "--model", args.model, "--trials", str(args.trials), "--max-steps", str(args.max_steps),
            "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--peer-autocast", args.peer_autocast]


def run_timed(cmd: list[str], log: Path) -> float:
    """Run a command with its output in `log`; its wall clock from process start to exit (seconds)."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled"}
    with open(log, "w") as handle:
        started = time.perf_counter()
        code = subprocess.run(cmd, check=False, stdout=handle, stderr=subprocess.STDOUT, env=env).returncode
        wall = time.perf_counter() - started
    if code != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"command failed (exit {code}): {shlex.join(cmd)}\n--- last output ---\n{tail}")
    return wall


# ---------------------------------------------------------------- the harness side


def read_harness(out: Path) -> dict[str, Any]:
    """Per-trial numbers from trials.jsonl (trial order) and the baseline and best from the study."""
    import optuna

    records = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines() if line.strip()]
    records.sort(key=lambda r: r["number"])
    study = optuna.load_study(study_name="bench", storage=f"sqlite:///{out}/study.db")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {"trials": [_harness_trial(r) for r in records],
            "best_eval_loss": study.best_value if complete else None,
            "baseline_eval_loss": study.user_attrs.get("baseline_eval_loss"),
            "n_train": study.user_attrs.get("n_train"), "n_eval": study.user_attrs.get("n_eval"),
            "split_hash": study.user_attrs.get("split_hash")}


def _harness_trial(record: dict[str, Any]) -> dict[str, Any]:
    result = record["result"]
    evals = [h for h in record.get("history", []) if "eval_loss" in h]
    return {"number": record["number"], "state": record["state"], "params": _short_params(record["params"]),
            "eval_loss": record["eval_loss"], "steps": result.get("steps", 0),
            "load_seconds": result.get("load_seconds"), "train_seconds": record.get("train_seconds"),
            "eval_seconds": result.get("eval_seconds"), "wall_seconds": record.get("wall_seconds"),
            # pruner runs: evals before the last one (the final eval is eval_seconds)
            "intermediate_evals": max(0, len(evals) - (1 if record["state"] == "COMPLETE" else 0))}


def _short_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: params[k] for k in ("lora_r", "lora_alpha", "learning_rate", "quantization") if k in params}


# ---------------------------------------------------------------- the peer side (child process)


@dataclass
class PeerLog:
    """What the peer child measures; written as JSON for the parent."""

    trials: list[dict[str, Any]] = field(default_factory=list)
    import_seconds: float = 0.0
    data_seconds: float = 0.0
    trainer_init_seconds: float = 0.0
    """Trainer(...) construction, which calls model_init(None) once (a model no trial uses)."""
    search_seconds: float = 0.0
    best: dict[str, Any] = field(default_factory=dict)
    mixed_precision: str = ""
    device: str = ""


def prepare_data(checkpoint: str) -> tuple[Any, Any, list[Any]]:
    """harness's own tokenizer, tokenized splits and eval batches (DataSpec defaults, stdlib-qa)."""
    from harness.data import load_examples, make_batches, tokenize_splits
    from harness.models import load_tokenizer
    from harness.spec import DataSpec

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


def make_model_init(checkpoint: str, device: str, log: PeerLog) -> Any:
    """model_init(trial): load, quantize as sampled, prepare for k-bit training, attach LoRA."""

    def model_init(trial: Any) -> Any:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM

        from harness.models import compute_dtype, quantization_config

        started = time.perf_counter()
        params = sample_params(trial) if trial is not None else {"lora_r": LORA_R_CHOICES[0], "quantization": "none"}
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
            log.trials.append({"number": trial.number, "params": _peer_params(params), "init_seconds": seconds})
        return model

    return model_init


def _peer_params(params: dict[str, Any]) -> dict[str, Any]:
    return {"lora_r": params["lora_r"], "lora_alpha": float(ALPHA_RATIO * params["lora_r"]),
            "learning_rate": params["learning_rate"], "quantization": params["quantization"]}


def make_timer_callback(log: PeerLog) -> Any:
    """Times the training loop of each trial: from on_train_begin to the last on_step_end."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            log.trials[-1]["train_seconds"] = time.perf_counter() - self.started
            log.trials[-1]["steps"] = state.global_step

    return StepTimer()


def make_trainer(checkpoint: str, device: str, data: tuple[Any, Any, list[Any]], args: argparse.Namespace,
                 log: PeerLog) -> Any:
    """A Trainer whose evaluate() is harness's eval loss on the held-out batches (the trial objective)."""
    from transformers import Trainer

    from harness.scoring import eval_loss

    tokenizer, tokenized, eval_batches = data

    class HarnessScoredTrainer(Trainer):
        def evaluate(self, *unused: Any, **kwargs: Any) -> dict[str, float]:
            # With bf16/fp16, accelerate wrapped forward in autocast (+ fp32 outputs) for training; harness
            # scores without autocast on CPU, so score the plain forward (the model is dropped afterwards).
            wrapped = "_original_forward" in vars(self.model)
            model = self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)
            score = eval_loss(model, eval_batches, device)
            log.trials[-1].update(eval_loss=score.loss, eval_seconds=score.seconds, autocast_unwrapped=wrapped)
            return {"eval_loss": score.loss}

    return HarnessScoredTrainer(
        model_init=make_model_init(checkpoint, device, log), args=training_args(args, device),
        train_dataset=make_dataset(tokenized.train), data_collator=make_collator(tokenizer.pad_token_id),
        callbacks=[make_timer_callback(log)])


def training_args(args: argparse.Namespace, device: str) -> Any:
    """TrainingArguments matching harness's TrainSpec (learning_rate comes from each trial)."""
    import torch
    from transformers import TrainingArguments

    from harness.models import compute_dtype

    dtype = compute_dtype(device)
    autocast = args.peer_autocast == "auto"
    return TrainingArguments(
        output_dir=args.peer_out, max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1, learning_rate=LR_LOW, warmup_steps=WARMUP_RATIO,  # a float < 1 is a ratio
        weight_decay=WEIGHT_DECAY, lr_scheduler_type=SCHEDULER, max_grad_norm=MAX_GRAD_NORM,
        optim="adamw_torch",  # harness: torch.optim.AdamW (Trainer's default here would be the fused kernel)
        train_sampling_strategy="group_by_length",  # like harness.data.make_batches: 50-batch length groups
        # Trainer's usual mixed precision (autocast) in the base model's dtype; harness uses none on CPU.
        bf16=autocast and dtype == torch.bfloat16, fp16=autocast and dtype == torch.float16, use_cpu=device == "cpu",
        eval_strategy="no", save_strategy="no", report_to="none", logging_steps=10**6, disable_tqdm=True,
        seed=args.seed, dataloader_num_workers=0, remove_unused_columns=False)


def run_peer(args: argparse.Namespace, import_seconds: float) -> PeerLog:
    """The whole peer search, timed in parts; returns what it measured."""
    import optuna
    import torch

    from harness.models import checkpoint_path, pick_device, resolve_model

    device = pick_device()
    torch.set_num_threads(max(1, os.cpu_count() or 1))  # as harness.models.load_base_model
    log = PeerLog(import_seconds=import_seconds, device=device)
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
        backend="optuna", n_trials=args.trials, direction="minimize", hp_space=peer_hp_space,
        compute_objective=lambda metrics: metrics["eval_loss"],
        sampler=optuna.samplers.TPESampler(seed=args.seed, n_startup_trials=TPE_STARTUP_TRIALS))
    log.search_seconds = time.perf_counter() - search_started
    log.best = {"number": int(best.run_id), "eval_loss": best.objective, "params": best.hyperparameters}
    return log


def peer_hp_space(trial: Any) -> dict[str, Any]:
    """TrainingArguments overrides per trial; r and quantization were drawn in model_init (same trial)."""
    return {"learning_rate": sample_params(trial)["learning_rate"]}


def peer_child_main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    import peft  # noqa: F401 - timed: the imports the peer pays
    import transformers  # noqa: F401

    log = run_peer(args, time.perf_counter() - started)
    Path(args.peer_child).write_text(json.dumps(asdict(log), indent=2))


# ---------------------------------------------------------------- comparing the two


def steps_to_reach(trials: list[dict[str, Any]], target: float | None) -> dict[str, Any]:
    """Optimizer steps over harness trials (in trial order) until the first COMPLETE trial whose final
    eval loss is <= target; pruned and failed trials count their steps too."""
    total = 0
    for trial in trials:
        total += trial["steps"] or 0
        if target is not None and trial["state"] == "COMPLETE" and trial["eval_loss"] <= target:
            return {"reached": True, "steps": total, "trial": trial["number"]}
    return {"reached": False, "steps": total, "trial": None}


def overhead(wall: float, trials: list[dict[str, Any]], extra_eval_seconds: float = 0.0) -> dict[str, float]:
    """Seconds outside training and eval steps, in all and per trial."""
    inside = sum((t.get("train_seconds") or 0) + (t.get("eval_seconds") or 0) for t in trials) + extra_eval_seconds
    n = max(1, len(trials))
    return {"inside_seconds": inside, "inside_fraction": inside / wall, "per_trial_seconds": (wall - inside) / n}


def summarize(args: argparse.Namespace, walls: dict[str, float], harness: dict[str, Any],
              peer: dict[str, Any], commands: dict[str, str]) -> dict[str, Any]:
    h_over, p_over = overhead(walls["harness"], harness["trials"]), overhead(walls["peer"], peer["trials"])
    # Intermediate (pruner) evals are outside train_seconds + eval_seconds; estimate them at the final eval's cost.
    pruner_evals = sum(t["intermediate_evals"] * (t["eval_seconds"] or _mean_eval(harness)) for t in harness["trials"])
    summary = {
        "wall_seconds": walls, "ratio_harness_over_peer": walls["harness"] / walls["peer"],
        "best_eval_loss": {"harness": harness["best_eval_loss"], "peer": peer["best"].get("eval_loss")},
        "baseline_eval_loss": harness["baseline_eval_loss"],
        "harness_inside_fraction": h_over["inside_fraction"],
        "harness_intermediate_eval_seconds_est": pruner_evals,
        # harness scores the untuned base model once per study (not timed in its files): about one eval
        "harness_baseline_eval_seconds_est": _mean_eval(harness),
        "overhead_per_trial_seconds": {"harness": h_over["per_trial_seconds"], "peer": p_over["per_trial_seconds"]},
        "mean_load_seconds": {"harness": _mean(harness["trials"], "load_seconds"),
                              "peer": _mean(peer["trials"], "init_seconds")},
        "peer_breakdown_seconds": {k: peer[k] for k in ("import_seconds", "data_seconds", "trainer_init_seconds",
                                                        "search_seconds")},
        "peer_mixed_precision": peer["mixed_precision"],
        "trials": {"harness": harness["trials"], "peer": peer["trials"]},
        "data": {k: harness[k] for k in ("n_train", "n_eval", "split_hash")},
        "settings": {k: getattr(args, k) for k in ("model", "trials", "max_steps", "batch_size", "seed", "pruner",
                                                   "peer_autocast")},
        "environment": environment(peer["device"]), "commands": commands,
    }
    if args.pruner != "none":
        summary["harness_steps_to_peer_best"] = steps_to_reach(harness["trials"], peer["best"].get("eval_loss"))
    return summary


def _mean(trials: list[dict[str, Any]], key: str) -> float | None:
    values = [t[key] for t in trials if t.get(key) is not None]
    return sum(values) / len(values) if values else None


def _mean_eval(harness: dict[str, Any]) -> float:
    return _mean(harness["trials"], "eval_seconds") or 0.0


def environment(device: str) -> dict[str, Any]:
    """Device, CPU, threads, compute dtype, Python and package versions."""
    from importlib import metadata

    import torch

    from harness.models import compute_dtype

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"device": device, "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "compute_dtype": str(compute_dtype(device)).replace("torch.", ""),
            "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
            "python": platform.python_version(), "platform": platform.platform(), "versions": versions}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# ---------------------------------------------------------------- output


def _f(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def print_trials(summary: dict[str, Any]) -> None:
    print(f"{'side':8} {'#':>2} {'r':>3} {'alpha':>5} {'lr':>9} {'quant':7} {'state':9} {'eval_loss':>9} "
          f"{'load_s':>7} {'train_s':>7} {'eval_s':>6} {'steps':>5}")
    for side, load_key in (("harness", "load_seconds"), ("peer", "init_seconds")):
        for t in summary["trials"][side]:
            p = t["params"]
            print(f"{side:8} {t['number']:>2} {p['lora_r']:>3} {p['lora_alpha']:>5g} {p['learning_rate']:>9.3e} "
                  f"{p['quantization']:7} {t.get('state', 'COMPLETE'):9} {_f(t.get('eval_loss')):>9} "
                  f"{_f(t.get(load_key), '.2f'):>7} {_f(t.get('train_seconds'), '.2f'):>7} "
                  f"{_f(t.get('eval_seconds'), '.2f'):>6} {t.get('steps', 0):>5}")


def print_report(summary: dict[str, Any]) -> None:
    s, env = summary, summary["environment"]
    walls, over, best = s["wall_seconds"], s["overhead_per_trial_seconds"], s["best_eval_loss"]
    print(f"== harness vs Trainer.hyperparameter_search: {s['settings']}")
    print_trials(s)
    print(f"wall seconds (process start to exit): harness {walls['harness']:.1f}  peer {walls['peer']:.1f}  "
          f"ratio harness/peer {s['ratio_harness_over_peer']:.2f}")
    print(f"best eval loss: harness {_f(best['harness'])}  peer {_f(best['peer'])}  "
          f"(untuned base model {_f(s['baseline_eval_loss'])}; {s['data']['n_eval']} held-out examples)")
    line = f"harness wall time inside train + eval steps: {s['harness_inside_fraction']:.1%}"
    if s["harness_intermediate_eval_seconds_est"]:
        share = s["harness_intermediate_eval_seconds_est"] / walls["harness"]
        line += f" (final evals only; with the pruner's intermediate evals ~{s['harness_inside_fraction'] + share:.1%})"
    print(line)
    print(f"overhead per trial (wall/trials - train - eval): harness {over['harness']:.2f} s  peer {over['peer']:.2f} s"
          f"  (harness's includes its untuned-baseline eval, ~{s['harness_baseline_eval_seconds_est']:.1f} s "
          f"once per study)")
    loads = s["mean_load_seconds"]
    print(f"mean model load + adapter per trial: harness {_f(loads['harness'], '.2f')} s  "
          f"peer model_init {_f(loads['peer'], '.2f')} s")
    pb = s["peer_breakdown_seconds"]
    print(f"peer parts: imports {pb['import_seconds']:.1f} s, data {pb['data_seconds']:.1f} s, Trainer() incl. one "
          f"model_init(None) {pb['trainer_init_seconds']:.1f} s, search {pb['search_seconds']:.1f} s; "
          f"Trainer mixed precision: {s['peer_mixed_precision']}")
    if "harness_steps_to_peer_best" in s:
        print_steps(s)
    print(f"device: {env['device']} ({env['gpu'] or env['cpu']}, {env['cpu_count']} cores, "
          f"{env['torch_threads']} torch threads, compute dtype {env['compute_dtype']})")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + f", python {env['python']}")
    for name, cmd in s["commands"].items():
        print(f"{name} command: {cmd}")


def print_steps(summary: dict[str, Any]) -> None:
    reach = summary["harness_steps_to_peer_best"]
    if reach["reached"]:
        print(f"harness steps to reach the peer's best eval loss: {reach['steps']} (trial #{reach['trial']})")
    else:
        print(f"harness never reached the peer's best eval loss ({reach['steps']} steps in all)")
    if summary["harness_intermediate_eval_seconds_est"]:
        print(f"  (pruner's intermediate evals, counted as harness overhead above: "
              f"~{summary['harness_intermediate_eval_seconds_est']:.1f} s)")


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default) or tiny-llama (smoke run)")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--max-steps", type=int, default=20, help="optimizer steps per trial")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pruner", choices=("none", "median"), default="none", help="harness's pruner")
    parser.add_argument("--peer-autocast", choices=("auto", "off"), default="auto",
                        help="auto: Trainer bf16/fp16 where harness's compute dtype is bf16/fp16 (its usual setup); "
                             "off: no mixed precision, the same math as harness on CPU")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (study, logs)")
    parser.add_argument("--peer-child", help=argparse.SUPPRESS)  # internal: run the peer, write JSON here
    parser.add_argument("--peer-out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_benchmark(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from harness.models import checkpoint_path, resolve_model

    checkpoint_path(resolve_model(args.model))  # convert once before timing anything, so neither side pays it
    (work / "space.yaml").write_text(space_yaml())
    (work / "train.yaml").write_text(experiment_yaml(args.batch_size))
    h_cmd = harness_command(args, work / "space.yaml", work / "train.yaml", work / "harness")
    p_cmd = peer_command(args, work / "peer.json", work / "peer")
    print(f"running harness ({args.trials} trials x {args.max_steps} steps)...", flush=True)
    walls = {"harness": run_timed(h_cmd, work / "harness.log")}
    print("running Trainer.hyperparameter_search...", flush=True)
    walls["peer"] = run_timed(p_cmd, work / "peer.log")
    peer = json.loads((work / "peer.json").read_text())
    commands = {"benchmark": shlex.join([sys.executable, *sys.argv]), "harness": shlex.join(h_cmd),
                "peer": shlex.join(p_cmd)}
    return summarize(args, walls, read_harness(work / "harness"), peer, commands)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.peer_child:
        peer_child_main(args)
        return
    work = Path(tempfile.mkdtemp(prefix="vs_trainer-"))
    try:
        summary = run_benchmark(args, work)
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    print_report(summary)
    if args.keep:
        print(f"work folder: {work}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
        print(f"json: {args.json}")


if __name__ == "__main__":
    main()
