"""The test suite's own promises: it never writes to the user's ~/.cache/harness (each run has a cache of its
own unless the caller chose one, and the processes tests start inherit it), and `wait_for` names what it
waited for."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import helpers
from helpers import REPO, share_cores_between_workers, use_run_cache, wait_for
from harness.trial.models import cache_dir


def test_this_run_has_a_cache_of_its_own_or_the_callers() -> None:
    assert cache_dir() == Path(os.environ["HARNESS_CACHE"])
    assert cache_dir() != Path.home() / ".cache" / "harness"
    if helpers.RUN_CACHE is not None:  # made for this run, in the temporary folder
        assert cache_dir() == Path(helpers.RUN_CACHE) and cache_dir().name.startswith("harness-test-cache-")


def test_a_cache_the_caller_chose_is_kept_and_an_empty_one_is_replaced() -> None:
    chosen = {"HARNESS_CACHE": "/ci/harness-cache"}
    assert use_run_cache(chosen) is None and chosen == {"HARNESS_CACHE": "/ci/harness-cache"}
    for unset in ({}, {"HARNESS_CACHE": ""}):
        folder = use_run_cache(unset)
        try:
            assert folder and unset["HARNESS_CACHE"] == folder and Path(folder).is_dir()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def test_xdist_workers_share_the_cores_and_a_callers_choice_stands() -> None:
    cores = len(os.sched_getaffinity(0))
    environ = {"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_WORKER_COUNT": "2"}
    assert share_cores_between_workers(environ) == str(max(1, cores // 2))
    assert environ["HARNESS_TORCH_THREADS"] == environ["OMP_NUM_THREADS"] == environ["MKL_NUM_THREADS"]
    assert share_cores_between_workers({}) is None  # no xdist: every core, as before
    chosen = {"PYTEST_XDIST_WORKER_COUNT": "2", "HARNESS_TORCH_THREADS": "3"}
    assert share_cores_between_workers(chosen) is None and "OMP_NUM_THREADS" not in chosen
    many = {"PYTEST_XDIST_WORKER_COUNT": str(cores * 4)}
    assert share_cores_between_workers(many) == "1"  # at least one thread


def test_a_process_a_test_starts_under_xdist_inherits_the_workers_share() -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("runs under pytest-xdist only (make test)")
    share = os.environ["HARNESS_TORCH_THREADS"]
    printed = _run("from harness.runtime.devices import torch_threads; print(torch_threads())", Path.home())
    assert printed == share


def _run(code: str, home: Path) -> str:
    """Run Python `code` with harness importable and HOME moved to `home`; its stdout."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HOME": str(home)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def test_a_process_a_test_starts_inherits_the_cache(tmp_path: Path) -> None:
    printed = _run("from harness.trial.models import cache_dir; print(cache_dir())", tmp_path)
    assert printed == os.environ["HARNESS_CACHE"]


@pytest.mark.integration
def test_building_tiny_llama_in_a_child_process_writes_only_to_the_runs_cache(tmp_path: Path) -> None:
    folder = _run("from harness.trial.models import checkpoint_path, resolve_model; "
                  "print(checkpoint_path(resolve_model('tiny-llama')))", tmp_path)
    assert Path(folder).parent == Path(os.environ["HARNESS_CACHE"]) / "models"
    assert (Path(folder) / "config.json").is_file()
    assert not (tmp_path / ".cache" / "harness").exists()


def test_wait_for_returns_the_value_or_names_what_it_waited_for() -> None:
    began = time.monotonic()
    assert wait_for(lambda: time.monotonic() - began > 0.2 and "ready", 5, "a value", interval=0.05) == "ready"
    with pytest.raises(AssertionError, match="waited 0.1 s for the flag file, in vain"):
        wait_for(lambda: False, 0.1, "the flag file", interval=0.02)
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    with pytest.raises(AssertionError, match=r"waiting for a line: the process ended first \(exit 3\)"):
        wait_for(lambda: False, 60, "a line", alive=proc, interval=0.02)
