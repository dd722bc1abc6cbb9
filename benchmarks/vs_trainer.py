"""harness vs `transformers.Trainer.hyperparameter_search`: the same LoRA/QLoRA sweep, timed end to end,
repeated over benchmark seeds, with equal numerics on both sides by default.

Run from the repository root, with the project's virtualenv active::

    python benchmarks/vs_trainer.py --json benchmarks/results/vs_trainer_smollm2_cpu.json
    python benchmarks/vs_trainer.py --pruner median --json benchmarks/results/vs_trainer_smollm2_cpu_median_pruner.json
    python benchmarks/vs_trainer.py --model tiny-llama --trials 2 --max-steps 3   # a smoke run, 5-6 minutes
    python benchmarks/vs_trainer.py --pack 4 --harness-trials 8 --json benchmarks/results/vs_trainer_pack4.json
    python benchmarks/vs_trainer.py --markdown benchmarks/results/vs_trainer_smollm2_cpu.json
    python benchmarks/vs_trainer.py --fill-readme benchmarks/README.md

Both sides get the same base model (harness's cached checkpoint), the same tokenized `stdlib-qa` train and
held-out examples, the same search space (r, alpha = 2r, learning rate, quantization), the same Optuna
sampler (TPE, same seed, 4 start-up trials), the same trials, steps, batch size, schedule and optimizer, and
are scored by the same function (`harness.trial.scoring.eval_loss`):

- harness: `python -m harness sweep ...` as a child process. Per-trial numbers and finish times come from
  its trials.jsonl, the untuned baseline from its study.
- peer: this script again as a child process (`--peer-child`), in which
  `Trainer.hyperparameter_search(backend="optuna")` builds a fresh model in `model_init(trial)` for every
  trial (see vs_trainer_peer.py).

For every benchmark seed (`--seeds`; it sets the sampler seed and the training seed of both sides) it runs
harness once and the peer once per variant (`--variants`): `equal` gives the peer harness's numerics on this
device, `peer-autocast` runs it under accelerate's bf16 autocast. It prints and writes (`--json`) per seed
and as median (min-max) over seeds: both wall times and their ratio, both best eval losses, and the wall
seconds until each side first reached the peer's best eval loss. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling vs_trainer_*.py modules, however run

from vs_trainer_report import (SCHEMA, compare, print_report, render_markdown, step_seconds,  # noqa: E402
                               summarize, train_share, validate_variants)
from vs_trainer_spec import (LR_HIGH, LR_LOW, QUANT_CHOICES, VARIANTS, experiment_yaml, harness_autocast,  # noqa: E402
                             peer_autocast, short_params, space_yaml)

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "optuna", "accelerate", "harness")
RESULTS_BLOCK = re.compile(r"(<!-- RESULTS: (?P<path>\S+?\.json) -->\n)(?P<body>.*?)(<!-- /RESULTS -->)", re.DOTALL)


# ---------------------------------------------------------------- child processes


def harness_command(args: argparse.Namespace, seed: int, work: Path) -> list[str]:
    """`python -m harness sweep` for one seed (sampler and training seed), W&B off."""
    return [sys.executable, "-m", "harness", "sweep", "-e", str(work / "train.yaml"), "--model", args.model,
            "--space", str(work / "space.yaml"), "--trials", str(args.harness_trials or args.trials),
            "--max-steps", str(args.max_steps), "--study", "bench", "--out", str(work / f"harness-seed{seed}"),
            "--wandb", "disabled", "--seed", str(seed), "--pruner", args.pruner, "--warm-start", args.warm_start,
            "--lr-range-test" if args.lr_range_test else "--no-lr-range-test", "--pack", str(args.pack)]


def peer_command(args: argparse.Namespace, seed: int, autocast: str, work: Path, name: str) -> list[str]:
    """This script as the peer child for one seed and autocast setting; it writes `<name>.json` in work."""
    return [sys.executable, str(Path(__file__).resolve()), "--peer-child", str(work / f"{name}.json"),
            "--peer-out", str(work / name), "--model", args.model, "--trials", str(args.trials),
            "--max-steps", str(args.max_steps), "--batch-size", str(args.batch_size), "--seed", str(seed),
            "--peer-autocast", autocast, "--lr-low", repr(args.lr_low), "--lr-high", repr(args.lr_high)]


def run_timed(cmd: list[str], log: Path) -> dict[str, float]:
    """Run a command with its output in `log`. Returns its launch time (wall clock, epoch seconds: the zero of
    every time-to-target) and its wall seconds from launch to exit."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled"}
    env.pop("HARNESS_TORCH_THREADS", None)  # one harness worker: every core, as the peer gets
    with open(log, "w") as handle:
        launched_at, started = time.time(), time.perf_counter()
        code = subprocess.run(cmd, check=False, stdout=handle, stderr=subprocess.STDOUT, env=env).returncode
        wall = time.perf_counter() - started
    if code != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"command failed (exit {code}): {shlex.join(cmd)}\n--- last output ---\n{tail}")
    return {"launched_at": launched_at, "wall_seconds": wall}


