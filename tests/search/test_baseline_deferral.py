"""The first trial's result does not wait for the untuned baselines, and a later study reads them back."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import load_study, loss_only_experiment, run_cli, write_space


@pytest.mark.integration
def test_the_first_trial_comes_before_the_baselines_and_a_second_study_reads_them(tmp_path: Path) -> None:
    space = write_space(tmp_path / "space.yaml", quantization="{choices: [none, nf4]}")
    exp = loss_only_experiment(tmp_path, "train: {batch_size: 4}\n")
    common = ("sweep", "-e", str(exp), "--model", "tiny-llama", "--space", str(space), "--max-steps", "2",
              "--wandb", "disabled", "--trials", "1", "--seed", "3")
    first = run_cli(*common, "--study", "first", "--out", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr[-3000:]
    err = first.stderr
    assert "the untuned base model is scored after the first trial" in err
    assert err.index("(#0)") < err.index("untuned base model (none): eval_loss")
    study = load_study(tmp_path / "a", "first")
    scored = study.user_attrs["baseline_by_mode"]
    assert set(scored) == {"none", "nf4"} and all(scored[m]["eval_loss"] > 0 for m in scored)
    assert study.user_attrs["n_eval"] == 8 and study.user_attrs["split_hash"]
    # Same model, data and settings in another study (another folder): read from the machine's cache, equal.
    second = run_cli(*common, "--study", "second", "--out", str(tmp_path / "b"))
    assert second.returncode == 0, second.stderr[-3000:]
    for mode in ("none", "nf4"):
        assert f"untuned base model ({mode}): read from this machine's baseline cache" in second.stderr
    again = load_study(tmp_path / "b", "second").user_attrs["baseline_by_mode"]
    assert {m: again[m]["eval_loss"] for m in again} == {m: scored[m]["eval_loss"] for m in scored}
    assert all(again[m]["cached"] for m in again)
