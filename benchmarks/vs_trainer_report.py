"""Comparisons, spreads and tables for benchmarks/vs_trainer.py.

Pure functions of the measured runs (dicts, as stored in the results JSON): per seed and variant one
comparison row, over seeds the median and range of each figure, and the same table printed as text or
rendered as markdown (the README's numbers come from `render_markdown` of the committed JSON).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

from vs_trainer_spec import VARIANTS

SCHEMA = "vs_trainer/2"
NEVER = math.inf  # time-to-target of a side that never reached the target: sorts last, median-safe


# ---------------------------------------------------------------- one seed, one variant


def first_reaching(trials: list[dict[str, Any]], target: float | None) -> dict[str, Any] | None:
    """The first COMPLETE trial, in order of finishing, whose final eval loss is <= target (None if none).
    Pruned trials do not count: their eval loss is an intermediate one, not a finished result."""
    if target is None:
        return None
    done = [t for t in trials if t.get("state") == "COMPLETE" and t.get("eval_loss") is not None
            and t.get("finished_seconds") is not None]
    for trial in sorted(done, key=lambda t: t["finished_seconds"]):
        if trial["eval_loss"] <= target:
            return trial
    return None


def same_params(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two trials ran the same parameters (r, alpha, quantization equal; learning rate to 1e-9)."""
    pa, pb = a["params"], b["params"]
    return (pa["lora_r"] == pb["lora_r"] and pa["quantization"] == pb["quantization"]
            and float(pa["lora_alpha"]) == float(pb["lora_alpha"])
            and math.isclose(pa["learning_rate"], pb["learning_rate"], rel_tol=1e-9))


def time_to_target(trials: list[dict[str, Any]], target: float | None,
                   other: list[dict[str, Any]]) -> dict[str, Any]:
    """Seconds from process launch until a side's first finished trial at or below target, which trial,
    and whether the other side ran a trial of the same number with the same parameters (the shared TPE seed
    makes the random start-up trials identical: then reaching the target says nothing about the search)."""
    hit = first_reaching(trials, target)
    if hit is None:
        return {"reached": False, "seconds": None, "trial": None, "shared_params": None}
    twin = next((t for t in other if t["number"] == hit["number"]), None)
    return {"reached": True, "seconds": hit["finished_seconds"], "trial": hit["number"],
            "shared_params": twin is not None and same_params(hit, twin)}


def compare(harness: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    """The comparison of one seed's harness run with one peer run (one variant)."""
    target = peer["best_eval_loss"]
    reach = {"harness": time_to_target(harness["trials"], target, peer["trials"]),
             "peer": time_to_target(peer["trials"], target, harness["trials"])}
    h_s, p_s = reach["harness"]["seconds"], reach["peer"]["seconds"]
    return {
        "seed": harness["seed"],
        "wall_seconds": {"harness": harness["wall_seconds"], "peer": peer["wall_seconds"]},
        "ratio_harness_over_peer": harness["wall_seconds"] / peer["wall_seconds"],
        "best_eval_loss": {"harness": harness["best_eval_loss"], "peer": peer["best_eval_loss"]},
        "baseline_eval_loss": harness["baseline_eval_loss"],
        "target_eval_loss": target,
        "time_to_target": reach,
        "time_to_target_ratio": (h_s / p_s) if h_s is not None and p_s else None,
        "step_seconds": {"harness": step_seconds(harness["trials"]), "peer": step_seconds(peer["trials"])},
    }


def twin_differences(harness: list[dict[str, Any]], peer: list[dict[str, Any]]) -> list[float]:
    """Harness minus peer final eval loss for every trial both sides completed with the same number and the same
    parameters (the shared TPE seed's start-up trials, and later ones when the searches agree): what the same
    config scores when each side trains it, in its own data order and adapter initialisation."""
    done = {t["number"]: t for t in peer if t.get("state", "COMPLETE") == "COMPLETE" and t.get("eval_loss") is not None}
    return [t["eval_loss"] - done[t["number"]]["eval_loss"] for t in harness
            if t.get("state") == "COMPLETE" and t.get("eval_loss") is not None and t["number"] in done
            and same_params(t, done[t["number"]])]


def train_share(trial: dict[str, Any]) -> float:
    """A trial's share of the training time: its train_seconds, or for a member of a pack of K (whose
    train_seconds are the pack's, spent on all K at once) a K-th of them, so that a pack's time counts once."""
    return (trial.get("train_seconds") or 0.0) / max(1, trial.get("pack_size") or 1)


def step_seconds(trials: list[dict[str, Any]]) -> dict[str, float]:
    """Mean seconds per optimizer step by quantization mode (training time over steps of the mode's trials; a
    packed trial's time is its share of its pack's, `train_share`)."""
    out: dict[str, float] = {}
    for mode in sorted({t["params"]["quantization"] for t in trials}):
        steps = sum(t.get("steps") or 0 for t in trials if t["params"]["quantization"] == mode)
        seconds = sum(train_share(t) for t in trials if t["params"]["quantization"] == mode)
        if steps:
            out[mode] = seconds / steps
    return out


# ---------------------------------------------------------------- over seeds


def spread(values: list[float | None], none_is: float | None = None) -> dict[str, Any]:
    """Median and range (min-max) over seeds. `none_is=NEVER` counts a missing value (a target never
    reached) as infinitely late, so the median says "never" when most seeds never got there; infinities
    are written as None with `never` counting them (JSON has no infinity)."""
    xs = [none_is if v is None else v for v in values]
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0, "never": 0}
    return {"median": _finite(statistics.median(xs)), "min": _finite(min(xs)), "max": _finite(max(xs)),
            "n": len(xs), "never": sum(math.isinf(x) for x in xs)}


