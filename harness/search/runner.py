"""Runs trials in a supervised child process, so a trial that dies cannot take the study down.

One long-lived worker process (spawned, not forked) runs trial after trial and keeps its
`TrialCache` (converted checkpoint, tokenizer, tokenized data), so start-up is paid once, not per
trial. If the process dies in the middle of a trial (SIGKILL, the OOM killer, a segfault), the
trial ends as `failed` with the signal as its reason, and the next trial gets a fresh process.
"""

from __future__ import annotations

import ctypes
import dataclasses
import multiprocessing as mp
import os
import re
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from harness.runtime.devices import THREADS_ENV, loaded_hub_kernels
from harness.config.trial import TrialConfig
from harness.trial.result import TrialResult

if TYPE_CHECKING:
    from harness.trial.lr_range import RangeCurve
    from harness.trial.run import BaselineScore

POLL_SECONDS = 0.2
START_METHOD = "spawn"
"""How the worker process starts: a fresh interpreter (CUDA cannot be used in a forked child of a process that
initialised it, and a spawned worker shares no state with the sweep)."""
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class HeldOut:
    """The data a baseline was scored with, as the study records it (user attrs of the same names)."""

    split_hash: str
    data_source: str
    n_train: int
    n_eval: int
    truncated: int
    """Examples (train and held-out) cut to max_seq_len."""


@dataclass(frozen=True)
class BaselineReply:
    """What the trial process answers to "score the untuned base model": the score and the data it was
    scored with, or (score None) the one-line reason it could not be scored."""

    score: BaselineScore | None = None
    held_out: HeldOut | None = None
    error: str | None = None
    died: bool = False
    """The process itself died (a fault, not bad input: a fresh process may succeed)."""
    cached: bool = False
    """The score was read from this machine's baseline cache (harness.trial.baselines), not scored now."""


def die_with_parent() -> None:
    """Linux: the kernel kills this process when the sweep that supervises it dies (even by SIGKILL), so a
    lost worker leaves no orphaned training process behind to compete with the trial's retry."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    parent = mp.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before the line above took effect
        os._exit(1)


def reply_or_report(conn: Any, kind: str, job: Callable[[], Any],
                    failed: Callable[[str], Any] = lambda reason: {"error": reason}) -> None:
    """Send the supervisor `(kind, job())`; an exception in the job is reported, not raised: `(kind,
    failed(its one-line reason))` goes back instead (by default {"error": reason}), the worker lives on for the
    next job, and the supervisor decides what the failure means."""
    from harness.config.errors import one_line

    try:
        conn.send((kind, job()))
    except Exception as err:  # reported, not raised: the supervisor decides
        conn.send((kind, failed(one_line(err))))


def _worker_main(conn: Any) -> None:
    """The child's loop: receive a job, run it, send back progress and the result."""
    # Ctrl-C goes to the whole process group; the supervisor decides what to do about it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    from harness.runtime.quiet import silence_for_process

    silence_for_process()
    if os.environ.get(THREADS_ENV):
        import torch

        torch.set_num_threads(int(os.environ[THREADS_ENV]))
    from harness.trial.baselines import cached_baseline
    from harness.trial.run import TrialCache, TrialCallbacks, run_trial

    cache = TrialCache()
    while True:
        try:
            kind, payload = conn.recv()
        except EOFError:
            return
        if kind == "exit":
            return
        if kind == "range":
            from harness.trial.lr_range import run_range_test

            config = TrialConfig.from_dict(payload["config"])
            curve = run_range_test(config, payload["low"], payload["high"], payload["steps"], cache)
            conn.send(("range", curve.to_dict()))
            continue
        if kind in ("probe", "cached_probe"):  # the planner's probe runs where trials run: the same process and
            # meter; "cached_probe" only reads this machine's cache ({} when it has none: nothing is measured)
            from harness.trial.memory_plan import cached_probe

            def probe_reply() -> dict[str, Any]:
                probe = cached_probe(TrialConfig.from_dict(payload), cache, measure=kind == "probe")[0]
                return dataclasses.asdict(probe) if probe is not None else {}

            reply_or_report(conn, kind, probe_reply)
            continue
        if kind == "task":  # a failure leaves the trial its other results
            from harness.trial.run import score_saved_adapter

            reply_or_report(conn, "task", lambda: dataclasses.asdict(
                score_saved_adapter(TrialConfig.from_dict(payload["config"]), payload["adapter_dir"], cache)))
            continue
        if kind == "pack":
            from harness.trial.packed import run_pack

            def on_member_eval(member: int, step: int, loss: float) -> bool:
                conn.send(("eval", {"member": member, "step": step, "eval_loss": loss}))
                return bool(conn.recv())

            def refill() -> TrialConfig | None:
                conn.send(("refill", {}))
                reply = conn.recv()
                return TrialConfig.from_dict(reply) if reply is not None else None

            configs = [TrialConfig.from_dict(c) for c in payload]
            results = run_pack(configs, cache, on_step=lambda step, losses: conn.send(
                ("step", {"step": step, "losses": {str(k): v for k, v in losses.items()}})), on_eval=on_member_eval,
                on_result=lambda k, result: conn.send(("member", {"member": k, "result": result.to_dict()})),
                refill=refill)
            conn.send(("result", {"results": [r.to_dict() for r in results], "process": process_facts()}))
            continue
        config = TrialConfig.from_dict(payload)
        if kind == "baseline":
            if config.fault == "kill":  # test hook (preparing.FAULTS_ENV `base:kill`): die as the OOM killer would
                os.kill(os.getpid(), signal.SIGKILL)

            def baseline() -> BaselineReply:
                score, cached = cached_baseline(config, cache)
                data = cache.prepared(config)
                held_out = HeldOut(data.split_hash, data.source, len(data.tokenized.train),
                                   len(data.tokenized.eval), data.tokenized.truncated)
                return BaselineReply(score, held_out, cached=cached)

            reply_or_report(conn, "baseline", baseline, failed=lambda reason: BaselineReply(error=reason))
            continue

        def on_eval(step: int, loss: float) -> bool:
            conn.send(("eval", {"step": step, "eval_loss": loss}))
            return bool(conn.recv())

        callbacks = TrialCallbacks(
            on_step=lambda info: conn.send(("step", {"step": info.step, "loss": info.loss, "lr": info.lr,
                                                     "tokens": info.tokens})),
            on_eval=on_eval)
        conn.send(("result", {**run_trial(config, cache, callbacks).to_dict(), "process": process_facts()}))


