"""The planner's decisions (fitting keeps the effective batch; infeasible is one line before anything loads),
its probe cache keys, its analytic weights, and `--plan` creating nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness.config.dataset import DataSpec
from harness.config.lora import LoraSpec
from harness.config.model import ModelSpec, QuantSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig
from harness.search.planning import fit_to_budget
from harness.trial import memory_plan
from harness.trial.memory_plan import Prediction


def _config(batch: int = 8, accum: int = 1, ckpt: bool = False) -> TrialConfig:
    return TrialConfig(model=ModelSpec("tiny-llama"), quant=QuantSpec("nf4"), lora=LoraSpec(r=8, alpha=16.0),
                       train=TrainSpec(batch_size=batch, grad_accum=accum, gradient_checkpointing=ckpt),
                       data=DataSpec(max_seq_len=128))


def _fake(per_token_mb: float, ckpt_factor: float = 0.25, base_mb: float = 100.0):
    """A predictor whose peak is base + activations (x ckpt_factor with checkpointing) per micro-batch token."""
    def predict(config: TrialConfig) -> Prediction:
        act = per_token_mb * config.train.batch_size * config.data.max_seq_len
        act *= ckpt_factor if config.train.gradient_checkpointing else 1.0
        return Prediction(base_mb + act, 0.01 * config.train.grad_accum, base_mb, 0.0, act, 0.0)
    return predict


def _with_eval(per_sequence_mb: float, base_mb: float = 100.0, per_token_mb: float = 0.1):
    """_fake's training peak (small) and an evaluation peak of base + per_sequence_mb per widest eval batch row."""
    train = _fake(per_token_mb, base_mb=base_mb)

    def predict(config: TrialConfig) -> Prediction:
        sequences = max(config.eval.batch_size, config.eval.generate_batch_size)
        return dataclasses.replace(train(config), eval_peak_mb=base_mb + per_sequence_mb * sequences)
    return predict


def test_a_config_that_fits_is_untouched() -> None:
    planned = fit_to_budget(_config(), 10_000, _fake(1.0))
    assert planned.fits and planned.fit is None and planned.config == _config()


def test_fitting_halves_the_micro_batch_and_keeps_the_effective_batch() -> None:
    planned = fit_to_budget(_config(batch=8, accum=2), 400, _fake(1.0))  # 8 x 128 tokens: 1124 MiB
    train = planned.config.train
    assert planned.fits and planned.peak_memory_mb <= 400
    assert train.batch_size * train.grad_accum == 16, "fitting changed the effective batch"
    assert (train.batch_size, train.grad_accum, train.gradient_checkpointing) == (2, 8, False)
    assert planned.fit == {"batch_size": [8, 2], "grad_accum": [2, 8],
                           "why": "predicted training peak 1,124 MiB > budget 400 MiB"}


def test_then_gradient_checkpointing_then_infeasible() -> None:
    planned = fit_to_budget(_config(batch=2), 200, _fake(1.0))  # batch 1 alone: 228 MiB; checkpointed: 132
    assert planned.fits and planned.config.train.gradient_checkpointing
    assert planned.config.train.batch_size * planned.config.train.grad_accum == 2
    assert planned.fit["gradient_checkpointing"] == [False, True]
    hopeless = fit_to_budget(_config(batch=3), 150, _fake(1.0))  # odd micro-batch: never halved
    assert not hopeless.fits and hopeless.config == _config(batch=3)
    assert "\n" not in hopeless.infeasible and "budget of 150 MiB" in hopeless.infeasible


def test_no_budget_changes_nothing() -> None:
    assert fit_to_budget(_config(), None, _fake(100.0)).config == _config()


