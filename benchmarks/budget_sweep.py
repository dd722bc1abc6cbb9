"""A sweep under a memory budget, checked (issue 40, "Measure it"): the default sweep (SmolLM2-135M, stdlib-qa)
under a budget chosen from its own `--plan` so that 16-bit LoRA at the space's batch does not fit, then

1. no trial ends `oom`, and every completed trial's measured peak is under the budget;
2. every fitted trial, trained again unfitted (the sampled micro-batch, no accumulation, same seed and data, in
   this process), has the same eval loss within the noise: the paired fitted - unfitted differences against the
   seed-to-seed differences of the same configs (two of them trained again at another seed);
3. the time estimates against the sweep's wall time: `--plan`'s (before anything runs) and the progress line's
   after the first trial (`~N min left`), each line of the sweep time-stamped as it arrives.

    .venv/bin/python benchmarks/budget_sweep.py --out /tmp/budget_demo

Prints a markdown summary. Run it on a quiet machine (the time checks are timings). Takes about three times the
default sweep (the sweep, the unfitted re-runs, the seed re-runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HARNESS = [sys.executable, "-m", "harness"]
ETA = re.compile(r"~(\d+(?:\.\d+)?) (min|s) left$")
ENDED = re.compile(r"^trial (\d+)/(\d+) \(#\d+\) .*  (COMPLETE|PRUNED|FAIL|DIVERGED)\b")


def plan(args: argparse.Namespace, budget: float | None) -> dict[str, Any]:
    command = [*HARNESS, "sweep", *args.sweep_args, "--plan", "--json"]
    if budget is not None:
        command += ["--max-memory-mb", str(budget)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def choose_budget(unbudgeted: dict[str, Any]) -> float:
    """Just under the smallest predicted peak of a 16-bit config at the space's largest batch: those must be
    fitted (whatever else also has to be, on this device, is said in the plan printed next)."""
    rows = unbudgeted["configs"]
    largest = max(r["batch_size"] for r in rows)
    sixteen = [r["predicted_peak_memory_mb"] for r in rows
               if r["quantization"] == "none" and r["batch_size"] == largest]
    return math.floor(min(sixteen) * 0.97)


def run_sweep(args: argparse.Namespace, budget: float, log: Path) -> dict[str, Any]:
    """The sweep under the budget, each stderr line stamped with seconds since the start."""
    command = [*HARNESS, "sweep", *args.sweep_args, "--max-memory-mb", str(budget), "--out", str(args.out),
               "--study", "budget_demo", "--wandb", "disabled"]
    started = time.monotonic()
    stamped: list[tuple[float, str]] = []
    with subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) as proc, \
            log.open("w") as out:
        assert proc.stderr is not None
        for line in proc.stderr:
            at = time.monotonic() - started
            stamped.append((at, line.rstrip("\n")))
            out.write(f"{at:8.1f}  {line}")
            out.flush()
    if proc.returncode != 0:
        raise SystemExit(f"the sweep failed (exit {proc.returncode}); its log: {log}")
    return {"wall_seconds": time.monotonic() - started, "lines": stamped}


def eta_check(sweep: dict[str, Any]) -> dict[str, Any]:
    """The progress line's estimate after the first trial against the time the remaining trials took."""
    ends = [(at, line) for at, line in sweep["lines"] if ENDED.match(line)]
    first_at, first_line = ends[0]
    match = ETA.search(first_line)
    if match is None or len(ends) < 2:
        return {}
    estimate = float(match.group(1)) * (60 if match.group(2) == "min" else 1)
    actual = ends[-1][0] - first_at
    return {"first_trial_end_s": first_at, "eta_s": estimate, "actual_rest_s": actual,
            "eta_error": (estimate - actual) / actual,
            "estimated_total_s": first_at + estimate, "actual_total_s": sweep["wall_seconds"],
            "total_error": (first_at + estimate - sweep["wall_seconds"]) / sweep["wall_seconds"]}


def unfitted(config: dict[str, Any], fit: dict[str, Any], seed: int | None = None):
    """The trial as sampled: what fitting changed (training's micro-batch, accumulation and checkpointing, the
    evaluation's batches) back at the sampled values, no budget."""
    from harness.config.trial import TrialConfig
    from harness.search.planning import FITTED_SETTINGS

    trial = TrialConfig.from_dict(config)
    sections: dict[str, dict[str, Any]] = {"train": {"max_memory_mb": None}, "eval": {}}
    for section, name, recorded in FITTED_SETTINGS:
        if recorded in fit:
            sections[section][name] = fit[recorded][0]
    if seed is not None:
        sections["train"]["seed"] = seed
    return dataclasses.replace(trial, train=dataclasses.replace(trial.train, **sections["train"]),
                               eval=dataclasses.replace(trial.eval, **sections["eval"]))