def process_facts() -> dict[str, Any]:
    """What the supervisor cannot see from outside the trial process: its pid, the CPU threads torch
    really uses there (after the trial's model load, which must keep `--workers N`'s split) and the hub
    kernels loaded there (bitsandbytes' 4-bit CPU matmul on AVX512-BF16 machines, when the hub has it)."""
    import torch

    return {"pid": os.getpid(), "torch_threads": torch.get_num_threads(), "hub_kernels": loaded_hub_kernels()}


_CUDA_ERROR = re.compile(r"cuda|cudnn|cublas|cusparse|cusolver|cufft|curand|nccl|nvml|device-side assert|"
                         r"AcceleratorError|illegal memory access|misaligned address", re.IGNORECASE)


def needs_fresh_worker(result: TrialResult) -> bool:
    """Whether the process that ran `result` must be replaced before the next trial: after running out of
    memory, and after any CUDA error (CUDA errors are sticky: every later CUDA call in that process fails).
    Matching loosely costs at most a needless restart (seconds); missing one fails every later trial."""
    if result.status == "oom":
        return True
    return result.status == "failed" and bool(_CUDA_ERROR.search(result.reason or ""))


def describe_exit(code: int | None) -> str:
    """How a process ended, from its exit code: "killed by SIGKILL" (negative: the signal) or "exit code 1"."""
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _died(code: int | None) -> str:
    """The reason of a trial whose process ended in the middle of it."""
    hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if code == -signal.SIGKILL else ""
    return f"trial process died: {describe_exit(code)}{hint}"


def _predicted(prediction: Any) -> dict[str, float]:
    """A planner's prediction (a Prediction or a Planned; None: none) as the trial record's fields."""
    if prediction is None:
        return {}
    return {"predicted_peak_memory_mb": prediction.peak_memory_mb, "predicted_step_seconds": prediction.step_seconds,
            "predicted_eval_peak_memory_mb": prediction.eval_peak_mb}


