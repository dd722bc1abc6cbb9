"""`--max-memory-mb` on the commands that run more trials of a study: `worker` and `compare`'s confirmations
keep the study's own budget (pinned when the sweep created it) and refuse another; `validate`'s long runs take
the one given, pinned in the linked study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

import harness
from harness.config.errors import SpecError
from harness.config.experiment import spec_to_dict
from harness.config.sweep import SweepSpec
from harness.config.training import TrainSpec


def _study(tmp_path: Path, budget: float | None) -> str:
    """A study `s` created by a sweep under `budget`, with one completed trial."""
    url = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=url)
    spec = SweepSpec(study="s", model="tiny-llama", space="tiny", max_steps=10, train=TrainSpec(max_memory_mb=budget))
    study.set_user_attr("sweep", spec_to_dict(spec))
    study.set_user_attr("settings", spec.measured_settings())
    params = {"quantization": "none", "lora_r": 8, "lora_alpha": 16.0, "learning_rate": 1e-3, "lora_dropout": 0.0,
              "target_modules": "all-linear"}
    distributions = {k: optuna.distributions.CategoricalDistribution([v]) for k, v in params.items()}
    study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=2.0,
                                              user_attrs={"status": "complete", "result": {"eval_loss": 2.0}}))
    return url


def test_worker_and_compare_refuse_another_budget_than_the_studys(tmp_path: Path) -> None:
    from harness.api.readouts import grouped_view

    url = _study(tmp_path, 500.0)
    with pytest.raises(SpecError, match=r"--max-memory-mb 600: study 's' runs its trials under .* \(500 MiB\)"):
        harness.worker(study="s", storage=url, max_memory_mb=600)
    with pytest.raises(SpecError, match=r"--max-memory-mb 600: study 's'"):
        harness.compare("s", storage=url, reports_dir=str(tmp_path / "r"), confirm_seeds=1, max_memory_mb=600)
    assert not (tmp_path / "r").exists()
    view, _ = grouped_view("s", url, None, None, max_memory_mb=500)  # the study's own budget is accepted
    assert view.name == "s"


class _Ran(Exception):
    """Raised by the fake run_sweep: the spec the long runs would have run with was captured."""


def test_validate_runs_the_long_runs_under_the_budget_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.search import launch

    url = _study(tmp_path, None)
    seen: list[Any] = []

    def fake_run_sweep(spec: SweepSpec, **_: Any) -> None:
        seen.append(spec)
        raise _Ran

    monkeypatch.setattr(launch, "run_sweep", fake_run_sweep)
    with pytest.raises(_Ran):
        harness.validate("s", storage=url, out=str(tmp_path), steps=40, top=1, seeds=1, defaults=False,
                         max_memory_mb=700, say=lambda _: None)
    assert seen[0].train.max_memory_mb == 700.0 and seen[0].max_steps == 40
    linked = optuna.load_study(study_name="s@40", storage=url)
    assert linked.user_attrs["settings"]["train.max_memory_mb"] == 700.0, "pinned in the linked study"
