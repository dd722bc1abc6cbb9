"""harness.config.experiment: experiment YAML + flags -> a validated SweepSpec; search-space names -> files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.config.experiment import build_sweep_spec, load_experiment, resolve_space, spec_to_dict
from harness.config.space import load_space
from harness.config.dataset import DataSpec
from harness.config.errors import SpecError
from harness.config.evaluation import EvalSpec
from harness.config.sweep import SweepSpec
from harness.config.training import TrainSpec

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT_FILES = sorted((ROOT / "experiments").glob("*.yaml"))
SHIPPED_SPACES = sorted(p.stem for p in (ROOT / "search_spaces").glob("*.yaml"))


def _write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _from_file(path: Path, flags: dict | None = None) -> SweepSpec:
    """What `harness sweep --experiment PATH` does."""
    return build_sweep_spec(load_experiment(path), flags or {}, str(path))


@pytest.mark.parametrize("path", EXPERIMENT_FILES or [None], ids=lambda p: p.name if p else "none")
def test_every_shipped_experiment_builds(path: Path | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if path is None:
        pytest.skip("no experiments/*.yaml shipped yet")
    monkeypatch.chdir(ROOT)
    spec = _from_file(path)
    assert isinstance(spec, SweepSpec)
    assert spec.study
    load_space(resolve_space(spec.space))  # its search space parses too


def test_a_full_experiment_file(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        model: tiny-llama
        space: tiny
        trials: 4
        max_steps: 10
        seed: 3
        wandb: disabled
        pruner: median
        objectives: [eval_loss]
        train: {batch_size: 4, warmup_ratio: 0.1, scheduler: linear}
        data_options: {max_seq_len: 64, train_size: 200}
        eval: {batch_size: 8}
        """, "smoke.yaml")
    spec = _from_file(path)
    assert spec.study == "smoke"  # named after the file
    assert (spec.model, spec.space, spec.trials, spec.max_steps, spec.seed) == ("tiny-llama", "tiny", 4, 10, 3)
    assert (spec.wandb, spec.pruner, spec.objectives) == ("disabled", "median", ("eval_loss",))
    assert spec.train == TrainSpec(batch_size=4, warmup_ratio=0.1, scheduler="linear")
    assert spec.data_spec == DataSpec(max_seq_len=64, train_size=200)
    assert spec.eval == EvalSpec(batch_size=8)
    assert spec.out_dir == "experiments/smoke"
    assert spec.storage_url == "sqlite:///experiments/smoke/study.db"


def test_study_in_the_file_wins_over_the_file_name(tmp_path: Path) -> None:
    assert _from_file(_write(tmp_path, "study: named\n")).study == "named"


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "model: tiny-llama\nlearning_rte: 1.0e-4\n")
    with pytest.raises(SpecError) as info:
        load_experiment(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "'learning_rte'" in message


def test_unknown_section_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "train:\n  foo: 1\n")
    with pytest.raises(SpecError) as info:
        _from_file(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "train.foo" in message


def test_bad_value_in_a_section_names_file_and_section(tmp_path: Path) -> None:
    path = _write(tmp_path, "train: {warmup_ratio: 1.0}\n")
    with pytest.raises(SpecError) as info:
        _from_file(path)
    assert str(path) in str(info.value) and "train" in str(info.value) and "warmup_ratio" in str(info.value)


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, "train: 3\n")
    with pytest.raises(SpecError, match="train"):
        load_experiment(path)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_experiment(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_experiment(_write(tmp_path, "model: [tiny\n"))
    with pytest.raises(SpecError, match="mapping"):
        load_experiment(_write(tmp_path, "- a\n- b\n"))


def test_flags_override_the_file_and_none_flags_do_not(tmp_path: Path) -> None:
    path = _write(tmp_path, "model: tiny-llama\ntrials: 4\nseed: 3\nspace: tiny\n")
    flags = {"trials": 9, "model": None, "seed": None, "space": "default", "out": None, "storage": None}
    spec = _from_file(path, flags)
    assert spec.trials == 9
    assert spec.space == "default"
    assert spec.model == "tiny-llama"
    assert spec.seed == 3
    assert spec.out is None and spec.storage is None


def test_flags_alone_use_the_defaults() -> None:
    spec = build_sweep_spec({}, {"study": "s", "max_steps": None})
    assert spec == SweepSpec(study="s")


def test_objectives_from_a_comma_separated_flag() -> None:
    spec = build_sweep_spec({}, {"objectives": "eval_loss, peak_memory_mb"})
    assert spec.objectives == ("eval_loss", "peak_memory_mb")
    assert spec.directions == ["minimize", "minimize"]
    assert build_sweep_spec({"objectives": ["perplexity"]}, {}).objectives == ("perplexity",)
    assert build_sweep_spec({"objectives": "eval_loss"}, {}).objectives == ("eval_loss",)


def test_bad_flag_values_are_spec_errors() -> None:
    with pytest.raises(SpecError, match="objective 'bleu'"):
        build_sweep_spec({}, {"objectives": "eval_loss,bleu"})
    with pytest.raises(SpecError, match="pruner"):
        build_sweep_spec({}, {"objectives": "eval_loss,peak_memory_mb", "pruner": "median"})


def test_resolve_space_from_another_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = resolve_space("tiny")
    assert path.resolve() == (ROOT / "search_spaces" / "tiny.yaml").resolve()
    assert resolve_space("tiny.yaml").resolve() == path.resolve()
    load_space(path)


def test_resolve_space_prefers_a_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    own = _write(tmp_path, "axes: {lora_r: 8}\n", "mine.yaml")
    assert resolve_space(str(own)) == own
    (tmp_path / "search_spaces").mkdir()
    local = _write(tmp_path / "search_spaces", "axes: {lora_r: 4}\n", "tiny.yaml")
    assert resolve_space("tiny").resolve() == local.resolve()


def test_unknown_space_lists_the_known_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as info:
        resolve_space("nonexistent")
    message = str(info.value)
    assert "'nonexistent'" in message
    assert SHIPPED_SPACES and all(name in message for name in SHIPPED_SPACES)


def test_spec_round_trips_through_its_dict() -> None:
    spec = SweepSpec(
        study="rt", model="tiny-llama", data="my.jsonl", space="tiny", trials=3, max_steps=7, seed=5,
        out="runs/rt", storage="sqlite:///x.db", wandb="offline", sampler="random", pruner="none",
        objectives=("eval_loss", "tokens_per_second"),
        train=TrainSpec(learning_rate=1e-3, batch_size=2, scheduler="constant"),
        data_spec=DataSpec(max_seq_len=32, eval_size=8), eval=EvalSpec(batch_size=2),
    )
    data = spec_to_dict(spec)
    assert set(data) >= {"train", "data_options", "eval"} and "data_spec" not in data
    assert data["objectives"] == ["eval_loss", "tokens_per_second"]
    assert build_sweep_spec(data, {}) == spec
    assert build_sweep_spec(spec_to_dict(SweepSpec()), {}) == SweepSpec()


def test_spec_dict_round_trips_through_yaml(tmp_path: Path) -> None:
    import yaml

    spec = SweepSpec(study="rt", objectives=("eval_loss", "peak_memory_mb"), train=TrainSpec(learning_rate=1e-5))
    path = tmp_path / "rt.yaml"
    path.write_text(yaml.safe_dump(spec_to_dict(spec)))
    assert _from_file(path) == spec