def retrain(records: list[dict[str, Any]], seeds: int) -> dict[str, Any]:
    """Each fitted trial unfitted at its own seed; the first `seeds` of them also unfitted at another seed."""
    from harness.trial.run import run_trial

    pairs, seed_pairs = [], []
    for i, record in enumerate(records):
        base = unfitted(record["config"], record["result"]["fit"])
        again = run_trial(base)
        pairs.append({"number": record["number"], "params": record["params"], "fitted": record["eval_loss"],
                      "unfitted": again.eval_loss, "fitted_step": record["result"].get("fit"),
                      "unfitted_peak_mb": again.peak_memory_mb, "fitted_peak_mb": record["peak_memory_mb"]})
        print(f"  #{record['number']}: fitted {record['eval_loss']:.4f}, unfitted {again.eval_loss:.4f}",
              file=sys.stderr, flush=True)
        if i < seeds:
            other = run_trial(unfitted(record["config"], record["result"]["fit"], seed=base.train.seed + 1))
            seed_pairs.append({"number": record["number"], "seed_a": again.eval_loss, "seed_b": other.eval_loss})
            print(f"  #{record['number']}: seed {base.train.seed + 1} unfitted {other.eval_loss:.4f}",
                  file=sys.stderr, flush=True)
    return {"pairs": pairs, "seed_pairs": seed_pairs}


def relative(a: float, b: float) -> float:
    return (a - b) / b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/budget_demo"))
    parser.add_argument("--budget-mb", type=float, help="default: chosen from the unbudgeted --plan")
    parser.add_argument("--seed-reruns", type=int, default=2)
    parser.add_argument("sweep_args", nargs="*", help="more `harness sweep` arguments (after --)")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)

    unbudgeted = plan(args, None)
    budget = args.budget_mb or choose_budget(unbudgeted)
    budgeted = plan(args, budget)
    sweep = run_sweep(args, budget, args.out / "sweep.log")
    records = [json.loads(line) for line in (args.out / "trials.jsonl").read_text().splitlines() if line.strip()]
    completed = [r for r in records if r["status"] == "complete"]
    fitted = [r for r in completed if r["result"].get("fit")]
    reruns = retrain(fitted, args.seed_reruns)
    eta = eta_check(sweep)

    print(f"budget {budget:,.0f} MiB (97% of the smallest predicted 16-bit peak at the largest batch, unbudgeted "
          f"plan); {len(records)} trials: " + ", ".join(f"{s} {sum(r['status'] == s for r in records)}"
                                                         for s in sorted({r['status'] for r in records})))
    print("\nplan under the budget:")
    for row in budgeted["configs"]:
        print(f"  {row['quantization']} batch {row['batch_size']} x {row['grad_accum']}: predicted "
              f"{row['predicted_peak_memory_mb']:,.0f} MiB, fits {row['fits']}, fitted {row['fitted']}")
    print("\n| # | config | fit | measured peak MiB | under budget | eval loss fitted | unfitted | difference |")
    print("|---|---|---|---|---|---|---|---|")
    from harness.search.progress import describe_params

    by_number = {p["number"]: p for p in reruns["pairs"]}
    for r in completed:
        fit = r["result"].get("fit") or {}
        change = ", ".join(f"{k} {v[0]}->{v[1]}" for k, v in fit.items() if k != "why") or "-"
        pair = by_number.get(r["number"])
        tail = (f"{pair['unfitted']:.4f} | {relative(pair['fitted'], pair['unfitted']):+.2%}" if pair else "- | -")
        print(f"| {r['number']} | {describe_params(r['params'])} | {change} | {r['peak_memory_mb']:,.0f} | "
              f"{'yes' if r['peak_memory_mb'] <= budget else 'NO'} | {r['eval_loss']:.4f} | {tail} |")
    diffs = [relative(p["fitted"], p["unfitted"]) for p in reruns["pairs"]]
    seeds = [abs(relative(p["seed_b"], p["seed_a"])) for p in reruns["seed_pairs"]]
    if diffs:
        from harness.evidence.stats import summarize

        spread = summarize(diffs)  # the mean and its 95% t-interval
        mean, low, high = spread.mean, spread.ci_low, spread.ci_high
        print(f"\nfitted - unfitted eval loss (relative, paired, same seed): mean {mean:+.2%}, 95% CI {low:+.2%} to "
              f"{high:+.2%}, largest |difference| {max(abs(d) for d in diffs):.2%} over {len(diffs)} configs")
    if seeds:
        print(f"seed to seed (unfitted, seeds s and s+1): |difference| {', '.join(f'{s:.2%}' for s in seeds)}")
    if eta:
        print(f"\ntime: --plan estimated {budgeted['estimated_total_seconds']:.0f} s for the sweep; "
              f"after the first trial ({eta['first_trial_end_s']:.0f} s in) the progress line said "
              f"{eta['eta_s']:.0f} s left, the rest took {eta['actual_rest_s']:.0f} s ({eta['eta_error']:+.1%}); "
              f"estimated total {eta['estimated_total_s']:.0f} s against {eta['actual_total_s']:.0f} s "
              f"({eta['total_error']:+.1%}); --plan's estimate "
              f"{relative(budgeted['estimated_total_seconds'], sweep['wall_seconds']):+.1%}")
    (args.out / "budget_sweep.json").write_text(json.dumps(
        {"budget_mb": budget, "plan": budgeted, "eta": eta, "reruns": reruns,
         "statuses": [r["status"] for r in records]}, indent=1, default=str))


if __name__ == "__main__":
    main()
