"""`harness defaults` (issue 42): the minimax choice on hand-made regret matrices, the paired relative regret,
the published defaults as references (never a cell's best, never chosen, compared with the choice), the refusals
(budgets that differ, a study that does not exist), and on tiny models a cross-evaluation whose records show
every candidate and reference trained with its cell's model, data and budget (a reference with its own schedule)
on the cell's shared seeds, and a second run that repeats nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution

from helpers import assert_one_line_error, load_without_harness, run_cli
from harness.config.errors import SpecError
from harness.evidence.crosseval import cells_of, check_studies, digest, missing_runs, study_candidates
from harness.evidence.transfer import (BEATS, EVEN, LOSES, OPEN, Runs, choose, defaults_doc, defaults_markdown,
                                       fewest_pairs, minimax_order, mode_matrix, unresolved, unresolved_by_cell,
                                       verdict_of)
from harness.search.readout import open_view

# ---- the choice: minimax regret, pure functions --------------------------------------------------------------


def test_the_choice_is_the_smallest_worst_cell_not_the_best_mean() -> None:
    # spiky: the best mean (5/3 %) but 5% in cell z; steady: 2% everywhere (worst 2%)
    matrix = {"spiky": {"x": 0.0, "y": 0.0, "z": 0.05}, "steady": {"x": 0.02, "y": 0.02, "z": 0.02},
              "bad": {"x": 0.03, "y": 0.04, "z": 0.06}}
    assert choose(matrix) == "steady"
    assert minimax_order(matrix) == ["steady", "spiky", "bad"]


def test_ties_go_to_the_smaller_mean_and_a_missing_cell_is_the_worst() -> None:
    matrix = {"a": {"x": 0.02, "y": 0.02}, "b": {"x": 0.02, "y": 0.0}, "never": {"x": 0.0, "y": None}}
    assert minimax_order(matrix) == ["b", "a", "never"]  # same worst 2%: b's mean 1% beats a's 2%
    assert choose({"never": {"x": 0.0, "y": None}}) is None


def test_the_regret_is_paired_relative_to_the_cells_best_of_its_mode() -> None:
    cells = {"x": {"a": Runs({1: 2.00, 2: 2.20}), "b": Runs({1: 2.10, 2: 2.30}), "q": Runs({1: 1.00, 2: 1.10})},
             "y": {"a": Runs({1: 3.30, 2: 3.10}), "b": Runs({1: 3.00, 2: 3.00}), "q": Runs({1: 1.20, 2: 1.00})}}
    candidates = [{"name": "a", "mode": "none", "params": {}}, {"name": "b", "mode": "none", "params": {}},
                  {"name": "q", "mode": "nf4-dq", "params": {}}]
    doc = defaults_doc("eval_loss", "minimize", 40, [{"name": "x"}, {"name": "y"}], candidates, cells)
    none = doc["modes"]["none"]
    assert none["best"] == {"x": "a", "y": "b"}  # q is another mode: never a 16-bit cell's best
    # x: b - a is 0.10 on both seeds, relative to a's mean 2.10; paired, the seed effect cancels (no width)
    entry = none["regret"]["b"]["x"]
    assert entry["value"] == pytest.approx(0.10 / 2.10) and entry["ci95"] == pytest.approx([0.10 / 2.10] * 2)
    assert entry["pairs"] == 2 and entry["resolved"]
    # y: a - b is 0.30 and 0.10, mean 0.20 over b's 3.00; t(1) 12.706 x sd 0.1414 / sqrt 2 = 1.2706
    entry = none["regret"]["a"]["y"]
    assert entry["value"] == pytest.approx(0.2 / 3.0)
    assert entry["ci95"] == pytest.approx([(0.2 - 1.2706) / 3.0, (0.2 + 1.2706) / 3.0], abs=1e-4)
    assert none["worst"] == pytest.approx({"a": 0.2 / 3.0, "b": 0.10 / 2.10}) and none["choice"] == "b"
    assert doc["modes"]["nf4-dq"]["choice"] == "q" and doc["choice"] == {"none": "b", "nf4-dq": "q"}
    # a maximized objective: a higher score is better, so the regret is (best - mine) / best
    up = mode_matrix({"x": {"a": Runs({1: 0.5}), "b": Runs({1: 0.4})}}, ["a", "b"], "maximize")
    assert up["best"] == {"x": "a"} and up["regret"]["b"]["x"]["value"] == pytest.approx(0.2)


def test_a_published_default_is_a_reference_never_a_cells_best_nor_the_choice() -> None:
    # pub has the lowest loss in cell x: were it a candidate, it would be x's best and the choice (worst 0)
    cells = {"x": {"a": Runs({1: 2.00, 2: 2.20}), "b": Runs({1: 2.10, 2: 2.30}), "pub": Runs({1: 1.90, 2: 2.10})},
             "y": {"a": Runs({1: 3.30, 2: 3.10}), "b": Runs({1: 3.00, 2: 3.00}), "pub": Runs({1: 3.40, 2: 3.60})}}
    m = mode_matrix(cells, ["a", "b"], "minimize", references=["pub"])
    assert m["best"] == {"x": "a", "y": "b"} and m["choice"] == "b" and "pub" not in m["regret"]
    assert m["order"] == ["b", "a"] and m["references"] == ["pub"]
    # against the cell's best: x: pub - a = -0.10 on both seeds (better than the tuned best: negative)
    assert m["reference_regret"]["pub"]["x"]["value"] == pytest.approx(-0.10 / 2.10)
    # against the choice b: x: pub - b = -0.20 both seeds: the published default is better there, resolved
    x, y = m["versus_choice"]["pub"]["x"], m["versus_choice"]["pub"]["y"]
    assert x["value"] == pytest.approx(-0.20 / 2.20) and x["verdict"] == LOSES
    # y: pub - b = 0.40 and 0.60 over b's 3.00; t(1) 12.706 x 0.1414 / sqrt 2 = 1.2706: the interval crosses zero
    assert y["value"] == pytest.approx(0.5 / 3.0) and y["verdict"] == OPEN and not y["resolved"]
    # a sequential run adds seeds to both sides of the open comparison: the reference and the choice
    assert {"pub", "b"} <= unresolved(m) and fewest_pairs(m, 99) == 2
    assert verdict_of({"value": 0.01, "ci95": [0.005, 0.02]}) == BEATS
    assert verdict_of({"value": 0.001, "ci95": [-0.002, 0.004], "resolved": True}) == EVEN
    # a reference without a run in a cell is "not run" there, never a verdict
    cells["y"].pop("pub")
    assert mode_matrix(cells, ["a", "b"], "minimize", references=["pub"])["versus_choice"]["pub"]["y"]["verdict"] \
        == "not run"


def test_a_candidate_out_of_contention_gets_no_more_seeds() -> None:
    """Racing: b's regret in cell x lies wholly above the top of the choice's worst-cell interval, so no seed can
    make b the choice; its unresolved comparison in z gets no seeds. c, still in contention, does."""
    cells = {"x": {"a": Runs({1: 2.00, 2: 2.00}), "b": Runs({1: 3.00, 2: 3.02}), "c": Runs({1: 2.01, 2: 2.03})},
             "y": {"a": Runs({1: 1.00, 2: 1.00}), "b": Runs({1: 0.99, 2: 0.99}), "c": Runs({1: 1.00, 2: 1.02})},
             "z": {"a": Runs({1: 1.00, 2: 1.00}), "b": Runs({1: 1.00, 2: 1.04}), "c": Runs({1: 1.001, 2: 1.001})}}
    m = mode_matrix(cells, ["a", "b", "c"], "minimize")
    # a: best in x and z, +1.01% in y with no spread (resolved): the choice, its worst interval's top 1.01%
    assert m["best"] == {"x": "a", "y": "b", "z": "a"} and m["choice"] == "a"
    assert m["worst"]["a"] == pytest.approx(0.01 / 0.99)
    # b in x: diffs 1.00, 1.02 over 2.00 -> +50.5% +- 12.706 x 0.01414 / sqrt 2 / 2 = 6.35%: above 1.01%
    assert m["regret"]["b"]["x"]["ci95"][0] == pytest.approx(0.505 - 0.0635, abs=1e-3)
    assert not m["regret"]["b"]["z"]["resolved"]  # b's open comparison: no seeds for it
    assert m["out_of_contention"] == ["b"]
    # c: open in x (against a) and y (against b, the cell's best, which gets seeds as c's counterpart there)
    assert unresolved_by_cell(m) == {"x": {"a", "c"}, "y": {"b", "c"}}
    assert "b (out of contention)" in defaults_markdown(
        {"rule": "r", "steps": 40, "resolution": "1%", "objective": "eval_loss", "cells": [],
         "candidates": [{"name": n, "params": {}} for n in "abc"], "modes": {"none": m}}, "cmd", None)
    # without the choice's interval (one seed) nothing is out of contention
    one = mode_matrix({c: {n: Runs({1: r.by_seed[1]}) for n, r in runs.items()} for c, runs in cells.items()},
                      ["a", "b", "c"], "minimize")
    assert one["out_of_contention"] == []


def test_the_references_of_a_mode_are_its_published_defaults_and_the_median_is_reported() -> None:
    cells = {c: {"a": Runs({1: 2.0}), "q": Runs({1: 1.0}), "p16": Runs({1: 2.2}), "p4": Runs({1: 1.1})}
             for c in ("x", "y", "z")}
    cells["z"]["a"] = Runs({1: 2.0})
    candidates = [{"name": "a", "mode": "none"}, {"name": "q", "mode": "nf4-dq"}]
    refs = [{"name": "p16", "mode": "none"}, {"name": "p4", "mode": "nf4-dq"}]
    doc = defaults_doc("eval_loss", "minimize", 40, [{"name": c} for c in cells], candidates, cells,
                       references=refs)
    assert doc["modes"]["none"]["references"] == ["p16"] and doc["modes"]["nf4-dq"]["references"] == ["p4"]
    assert doc["modes"]["none"]["versus_choice"]["p16"]["x"]["value"] == pytest.approx(0.1)
    assert doc["modes"]["none"]["median"]["a"] == 0.0 and doc["references"] == refs


def test_each_entry_gives_the_absolute_difference_and_its_share_of_the_tuning_gain() -> None:
    # a saturated cell: 0.005 nats is +83% relative to a best of 0.006, and 0.17% of the 2.994-nat tuning gain
    cells = {"sat": {"a": Runs({1: 0.005, 2: 0.007}), "b": Runs({1: 0.010, 2: 0.012}), "pub": Runs({1: 0.5, 2: 0.5})},
             "qa": {"a": Runs({1: 2.50, 2: 2.60}), "b": Runs({1: 2.45, 2: 2.55}), "pub": Runs({1: 2.9, 2: 2.9})}}
    doc = defaults_doc("eval_loss", "minimize", 40, [{"name": "sat", "untuned": {"none": 3.0}},
                                                     {"name": "qa", "untuned": {"none": 4.0}}],
                       [{"name": "a", "mode": "none"}, {"name": "b", "mode": "none"}], cells,
                       references=[{"name": "pub", "mode": "none"}])
    m = doc["modes"]["none"]
    entry = m["regret"]["b"]["sat"]
    assert entry["value"] == pytest.approx(0.005 / 0.006) and entry["diff"] == pytest.approx(0.005)
    assert entry["gain_lost"] == pytest.approx(0.005 / (3.0 - 0.006))
    assert m["regret"]["a"]["sat"]["gain_lost"] == 0.0  # the cell's best gives up nothing
    assert m["regret"]["a"]["qa"]["gain_lost"] == pytest.approx(0.05 / (4.0 - 2.5))
    assert m["worst_gain_lost"]["b"] == pytest.approx(0.005 / 2.994)
    assert m["reference_regret"]["pub"]["qa"]["gain_lost"] == pytest.approx(0.4 / 1.5)
    # without the untuned model's value there is no share, only the relative and absolute differences
    bare = defaults_doc("eval_loss", "minimize", 40, [{"name": "sat"}, {"name": "qa"}],
                        [{"name": "a", "mode": "none"}, {"name": "b", "mode": "none"}], cells)
    assert bare["modes"]["none"]["regret"]["b"]["sat"]["gain_lost"] is None
    assert bare["modes"]["none"]["worst_gain_lost"]["b"] is None


# ---- hand-built studies (nothing trains) ----------------------------------------------------------------------

PARAMS = {"quantization": "none", "lora_r": 4, "lora_alpha": 8.0, "lora_dropout": 0.0, "target_modules": "all-linear"}
LRS = [5e-3, 2e-3, 1e-3]


def _source(url: str, name: str, model: str, data: str, out: Path, lrs: list[float], *, max_steps: int = 2,
            train: dict[str, Any] | None = None, eval_size: int = 8) -> None:
    """A study as `harness sweep` leaves it: its settings and completed trials (the first the best)."""
    study = optuna.create_study(study_name=name, storage=url)
    study.set_user_attr("sweep", {"model": model, "data": data, "max_steps": max_steps, "seed": 0,
                                  "objectives": ["eval_loss"], "wandb": "disabled", "out": str(out),
                                  "train": train or {"batch_size": 8, "grad_accum": 1},
                                  "data_options": {"eval_size": eval_size, "train_size": 32},
                                  "eval": {"metrics": [], "generate_size": 0}})
    study.set_user_attr("objectives", ["eval_loss"])
    study.set_user_attr("baseline_by_mode", {"none": {"eval_loss": 11.0}})  # the cells score no baseline
    dists = {k: CategoricalDistribution(LRS if k == "learning_rate" else [v]) for k, v in {**PARAMS, "learning_rate": 0}.items()}
    for i, lr in enumerate(lrs):
        study.add_trial(optuna.trial.create_trial(
            params={**PARAMS, "learning_rate": lr}, distributions=dists, value=10.0 + i,
            user_attrs={"status": "complete", "seed": 0, "result": {"eval_loss": 10.0 + i}}))


def test_studies_whose_budgets_differ_are_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    _source(url, "a", "tiny-llama", "stdlib-qa", tmp_path / "a", [5e-3])
    _source(url, "b", "tiny-llama", "stdlib-qa", tmp_path / "b", [5e-3], train={"batch_size": 4, "grad_accum": 2})
    _source(url, "long", "tiny-llama", "stdlib-qa", tmp_path / "c", [5e-3], max_steps=4)
    check_studies([open_view("a", url), open_view("b", url)])  # 8 x 1 and 4 x 2: the same sequences per step
    with pytest.raises(SpecError, match="budgets differ .*long 4 steps x 8 sequences"):
        check_studies([open_view("a", url), open_view("long", url)])
    with pytest.raises(SpecError, match="at least two different studies"):
        check_studies([open_view("a", url)])
    assert [c.name for c in study_candidates(open_view("a", url), 1)] == ["a#0"]


@pytest.mark.integration  # starts `harness defaults`
def test_the_command_refuses_budgets_that_differ_and_a_study_that_does_not_exist(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    _source(url, "a", "tiny-llama", "stdlib-qa", tmp_path / "a", [5e-3])
    _source(url, "long", "tiny-llama", "stdlib-qa", tmp_path / "c", [5e-3], max_steps=4)
    base = ["defaults", "--storage", url, "--reports-dir", str(tmp_path / "r")]
    assert_one_line_error(run_cli(*base, "--study", "a", "--study", "long"), "budgets differ")
    assert_one_line_error(run_cli(*base, "--study", "a", "--study", "nope"), "'nope'")
    assert not (tmp_path / "r").exists()


# ---- on tiny models: two cells, one candidate each, two shared seeds --------------------------------------------

REFERENCES = [{"name": "ref-constant", "source": "a hand-made published default with its own schedule",
               "params": {**PARAMS, "lora_r": 4, "lora_alpha": 4.0, "learning_rate": 1e-3},
               "training": {"scheduler": "constant", "warmup_ratio": 0.0}},
              {"name": "ref-huge", "source": "a rank no tiny model's layer holds",
               "params": {**PARAMS, "lora_r": 4096, "lora_alpha": 4096.0, "learning_rate": 1e-3}}]
"""The cross-evaluation's published defaults (--defaults-file): one trains in every cell, one fits no cell."""
CELLS = {"a": ("tiny-llama", "stdlib-qa", {"batch_size": 8, "grad_accum": 1}, 8),
         "b": ("tiny-qwen2", "headline-sentiment", {"batch_size": 4, "grad_accum": 2}, 6)}