def _finite(x: float) -> float | None:
    return None if math.isinf(x) else x


SUMMARY_FIGURES: dict[str, tuple[Callable[[dict[str, Any]], Any], float | None]] = {
    "ratio_harness_over_peer": (lambda r: r["ratio_harness_over_peer"], None),
    "wall_seconds_harness": (lambda r: r["wall_seconds"]["harness"], None),
    "wall_seconds_peer": (lambda r: r["wall_seconds"]["peer"], None),
    "best_eval_loss_harness": (lambda r: r["best_eval_loss"]["harness"], None),
    "best_eval_loss_peer": (lambda r: r["best_eval_loss"]["peer"], None),
    "time_to_target_seconds_harness": (lambda r: r["time_to_target"]["harness"]["seconds"], NEVER),
    "time_to_target_seconds_peer": (lambda r: r["time_to_target"]["peer"]["seconds"], NEVER),
    "time_to_target_ratio": (lambda r: r["time_to_target_ratio"], NEVER),
}
"""Each summary figure: how to read it from a comparison row, and what a missing value counts as."""


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and range over seeds of every summary figure of one variant."""
    out = {name: spread([get(r) for r in rows], none_is) for name, (get, none_is) in SUMMARY_FIGURES.items()}
    out["harness_reached_target"] = sum(r["time_to_target"]["harness"]["reached"] for r in rows)
    out["harness_reached_with_shared_params"] = sum(bool(r["time_to_target"]["harness"]["shared_params"])
                                                    for r in rows)
    out["seeds"] = len(rows)
    return out


# ---------------------------------------------------------------- text and markdown


def _f(value: float | None, spec: str = ".4f", none: str = "n/a") -> str:
    return none if value is None else format(value, spec)


def _cell(s: dict[str, Any], spec: str, never: bool = False) -> str:
    """`median (min-max)`; "never" for a time-to-target that was never reached."""
    word = "never" if never else "n/a"
    if s["n"] == 0:
        return "n/a"
    return f"{_f(s['median'], spec, word)} ({_f(s['min'], spec, word)}-{_f(s['max'], spec, word)})"


def _reach_cell(reach: dict[str, Any]) -> str:
    if not reach["reached"]:
        return "never"
    mark = "*" if reach["shared_params"] else ""
    return f"{reach['seconds']:.1f} (#{reach['trial']}{mark})"


TABLE_HEAD = ("variant", "seed", "harness s", "peer s", "harness/peer", "harness best", "peer best",
              "harness s to target", "peer s to target", "target ratio")


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    """The summary table: per variant, one row per seed and one `median (min-max)` row."""
    rows = []
    for variant, comparisons in results["comparisons"].items():
        for r in comparisons:
            w, b, t = r["wall_seconds"], r["best_eval_loss"], r["time_to_target"]
            rows.append([variant, str(r["seed"]), f"{w['harness']:.1f}", f"{w['peer']:.1f}",
                         f"{r['ratio_harness_over_peer']:.3f}", _f(b["harness"]), _f(b["peer"]),
                         _reach_cell(t["harness"]), _reach_cell(t["peer"]),
                         _f(r["time_to_target_ratio"], ".2f", "never")])
        s = results["summary"][variant]
        rows.append([variant, "median (min-max)", _cell(s["wall_seconds_harness"], ".1f"),
                     _cell(s["wall_seconds_peer"], ".1f"), _cell(s["ratio_harness_over_peer"], ".3f"),
                     _cell(s["best_eval_loss_harness"], ".4f"), _cell(s["best_eval_loss_peer"], ".4f"),
                     _cell(s["time_to_target_seconds_harness"], ".1f", never=True),
                     _cell(s["time_to_target_seconds_peer"], ".1f", never=True),
                     _cell(s["time_to_target_ratio"], ".2f", never=True)])
    return rows


def footnotes(results: dict[str, Any]) -> list[str]:
    """What the table's columns and marks mean (shared by the text and markdown output)."""
    lines = [
        "s: wall seconds from process launch to exit (imports, data, every trial, all overhead).",
        "harness/peer: harness wall seconds / peer wall seconds, per seed; below 1 means harness was faster.",
        ("best: lowest final eval loss over the side's completed trials (mean loss per scored token, "
         f"{results['data'].get('n_eval')} held-out examples)."),
        ("target: the peer's best eval loss in that seed and variant. s to target: wall seconds from process "
         "launch until the side's first completed trial at or below it finished (#: that trial); never: no "
         "completed trial got there. target ratio: harness s to target / peer s to target."),
        ("*: that trial had the same number and parameters on both sides (the shared TPE seed makes the 4 random "
         "start-up trials identical, and later ones often too), so reaching the target there reflects per-trial "
         "speed, not a better search."),
    ]
    lines.append("harness ran once per seed: every variant of a seed is compared with the same harness run.")
    for variant, text in results["variants"].items():
        lines.append(f"{variant} (peer autocast {text['peer_autocast']}, harness autocast "
                     f"{text['harness_autocast']}): {text['label']}.")
    for variant, reason in results.get("skipped_variants", {}).items():
        lines.append(f"{variant}: not run: {reason}.")
    return lines


