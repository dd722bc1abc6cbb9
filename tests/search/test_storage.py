"""Opening one storage from several processes at once must work: parallel workers start together."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

pytestmark = pytest.mark.integration  # six Python processes, three times

OPEN = """
import sys, time
from harness.search.study import make_storage
while time.time() < float(sys.argv[2]):
    pass
make_storage(sys.argv[1])
"""


def test_a_new_sqlite_storage_opened_by_six_processes_at_once(tmp_path: Path) -> None:
    import time

    for round_ in range(3):  # the schema race is timing-dependent; a few fresh databases make it likely
        url = f"sqlite:///{tmp_path}/race{round_}.db"
        start = time.time() + 4.0  # all processes spin until the same instant, then open
        procs = [subprocess.Popen([sys.executable, "-c", OPEN, url, str(start)], stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), [e for e in errors if e][:1]
        assert optuna.get_all_study_summaries(url) == []
