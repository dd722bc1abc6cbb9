"""Nothing lost when a worker dies: owners, heartbeats, lost-trial recovery with one retry, and the
claim lock that makes a study-wide trial count exact.

A worker killed in the middle of a trial (SIGKILL, preemption, a machine that goes away) leaves its
trial RUNNING. Two detectors turn such a trial into FAIL with the reason "worker lost: ...":
- same host: the owner process (pid and start time, stored in the trial's `owner` attr) is gone;
  seen at once, on every storage;
- any host, on relational storages (PostgreSQL, MySQL, SQLite): no Optuna heartbeat for `grace`
  seconds. Optuna 5's journal storage has no heartbeats, so there only the same-host check works.
The worker that notices records the trial (trials.jsonl) and enqueues one retry with the same params
and the user attrs that say how to run it (`seed`, `confirmation_of`), which the next free worker runs.
Everything here runs under the claim lock, so two live workers never recover the same trial twice.
"""

from __future__ import annotations

import contextlib
import copy
import os
import platform
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.runtime.locking import file_lock
from harness.config.errors import SpecError

WORKER_LOST = "worker lost"
"""The reason of every trial failed because the process running it went away (a prefix)."""
MAX_RETRY = 1
"""A lost trial is retried once; a retry that is lost too is not retried again."""
KEEP_ON_RETRY = ("seed", "confirmation_of")
"""User attrs a retry inherits (how to run it); the rest (owner, config, results) belong to the lost trial."""
HOST_ENV = "HARNESS_HOST"
"""Overrides the host name a worker records as owner (tests simulate several machines with it)."""


@dataclass(frozen=True)
class Heartbeat:
    """How often a worker proves it is alive while it runs a trial, and how long silence may last."""

    interval: int = 10
    """Seconds between heartbeats (one tiny UPDATE per running trial; written by the supervising worker,
    not by the training process, so a long training step cannot delay it)."""
    grace: int = 60
    """Seconds without a heartbeat after which a RUNNING trial counts as lost (6 missed beats)."""

    def __post_init__(self) -> None:
        if not (isinstance(self.interval, int) and self.interval >= 1):
            raise SpecError(f"--heartbeat-interval must be a whole number of seconds >= 1, got {self.interval!r}")
        if not (isinstance(self.grace, int) and self.grace > self.interval):
            raise SpecError(f"--grace-period must be longer than --heartbeat-interval ({self.interval} s), "
                            f"got {self.grace!r}")

    @classmethod
    def from_flags(cls, interval: int | None, grace: int | None) -> "Heartbeat | None":
        """Settings from `--heartbeat-interval` / `--grace-period` (None: not given). None when neither is
        given (the study's own, or the defaults); the grace period defaults to 6 beats, at least 60 s."""
        if interval is None and grace is None:
            return None
        default = cls()
        interval = default.interval if interval is None else interval
        return cls(interval, max(default.grace, 6 * interval) if grace is None else grace)


def host_name() -> str:
    return os.environ.get(HOST_ENV) or platform.node()


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), so a reused pid is not taken for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def owner_attrs(heartbeat: bool = False) -> dict[str, Any]:
    """Who runs a trial: host, pid and the pid's start time, so an orphaned RUNNING trial is recognised;
    `heartbeat`: whether its worker keeps a heartbeat (so other hosts can tell when it is lost)."""
    return {"host": host_name(), "pid": os.getpid(), "started": _start_ticks(os.getpid()), "heartbeat": heartbeat}


def watchable(study: Any, trial: Any) -> bool:
    """Whether this worker would notice if `trial`'s worker were lost: it runs on this host, or it keeps a
    heartbeat that this storage checks (a trial from an older harness or another tool may have neither)."""
    owner = trial.user_attrs.get("owner") or {}
    return owner.get("host") == host_name() or (bool(owner.get("heartbeat")) and heartbeat_enabled(study))


def _alive(owner: dict[str, Any]) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    started = owner.get("started")
    return started is None or _start_ticks(pid) in (None, started)


def orphaned_trials(study: Any) -> list[Any]:
    """RUNNING trials whose owner process on this host is gone (killed before it could tell)."""
    import optuna

    return [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if (t.user_attrs.get("owner") or {}).get("host") == host_name() and not _alive(t.user_attrs["owner"])]


def heartbeat_enabled(study: Any) -> bool:
    getter = getattr(study._storage, "get_heartbeat_interval", None)
    return bool(getter and getter())


def is_lost(trial: Any) -> bool:
    """A trial failed because its worker went away (it was retried, so it does not count as done)."""
    return trial.state.name == "FAIL" and str(trial.user_attrs.get("reason") or "").startswith(WORKER_LOST)