class TrialRunner:
    """Supervises the worker process; `run` returns a TrialResult whatever happens to the child."""

    def __init__(self, sharing: int = 1) -> None:
        self._ctx = mp.get_context(START_METHOD)
        self._proc: Any = None
        self._conn: Any = None
        self._predict: Callable[[TrialConfig], Any] | None = None
        self._known: Callable[[TrialConfig], Any] | None = None
        self.sharing = sharing
        """How many trials run on this device at once (`--workers N` on one device): each gets that share of a
        memory budget."""
        self.process: dict[str, int] | None = None
        """`process_facts()` of the worker that ran the last trial to return a result (pid, torch_threads)."""

    def start(self) -> None:
        """Start the worker now (its imports overlap with whatever the caller does next)."""
        if self._proc is not None and self._proc.is_alive():
            return
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_worker_main, args=(child,), daemon=True, name="harness-trial")
        self._proc.start()
        child.close()
        self._conn = parent

    def run(self, config: TrialConfig, *, on_step: Callable[[dict[str, Any]], None] | None = None,
            on_eval: Callable[[dict[str, Any]], bool] | None = None) -> TrialResult:
        """Run one trial in the worker; progress messages are passed to the callbacks. Under a memory budget
        (`config.train.max_memory_mb`, of which it gets a 1/`sharing` share) the config is first fitted or
        found infeasible (harness.search.planning), here, before the worker loads anything: an infeasible trial
        never reaches the worker."""
        planned, predicted = None, {}
        if config.train.max_memory_mb is None:
            predicted = _predicted(self.known_prediction(config))
        else:
            from harness.search.planning import fit_to_budget, share_of

            budget = config.train.max_memory_mb
            note = (f" (a 1/{self.sharing} share of {budget:,.0f} MiB: {self.sharing} workers share this device)"
                    if self.sharing > 1 else "")
            planned = fit_to_budget(config, share_of(budget, self.sharing), self.predictor(), note)
            predicted = _predicted(planned)
            if planned.infeasible:
                return TrialResult(status="infeasible", reason=planned.infeasible, **predicted)
            config = planned.config
        try:
            result = TrialResult.from_dict(self._serve(("trial", config.to_dict()), on_step, on_eval))
        except _WorkerDied as died:
            result = TrialResult(status="failed", reason=str(died))
        if planned is None:
            return dataclasses.replace(result, **predicted)
        return dataclasses.replace(result, fit=planned.fit, **predicted)

    def predictor(self) -> Callable[[TrialConfig], Any]:
        """The memory/time predictor, made once per runner; its probes run in the worker, the process and meter
        of the trials they predict (and are cached on the machine)."""
        if self._predict is None:
            from harness.trial.memory_plan import make_predictor

            self._predict = make_predictor(probe_of=self.probe)
        return self._predict

    def known_prediction(self, config: TrialConfig) -> Any:
        """`config`'s predicted peak and step time when this machine has its probe (an earlier budgeted sweep,
        `--plan`), else None: without a budget no probe is measured for it. A failure to look is None too:
        a prediction is never worth a trial."""
        if self._known is None:
            from harness.trial.memory_plan import make_predictor

            self._known = make_predictor(probe_of=self._cached_probe)
        try:
            return self._known(config)
        except (ProbeFailed, OSError, ValueError, KeyError):
            return None

    def _cached_probe(self, config: TrialConfig) -> Any:
        """`config`'s probe if this machine has it cached, else None (nothing measured)."""
        return self._ask_probe("cached_probe", config)

    def probe(self, config: TrialConfig) -> Any:
        """`config`'s memory/time probe (harness.trial.memory_plan.cached_probe), run in the worker. Raises
        ProbeFailed (a fault, exit 1: the input was checked before) with the worker's one-line reason when the
        probe fails or its process dies."""
        return self._ask_probe("probe", config)

    def _ask_probe(self, kind: str, config: TrialConfig) -> Any:
        """The worker's answer to a `probe` or `cached_probe` job: a Probe, or None for an empty cache."""
        from harness.trial.memory_plan import Probe

        self.start()
        what = f"the memory probe of {config.model.name} in {config.quant.mode} (batch {config.train.batch_size})"
        try:
            self._conn.send((kind, config.to_dict()))
            reply = self._receive()[1]
        except _WorkerDied as died:
            raise ProbeFailed(f"{what} failed: {died}") from None
        if "error" in reply:
            raise ProbeFailed(f"{what} failed: {reply['error']}")
        return Probe.from_dict(reply) if reply else None

    def _serve(self, job: tuple[str, Any], on_step: Callable[[dict[str, Any]], None] | None,
               on_eval: Callable[[dict[str, Any]], bool] | None,
               handlers: dict[str, Callable[[Any], None]] | None = None) -> dict[str, Any]:
        """Send a trial or pack job to the worker and serve its messages until its result, which is returned:
        `step` goes to on_step, `eval` to on_eval (its answer, prune or not, goes back), any other kind to
        `handlers[kind]`. Raises _WorkerDied when the worker dies."""
        self.start()
        self._conn.send(job)
        while True:
            kind, payload = self._receive()
            if kind == "result":
                self.process = payload.pop("process", None)
                return payload
            if kind == "step":
                if on_step:
                    on_step(payload)
            elif kind == "eval":
                self._conn.send(bool(on_eval(payload)) if on_eval else False)
            elif handlers and kind in handlers:
                handlers[kind](payload)

    def run_pack(self, configs: list[TrialConfig], *,
                 on_step: Callable[[dict[str, Any]], None] | None = None,
                 on_eval: Callable[[dict[str, Any]], bool] | None = None,
                 on_result: Callable[[int, TrialResult], None] | None = None,
                 refill: Callable[[], TrialConfig | None] | None = None) -> list[TrialResult]:
        """Train configs as one pack in the worker (harness.trial.packed.run_pack): one result per member, in
        order of their indices (the configs, then the refills); `on_step` hears {step, losses: {member index:
        loss}}, `on_eval` {member, step, eval_loss} and returns True to prune that member, `on_result(member,
        result)` each member's result as it leaves, and `refill()` is asked for a config to take the place of a
        member that left early (None: none). A worker that dies fails every member it had not finished."""
        members = len(configs)
        done: dict[int, TrialResult] = {}

        def member(payload: dict[str, Any]) -> None:
            done[payload["member"]] = TrialResult.from_dict(payload["result"])
            if on_result:
                on_result(payload["member"], done[payload["member"]])

        def ask_refill(_: Any) -> None:
            nonlocal members
            config = refill() if refill else None
            members += config is not None
            self._conn.send(config.to_dict() if config is not None else None)

        try:
            result = self._serve(("pack", [config.to_dict() for config in configs]), on_step, on_eval,
                                 {"member": member, "refill": ask_refill})
            return [TrialResult.from_dict(r) for r in result["results"]]
        except _WorkerDied as died:
            return [done.get(k) or TrialResult(status="failed", reason=str(died), pack_size=len(configs))
                    for k in range(members)]

    def baseline(self, config: TrialConfig) -> BaselineReply:
        """The untuned base model scored in the worker (which also warms its cache), in the config's
        quantization mode; on failure, the reason (and whether the process died)."""
        self.start()
        try:
            self._conn.send(("baseline", config.to_dict()))
            kind, reply = self._receive()
            return reply
        except _WorkerDied as died:
            return BaselineReply(error=str(died), died=True)

    def range_test(self, config: TrialConfig, low: float, high: float, steps: int) -> RangeCurve:
        """A learning-rate range test of `config` in the worker (harness.trial.lr_range); a process that dies
        gives a curve with the reason as its error."""
        from harness.trial.lr_range import RangeCurve

        self.start()
        try:
            self._conn.send(("range", {"config": config.to_dict(), "low": low, "high": high, "steps": steps}))
            return RangeCurve.from_dict(self._receive()[1])
        except _WorkerDied as died:
            return RangeCurve(config.quant.mode, low, high, steps, error=str(died))

    def task_metrics(self, config: TrialConfig, adapter_dir: str) -> dict[str, Any]:
        """The task metrics of a saved adapter, scored in the worker (harness.trial.run.score_saved_adapter):
        TaskScore's fields, or {"error": reason}."""
        self.start()
        try:
            self._conn.send(("task", {"config": config.to_dict(), "adapter_dir": adapter_dir}))
            return self._receive()[1]
        except _WorkerDied as died:
            return {"error": str(died)}

    def _receive(self) -> tuple[str, Any]:
        while True:
            try:
                if self._conn.poll(POLL_SECONDS):
                    return self._conn.recv()
            except (EOFError, ConnectionResetError, BrokenPipeError):
                pass
            if not self._proc.is_alive():
                self._proc.join()
                code = self._proc.exitcode
                self._proc = None
                raise _WorkerDied(_died(code))

    def restart(self) -> None:
        """Throw the worker away (after an out-of-memory trial, say) so the next trial starts clean."""
        self.close(kill=True)

    def close(self, kill: bool = False) -> None:
        """Stop the worker: politely, or at once with kill=True (Ctrl-C)."""
        if self._proc is None:
            return
        if not kill and self._proc.is_alive():
            try:
                self._conn.send(("exit", None))
                self._proc.join(timeout=10)
            except (BrokenPipeError, OSError):
                pass
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=10)
        self._conn.close()
        self._proc = None


class ProbeFailed(RuntimeError):
    """The planner's memory/time probe failed in the trial worker: a fault, not bad input (exit 1)."""


class _WorkerDied(RuntimeError):
    pass