def test_a_probe_is_not_reused_for_another_model_mode_dtype_version_or_checkpointing(
        tiny_checkpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    other = tmp_path / "another-model"
    shutil.copytree(tiny_checkpoint, other)
    key = lambda **kw: memory_plan.probe_key(**{"path": tiny_checkpoint, "mode": "nf4", "checkpointing": False,  # noqa: E731
                                                "seq": 128, "device": "cpu", "dtype": "float32", **kw})
    first = key()
    assert key() == first  # the same probe is found again
    others = [key(mode="nf4-dq"), key(dtype="bfloat16"), key(checkpointing=True), key(seq=256),
              key(path=str(other))]
    assert first not in others and len(set(others)) == len(others)
    from importlib import metadata

    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "9.9" if name == "transformers" else real(name))
    assert key() != first, "a new transformers version must probe again"


@pytest.mark.integration
def test_weights_from_shapes_match_the_loaded_16bit_model(tiny_checkpoint: str) -> None:
    from harness.trial.models import load_base_model

    shapes = memory_plan.tensor_shapes(tiny_checkpoint)
    model = load_base_model(tiny_checkpoint, "none", "cpu")
    size = next(model.parameters()).element_size()
    loaded = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    tied = getattr(model.config, "tie_word_embeddings", False) and "lm_head.weight" not in shapes
    assert memory_plan.weights_mb(shapes, "none", size) == pytest.approx(loaded, rel=1e-6 if not tied else 0.5)
    # quantized modes keep non-linear tensors in fp32 (peft casts them), so only their order is checked here
    modes = [memory_plan.weights_mb(shapes, mode, size) for mode in ("nf4-dq", "nf4", "int8")]
    assert modes == sorted(modes) and len(set(modes)) == 3


