"""Helpers every test folder shares: never go online, never write to the user's ~/.cache/harness (set up once by
`prepare_test_process`, which tests/conftest.py calls), run the real command line, start it in the background,
wait on an event with a deadline, read what a sweep leaves. Imported as `helpers` (pyproject's pytest
`pythonpath` puts tests/ on the path).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, MutableMapping, TypeVar

import forked_cli
from harness.runtime.devices import THREADS_ENV  # imports no torch

if TYPE_CHECKING:
    import optuna
    import torch


def use_run_cache(environ: MutableMapping[str, str]) -> str | None:
    """Point HARNESS_CACHE (harness.trial.models.cache_dir: converted checkpoints) at a new temporary folder, unless
    the caller chose one (a CI that keeps its cache between runs); returns the new folder, or None when the caller's stays."""
    if environ.get("HARNESS_CACHE"):  # cache_dir() treats an empty value as unset, and so does this
        return None
    environ["HARNESS_CACHE"] = tempfile.mkdtemp(prefix="harness-test-cache-")
    return environ["HARNESS_CACHE"]


RUN_CACHE: str | None = None
"""This run's own cache folder (removed after the run), or None when the caller chose one."""
_MADE_ENV = "HARNESS_TEST_RUN_CACHE"
"""Set to RUN_CACHE by the process that made it, so that pytest-xdist's workers (which inherit the environment
of the process that starts them) know the cache is this run's, not the caller's."""


def prepare_test_process() -> None:
    """Once per test process, before any test: the default Ctrl-C for children, W&B offline, the hub offline,
    a cache of this run's own that every process a test starts inherits through the environment, and under
    pytest-xdist each worker's share of the cores for torch (its tests and the processes they start)."""
    global RUN_CACHE
    # A runner that starts the suite as a background job of a non-interactive shell (`cmd &` in a
    # script) leaves SIGINT ignored, and an ignored signal stays ignored across exec: the Ctrl-C tests
    # would signal sweeps that never hear it. Catching it here gives every child the default Ctrl-C.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ["WANDB_MODE"] = "offline"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Tests never write to the user's ~/.cache/harness: this run's cache is removed after it.
    RUN_CACHE = use_run_cache(os.environ)
    if RUN_CACHE is not None:
        os.environ[_MADE_ENV] = RUN_CACHE
        atexit.register(shutil.rmtree, RUN_CACHE, ignore_errors=True)
    elif os.environ.get(_MADE_ENV) == os.environ["HARNESS_CACHE"]:
        RUN_CACHE = os.environ[_MADE_ENV]  # made by the xdist controller for this run
    share_cores_between_workers(os.environ)