"""Cell -> model, data, training settings (the same 8 sequences per step, split differently) and held-out size."""


@pytest.fixture(scope="module")
def crossed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two hand-built studies cross-evaluated by `harness defaults` (2 cells x (2 candidates + 1 reference) x 2
    seeds, packed), then the same command again."""
    root = tmp_path_factory.mktemp("defaults")
    url = f"sqlite:///{root}/studies.db"
    for (name, (model, data, train, eval_size)), lrs in zip(CELLS.items(), ([5e-3, 1e-3], [2e-3, 1e-3])):
        _source(url, name, model, data, root / name, lrs, train=train, eval_size=eval_size)
    (root / "published.yaml").write_text(yaml.safe_dump(REFERENCES))
    args = ["defaults", "--study", "a", "--study", "b", "--storage", url, "--seeds", "2", "--pack", "2",
            "--defaults-file", str(root / "published.yaml"), "--reports-dir", str(root / "reports"),
            "--format", "axolotl"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    counts = {name: len(optuna.load_study(study_name=f"{name}@defaults-{digest(['a', 'b'])}", storage=url).trials)
              for name in CELLS}
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    return {"root": root, "url": url, "first": first, "again": again, "counts": counts}


def _records(crossed: dict[str, Any], cell: str) -> list[dict[str, Any]]:
    path = crossed["root"] / cell / f"defaults-{digest(['a', 'b'])}" / "trials.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.integration
def test_every_candidate_trains_with_its_cells_model_data_and_budget(crossed: dict[str, Any]) -> None:
    candidates = {"a#0": 5e-3, "b#0": 2e-3, "ref-constant": 1e-3}
    for cell, (model, data, train, eval_size) in CELLS.items():
        records = _records(crossed, cell)
        assert len(records) == 6 and {r["state"] for r in records} == {"COMPLETE"}, records
        for record in records:
            config = record["config"]
            assert config["model"]["name"] == model and config["data"]["name"] == data
            assert (config["data"]["eval_size"], config["data"]["train_size"]) == (eval_size, 32)
            assert config["train"]["max_steps"] == 2
            assert (config["train"]["batch_size"], config["train"]["grad_accum"]) == (train["batch_size"],
                                                                                      train["grad_accum"])
        assert sorted(r["params"]["learning_rate"] for r in records) == sorted([*candidates.values()] * 2)
        # the reference trains with its own schedule and the cell's everything else; the candidates with the cell's
        schedules = {(r["params"]["learning_rate"], r["config"]["train"]["scheduler"]) for r in records}
        assert schedules == {(5e-3, "cosine"), (2e-3, "cosine"), (1e-3, "constant")}
        assert {r["params"]["lora_r"] for r in records} == {4}  # ref-huge fits no tiny model: never trained


@pytest.mark.integration
def test_the_seeds_are_shared_within_a_cell(crossed: dict[str, Any]) -> None:
    for cell in CELLS:
        seeds: dict[float, list[int]] = {}
        for record in _records(crossed, cell):
            seeds.setdefault(record["params"]["learning_rate"], []).append(record["config"]["train"]["seed"])
        assert len(seeds) == 3 and all(sorted(s) == [1, 2] for s in seeds.values()), seeds  # the cell's seed + 1, + 2


@pytest.mark.integration
def test_a_second_run_repeats_nothing_and_plans_only_missing_seeds(crossed: dict[str, Any]) -> None:
    url = crossed["url"]
    assert "every run is done" in crossed["again"].stdout
    for name, count in crossed["counts"].items():
        assert count == 6
        assert len(optuna.load_study(study_name=f"{name}@defaults-{digest(['a', 'b'])}", storage=url).trials) == 6
    views = [open_view(n, url) for n in CELLS]
    candidates = [c for v in views for c in study_candidates(v, 1)]
    for cell in cells_of(views, references=True, defaults_file=crossed["root"] / "published.yaml"):
        assert [r.source for r in cell.references] == ["ref-constant"] and dict(cell.skipped).keys() == {"ref-huge"}
        assert missing_runs(cell, candidates, 2) == []
        assert sorted((p.source, seed) for p, seed in missing_runs(cell, candidates, 3)) == [
            ("a#0", 3), ("b#0", 3), ("ref-constant", 3)]


@pytest.mark.integration
def test_the_documents_hold_the_matrix_the_rule_and_a_loadable_defaults_yaml(crossed: dict[str, Any],
                                                                               tmp_path: Path) -> None:
    reports = crossed["root"] / "reports"
    doc = json.loads((reports / "defaults.json").read_text())
    assert [c["name"] for c in doc["cells"]] == ["a", "b"] and [c["name"] for c in doc["candidates"]] == ["a#0", "b#0"]
    matrix = doc["modes"]["none"]
    assert set(matrix["regret"]) == {"a#0", "b#0"} and all(len(row) == 2 for row in matrix["regret"].values())
    assert all(e["pairs"] == 2 for row in matrix["regret"].values() for e in row.values())
    assert doc["choice"]["none"] == matrix["order"][0] and "smallest worst-cell regret" in doc["rule"]
    assert "rule: " in crossed["first"].stdout and "worst-cell regret" in crossed["first"].stdout
    markdown = (reports / "defaults.md").read_text()
    assert "## none: regret against each cell's best" in markdown
    # the reference: never a candidate, compared with the choice in both cells on both seeds
    assert [r["name"] for r in doc["references"]] == ["ref-constant"] and matrix["references"] == ["ref-constant"]
    versus = matrix["versus_choice"]["ref-constant"]
    assert set(versus) == {"a", "b"} and all(e["pairs"] == 2 and e["verdict"] != "not run" for e in versus.values())
    assert "### The published none defaults in the same cells" in markdown and "| ref-constant |" in markdown
    assert "vs published ref-constant" in crossed["first"].stdout
    assert all("larger than" in c["references_skipped"]["ref-huge"] for c in doc["cells"])
    assert (reports / "defaults.png").stat().st_size > 5_000
    assert (reports / "recommended.axolotl.yaml").exists()
    defaults = yaml.safe_load((reports / "defaults.yaml").read_text())
    chosen = defaults["per_quantization"]["none"]["evidence"]
    assert chosen["candidate"] == doc["choice"]["none"] and defaults["training"]["max_steps"] == 2
    assert set(chosen["versus_published"]["ref-constant"]) == {"a", "b"}
    assert "loaded" in load_without_harness(reports / "defaults.yaml", tmp_path)
    # harness validate and --warm-start read the chosen config back as a default named harness-none
    from harness.config.defaults import is_harness_defaults, load_harness_defaults

    assert is_harness_defaults(reports / "defaults.yaml")
    [entry] = load_harness_defaults(reports / "defaults.yaml")
    assert entry.name == "harness-none" and entry.params["learning_rate"] == chosen["params"]["learning_rate"]


# ---- a defaults.yaml read back: harness validate --defaults-file, sweep --warm-start defaults --------------------

HAND_DEFAULTS = {"validated": False, "evidence": {"defaults": True, "studies": ["a", "b"]},
                 "per_quantization": {
                     "none": {"evidence": {"candidate": "a#3", "params": {**PARAMS, "learning_rate": 2e-4}}},
                     "nf4-dq": {"evidence": {"candidate": "b#1",
                                             "params": {**PARAMS, "quantization": "nf4-dq", "learning_rate": 3e-4}}}}}


def test_a_defaults_file_adds_its_configs_beside_the_published_defaults(tmp_path: Path) -> None:
    from harness.config.defaults import load_defaults
    from harness.config.space import parse_space
    from harness.evidence.validate import published
    from harness.search.warmstart import published_configs

    path = tmp_path / "defaults.yaml"
    path.write_text(yaml.safe_dump(HAND_DEFAULTS))

    class Dims:
        def smallest(self, targets: str) -> tuple[int, str]:
            return 64, "q_proj"

    view = type("View", (), {"sweep": {"model": "tiny-llama"}})()
    runnable, skipped = published(view, Dims(), path)  # type: ignore[arg-type]
    names = [p.source for p in runnable] + list(skipped)
    assert {"harness-none", "harness-nf4-dq"} <= set(names)
    assert {d.name for d in load_defaults()} <= set(names)  # the published defaults stay
    mine = next(p for p in runnable if p.source == "harness-nf4-dq")
    assert mine.params["quantization"] == "nf4-dq" and mine.training == {} and "b#1" in mine.note

    space = parse_space({"axes": {"lora_r": {"choices": [4, 16]}, "lora_alpha": {"ratio": 2},
                                  "learning_rate": {"low": 1e-4, "high": 1e-3, "log": True},
                                  "quantization": {"choices": ["none", "nf4-dq"]}}})
    configs, skipped = published_configs(space, shipped=path)
    assert "shipped default harness-none" in [c.label for c in configs]
    _, skipped = published_configs(space, shipped=tmp_path / "none-shipped.yaml")
    assert "defaults.yaml is missing from this installation" in skipped["harness defaults"]


def test_a_sequential_cross_evaluation_adds_seeds_only_for_unresolved_regrets(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`--confirm-until resolved`: 2 seeds everywhere, then 2 more only for the candidates of an unresolved regret
    (the candidate and its cell's best) and only in its cell, until none is left; nothing trains here (run_cell and read_cross are
    stand-ins)."""
    from harness.evidence import crosseval

    url = f"sqlite:///{tmp_path}/s.db"
    _source(url, "a", "tiny-llama", "stdlib-qa", tmp_path / "a", [5e-3])
    _source(url, "b", "tiny-llama", "headline-sentiment", tmp_path / "b", [2e-3])
    calls: list[tuple[str, int, set[str] | None]] = []

    def run_cell(cell: Any, views: Any, candidates: Any, seeds: int, *, grow: Any = None, **_: Any) -> int:
        calls.append((cell.view.name, seeds, grow))
        return 0

    def read_cross(cells: Any, candidates: Any, resolution: Any = None, max_seeds: Any = None) -> Any:
        looks = len(calls) // len(cells)  # the first look leaves b#0's regret in cell a unresolved
        entry = {"value": 0.02, "resolved": looks > 1, "pairs": 2 * looks}
        matrix = {"regret": {"a#0": {"a": {"value": 0.0, "resolved": True, "pairs": 2 * looks}},
                             "b#0": {"a": entry}}, "best": {"a": "a#0"}}
        return crosseval.CrossEvaluation({"modes": {"none": matrix}}, cells, candidates)

    monkeypatch.setattr(crosseval, "run_cell", run_cell)
    monkeypatch.setattr(crosseval, "read_cross", read_cross)
    crosseval.cross_evaluate(["a", "b"], storage=url, sequential={"max_seeds": 6, "resolution": "1%"},
                             say=lambda line: None)
    keys = {c.name: c.key for v in (open_view("a", url), open_view("b", url)) for c in study_candidates(v, 1)}
    # the open comparison is in cell a: cell b gets no seeds (a comparison is within one cell)
    assert calls == [("a", 2, None), ("b", 2, None), ("a", 4, {keys["a#0"], keys["b#0"]}), ("b", 4, set())]