def trial_table(side: str, run: dict[str, Any]) -> list[str]:
    """One side's trials of one seed as text lines (done_s: seconds from launch until the trial finished)."""
    lines = []
    for t in run["trials"]:
        p = t["params"]
        load = t.get("load_seconds", t.get("init_seconds"))
        lines.append(f"{side:20} {t['number']:>2} {p['lora_r']:>3} {p['lora_alpha']:>5g} {p['learning_rate']:>9.3e} "
                     f"{p['quantization']:7} {t.get('state', 'COMPLETE'):9} {_f(t.get('eval_loss')):>9} "
                     f"{_f(load, '.2f'):>7} {_f(t.get('train_seconds'), '.2f'):>7} "
                     f"{_f(t.get('eval_seconds'), '.2f'):>6} {t.get('steps', 0):>5} "
                     f"{_f(t.get('finished_seconds'), '.1f'):>7}"
                     + (f" {t['pack_size']:>4}" if t.get("pack_size", 1) > 1 else ""))
    return lines


def print_report(results: dict[str, Any]) -> None:
    """The printed summary: settings, each seed's trials, the table, diagnostics, device and commands."""
    s, env = results["settings"], results["environment"]
    print(f"== harness vs Trainer.hyperparameter_search: {s['model_label']}, {s['trials']} trials x "
          f"{s['max_steps']} steps, batch {s['batch_size']}, harness pruner {s['pruner']}, seeds "
          f"{','.join(map(str, s['seeds']))}")
    if "lr_low" in s:
        print(f"   learning-rate axis, both sides: {s['lr_low']:g} to {s['lr_high']:g}, log-uniform")
    if s.get("label") or s.get("harness_trials", s["trials"]) != s["trials"] or s.get("pack", 1) > 1:
        print(f"   harness configuration {s.get('label') or '-'}: up to {s.get('harness_trials')} trials, "
              f"warm start {s.get('warm_start', 'none')}, lr range test {'on' if s.get('lr_range_test') else 'off'}, "
              f"pack {s.get('pack', 1)}")
    print(f"   source weights: {s.get('source_precision', 'not recorded')}")
    if results.get("peer_reused"):
        reused = results["peer_reused"]
        print(f"   the peer's runs are reused from {reused['file']} (made {reused['started_at']} to "
              f"{reused['finished_at']}): the ratio compares runs made at different times")
    for run in results["runs"]:
        print(f"\n-- seed {run['seed']} (run order: {', '.join(run['order'])})")
        print(f"{'side':20} {'#':>2} {'r':>3} {'alpha':>5} {'lr':>9} {'quant':7} {'state':9} {'eval_loss':>9} "
              f"{'load_s':>7} {'train_s':>7} {'eval_s':>6} {'steps':>5} {'done_s':>7}"
              + (f" {'pack':>4}" if any(t.get("pack_size", 1) > 1 for t in run["harness"]["trials"]) else ""))
        for line in trial_table("harness", run["harness"]):
            print(line)
        for variant, peer in run["peer"].items():
            for line in trial_table(f"peer[{variant}]", peer):
                print(line)
    print(f"\n-- per seed, and median (min-max) over {len(s['seeds'])} seeds")
    print_aligned([list(TABLE_HEAD), *table_rows(results)])
    for note in footnotes(results):
        print(f"  {note}")
    print_diagnostics(results)
    print(f"device: {env['device']} ({env['gpu'] or env['cpu']}, {env['cpu_count']} cores, "
          f"{env['usable_cores']} usable; torch threads: peer {env['torch_threads']['peer']}, harness "
          f"{env['torch_threads']['harness'] or 'not recorded in trials.jsonl'}; compute dtype "
          f"{env['compute_dtype']})")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + f", python {env['python']}")
    print(f"benchmark command: {results['commands']['benchmark']}")
    print(f"child commands (seed {s['seeds'][0]}; the others differ only in --seed and paths):")
    for name, cmd in results["commands"]["per_seed"][str(s["seeds"][0])].items():
        print(f"  {name}: {cmd}")


