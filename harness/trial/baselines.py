"""The untuned base model's scores, kept on this machine so that a study does not pay for them again.

A baseline (harness.trial.run.run_baseline) depends on the model's weights (a local folder's files or a hub
snapshot's commit), the quantization mode, the compute dtype and device, the held-out examples (the split's
hash), the data and eval settings, and the versions of the packages that compute it. All of that is hashed
into the file name under `cache_dir()/baselines/`, as the quantized checkpoints are keyed
(harness.trial.models.quantized_stamp): change any of it and the baseline is scored again. A run with an
injected fault never reads or writes the cache (the fault is what it tests).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from harness.config.hashing import stable_hash
from harness.config.trial import TrialConfig
from harness.runtime.devices import compute_dtype, pick_device
from harness.trial.models import attention_for, cache_dir, quantized_stamp
from harness.trial.run import BaselineScore, TrialCache, run_baseline

BASELINE_PACKAGES = ("peft", "harness")
"""Versions that change a baseline beyond those of quantized_stamp (torch, transformers, bitsandbytes)."""


def baseline_key(config: TrialConfig, cache: TrialCache) -> str:
    """The hash of everything `config`'s baseline depends on."""
    from importlib import metadata

    device = pick_device()
    data = cache.prepared(config)
    stamp = quantized_stamp(cache.checkpoint(config.model.name), config.quant.mode,
                            str(compute_dtype(device)).replace("torch.", ""), device)
    versions = [(name, metadata.version(name)) for name in BASELINE_PACKAGES]
    attention = attention_for(device, config.data.max_seq_len, cache.checkpoint(config.model.name))
    return stable_hash([stamp, versions, data.split_hash, dataclasses.asdict(config.data),
                        dataclasses.asdict(config.eval), attention])


def baseline_path(key: str) -> Path:
    return cache_dir() / "baselines" / f"{key}.json"


def cached_baseline(config: TrialConfig, cache: TrialCache | None = None) -> tuple[BaselineScore, bool]:
    """`config`'s baseline and whether it came from the machine's cache (scored and kept when it did not)."""
    cache = cache or TrialCache()
    if config.fault is not None:
        return run_baseline(config, cache), False
    path = baseline_path(baseline_key(config, cache))
    with contextlib.suppress(OSError, ValueError, TypeError):
        return BaselineScore(**json.loads(path.read_text())), True
    score = run_baseline(config, cache)
    _write(path, dataclasses.asdict(score))
    return score, False


def _write(path: Path, data: dict[str, Any]) -> None:
    """Atomically (a temp file renamed into place): a reader never sees half a file. A cache that cannot be
    written (a read-only home) only costs scoring it again next time."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".json")
        with os.fdopen(handle, "w") as out:
            json.dump(data, out)
        os.replace(tmp, path)
