"""trials.jsonl: one self-describing JSON object per finished trial, appended atomically.

Each record says what ran (params and the full config), what came out (metrics, memory, time)
and where (package versions, device, git revision). Readers need nothing but `json`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterator

from harness.runtime.locking import file_lock
from harness.trial.result import TrialResult

# Optuna state name for each harness status (the contract's `state` key).
STATE_OF_STATUS = {"complete": "COMPLETE", "pruned": "PRUNED", "diverged": "PRUNED", "oom": "FAIL", "failed": "FAIL",
                   "infeasible": "PRUNED"}  # infeasible: PRUNED, so the sampler learns the region


@functools.lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """Package versions, Python, platform and git revision (computed once per process)."""
    from importlib import metadata

    versions = {}
    for name in ("torch", "transformers", "peft", "bitsandbytes", "optuna", "wandb", "datasets", "harness"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "versions": versions,
            "git_revision": _git_revision(), "host": platform.node()}


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def build_record(*, study: str, number: int, params: dict[str, Any], config: dict[str, Any],
                 result: TrialResult, seconds: float) -> dict[str, Any]:
    """The trials.jsonl record of one finished trial (the contract's keys first)."""
    body = result.to_dict()
    history = body.pop("history")
    samples = body.pop("samples")
    return {
        "number": number, "state": STATE_OF_STATUS[result.status], "params": params,
        "eval_loss": result.eval_loss, "peak_memory_mb": result.peak_memory_mb,
        "train_seconds": result.train_seconds, "tokens_per_second": result.tokens_per_second,
        "metrics": result.metrics, "error": result.reason if result.status != "complete" else None,
        "status": result.status, "study": study,
        "kept_16bit_modules": result.kept_16bit_modules, "kept_16bit_fraction": result.kept_16bit_fraction,
        "kept_16bit_added_mb": result.kept_16bit_added_mb, "result": body, "samples": samples, "history": history,
        "config": config,
        "wall_seconds": seconds, "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "environment": environment(),
    }


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one line under an exclusive lock on the file itself, flushed to disk (safe with several writers)."""
    line = json.dumps(_finite(record), default=str, allow_nan=False) + "\n"
    with file_lock(path), open(path, "a") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_records(path: Path, offset: int = 0) -> Iterator[dict[str, Any]]:
    """The records of a trials.jsonl file, in order, from byte `offset` on (its size before a run: the records
    that run appended); a torn line is skipped."""
    if not path.exists():
        return
    with open(path) as handle:
        handle.seek(offset)
        for line in handle:
            line = line.strip()
            if line:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue


def _finite(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