@pytest.mark.integration
def test_a_sweeps_probe_runs_in_the_trial_worker(tiny_checkpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's predictions come from probes run where its trials run (the worker process), not in the
    sweep's own process, whose resident memory is not a trial's."""
    from harness.search.runner import TrialRunner

    def not_here(*_: object, **__: object) -> None:
        raise AssertionError("probed in the sweep's process")

    monkeypatch.setattr(memory_plan, "cached_probe", not_here)  # the forked worker keeps the real one
    runner = TrialRunner()
    try:
        prediction = runner.predictor()(_config(batch=2))
    finally:
        runner.close()
    assert prediction.peak_memory_mb > prediction.weights_mb > 0 and prediction.step_seconds > 0
    assert prediction.eval_peak_mb is not None and prediction.eval_peak_mb > prediction.weights_mb


def test_plan_creates_no_storage_study_or_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness

    monkeypatch.chdir(tmp_path)
    from harness.search.runner import TrialRunner

    monkeypatch.setattr(TrialRunner, "predictor", lambda self: _fake(1.0))
    answer = harness.plan(model="tiny-llama", space="tiny", trials=3, max_steps=10, max_memory_mb=500)
    assert list(tmp_path.iterdir()) == [], "--plan wrote something"
    assert {"configs", "budget_mb", "estimated_total_seconds"} <= answer.keys() and answer["budget_mb"] == 500
    for row in answer["configs"]:
        assert {"predicted_peak_memory_mb", "predicted_step_seconds", "fits", "fitted"} <= row.keys()
    assert any(row["fitted"] for row in answer["configs"])  # 8 x 128 tokens predicted at 1124 MiB
    with pytest.raises(harness.SpecError, match="--max-memory-mb must be a positive number"):
        harness.plan(model="tiny-llama", space="tiny", max_memory_mb=-1)


def _budgeted(batch: int, budget: float) -> TrialConfig:
    config = _config(batch=batch, accum=2)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, max_memory_mb=budget))


def test_an_infeasible_trial_never_reaches_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.search.records import STATE_OF_STATUS
    from harness.search.runner import TrialRunner

    runner = TrialRunner()
    runner._predict = _fake(1.0)

    def loads(*_: object, **__: object) -> dict:
        raise AssertionError("an over-budget config reached the worker (which loads the model)")

    monkeypatch.setattr(runner, "_serve", loads)
    result = runner.run(_budgeted(3, 150))  # odd micro-batch, checkpointed 196 MiB: cannot fit 150
    assert result.status == "infeasible" and STATE_OF_STATUS["infeasible"] == "PRUNED"
    assert "budget of 150 MiB" in result.reason and "\n" not in result.reason
    assert result.predicted_peak_memory_mb > 150 and result.predicted_step_seconds is not None


def test_a_fitted_trial_runs_the_fitted_config_with_the_same_effective_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.search.runner import TrialRunner

    runner = TrialRunner()
    runner._predict = _fake(1.0)
    sent: list[dict] = []

    def serve(job: tuple, *_: object, **__: object) -> dict:
        sent.append(job[1])
        return {"status": "complete", "eval_loss": 1.0, "peak_memory_mb": 300.0}

    monkeypatch.setattr(runner, "_serve", serve)
    result = runner.run(_budgeted(8, 400))
    train = sent[0]["train"]
    assert (train["batch_size"], train["grad_accum"]) == (2, 8) and train["batch_size"] * train["grad_accum"] == 16
    assert result.fit["batch_size"] == [8, 2] and result.predicted_peak_memory_mb <= 400


def test_a_resume_cannot_change_the_budget() -> None:
    from harness.config.errors import SpecError
    from harness.config.sweep import SweepSpec
    from harness.search.study import _check_resume

    def spec(budget: float | None) -> SweepSpec:
        return SweepSpec(study="s", model="tiny-llama", train=TrainSpec(max_memory_mb=budget))

    class Stored:
        user_attrs = {"settings": spec(1000).measured_settings()}

    _check_resume(Stored(), {}, None, spec(1000))  # the same budget resumes
    with pytest.raises(SpecError, match="train.max_memory_mb"):
        _check_resume(Stored(), {}, None, spec(2000))


@pytest.mark.integration
def test_every_trial_records_the_prediction_once_the_machine_has_its_probe(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a budget no probe is measured for a trial (a 10-20% cost on a real sweep); once the machine has
    the probe (an earlier budgeted sweep, `--plan`), the trial's record carries the planner's prediction, the
    same one a budgeted run would make."""
    from harness.search.runner import TrialRunner

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))  # no probe yet; the spawned worker reads it too
    config = dataclasses.replace(_config(batch=2), train=TrainSpec(batch_size=2, max_steps=2, eval_every=0))
    runner = TrialRunner()
    try:
        before = runner.run(config)
        assert before.status == "complete", before.reason
        assert before.predicted_peak_memory_mb is None and before.predicted_step_seconds is None
        assert not (tmp_path / "memory_probes").exists(), "a trial without a budget measured a probe"
        expected = runner.predictor()(config)  # measures the probe (as a budgeted sweep or --plan would)
        after = runner.run(config)
    finally:
        runner.close()
    assert after.status == "complete", after.reason
    assert after.predicted_peak_memory_mb == pytest.approx(expected.peak_memory_mb)
    assert after.predicted_step_seconds == pytest.approx(expected.step_seconds)
    assert after.predicted_eval_peak_memory_mb == pytest.approx(expected.eval_peak_mb)
    assert after.fit is None


def test_a_pack_is_split_where_its_members_together_would_pass_the_budget() -> None:
    """Members share the base weights and runtime once; each place takes the largest member's adapter and
    activations. 100 MiB base + 4 x 128 tokens x 1 MiB = 612 for a pack of two batch-4 members, 1124 for four."""
    from harness.search.planning import pack_peak, packs_within

    predict = _fake(1.0)
    four = [_config(batch=4) for _ in range(4)]
    assert pack_peak([predict(c) for c in four[:2]]) == pytest.approx(100 + 2 * 512)
    assert packs_within(four, None, predict) == [[0, 1, 2, 3]]  # no budget: the pack as planned
    assert packs_within(four, 5000, predict) == [[0, 1, 2, 3]]
    assert packs_within(four, 1200, predict) == [[0, 1], [2, 3]]
    assert packs_within(four, 600, predict) == [[0], [1], [2], [3]]  # each alone (fitted there)
    mixed = [_config(batch=2), _config(batch=8), _config(batch=2)]  # the wide one sets every place's size
    assert packs_within(mixed, 1200, predict) == [[0], [1], [2]]
    assert packs_within(mixed, 2200, predict) == [[0, 1], [2]]


