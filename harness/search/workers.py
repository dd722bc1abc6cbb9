"""`harness sweep --workers N`: N worker processes on one study, on one machine.

The parent does everything that can fail on bad input, creates the study, scores the untuned baseline
and fixes the target (the study's counted trials + `--trials`) once. Then it starts N workers
(`python -m harness.search.workers`, the job JSON on its stdin: it holds the storage URL, whose password must
not show in the process list as an argument would), each pinned to its own GPU (CUDA_VISIBLE_DEVICES
round-robin) or, on a CPU, to its share of the cores; prefixes their output with `[wN]`; forwards Ctrl-C; and waits.
Workers claim trials under the claim lock (harness.search.recovery), so the study ends with exactly
`--trials` more counted trials however the work was split, even when a worker dies on the way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from harness.search.exits import BAD_INPUT, FAILED, INTERRUPTED, OK, Interrupted, exit_code
from harness.search.records import read_records
from harness.search.recovery import Heartbeat, counted
from harness.runtime.devices import THREADS_ENV
from harness.runtime.redaction import redact_text
from harness.search.runner import describe_exit, die_with_parent
from harness.search.study import public_url
from harness.config.space import SearchSpace
from harness.config.errors import SpecError
from harness.config.sweep import SweepSpec
from harness.search.sweep import Role, Sweep, SweepInterrupted, SweepOutcome


SEED_STRIDE = 1_000_003
"""Worker k samples with seed + k * SEED_STRIDE (+ trials already run), so workers never share a sampler seed."""


class WorkersFailed(RuntimeError):
    """Some workers ended abnormally and the study did not reach its target."""


def visible_gpus() -> list[str]:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES if set, else every CUDA device torch sees."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def assignments(workers: int, gpus: list[str], cores: int) -> list[dict[str, str]]:
    """The environment of each worker: one GPU each (round-robin when there are fewer GPUs than workers)
    and an equal share of the CPU cores for torch (at least one thread)."""
    threads = str(max(1, cores // workers))
    env = {THREADS_ENV: threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    return [{**env, **({"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} if gpus else {})} for i in range(workers)]


def sharing(envs: list[dict[str, str]], index: int) -> int:
    """How many workers run on worker `index`'s device: those given the same GPU, or all of them on a CPU."""
    device = envs[index].get("CUDA_VISIBLE_DEVICES")
    return sum(env.get("CUDA_VISIBLE_DEVICES") == device for env in envs)


def run_parallel(spec: SweepSpec, space: SearchSpace, workers: int, heartbeat: Heartbeat | None,
                 time_budget: float | None = None) -> SweepOutcome:
    """Set the study up here, run its trials in `workers` processes, and gather what they did. Under
    `time_budget` (seconds) each worker gets what is left of it when it starts."""
    parent = Sweep(spec, space, role=Role(heartbeat=heartbeat, time_budget=time_budget))
    try:
        parent.prepare_study(start_runner=False)
    finally:
        parent.close()
    log = parent.out_dir / "trials.jsonl"
    offset = log.stat().st_size if log.exists() else 0
    left = None if parent.budget is None else max(1e-3, parent.budget.seconds - parent.budget.elapsed())
    job = {"spec": _spec_dict(spec), "target": parent.target, "base": parent.base, "time_budget": left}
    envs = assignments(workers, visible_gpus(), len(os.sched_getaffinity(0)))
    parent.progress.note(f"{workers} workers on study {spec.study!r} ({public_url(parent.outcome.storage)}): "
                         + ", ".join(f"w{i + 1} {_where(env)}" for i, env in enumerate(envs)))
    pool = _Pool([_start({**job, "worker": i + 1, "sharing": sharing(envs, i)}, env) for i, env in enumerate(envs)])
    codes = pool.wait(parent.progress.note)
    parent.outcome.records += read_records(log, offset)
    if parent.budget is not None:  # the workers said why each stopped; here, the run as a whole
        parent.outcome.time_budget = parent.budget.summary(len(parent.outcome.records),
                                                           stopped=counted(parent.study) < parent.target)
    parent.recover_lost()  # a worker that died after the others had stopped
    try:
        parent.score_top_trials()  # --task-metrics top-K, once, here: not in every worker
    finally:
        parent.close()
    outcome = parent.finish()
    _judge(codes, pool, parent)
    return outcome


def _spec_dict(spec: SweepSpec) -> dict[str, Any]:
    from harness.config.experiment import spec_to_dict

    return spec_to_dict(spec)