def print_aligned(rows: list[list[str]]) -> None:
    """Print rows of cells as left-aligned columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def diagnostics(results: dict[str, Any]) -> list[str]:
    """Where the time goes, as median (min-max) over seeds: share inside steps, overhead per trial, seconds per
    optimizer step by mode, and the numerics each side ran."""
    runs, variants = results["runs"], list(results["variants"])
    h = [r["harness"] for r in runs]
    p = {v: [r["peer"][v] for r in runs] for v in variants}
    share = _cell(spread([x["inside_fraction"] for x in h]), ".1%")
    inside = f"harness wall time inside train + final-eval steps: {share}"
    if results["settings"].get("pack", 1) > 1:
        inside += " (a packed trial's train seconds count as its share of its pack's: the pack's seconds / K)"
    if results["settings"]["pruner"] != "none":
        inside += (" (the pruner's intermediate evals, estimated at a final eval's cost each, are outside it: "
                   f"{_cell(spread([x['intermediate_eval_seconds_est'] for x in h]), '.1f')} s)")
    lines = [inside, "overhead per trial, s ((wall - train - eval) / trials): "
             + "; ".join([f"harness {_cell(spread([x['overhead_per_trial_seconds'] for x in h]), '.2f')}"]
                         + [f"peer[{v}] {_cell(spread([x['overhead_per_trial_seconds'] for x in p[v]]), '.2f')}"
                            for v in variants])]
    modes = sorted({m for x in h + [y for v in variants for y in p[v]] for m in x["step_seconds"]})
    for mode in modes:
        parts = [f"harness {_cell(spread([x['step_seconds'].get(mode) for x in h]), '.3f')}"]
        parts += [f"peer[{v}] {_cell(spread([x['step_seconds'].get(mode) for x in p[v]]), '.3f')}" for v in variants]
        lines.append(f"seconds per optimizer step, {mode} trials: " + "; ".join(parts))
    for v in variants:
        lines.append(twin_line(v, [twin_differences(r["harness"]["trials"], r["peer"][v]["trials"]) for r in runs]))
    n = results["numerics"]
    lines.append(f"numerics: harness autocast {n['harness']['autocast']}, compute dtype "
                 f"{n['harness']['compute_dtype']}, optimizer {n['harness']['optimizer']}; "
                 + "; ".join(f"peer[{v}] accelerate mixed precision {q['mixed_precision']}, optim {q['optim']} "
                             f"({q['optimizer_class']})" for v, q in n["peer"].items()))
    one = results["one_time"]
    built = ", ".join(f"{m} {sec:.1f} s" for m, sec in one["quantized_checkpoint_seconds"].items())
    lines.append("harness's on-disk caches, built (if missing) before anything was timed and reused by every later "
                 f"sweep on the machine: converted checkpoint {one['checkpoint_seconds']:.1f} s, quantized "
                 f"checkpoints {built or 'none'} (near 0 s where they already existed)"
                 + (f", untuned baselines {one['baselines_seconds']:.1f} s (a 1-trial, 1-step sweep that scores "
                    "them, or reads them when cached)" if "baselines_seconds" in one else ""))
    return lines


def twin_line(variant: str, by_seed: list[list[float]]) -> str:
    """One line on the same config trained by both sides: how far apart their eval losses are (by seed)."""
    every = [d for seed in by_seed for d in seed]
    if not every:
        return f"same trial on both sides (peer[{variant}]): none (no trial had the same number and parameters)"
    sizes = [abs(d) for d in every]
    means = ", ".join(f"{statistics.mean(seed):+.3f}" if seed else "n/a" for seed in by_seed)
    return (f"same trial on both sides (peer[{variant}]: same number and parameters, {len(every)} pairs): harness "
            f"minus peer eval loss |difference| median {statistics.median(sizes):.3f}, max {max(sizes):.3f}; mean "
            f"by seed {means} (each side trains a config in its own data order and adapter initialisation, one per "
            "seed for all its trials, so a seed can favour one side throughout)")


def print_diagnostics(results: dict[str, Any]) -> None:
    for line in diagnostics(results):
        print(line)


def render_markdown(results: dict[str, Any]) -> str:
    """The results as markdown: a caption saying what ran, the summary table, notes and diagnostics."""
    if results.get("schema") != SCHEMA:
        raise SystemExit(f"not a {SCHEMA} results file (schema {results.get('schema')!r}); rerun "
                         "benchmarks/vs_trainer.py with this version to produce one")
    s, env = results["settings"], results["environment"]
    caption = (f"**{s['model_label']}** (source weights: {s.get('source_precision', 'not recorded')}), "
               f"{s['trials']} trials x {s['max_steps']} steps (batch {s['batch_size']}), "
               + (f"learning rate {s['lr_low']:g} to {s['lr_high']:g} (log), " if "lr_low" in s else "")
               + f"harness pruner `{s['pruner']}`"
               + (", harness `--lr-range-test`" if s.get("lr_range_test") else "")
               + (f", harness `--warm-start {s['warm_start']}`" if s.get("warm_start", "none") != "none" else "")
               + f", seeds {', '.join(map(str, s['seeds']))}; "
               f"{env['device']} ({env['gpu'] or env['cpu']}, {env['cpu_count']} cores, compute dtype "
               f"{env['compute_dtype']}); {results['finished_at'][:10]}, git {str(results.get('git_revision'))[:12]}"
               f"{' (uncommitted changes)' if results.get('git_dirty') else ''}.")
    rows = table_rows(results)
    out = [caption, "", "| " + " | ".join(TABLE_HEAD) + " |", "|" + "---|" * len(TABLE_HEAD)]
    for row in rows:
        bold = row[1].startswith("median")
        out.append("| " + " | ".join(f"**{c}**" if bold and c else c for c in row) + " |")
    out.append("")
    reused = results.get("peer_reused")
    if reused:
        out.append(f"- **The peer's runs are reused** from `{reused['file']}` (made {str(reused['started_at'])[:16]} to "
                   f"{str(reused['finished_at'])[:16]} UTC, same machine, seeds and settings; harness ran alone from "
                   f"{results['started_at'][:16]} UTC): the ratio compares runs made at different times.")
    out.extend(f"- {note}" for note in footnotes(results))
    out.extend(f"- {line.strip()}" for line in diagnostics(results))
    out.append(f"- command: `{portable(results['commands']['benchmark'])}`")
    return "\n".join(out) + "\n"


def portable(command: str) -> str:
    """A command line with its interpreter path shortened to `python` (for the README)."""
    first, _, rest = command.partition(" ")
    return f"python {rest}" if "python" in first.rsplit("/", 1)[-1] else command


def validate_variants(names: list[str]) -> None:
    """Refuse an unknown variant name, naming the known ones."""
    for name in names:
        if name not in VARIANTS:
            raise SystemExit(f"--variants: unknown variant {name!r} (known: {', '.join(VARIANTS)})")