# ---------------------------------------------------------------- reading what each side measured


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
            # the untuned base model in each quantization mode of the space (harness scores every one)
            "baseline_by_mode": study.user_attrs.get("baseline_by_mode"),
            "torch_threads": _harness_threads(records),
            "data": {k: study.user_attrs.get(k) for k in ("n_train", "n_eval", "split_hash")}}


def _harness_trial(record: dict[str, Any]) -> dict[str, Any]:
    """One trials.jsonl record, reduced to what the benchmark compares; `finished_epoch` is when the trial's
    record was written (after the study was told its result)."""
    result = record["result"]
    evals = [h for h in record.get("history", []) if "eval_loss" in h]
    return {"number": record["number"], "state": record["state"], "params": short_params(record["params"]),
            "eval_loss": record["eval_loss"], "steps": result.get("steps", 0),
            "load_seconds": result.get("load_seconds"), "train_seconds": record.get("train_seconds"),
            "eval_seconds": result.get("eval_seconds"), "wall_seconds": record.get("wall_seconds"),
            # above 1: train_seconds is the pack's, shared with its partners (`train_share`)
            "pack_size": result.get("pack_size", 1),
            "finished_epoch": dt.datetime.fromisoformat(record["finished_at"]).timestamp(),
            # pruner runs: evals before the last one (the final eval is eval_seconds)
            "intermediate_evals": max(0, len(evals) - (1 if record["state"] == "COMPLETE" else 0))}


def _harness_threads(records: list[dict[str, Any]]) -> int | None:
    """The torch threads harness's trial process used, where trials.jsonl records it (None if it does not)."""
    for record in records:
        process = record.get("process") or record.get("result", {}).get("process") or {}
        threads = process.get("torch_threads") or record.get("torch_threads")
        if threads:
            return int(threads)
    return None


def finish_times(trials: list[dict[str, Any]], launched_at: float, key: str) -> None:
    """Add `finished_seconds`: seconds from the side's process launch until each trial's result was known."""
    for trial in trials:
        if trial.get(key) is not None:
            trial["finished_seconds"] = trial.pop(key) - launched_at


def harness_run(seed: int, timing: dict[str, float], out: Path) -> dict[str, Any]:
    """One seed's harness run: its trials with finish times, and where its wall time went."""
    run = {"seed": seed, **timing, **read_harness(out)}
    trials = run["trials"]
    finish_times(trials, timing["launched_at"], "finished_epoch")
    mean_eval = _mean(trials, "eval_seconds") or 0.0
    inside = sum(train_share(t) + (t.get("eval_seconds") or 0) for t in trials)
    run.update(
        inside_fraction=inside / timing["wall_seconds"],
        overhead_per_trial_seconds=(timing["wall_seconds"] - inside) / max(1, len(trials)),
        # Intermediate (pruner) evals are outside train_seconds + eval_seconds: estimated at a final eval's cost.
        intermediate_eval_seconds_est=sum(t["intermediate_evals"] * (t["eval_seconds"] or mean_eval) for t in trials),
        baseline_eval_seconds_est=mean_eval,  # per mode harness scores the untuned base in: about one eval each
        mean_load_seconds=_mean(trials, "load_seconds"), step_seconds=step_seconds(trials))
    return run