def share_cores_between_workers(environ: MutableMapping[str, str]) -> str | None:
    """Under pytest-xdist (`make test` runs one worker per core), torch in each worker and in every process its
    tests start uses the worker's share of the cores, as `harness sweep --workers N` gives each of its workers:
    two workers at two threads each on two cores would fight over them. Returns the share, or None when this
    is no xdist worker or the caller set the threads."""
    workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers < 2 or THREADS_ENV in environ:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = str(max(1, cores // workers))
    for name in (THREADS_ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        environ.setdefault(name, share)
    return share


REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")


# ---- the command line ---------------------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: float = 600,
            fresh: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m harness ARGS` as a user would; returns the finished process. The command runs forked from
    this test process's fork server (tests/forked_cli.py: the imports paid once) unless `fresh` or `env` sets a
    variable read when Python or a library starts: then it is a new `python -m harness` process."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if not fresh and forked_cli.may_fork(env):
        return forked_cli.run(list(args), full_env, str(cwd), timeout)
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def start(args: list[str], env: dict[str, str] | None = None,
          fresh: bool = False) -> subprocess.Popen | forked_cli.ForkedCommand:
    """Start `python -m harness ARGS` in the background, stdout and stderr piped (text); forked as run_cli's."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if not fresh and forked_cli.may_fork(env):
        return forked_cli.start(list(args), full_env, str(REPO))
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO, text=True, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Bad input: exit 2, one line on stderr starting `harness: error:`, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("harness: error:"), lines[0]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def wait_for(predicate: Callable[[], T], timeout: float, what: str, *, alive: subprocess.Popen | None = None,
             interval: float = 0.2) -> T:
    """Poll `predicate` until it returns something true, and return that; AssertionError naming `what` after
    `timeout` seconds, or as soon as the process `alive` (when given) has ended."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if alive is not None and alive.poll() is not None:
            out, err = alive.communicate()
            raise AssertionError(f"waiting for {what}: the process ended first (exit {alive.returncode})\n"
                                 f"{(out or '')[-2000:]}{(err or '')[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}, in vain")
        time.sleep(interval)


# ---- files a sweep reads or leaves --------------------------------------------------------------------------


def wait_for_running(out: Path, name: str, proc: subprocess.Popen, count: int = 1, timeout: float = 120) -> None:
    """Until `count` of the sweep's trials are RUNNING, each with its config stored: from then on Ctrl-C or SIGKILL
    hits them (a pack of `count` members, or a single trial)."""
    import optuna

    def running() -> bool:
        if not (out / "study.db").exists():
            return False
        try:
            trials = load_study(out, name).get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except Exception:  # the study is still being created
            return False
        return len(trials) >= count and all(t.user_attrs.get("config") for t in trials)

    what = "a RUNNING trial" if count == 1 else f"{count} RUNNING trials"
    wait_for(running, timeout, f"{what} with its config in study {name!r}", alive=proc)


def write_jsonl(path: Path, records: list) -> str:
    """One JSON object a line; returns the path as a string (what DataSpec takes)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def records(out: Path) -> list[dict]:
    """A sweep folder's trials.jsonl, one dict a trial record."""
    return [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines() if line.strip()]


FAST_SPACE = """axes:
  lora_r: {choices: [4, 8]}
  lora_alpha: {ratio: 2}
  learning_rate: {low: 1.0e-3, high: 1.0e-2, log: true}
  quantization: none
"""


TINY = ["--model", "tiny-llama", "--space", "search_spaces/tiny.yaml", "--max-steps", "5", "--no-lr-range-test"]
"""`harness sweep` flags for tiny-llama trials in three modes (none, int8, nf4) of 5 steps, sampled over the
space's whole learning-rate axis (tiny.yaml's spans 100x, which by default a range test would narrow first:
tests/search/test_lr_narrowing.py tests that)."""


def load_study(out: Path, name: str) -> optuna.Study:
    """A study in a sweep folder's default SQLite storage."""
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{out}/study.db")


def write_space(path: Path, quantization: str = "{choices: [none, int8, nf4]}", lora_r: str = "4") -> Path:
    """A search space of one tiny config (lr 5e-3, alpha 2r) in the given quantization choices."""
    path.write_text(f"axes:\n  lora_r: {lora_r}\n  lora_alpha: {{ratio: 2}}\n  learning_rate: 5.0e-3\n"
                    f"  quantization: {quantization}\n")
    return path


def lr_decades_setup(folder: Path) -> tuple[Path, Path]:
    """A space of one tiny config with learning rates over three decades (1e-5 to 1e-2, one mode), so that
    after a few completed trials some fall behind the median, and an experiment file that generates nothing
    (pruning reads eval losses only): the set-up of the pruner tests."""
    space = folder / "lr.yaml"
    space.write_text("axes:\n  lora_r: 4\n  lora_alpha: {ratio: 2}\n"
                     "  learning_rate: {low: 1.0e-5, high: 1.0e-2, log: true}\n  quantization: none\n")
    experiment = folder / "exp.yaml"
    experiment.write_text("eval: {metrics: [], generate_size: 0}\nlr_range_test: false  # keep the three decades\n")
    return space, experiment


def fast_experiment(folder: Path) -> Path:
    """An experiment file for trials of a few seconds: tiny-llama, 2 steps, 64 train and 8 eval examples,
    no generation."""
    space = folder / "space.yaml"
    space.write_text(FAST_SPACE)
    path = folder / "fast.yaml"
    path.write_text(f"model: tiny-llama\nspace: {space}\nmax_steps: 2\nwandb: disabled\n"
                    "data_options: {eval_size: 8, train_size: 64}\neval: {metrics: [], generate_size: 0}\n")
    return path


def loss_only_experiment(folder: Path, extra: str = "") -> Path:
    """An experiment file of 32 training and 8 held-out examples, scored on the loss alone (nothing generated),
    plus `extra` YAML lines."""
    path = folder / "exp.yaml"
    path.write_text("data_options: {eval_size: 8, train_size: 32}\neval: {metrics: [], generate_size: 0}\n" + extra)
    return path


def journal_study(out: Path, name: str) -> optuna.Study:
    """The study in a sweep folder's journal file (the storage of several workers)."""
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def assert_accounted_for(study: optuna.Study, rows: list[dict], target: int) -> optuna.trial.FrozenTrial:
    """Every trial finished and recorded once; `target` of them count; each lost one was retried once and
    its retry completed with the same params. Returns the lost trial."""
    trials = study.get_trials()
    states = [t.state.name for t in trials]
    assert "RUNNING" not in states and "WAITING" not in states, states
    numbers = [r["number"] for r in rows]
    assert len(numbers) == len(set(numbers)), "a trial was recorded twice"
    assert sorted(numbers) == [t.number for t in trials], "a trial has no trials.jsonl record"
    lost = [t for t in trials if str(t.user_attrs.get("reason", "")).startswith("worker lost")]
    assert len(lost) == 1 and lost[0].state.name == "FAIL", [(t.number, t.state.name) for t in trials]
    retries = [t for t in trials if t.user_attrs.get("retry_of") == lost[0].number]
    assert len(retries) == 1
    assert retries[0].state.name == "COMPLETE" and retries[0].params == lost[0].params
    assert retries[0].system_attrs["failed_trial"] == lost[0].number
    assert [t for t in trials if t.number != lost[0].number and t.state.name != "COMPLETE"] == []
    assert len(trials) - 1 == target
    row = {r["number"]: r for r in rows}[lost[0].number]
    assert row["state"] == "FAIL" and row["error"].startswith("worker lost")
    assert row["retried_as"] == retries[0].number
    return lost[0]


LOAD_WITHOUT_HARNESS = """
import sys, yaml, peft, transformers
cfg = yaml.safe_load(open(sys.argv[1]))
sections = [cfg] + list(cfg.get("per_quantization", {}).values())
if (cfg.get("within_memory") or {}).get("lora"):
    sections.append(cfg["within_memory"])
for s in sections:
    lora = peft.LoraConfig(**s["lora"])
    q = transformers.BitsAndBytesConfig(**s["quantization"]) if s["quantization"] else None
    args = transformers.TrainingArguments(output_dir=sys.argv[2], report_to="none", **s["training"])
    assert lora.r == s["lora"]["r"] and args.learning_rate == s["training"]["learning_rate"]
    warmup = args.get_warmup_steps(args.max_steps)
    print("r", lora.r, "quant", q.bnb_4bit_quant_type if q and q.load_in_4bit else "int8" if q else None,
          "dq", q.bnb_4bit_use_double_quant if q else None, "steps", args.max_steps, "warmup", warmup)
    if s.get("optimizer"):  # LoRA+: the one peft call the file's header gives, on a small local Llama
        import torch
        from peft.optimizers import create_loraplus_optimizer
        tiny = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2))
        model = peft.get_peft_model(tiny, lora)
        opt = create_loraplus_optimizer(model, torch.optim.AdamW, **s["optimizer"])
        lrs = sorted({g["lr"] for g in opt.param_groups})
        assert lrs[-1] == s["optimizer"]["lr"] * s["optimizer"]["loraplus_lr_ratio"], lrs
        print("loraplus groups", lrs)
assert "harness" not in sys.modules
print("loaded", len(sections))
"""


def load_without_harness(path: Path, tmp_path: Path) -> str:
    """Load a recommended.yaml into plain peft and transformers in a fresh Python (no harness); its stdout."""
    proc = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_HARNESS, str(path), str(tmp_path / "args")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def with_nonzero_lora_b(model: "torch.nn.Module", seed: int = 1) -> "torch.nn.Module":
    """`model` (an adapter just attached) with every LoRA B drawn from N(0, 0.05) (seeded) instead of zero, which
    would make every A gradient zero, and in training mode: for tests that compare gradients of two paths."""
    import torch

    torch.manual_seed(seed)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    model.train()
    return model