def _where(env: dict[str, str]) -> str:
    device = f"GPU {env['CUDA_VISIBLE_DEVICES']}" if "CUDA_VISIBLE_DEVICES" in env else "CPU"
    return f"{device} ({env[THREADS_ENV]} thread{'s' if env[THREADS_ENV] != '1' else ''})"


def _start(job: dict[str, Any], env: dict[str, str]) -> subprocess.Popen:
    # A session of its own: a Ctrl-C in the terminal reaches the parent only, which forwards it once.
    # If the parent itself is killed, the kernel kills the workers too (their output has nowhere to go);
    # their trials are then recovered as lost by the next run and retried.
    # The job goes through a pipe, never the arguments: /proc/PID/cmdline is readable by every user.
    proc = subprocess.Popen([sys.executable, "-m", "harness.search.workers"],
                            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            start_new_session=True, preexec_fn=die_with_parent)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(job))
    proc.stdin.close()
    return proc


class _Pool:
    """The running workers: their output is copied to stderr line by line with a [wN] prefix."""

    def __init__(self, procs: list[subprocess.Popen]) -> None:
        self.procs = procs
        self.interrupts = 0
        self.errors: dict[int, str] = {}
        self._pumps = [threading.Thread(target=self._pump, args=(i + 1, p), daemon=True) for i, p in enumerate(procs)]
        for pump in self._pumps:
            pump.start()

    def _pump(self, worker: int, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if line.startswith("harness: error:"):
                self.errors[worker] = line.strip()
            sys.stderr.write(f"[w{worker}] {line}")
            sys.stderr.flush()

    def wait(self, note: Any) -> list[int]:
        """Wait for every worker. Ctrl-C (or SIGTERM) is forwarded: the first lets each worker record its trial
        as interrupted; a second one exits at once (the trials left RUNNING are recovered later)."""
        def forward(signum: int, frame: Any) -> None:
            self.interrupts += 1
            for proc in self.procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            if self.interrupts > 1:
                raise KeyboardInterrupt
            sys.stderr.write("harness: stopping: each worker records its trial as interrupted "
                             "(Ctrl-C again to exit at once)\n")

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while any(proc.poll() is None for proc in self.procs):
                time.sleep(0.2)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        for pump in self._pumps:
            pump.join(timeout=5)
        for i, proc in enumerate(self.procs):
            if proc.returncode not in (OK, BAD_INPUT, INTERRUPTED):
                note(f"worker {i + 1} ended abnormally ({describe_exit(proc.returncode)}); its trial is recovered "
                     "by the others")
        return [proc.returncode for proc in self.procs]


def _judge(codes: list[int], pool: _Pool, parent: Sweep) -> None:
    """The sweep's exit: interrupted (130), bad input in a worker (2), or a shortfall after dead workers (1)."""
    import optuna

    if pool.interrupts or INTERRUPTED in codes:
        raise SweepInterrupted("interrupted: each worker recorded its trial as failed (interrupted); the study can "
                               "be resumed with the same command")
    if pool.errors:
        raise SpecError(next(iter(pool.errors.values()))[len("harness: error: "):])
    waiting = parent.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    done = counted(parent.study)
    if any(code != 0 for code in codes) and (done < parent.target or waiting):
        raise WorkersFailed(f"workers ended abnormally ({', '.join(describe_exit(c) for c in codes if c)}); the study "
                            f"holds {done} of {parent.target} trials; run the same command again to finish")


def child(job: dict[str, Any]) -> int:
    """One worker: the parent's spec and target, its own index; returns the exit code (harness.search.exits)."""
    from harness.config.experiment import build_sweep_spec, resolve_space
    from harness.config.space import load_space

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        spec = build_sweep_spec(job["spec"], {}, f"worker {job['worker']}")
        space = load_space(resolve_space(spec.space))
        role = Role(worker=job["worker"], target=job["target"], base=job["base"],
                    seed_offset=SEED_STRIDE * job["worker"], parallel=True, time_budget=job.get("time_budget"),
                    sharing=int(job.get("sharing", 1)))
        Sweep(spec, space, role=role).run()
    except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - one line, like cli.main
        code = exit_code(err)
        if isinstance(err, SpecError):
            print(f"harness: error: {redact_text(str(err))}", file=sys.stderr)
        elif isinstance(err, Interrupted):
            print(f"harness: {err}", file=sys.stderr)
        elif code == FAILED:
            print(f"harness: {type(err).__name__}: {redact_text(str(err))}", file=sys.stderr)
        return code
    return OK


if __name__ == "__main__":
    sys.exit(child(json.loads(sys.stdin.read())))