def counted(study: Any) -> int:
    """Trials that count toward a trial target: finished or running, lost ones excepted (their retry counts)."""
    import optuna

    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED, states.FAIL, states.RUNNING))
    return sum(1 for t in trials if not is_lost(t))


def _lost_trials(study: Any) -> list[tuple[Any, str]]:
    """RUNNING trials whose worker is gone, each with the reason to record."""
    found = {t._trial_id: (t, f"{WORKER_LOST} (orphaned): the process running it ({_who(t)}) ended before "
                              "recording a result") for t in orphaned_trials(study)}
    if heartbeat_enabled(study):
        storage = study._storage
        # Optuna's fail_stale_trials() fails the trial first and runs its callback after, when the storage
        # no longer accepts attrs on it; we need the reason on the trial, so we set it while it is RUNNING.
        stale = set(storage._get_stale_trial_ids(study._study_id)) - set(found)
        grace = getattr(getattr(storage, "_backend", storage), "grace_period", None)
        for trial_id in stale:
            trial = storage.get_trial(trial_id)
            found[trial_id] = (trial, f"{WORKER_LOST}: no heartbeat from its worker ({_who(trial)}) for over "
                                      f"{grace} s")
    return list(found.values())


def _who(trial: Any) -> str:
    owner = trial.user_attrs.get("owner") or {}
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"


def recover(study: Any, on_lost: Callable[[Any, str, int | None], None]) -> int:
    """Fail every lost trial with its reason, enqueue its retry, and hand it to `on_lost(trial, reason,
    retry_number)` (which records it). Call under the claim lock. Returns how many were recovered."""
    done = 0
    for trial, reason in _lost_trials(study):
        if not fail_trial(study, trial._trial_id, "failed", reason):
            continue  # its worker told the result after all, or another worker recovered it
        lost = study._storage.get_trial(trial._trial_id)
        on_lost(lost, reason, retry(study, lost))
        done += 1
    return done


def fail_trial(study: Any, trial_id: int, status: str, reason: str) -> bool:
    """Mark an unfinished (running or waiting) trial failed, with the harness status and reason set first (a
    finished trial takes no attrs); False when it finished meanwhile (another process told its result or
    failed it)."""
    import optuna

    storage = study._storage
    try:
        storage.set_trial_user_attr(trial_id, "status", status)
        storage.set_trial_user_attr(trial_id, "reason", reason)
        return bool(storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def retry(study: Any, trial: Any) -> int | None:
    """Enqueue a lost trial again (same params, seed and confirmation attrs) unless it is itself a retry
    that was lost; returns the retry's trial number or None."""
    import optuna

    if len(trial.system_attrs.get("retry_history", [])) >= MAX_RETRY:
        return None
    source = copy.deepcopy(trial)
    source.user_attrs = {k: v for k, v in trial.user_attrs.items() if k in KEEP_ON_RETRY}
    source.user_attrs["retry_of"] = trial.number
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Optuna's retry: a WAITING copy with the same params, `failed_trial` and `retry_history` system attrs.
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, source)
    waiting = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
               if t.user_attrs.get("retry_of") == trial.number]
    return waiting[-1].number if waiting else None


@contextlib.contextmanager
def heartbeat(study: Any, trial_id: int) -> Iterator[None]:
    """Keep the trial's heartbeat going while the block runs (Optuna's own heartbeat thread); a no-op
    on storages without heartbeats. The first beat is written before the block starts."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    if heartbeat_enabled(study):
        study._storage.record_heartbeat(trial_id)
    with get_heartbeat_thread(trial_id, study._storage):
        yield


def enable_heartbeat(storage: Any, beat: Heartbeat) -> None:
    """Turn heartbeats on for a relational storage (RDBStorage); other storages are left as they are."""
    if hasattr(storage, "heartbeat_interval") and hasattr(storage, "grace_period"):
        storage.heartbeat_interval, storage.grace_period = beat.interval, beat.grace


@contextlib.contextmanager
def claim_lock(study: Any, out_dir: Path) -> Iterator[None]:
    """Serialise "recover, count, ask" among the workers of a study: a PostgreSQL advisory lock when the
    study lives there (every machine), else a lock file in the output folder (workers sharing it)."""
    engine = getattr(getattr(study._storage, "_backend", None), "engine", None)
    with file_lock(out_dir / ".claim.lock"):
        if engine is None or engine.name != "postgresql":
            yield
            return
        import sqlalchemy

        key = zlib.crc32(f"harness:{study.study_name}".encode())
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