@pytest.mark.integration
def test_adding_a_study_trains_only_its_candidates_in_the_old_cells(crossed: dict[str, Any]) -> None:
    """A cross-evaluation of {a, b, c} after {a, b}: cells a and b already hold a#0's, b#0's and the reference's
    runs (in the {a, b} linked studies); only c's candidate is trained there. Cell c trains everything."""
    url, root = crossed["url"], crossed["root"]
    _source(url, "c", "tiny-llama", "fictional-company", root / "c", [1e-3], train={"batch_size": 8, "grad_accum": 1})
    result = run_cli("defaults", "--study", "a", "--study", "b", "--study", "c", "--storage", url, "--seeds", "2",
                     "--defaults-file", str(root / "published.yaml"), "--reports-dir", str(root / "reports_abc"))
    assert result.returncode == 0, result.stderr[-3000:]
    trained = {name: sorted(t.params["learning_rate"] for t in optuna.load_study(
        study_name=f"{name}@defaults-{digest(['a', 'b', 'c'])}", storage=url).trials) for name in ("a", "b", "c")}
    assert trained["a"] == trained["b"] == [1e-3, 1e-3]  # c#0 on the cell's two seeds; nothing else again
    assert trained["c"] == sorted([5e-3, 2e-3, 1e-3, 1e-3] * 2)  # a#0, b#0, c#0 and ref-constant (lr 1e-3 too)
    doc = json.loads((root / "reports_abc" / "defaults.json").read_text())
    matrix = doc["modes"]["none"]
    assert all(e["pairs"] == 2 for row in matrix["regret"].values() for e in row.values())  # old runs read back
    assert {c["name"]: c["runs_from"] for c in doc["cells"]} == {
        "a": [f"a@defaults-{digest(['a', 'b'])}"], "b": [f"b@defaults-{digest(['a', 'b'])}"], "c": []}


