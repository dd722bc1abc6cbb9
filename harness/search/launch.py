"""Start a sweep: in this process, as N worker processes on this machine, or as a worker that joins a
study from anywhere. The command line and confirmation re-runs both start sweeps through here."""

from __future__ import annotations

import random

from harness.search.recovery import Heartbeat
from harness.config.space import load_space
from harness.config.sweep import SweepSpec
from harness.search.sweep import Role, Sweep, SweepOutcome


def run_sweep(spec: SweepSpec, *, workers: int = 1, heartbeat: Heartbeat | None = None, target: int | None = None,
              joined: bool = False, time_budget: float | None = None) -> SweepOutcome:
    """Run the sweep to its end and return what it did. Raises SweepInterrupted (Ctrl-C; the study stays
    resumable) and, with several workers, WorkersFailed. `time_budget`: seconds this invocation may take
    (harness.search.time_budget; None: no budget)."""
    from harness.config.experiment import resolve_space
    from harness.search.workers import run_parallel

    space = load_space(resolve_space(spec.space))
    if workers > 1:
        return run_parallel(spec, space, workers, heartbeat, time_budget)
    role = Role(target=target, heartbeat=heartbeat, seed_offset=joined_seed_offset() if joined else 0,
                parallel=joined, time_budget=time_budget)
    return Sweep(spec, space, role=role).run()


def joined_seed_offset() -> int:
    """A worker that joins from anywhere samples with a seed of its own (workers must not sample alike)."""
    return random.SystemRandom().randrange(1, 2**31)
