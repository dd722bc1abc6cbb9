"""`harness sweep --pack K` on tiny-llama through the real command line: the trials a packed sweep trains are the
trials it would train one at a time (same params, same eval loss), members that diverge or whose worker dies are
results like any trial's, and Ctrl-C or SIGKILL in the middle of a pack leaves the study resumable."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from helpers import fast_experiment, load_study as load, lr_decades_setup, records, run_cli, start, wait_for_running

pytestmark = pytest.mark.integration  # every test runs harness in a subprocess

GRID = """axes:
  lora_r: {choices: [4, 8]}
  lora_alpha: {ratio: 2}
  learning_rate: {choices: [5.0e-3]}
  quantization: {choices: [none, nf4]}
"""
"""Four configs, two per mode: a grid sampler draws the same sequence whether trials are asked one at a time or
K at a time (a running trial's grid point counts as taken)."""


def _by_number(out: Path) -> dict[int, dict]:
    return {r["number"]: r for r in records(out)}


def _expected_packs(rows: list[dict], claim: int) -> list[int]:
    """Each row's pack size when rows are claimed `claim` at a time and packed by quantization mode."""
    sizes = []
    for first in range(0, len(rows), claim):
        modes = [r["params"]["quantization"] for r in rows[first:first + claim]]
        sizes += [modes.count(mode) for mode in modes]
    return sizes


@pytest.mark.usefixtures("tiny_checkpoint")
def test_a_packed_sweep_trains_the_trials_it_would_train_one_at_a_time(tmp_path: Path) -> None:
    """The packed sweep's trial n is the unpacked sweep's trial n: same params, and the same eval loss up to
    bf16 rounding of the base model's matmuls (measured: within 7e-6 relative on a machine with native bf16;
    the members of a pack see the same batches as alone, all trials running with the sweep's seed). Claimed 3
    at a time, the grid's 2 + 2 configs make a pack of 2, a trial alone for want of a partner, and a trial
    alone because the target was near."""
    space = tmp_path / "grid.yaml"  # not space.yaml: fast_experiment writes its own there
    space.write_text(GRID)
    common = ["sweep", "-e", str(fast_experiment(tmp_path)), "--space", str(space), "--sampler", "grid",
              "--trials", "4", "--max-steps", "3"]
    alone = run_cli(*common, "--study", "a", "--out", str(tmp_path / "a"))
    assert alone.returncode == 0, alone.stderr[-3000:]
    packed = run_cli(*common, "--study", "p", "--out", str(tmp_path / "p"), "--pack", "3")
    assert packed.returncode == 0, packed.stderr[-3000:]
    one, many = _by_number(tmp_path / "a"), _by_number(tmp_path / "p")
    assert sorted(one) == sorted(many) == [0, 1, 2, 3]
    for number in range(4):
        assert many[number]["params"] == one[number]["params"]
        assert many[number]["state"] == "COMPLETE"
        assert many[number]["eval_loss"] == pytest.approx(one[number]["eval_loss"], rel=1e-4)
        assert one[number]["result"]["pack_size"] == 1 and one[number]["result"]["pack_note"] is None
    sizes = _expected_packs([many[n] for n in range(4)], 3)
    assert sorted(sizes) == [1, 1, 2, 2]
    for number, size in enumerate(sizes):
        assert many[number]["result"]["pack_size"] == size
        assert (many[number]["result"]["pack_note"] is None) == (size > 1)
    assert "pack of 2 trials" in packed.stderr + packed.stdout
    best = load(tmp_path / "p", "p").best_trial.number
    assert (tmp_path / "p" / "best_adapter").resolve().name == f"trial-{best}"
    assert (tmp_path / "p" / "best_adapter" / "adapter_config.json").exists()

    # The re-runs compare and validate plan train in packs too, and each config once alone: 3 fresh seeds of
    # each mode's best config, then the best config's 3 seeds at 6 steps (a run alone takes no place in a pack).
    reports = ["--reports-dir", str(tmp_path / "reports")]
    confirmed = run_cli("compare", "--study", "p", "--out", str(tmp_path / "p"), "--confirm-seeds", "3", "--pack", "2",
                        *reports)
    assert confirmed.returncode == 0, confirmed.stderr[-3000:]
    assert "trained in packs of" in confirmed.stdout  # their peaks are the pack's: compare says so
    assert "2 of them train alone" in confirmed.stdout
    reruns = sorted((r for r in records(tmp_path / "p") if r["number"] >= 4), key=lambda r: r["number"])
    assert len(reruns) == 6 and all(r["state"] == "COMPLETE" for r in reruns)
    assert {r["params"]["quantization"] for r in reruns} == {"none", "nf4"}
    # Each mode's best config: seed 1 alone (the config's own memory and seconds), seeds 2 and 3 in a pack.
    _assert_alone_once(load(tmp_path / "p", "p"), reruns, "confirmation_of", configs=2)
    validated = run_cli("validate", "--study", "p", "--out", str(tmp_path / "p"), "--steps", "6", "--top", "1",
                        "--seeds", "3", "--no-defaults", "--pack", "2", *reports)
    assert validated.returncode == 0, validated.stderr[-3000:]
    long_runs = sorted(records(tmp_path / "p" / "validation@6"), key=lambda r: r["number"])
    assert len(long_runs) == 3 and all(r["state"] == "COMPLETE" for r in long_runs)
    _assert_alone_once(load(tmp_path / "p", "p@6"), long_runs, "validates", configs=1)


def _assert_alone_once(study: object, runs: list[dict], source_attr: str, configs: int) -> None:
    """Each of the `configs` configs' 3 runs: one trained alone, marked with readout.ALONE_NOTE (it took no
    place in a pack), and the other two in a pack of 2."""
    from harness.search.readout import ALONE_NOTE

    attrs = {t.number: t.user_attrs for t in study.trials}  # type: ignore[attr-defined]
    per_config: dict[int, list[dict]] = {}
    for run in runs:
        per_config.setdefault(attrs[run["number"]][source_attr], []).append(run)
    assert len(per_config) == configs
    for mine in per_config.values():
        alone = [r for r in mine if attrs[r["number"]].get("alone")]
        assert len(alone) == 1 and alone[0]["result"]["pack_size"] == 1
        assert alone[0]["result"]["pack_note"] == ALONE_NOTE
        assert [r["result"]["pack_size"] for r in mine if r is not alone[0]] == [2, 2]


def test_a_packed_sweep_prunes_members_and_the_rest_of_the_pack_trains_on(tmp_path: Path) -> None:
    """`--pack 2 --pruner median` on one mode with learning rates over three decades (as
    tests/search/test_pruning.py, one trial at a time): members are scored at the pruner's steps and those
    behind the median leave their pack as pruned trials, with the intermediate scores they were judged on,
    the next trial takes each place they leave, and every other trial completes."""
    space, no_generation = lr_decades_setup(tmp_path)
    out = tmp_path / "m"
    proc = run_cli("sweep", "-e", str(no_generation), "--model", "tiny-llama", "--space", str(space), "--max-steps",
                   "10", "--pruner", "median", "--sampler", "random", "--trials", "10", "--pack", "2", "--study", "m",
                   "--out", str(out), "--wandb", "disabled")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load(out, "m").trials
    rows = _by_number(out)
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned, [t.state.name for t in trials]
    for trial in trials:
        assert rows[trial.number]["result"]["pack_size"] == 2
        assert trial.intermediate_values  # every member was scored at the pruner's steps
    for trial in pruned:
        assert trial.user_attrs["reason"].startswith("pruned at step")
        assert trial.user_attrs["result"]["steps"] < 10 and rows[trial.number]["eval_loss"] is not None
        assert rows[trial.number]["eval_loss"] == trial.intermediate_values[max(trial.intermediate_values)]
    rest = [t for t in trials if t.state.name != "PRUNED"]
    assert len(trials) == 10 and all(rows[t.number]["state"] == "COMPLETE" and
                                     rows[t.number]["result"]["steps"] == 10 for t in rest)
    # A pruned member's place went to the next trial (the partner trained on).
    assert "takes the place a member left" in proc.stdout + proc.stderr, proc.stderr[-3000:]


def test_members_that_diverge_or_lose_their_worker_are_results(tmp_path: Path) -> None:
    out = tmp_path / "f"
    proc = run_cli("sweep", "-e", str(fast_experiment(tmp_path)), "--trials", "4", "--pack", "2", "--study", "f",
                   "--out", str(out), env={"HARNESS_INJECT_FAULTS": "1:nan,2:kill"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _by_number(out)
    # Trial 1 diverges at its first step and leaves the pack; trial 2 takes its place and kills the worker at
    # its first step: the pack's members in flight (0 and 2) fail, trial 1 was recorded as it left; trial 3,
    # the last to claim, trains alone.
    assert [rows[n]["status"] for n in range(4)] == ["failed", "diverged", "failed", "complete"]
    assert "non-finite" in rows[1]["error"]
    assert all("killed by SIGKILL" in rows[n]["error"] for n in (0, 2))
    assert [t.state.name for t in load(out, "f").trials] == ["FAIL", "PRUNED", "FAIL", "COMPLETE"]
    assert "takes the place a member left" in proc.stdout + proc.stderr


@pytest.mark.usefixtures("tiny_checkpoint")
def test_ctrl_c_or_sigkill_in_a_pack_leaves_the_study_resumable(tmp_path: Path) -> None:
    fast = ["-e", str(fast_experiment(tmp_path)), "--pack", "2", "--wandb", "disabled"]
    slow = {"HARNESS_INJECT_FAULTS": "0:slow"}  # member 0 sleeps at every step: the pack is surely running

    out = tmp_path / "c"
    proc = start(["sweep", *fast, "--trials", "2", "--study", "c", "--out", str(out)], env=slow)
    wait_for_running(out, "c", proc, count=2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "resumed" in stderr and "Traceback" not in stderr
    assert [t.state.name for t in load(out, "c").trials] == ["FAIL", "FAIL"]
    assert all(r["error"].startswith("interrupted") for r in records(out))
    again = run_cli("sweep", *fast, "--trials", "2", "--study", "c", "--out", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert [t.state.name for t in load(out, "c").trials] == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]

    out = tmp_path / "k"
    proc = start(["sweep", *fast, "--trials", "2", "--study", "k", "--out", str(out)], env=slow)
    wait_for_running(out, "k", proc, count=2)
    proc.kill()  # SIGKILL: no chance to record anything
    proc.communicate(timeout=60)
    again = run_cli("sweep", *fast, "--trials", "2", "--study", "k", "--out", str(out))
    assert again.returncode == 0, again.stderr[-3000:]
    trials = load(out, "k").trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    assert all("orphaned" in t.user_attrs["reason"] for t in trials[:2])


@pytest.mark.usefixtures("tiny_checkpoint")
def test_ctrl_c_records_the_claimed_trials_still_waiting_their_turn(tmp_path: Path) -> None:
    """Claimed 3 at a time from a grid of two modes, the trials form at least two runs (a pack and a trial
    alone, or three alone); Ctrl-C during the first records it and every claimed trial still waiting as
    interrupted, none is left running for a resumed sweep to find orphaned."""
    space = tmp_path / "grid.yaml"
    space.write_text(GRID)
    out = tmp_path / "w"
    proc = start(["sweep", "-e", str(fast_experiment(tmp_path)), "--space", str(space), "--sampler", "grid",
                  "--trials", "4", "--pack", "3", "--study", "w", "--out", str(out), "--wandb", "disabled"],
                 env={"HARNESS_INJECT_FAULTS": "0:slow"})
    wait_for_running(out, "w", proc, count=3)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "resumed" in stderr and "Traceback" not in stderr
    trials = load(out, "w").trials
    assert [t.state.name for t in trials] == ["FAIL"] * 3
    assert all(t.user_attrs["reason"] == "interrupted by user (Ctrl-C)" for t in trials)
    assert sorted(r["number"] for r in records(out)) == [0, 1, 2]


def test_packed_note_counts_the_runs_whose_peaks_are_a_packs() -> None:
    from types import SimpleNamespace

    from harness.search.readout import packed_note

    def row(size: int | None, finished: bool = True) -> SimpleNamespace:
        return SimpleNamespace(finished=finished, pack_size=size or 1)

    assert packed_note([row(None), row(1)]) is None
    note = packed_note([row(None), row(4), row(2), row(4), row(4, finished=False)])
    assert note is not None and note.startswith("3 run(s) trained in packs of 2, 4")
    assert note.endswith("come from the 1 run(s) that trained alone")
    assert "no run trained alone" in (packed_note([row(2), row(2)]) or "")