@pytest.mark.integration
def test_report_only_trains_nothing_and_writes_what_is_done(crossed: dict[str, Any]) -> None:
    url, root = crossed["url"], crossed["root"]
    before = {n: len(optuna.load_study(study_name=f"{n}@defaults-{digest(['a', 'b'])}", storage=url).trials)
              for n in CELLS}
    result = run_cli("defaults", "--study", "a", "--study", "b", "--storage", url, "--seeds", "3", "--report-only",
                     "--defaults-file", str(root / "published.yaml"), "--reports-dir", str(root / "reports_only"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nothing trained (--report-only); 6 runs of the first 3 seeds still missing" in result.stdout
    after = {n: len(optuna.load_study(study_name=f"{n}@defaults-{digest(['a', 'b'])}", storage=url).trials)
             for n in CELLS}
    assert after == before
    doc = json.loads((root / "reports_only" / "defaults.json").read_text())
    assert all(e["pairs"] == 2 for row in doc["modes"]["none"]["regret"].values() for e in row.values()
               if e["value"] not in (None, 0.0))


@pytest.mark.integration
def test_references_added_later_go_to_a_continuation_study_and_waiting_runs_anywhere_are_run(tmp_path: Path) -> None:
    """A cross-evaluation run first with --no-published, then with a reference whose learning rate is outside the
    cells' space (an Optuna study's categorical choices cannot grow): the reference trains in `<linked>+2`, the
    candidates' runs are not repeated, and a run left waiting in the first study (a stop before it ran) is run
    there, once."""
    url = f"sqlite:///{tmp_path}/studies.db"
    for (name, (model, data, train, eval_size)), lrs in zip(CELLS.items(), ([5e-3], [2e-3])):
        _source(url, name, model, data, tmp_path / name, lrs, train=train, eval_size=eval_size)
    base = ["defaults", "--study", "a", "--study", "b", "--storage", url]
    first = run_cli(*base, "--seeds", "1", "--no-published", "--reports-dir", str(tmp_path / "r1"))
    assert first.returncode == 0, first.stderr[-3000:]
    linked = f"a@defaults-{digest(['a', 'b'])}"
    stopped = optuna.load_study(study_name=linked, storage=url)  # seed 2 of a#0, enqueued and never run
    stopped.enqueue_trial({**PARAMS, "learning_rate": 5e-3}, user_attrs={"seed": 2, "defaults_candidate": "a#0"})
    late = [{"name": "ref-late", "source": "a reference outside the space",
             "params": {**PARAMS, "learning_rate": 7e-4}, "training": {"scheduler": "constant"}}]
    (tmp_path / "late.yaml").write_text(yaml.safe_dump(late))
    second = run_cli(*base, "--seeds", "2", "--defaults-file", str(tmp_path / "late.yaml"),
                     "--reports-dir", str(tmp_path / "r2"))
    assert second.returncode == 0, second.stderr[-3000:]

    def runs(study: str) -> list[tuple[float, int, str]]:
        trials = optuna.load_study(study_name=study, storage=url).trials
        lr = [{**t.system_attrs.get("fixed_params", {}), **t.params}["learning_rate"] for t in trials]
        return sorted((r, t.user_attrs["seed"], t.state.name) for r, t in zip(lr, trials))

    # cell a: a#0 and b#0 on seed 1 from the first run, then a#0's waiting seed 2, run where it was waiting
    assert runs(linked) == [(2e-3, 1, "COMPLETE"), (5e-3, 1, "COMPLETE"), (5e-3, 2, "COMPLETE")]
    # what was missing, and only that: b#0's seed 2 and the reference's two seeds
    assert runs(f"{linked}+2") == [(7e-4, 1, "COMPLETE"), (7e-4, 2, "COMPLETE"), (2e-3, 2, "COMPLETE")]
    assert (tmp_path / "a" / f"defaults-{digest(['a', 'b'])}+2" / "space.yaml").exists()
    doc = json.loads((tmp_path / "r2" / "defaults.json").read_text())
    versus = doc["modes"]["none"]["versus_choice"]["ref-late"]
    assert {cell: e["pairs"] for cell, e in versus.items()} == {"a": 2, "b": 2}
    # a run left waiting that no round plans (seed 5 of a#0, from a stopped run that planned more) is withdrawn,
    # not run, and not reported as a failed run
    stopped.enqueue_trial({**PARAMS, "learning_rate": 5e-3}, user_attrs={"seed": 5, "defaults_candidate": "a#0"})
    third = run_cli(*base, "--seeds", "2", "--defaults-file", str(tmp_path / "late.yaml"),
                    "--reports-dir", str(tmp_path / "r3"))
    assert third.returncode == 0, third.stderr[-3000:]
    assert runs(linked)[-1] == (5e-3, 5, "FAIL") and len(runs(linked)) == 4
    assert optuna.load_study(study_name=linked, storage=url).trials[-1].user_attrs["status"] == "withdrawn"
    doc = json.loads((tmp_path / "r3" / "defaults.json").read_text())
    assert [c["failed_runs"] for c in doc["cells"]] == [[], []]


def test_the_shipped_defaults_are_what_the_committed_report_chose() -> None:
    """harness/config/defaults.yaml is reports/defaults/defaults.yaml as `harness defaults` wrote it, and each
    mode's config is the choice defaults.json records, with its measured regrets (fails on a hand-edited file, a
    copy from another read-out, or a report rerun without copying)."""
    from harness.config.defaults import SHIPPED, load_harness_defaults

    root = Path(__file__).resolve().parents[2]
    report = root / "reports" / "defaults"
    assert SHIPPED.read_bytes() == (report / "defaults.yaml").read_bytes()
    doc = json.loads((report / "defaults.json").read_text())
    shipped = yaml.safe_load(SHIPPED.read_text())
    assert shipped["evidence"]["choice"] == {mode: m["choice"] for mode, m in doc["modes"].items()}
    for default in load_harness_defaults():
        mode = default.name.removeprefix("harness-")
        chosen = next(c for c in doc["candidates"] if c["name"] == doc["modes"][mode]["choice"])
        assert default.params == {k: chosen["params"][k] for k in default.params}
        evidence = shipped["per_quantization"][mode]["evidence"]
        assert evidence["worst_regret"] == pytest.approx(doc["modes"][mode]["worst"][chosen["name"]])