def test_workers_on_one_device_share_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """With N workers on one device each trial is fitted to a 1/N share of the budget, and says so."""
    from harness.search.runner import TrialRunner
    from harness.search.workers import assignments, sharing

    runner = TrialRunner()
    runner._predict = _fake(1.0)
    runner.sharing = 2
    sent: list[dict] = []
    monkeypatch.setattr(runner, "_serve", lambda job, *_, **__: sent.append(job[1]) or {"status": "complete"})
    result = runner.run(_budgeted(8, 800))  # alone it would fit 800 at batch 4 (612); a 400 share needs batch 2
    assert (sent[0]["train"]["batch_size"], sent[0]["train"]["grad_accum"]) == (2, 8)
    assert result.fit["why"] == ("predicted training peak 1,124 MiB > budget 400 MiB (a 1/2 share of 800 MiB: "
                                 "2 workers share this device)")
    cpu = assignments(3, [], 2)
    assert [sharing(cpu, i) for i in range(3)] == [3, 3, 3]
    gpus = assignments(3, ["0", "1"], 16)  # round-robin: 0, 1, 0
    assert [sharing(gpus, i) for i in range(3)] == [2, 1, 2]


@pytest.mark.parametrize("mode", ["int8", "nf4", "nf4-dq"])
def test_kept_16bit_layers_add_their_weights_to_the_prediction(mode: str) -> None:
    """keep_16bit leaves whole layers in the compute dtype: the planner adds what kept_layers says keeping them
    adds (ten equal layers, so 10% is exactly one), and nothing else changes."""
    from harness.config.model import QuantSpec
    from harness.trial.kept_layers import choose_kept, kept_weight_mb

    shapes = {f"model.layers.{i}.mlp.down_proj.weight": (256, 512) for i in range(10)}
    shapes["model.embed_tokens.weight"] = (1000, 256)
    sizes = {name: 256 * 512 for name in shapes if ".layers." in name}
    kept = choose_kept(sizes, sorted(sizes), 0.1)
    assert len(kept) == 1
    added = kept_weight_mb(sizes, kept, mode, 2)["added_mb"]
    assert memory_plan.kept_extra_mb(shapes, mode, 2, 0.1) == pytest.approx(added, rel=1e-6)
    assert memory_plan.kept_extra_mb(shapes, mode, 2, 0.0) == 0.0
    probe = memory_plan.Probe("k", (128, 512), (500.0, 600.0), (0.1, 0.3), memory_plan.weights_mb(shapes, mode, 2),
                              1.0, 0.0, 2)
    plain = dataclasses.replace(_config(batch=2), quant=QuantSpec(mode))
    keeping = dataclasses.replace(plain, quant=QuantSpec(mode, keep_16bit=0.1))
    before, after = memory_plan.predict(plain, probe, shapes), memory_plan.predict(keeping, probe, shapes)
    assert after.peak_memory_mb - before.peak_memory_mb == pytest.approx(added, rel=1e-6)
    assert after.weights_mb - before.weights_mb == pytest.approx(added, rel=1e-6)
    assert after.step_seconds == before.step_seconds


