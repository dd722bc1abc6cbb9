"""Fault injection at scale: workers on one study are SIGKILLed at random moments in the middle of their
trials and replaced; at the end every trial must be accounted for. The figures go to README "Reliability".

    .venv/bin/python benchmarks/chaos.py --storage postgres --workers 4 --trials 40 --kills 6

On PostgreSQL each worker poses as a machine of its own (HARNESS_HOST), so only the heartbeat can tell that
one is gone; `--storage journal` runs the same on a journal file on this host, where the owner check does it.
Trials are tiny (tiny-llama, 2 steps). Prints one JSON line of figures and exits 1 if anything was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness.study import make_storage  # noqa: E402
from pgcluster import cluster, server_bin  # noqa: E402
from test_workers import fast_experiment  # noqa: E402

HEARTBEAT = {"HARNESS_HEARTBEAT_INTERVAL": "1", "HARNESS_GRACE_PERIOD": "4"}


def harness(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1", **env})


def run(url: str, folder: Path, workers: int, trials: int, kills: int, seed: int) -> dict:
    rng = random.Random(seed)
    out = folder / "chaos"
    experiment = str(fast_experiment(folder))
    created = harness(["sweep", "-e", experiment, "--storage", url, "--study", "chaos", "--trials", "1",
                       "--out", str(out)], HEARTBEAT)
    assert created.wait() == 0, "creating the study failed"
    join = ["worker", "--study", "chaos", "--storage", url, "--trials", str(trials), "--out", str(out)]
    started, killed = 0, 0
    live: dict[int, subprocess.Popen] = {}

    def spawn() -> None:
        nonlocal started
        started += 1
        host = {"HARNESS_HOST": f"machine-{started}"} if url.startswith("postgresql") else {}
        proc = harness(join, {**HEARTBEAT, **host})
        live[proc.pid] = proc

    for _ in range(workers):
        spawn()
    study = optuna.load_study(study_name="chaos", storage=make_storage(url))
    began = time.time()
    while live:
        time.sleep(rng.uniform(3.0, 8.0))
        for pid in [pid for pid, proc in live.items() if proc.poll() is not None]:
            live.pop(pid)
        running = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                   if (t.user_attrs.get("owner") or {}).get("pid") in live and t.user_attrs.get("config")]
        if killed < kills and running:
            victim = rng.choice(running).user_attrs["owner"]["pid"]
            os.kill(victim, signal.SIGKILL)  # in the middle of its trial
            live.pop(victim).wait()
            killed += 1
            spawn()  # a replacement joins, as a restarted machine would
    return figures(study, out, trials, started, killed, time.time() - began)


def figures(study: optuna.Study, out: Path, target: int, started: int, killed: int, seconds: float) -> dict:
    """What the study and trials.jsonl hold at the end. A trial is lost if it is left RUNNING or WAITING or
    has no trials.jsonl record; a lost-worker trial is retried once (a retry that is lost too is recorded
    and not retried again, and a fresh trial takes its place in the count)."""
    trials = study.get_trials()
    rows = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines() if line.strip()]
    numbers = [r["number"] for r in rows]
    lost = [t for t in trials if str(t.user_attrs.get("reason", "")).startswith("worker lost")]
    retries = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}
    return {"workers_started": started, "workers_killed_mid_trial": killed, "target": target,
            "trials": len(trials), "complete": sum(t.state.name == "COMPLETE" for t in trials),
            "counted": len(trials) - len(lost), "failed_worker_lost": len(lost), "retried": len(retries),
            "retries_completed": sum(r.state.name == "COMPLETE" for r in retries.values()),
            "retries_lost_again": sum(r.number in {t.number for t in lost} for r in retries.values()),
            "retries_with_other_params": sum(retries[t.number].params != t.params for t in lost if t.number in retries),
            "records": len(rows), "duplicate_records": len(numbers) - len(set(numbers)),
            "trials_lost": sum(t.state.name in ("RUNNING", "WAITING") or t.number not in numbers for t in trials),
            "wall_seconds": round(seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", choices=["postgres", "journal"], default="postgres")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="harness-chaos-") as tmp:
        folder = Path(tmp)
        if args.storage == "journal":
            result = run(str(folder / "chaos" / "study.journal"), folder, args.workers, args.trials, args.kills,
                         args.seed)
        else:
            binaries = server_bin()
            if binaries is None:
                print("PostgreSQL server binaries not found (apt-get install postgresql)", file=sys.stderr)
                return 2
            with cluster(binaries) as url:
                result = run(url, folder, args.workers, args.trials, args.kills, args.seed)
    print(json.dumps({"storage": args.storage, **result}))
    every_lost_one_retried = result["retried"] + result["retries_lost_again"] == result["failed_worker_lost"]
    ok = (result["trials_lost"] == result["duplicate_records"] == result["retries_with_other_params"] == 0
          and result["counted"] == args.trials and every_lost_one_retried)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