def peer_run(seed: int, variant: str, timing: dict[str, float], path: Path) -> dict[str, Any]:
    """One seed's peer run in one variant, from the child's JSON."""
    log = json.loads(path.read_text())
    trials = log.pop("trials")
    finish_times(trials, timing["launched_at"], "finished_at")
    inside = sum((t.get("train_seconds") or 0) + (t.get("eval_seconds") or 0) for t in trials)
    scored = [t["eval_loss"] for t in trials if t.get("eval_loss") is not None]
    return {"seed": seed, "variant": variant, **timing, **log, "trials": trials,
            "best_eval_loss": min(scored) if scored else None,
            "overhead_per_trial_seconds": (timing["wall_seconds"] - inside) / max(1, len(trials)),
            "mean_init_seconds": _mean(trials, "init_seconds"), "step_seconds": step_seconds(trials)}


def _mean(trials: list[dict[str, Any]], key: str) -> float | None:
    values = [t[key] for t in trials if t.get(key) is not None]
    return sum(values) / len(values) if values else None


# ---------------------------------------------------------------- the benchmark


def prepare_models(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """Build, before anything is timed, what harness caches across sweeps on a machine: the converted
    checkpoint and one quantized checkpoint per quantized mode. Every seed then starts from the same state
    (otherwise seed 0 alone would pay it); the one-time seconds are recorded, not hidden."""
    from harness.trial.models import checkpoint_path, quantized_checkpoint, resolve_model

    started = time.perf_counter()
    path = checkpoint_path(resolve_model(args.model))
    one_time = {"checkpoint_seconds": time.perf_counter() - started, "quantized_checkpoint_seconds": {}}
    for mode in QUANT_CHOICES:
        if mode != "none":
            started = time.perf_counter()
            quantized_checkpoint(path, mode, device)
            one_time["quantized_checkpoint_seconds"][mode] = time.perf_counter() - started
    return one_time


def prepare_baselines(args: argparse.Namespace, work: Path) -> float:
    """Score (or find) the untuned baselines harness keeps on the machine (harness.trial.baselines) for this
    model, data and eval settings, before anything is timed, with a one-trial, one-step sweep of its own: every
    seed then reads them from the cache, as a user's later studies on the same data do. Returns its seconds."""
    cmd = [arg for arg in harness_command(args, 0, work) if arg != "--lr-range-test"]
    cmd[cmd.index("--trials") + 1], cmd[cmd.index("--max-steps") + 1] = "1", "1"
    cmd[cmd.index("--study") + 1], cmd[cmd.index("--out") + 1] = "baselines", str(work / "baselines")
    return run_timed(cmd, work / "baselines.log")["wall_seconds"]


def resolve_variants(names: list[str], device: str) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Each variant's numerics on this device; a variant whose peer numerics equal an earlier one's (on CUDA
    `peer-autocast` is `equal`) is skipped, with the reason."""
    validate_variants(names)
    chosen: dict[str, dict[str, str]] = {}
    skipped: dict[str, str] = {}
    for name in names:
        autocast = peer_autocast(name, device)
        twin = next((v for v, c in chosen.items() if c["peer_autocast"] == autocast), None)
        if twin is not None:
            skipped[name] = f"on {device} its numerics (peer autocast {autocast}) are those of `{twin}`"
            continue
        chosen[name] = {"label": VARIANTS[name], "peer_autocast": autocast,
                        "harness_autocast": harness_autocast(device)}
    return chosen, skipped


def load_peer_runs(args: argparse.Namespace,
                   variants: dict[str, dict[str, str]]) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    """The peer runs of `--peer-from`, by seed, and where they come from (file, times, revision, pruner);
    refuses a file whose settings differ from this run's."""
    path = args.peer_from
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"--peer-from {path}: cannot read it as a results file ({err})") from None
    given = earlier.get("settings", {})
    for key, value, before in (("model", args.model, None), ("trials", args.trials, None),
                               ("max_steps", args.max_steps, None), ("batch_size", args.batch_size, None),
                               ("lr_low", args.lr_low, LR_LOW), ("lr_high", args.lr_high, LR_HIGH)):
        if given.get(key, before) != value:  # `before`: what files written before the option existed ran
            raise SystemExit(f"--peer-from {path}: its {key} is {given.get(key)!r}, this run's is {value!r}; "
                             f"reuse only a file made with the same settings")
    runs = {r["seed"]: r for r in earlier.get("runs", [])}
    for seed in args.seeds:
        missing = [v for v in variants if v not in runs.get(seed, {}).get("peer", {})]
        if missing:
            raise SystemExit(f"--peer-from {path}: no peer run for seed {seed} in variant(s) {', '.join(missing)}")
    provenance = {"file": str(path), "started_at": earlier.get("started_at"), "finished_at": earlier.get("finished_at"),
                  "git_revision": earlier.get("git_revision"), "harness_pruner": given.get("pruner")}
    return runs, provenance