def test_without_a_budget_plan_uses_the_devices_available_memory_less_a_margin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness
    from harness.search.planning import plan_lines
    from harness.search.runner import TrialRunner
    from harness.trial import pack_fit

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(TrialRunner, "predictor", lambda self: _fake(1.0))
    asked: list[bool] = []
    monkeypatch.setattr(pack_fit, "available_mb", lambda device, own=True: asked.append(own) or 1000.0)
    answer = harness.plan(model="tiny-llama", space="tiny", trials=3, max_steps=10)
    assert answer["budget_mb"] == pytest.approx(900.0)
    assert "available memory, 1,000 MiB, less a 10% margin" in answer["budget_source"]
    assert "memory budget 900 MiB: this device's available memory" in plan_lines(answer)[0]
    assert any(row["fitted"] for row in answer["configs"])  # 8 x 128 tokens predicted at 1124 MiB
    given = harness.plan(model="tiny-llama", space="tiny", trials=3, max_steps=10, max_memory_mb=5000)
    assert given["budget_mb"] == 5000 and not any(row["fitted"] for row in given["configs"])
    assert "available" not in plan_lines(given)[0]
    assert asked == [False]  # the sweep's own process stays beside its trials: its memory is not theirs


def test_available_memory_counts_this_process_only_when_the_trial_runs_in_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.trial import pack_fit

    monkeypatch.setattr(pack_fit, "_meminfo_mb", lambda key: 1000.0)
    monkeypatch.setattr(pack_fit, "_own_rss_mb", lambda: 250.0)
    assert pack_fit.available_mb("cpu") == 1250.0
    assert pack_fit.available_mb("cpu", own=False) == 1000.0


def test_an_evaluation_over_the_budget_halves_its_batches_and_leaves_training_alone() -> None:
    """Training fits (8 x 128 tokens: 202 MiB) but the final evaluation at 16 sequences does not (420 MiB):
    halving the micro-batch would not help; the eval batches are halved instead, recorded in `fit`."""
    planned = fit_to_budget(_config(), 300, _with_eval(20.0))
    assert planned.fits and planned.config.train == _config().train, "training was changed for evaluation's sake"
    assert (planned.config.eval.batch_size, planned.config.eval.generate_batch_size) == (8, 8)
    assert planned.eval_peak_mb == pytest.approx(260.0) and planned.eval_peak_mb <= 300
    assert planned.fit == {"eval_batch_size": [16, 8], "generate_batch_size": [16, 8],
                           "why": "predicted evaluation peak 420 MiB > budget 300 MiB"}
    hopeless = fit_to_budget(_config(), 110, _with_eval(20.0))  # one sequence: 120 MiB
    assert not hopeless.fits and "predicted evaluation peak 120 MiB" in hopeless.infeasible
    assert "eval batch 1" in hopeless.infeasible


def test_the_evaluation_peak_scales_with_the_widest_eval_batch() -> None:
    from harness.config.evaluation import EvalSpec

    probe = memory_plan.Probe("k", (128, 512), (300.0, 600.0), (0.1, 0.3), 100.0, 10.0, 1.0, 2,
                              eval_peaks_mb=(250.0, 400.0))  # 50 MiB per evaluated sequence
    shapes = {"model.layers.0.mlp.up_proj.weight": (64, 32)}
    at = lambda **changes: memory_plan.predict(  # noqa: E731
        dataclasses.replace(_config(), eval=EvalSpec(**changes)), probe, shapes)
    adapter_params = (probe.adapter_mb - at().adapter_mb) / 4  # the adapter's fp32 weights only, not its state
    assert at(batch_size=16, generate_batch_size=4).eval_peak_mb == pytest.approx(250 + 50 * 15 - adapter_params)
    assert at(batch_size=2, generate_batch_size=8).eval_peak_mb == pytest.approx(250 + 50 * 7 - adapter_params)
    assert at(batch_size=2, generate_batch_size=8, metrics=()).eval_peak_mb == pytest.approx(
        250 + 50 - adapter_params), "no generation: only the scoring batch counts"
    unprobed = dataclasses.replace(probe, eval_peaks_mb=None)
    assert memory_plan.predict(_config(), unprobed, shapes).eval_peak_mb is None