def run_seed(args: argparse.Namespace, seed: int, index: int, work: Path, variants: dict[str, dict[str, str]],
             reused: dict[int, dict[str, Any]] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """harness once and the peer once per variant for one seed. The run order rotates with the seed's
    position, so no side always runs first (slow drift of the machine then spreads over both). With
    `reused` (from --peer-from) only harness runs, and the peer's runs are the earlier file's."""
    jobs = {"harness": harness_command(args, seed, work)}
    if reused is None:
        for variant, numerics in variants.items():
            name = f"peer-{variant}-seed{seed}"
            jobs[f"peer[{variant}]"] = peer_command(args, seed, numerics["peer_autocast"], work, name)
    order = list(jobs)[index % len(jobs):] + list(jobs)[:index % len(jobs)]
    peer = {v: reused[seed]["peer"][v] for v in variants} if reused is not None else {}
    run: dict[str, Any] = {"seed": seed, "order": order, "peer": peer}
    for name in order:
        trials = args.harness_trials or args.trials if name == "harness" else args.trials
        print(f"seed {seed}: running {name} ({trials} trials x {args.max_steps} steps)...", flush=True)
        timing = run_timed(jobs[name], work / f"{name}-seed{seed}.log")
        if name == "harness":
            run["harness"] = harness_run(seed, timing, work / f"harness-seed{seed}")
        else:
            variant = name[len("peer["):-1]
            run["peer"][variant] = peer_run(seed, variant, timing, work / f"peer-{variant}-seed{seed}.json")
    run["peer"] = {v: run["peer"][v] for v in variants}  # variant order, whatever the run order was
    return run, {name: shlex.join(cmd) for name, cmd in jobs.items()}


def run_benchmark(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every seed and variant; the comparisons and their median (min-max) over seeds."""
    from harness.runtime.devices import pick_device

    device = pick_device()
    started_at = dt.datetime.now(dt.timezone.utc).isoformat()
    variants, skipped = resolve_variants(args.variants, device)
    for name, reason in skipped.items():
        print(f"variant {name} not run: {reason}", flush=True)
    reused, peer_reused = load_peer_runs(args, variants) if args.peer_from else (None, None)
    one_time = prepare_models(args, device)
    (work / "space.yaml").write_text(space_yaml((args.lr_low, args.lr_high)))
    (work / "train.yaml").write_text(experiment_yaml(args.batch_size))
    one_time["baselines_seconds"] = prepare_baselines(args, work)
    runs, commands = [], {}
    for index, seed in enumerate(args.seeds):
        run, commands[str(seed)] = run_seed(args, seed, index, work, variants, reused)
        runs.append(run)
    comparisons = {v: [compare(r["harness"], r["peer"][v]) for r in runs] for v in variants}
    return {
        "schema": SCHEMA, "benchmark": "benchmarks/vs_trainer.py", "started_at": started_at,
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(), **git_state(),
        "settings": settings(args), "peer_reused": peer_reused, "variants": variants, "skipped_variants": skipped,
        "numerics": numerics(device, runs, variants), "one_time": one_time, "data": runs[0]["harness"]["data"],
        "comparisons": comparisons, "summary": {v: summarize(rows) for v, rows in comparisons.items()},
        "runs": runs, "environment": environment(device, runs),
        "commands": {"benchmark": shlex.join([sys.executable, *sys.argv]), "per_seed": commands},
    }


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark's own settings, as given, with the model named as harness's reports name it (its label
    and the precision of its source weights, from harness.trial.source)."""
    from harness.trial.models import resolve_model
    from harness.trial.source import describe_source

    source = describe_source(resolve_model(args.model))
    return {"model": args.model, "model_label": source.label, "source_precision": source.precision,
            "trials": args.trials, "max_steps": args.max_steps, "batch_size": args.batch_size, "seeds": args.seeds,
            "pruner": args.pruner, "variants": args.variants, "harness_trials": args.harness_trials or args.trials,
            "warm_start": args.warm_start, "lr_range_test": args.lr_range_test, "pack": args.pack, "label": args.label,
            "lr_low": args.lr_low, "lr_high": args.lr_high}


def numerics(device: str, runs: list[dict[str, Any]], variants: dict[str, dict[str, str]]) -> dict[str, Any]:
    """What each side trained with: autocast, compute dtype, and the optimizer (harness: its
    `harness.trial.train.optimizer_name`; peer: the TrainingArguments.optim and the class Trainer built, by mode)."""
    from harness.runtime.devices import compute_dtype
    from harness.trial.train import optimizer_name

    peers: dict[str, Any] = {}
    for variant, chosen in variants.items():
        trials = [t for r in runs for t in r["peer"][variant]["trials"]]
        first = runs[0]["peer"][variant]
        peers[variant] = {"autocast": chosen["peer_autocast"], "mixed_precision": first["mixed_precision"],
                          "optim": _per_mode(trials, "optim"), "optimizer_class": _per_mode(trials, "optimizer_class")}
    return {"harness": {"autocast": harness_autocast(device),
                        "compute_dtype": str(compute_dtype(device)).replace("torch.", ""),
                        "optimizer": optimizer_name(device)},
            "peer": peers}


def _per_mode(trials: list[dict[str, Any]], key: str) -> str:
    """A trial field by 16-bit vs quantized trials, e.g. `adamw_torch` or `16-bit a, quantized b`."""
    seen: dict[bool, str] = {}
    for t in trials:
        seen.setdefault(t["params"]["quantization"] != "none", str(t.get(key)))
    return _per_kind(seen)


def _per_kind(by_quantized: dict[bool, str]) -> str:
    if len(set(by_quantized.values())) <= 1:
        return next(iter(by_quantized.values()), "n/a")
    return ", ".join(f"{'quantized' if q else '16-bit'} {name}" for q, name in sorted(by_quantized.items()))


def environment(device: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Device, CPU model, cores, torch threads of each side, compute dtype, Python and package versions."""
    from importlib import metadata

    import torch

    from harness.runtime.devices import compute_dtype

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    peer = next(iter(runs[0]["peer"].values()), {})
    return {"device": device, "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "torch_threads": {"harness": runs[0]["harness"]["torch_threads"], "peer": peer.get("torch_threads")},
            "compute_dtype": str(compute_dtype(device)).replace("torch.", ""),
            "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
            "python": platform.python_version(), "platform": platform.platform(), "versions": versions}


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def git_state() -> dict[str, Any]:
    """The commit the benchmark ran at, and whether harness/ or benchmarks/ differed from it (read-only git)."""
    def git(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)

    try:
        revision = git("rev-parse", "HEAD").stdout.strip() or None
        changed = git("diff", "--quiet", "HEAD", "--", "harness", "benchmarks").returncode != 0
        untracked = bool(git("ls-files", "--others", "--exclude-standard", "harness", "benchmarks").stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"git_revision": None, "git_dirty": None}
    return {"git_revision": revision, "git_dirty": changed or untracked}


# ---------------------------------------------------------------- markdown


def fill_readme(readme: Path) -> None:
    """Replace the body of every `<!-- RESULTS: path.json -->` ... `<!-- /RESULTS -->` block in `readme` with
    that JSON's markdown rendering (paths relative to the repository root)."""
    text = readme.read_text()

    def render(match: re.Match) -> str:
        path = ROOT / match["path"]
        if not path.is_file():
            raise SystemExit(f"{readme}: results file {match['path']} does not exist; run the benchmark first")
        return match[1] + render_markdown(json.loads(path.read_text())) + match[4]

    filled, count = RESULTS_BLOCK.subn(render, text)
    if count == 0:
        raise SystemExit(f"{readme}: no <!-- RESULTS: path.json --> ... <!-- /RESULTS --> block")
    readme.write_text(filled)
    print(f"{readme}: filled {count} results block(s)")


# ---------------------------------------------------------------- main


def parse_list(text: str, kind: type) -> list[Any]:
    """A comma-separated list, e.g. `0,1,2`."""
    try:
        return [kind(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, got {text!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="smollm2-135m (default) or tiny-llama (smoke run)")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--max-steps", type=int, default=20, help="optimizer steps per trial")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seeds", type=lambda s: parse_list(s, int), default=[0, 1, 2],
                        help="benchmark seeds (each sets the sampler and training seed of both sides); default 0,1,2")
    parser.add_argument("--pruner", choices=("none", "median", "hyperband", "asha"), default="none",
                        help="harness's pruner")
    parser.add_argument("--harness-trials", type=int, default=None,
                        help="trials harness may run (default: --trials, the peer's); with a pruner it may run more")
    parser.add_argument("--warm-start", default="none", help="harness's --warm-start (none or defaults)")
    parser.add_argument("--lr-range-test", action="store_true",
                        help="harness runs --lr-range-test (without it: --no-lr-range-test, whatever the axis)")
    parser.add_argument("--lr-low", type=float, default=LR_LOW, help=f"the learning-rate axis's low end, both sides "
                        f"(default {LR_LOW:g})")
    parser.add_argument("--lr-high", type=float, default=LR_HIGH,
                        help=f"its high end (default {LR_HIGH:g}); log-uniform")
    parser.add_argument("--pack", type=int, default=1, help="harness's --pack K: K trials trained at once on one "
                        "copy of the base (issue 24; on a GPU, where small-batch steps are host-bound)")
    parser.add_argument("--label", default="", help="a name for this harness configuration in the results")
    parser.add_argument("--variants", type=lambda s: parse_list(s, str), default=list(VARIANTS),
                        help=f"peer numerics to compare against, default {','.join(VARIANTS)}: "
                             + "; ".join(f"{k}: {v}" for k, v in VARIANTS.items()))
    parser.add_argument("--peer-from", type=Path, metavar="JSON",
                        help="reuse the peer's runs of an earlier results file (same model, trials, steps, batch, "
                             "seeds and variants) instead of running them again: half the time, but the ratio "
                             "then compares runs made at different times (the file and its times are recorded)")
    parser.add_argument("--json", type=Path, help="also write every number here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (studies, logs, peer JSON)")
    parser.add_argument("--markdown", type=Path, nargs="+", metavar="JSON",
                        help="print these results files as markdown and exit (runs nothing)")
    parser.add_argument("--fill-readme", type=Path, metavar="README",
                        help="fill the README's <!-- RESULTS: path.json --> blocks from those files and exit")
    # internal: run the peer for one seed and write its JSON to --peer-child
    parser.add_argument("--peer-child", help=argparse.SUPPRESS)
    parser.add_argument("--peer-out", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--peer-autocast", choices=("off", "bf16"), default="off", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def peer_child_main(args: argparse.Namespace) -> None:
    """The peer process: time its imports, run the search, write what it measured."""
    started_at, started = time.time(), time.perf_counter()
    import peft  # noqa: F401 - timed: the imports the peer pays
    import transformers  # noqa: F401
    from vs_trainer_peer import PeerLog, run_peer

    log = PeerLog(started_at=started_at, import_seconds=time.perf_counter() - started)
    Path(args.peer_child).write_text(json.dumps(asdict(run_peer(args, log)), indent=2))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.peer_child:
        peer_child_main(args)
        return
    if args.markdown:
        for path in args.markdown:
            print(render_markdown(json.loads(path.read_text())))
        return
    if args.fill_readme:
        fill_readme(args.fill_readme)
        return
    if not args.seeds:
        raise SystemExit("--seeds: give at least one seed, e.g. 0,1,2")
    if not 0 < args.lr_low < args.lr_high:
        raise SystemExit(f"--lr-low {args.lr_low:g} / --lr-high {args.lr_high:g}: give 0 < low < high, e.g. "
                         "--lr-low 1e-5 --lr-high 1e-2")
    work = Path(tempfile.mkdtemp(prefix="vs_trainer-"))
    try:
        results = run_benchmark(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_report(results)
    if args.keep:
        print(f"work folder: {work}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"json: {args.json}")


if __name__ == "__main__":
    main()
