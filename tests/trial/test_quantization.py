"""harness.trial.quantization: one table (MODES) from which a mode's BitsAndBytesConfig, its plain kwargs for
recommended.yaml and its human names are all read.

Pure functions: nothing is loaded or quantized here.
"""

from __future__ import annotations

import pytest
import torch
from transformers import BitsAndBytesConfig

from harness.trial.quantization import (FP32_BASE_LABEL, MODES, ModeSettings, mode_label, mode_settings,
                                        quantization_config, quantization_kwargs)
from harness.config.errors import SpecError
from harness.config.model import QUANTIZATION_MODES

FIELDS = ("load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype")
BAD_MODES = ["nf8", "int4", "NF4", "nf4-DQ", "", "4bit"]


def _fields(config: BitsAndBytesConfig) -> dict:
    return {name: getattr(config, name) for name in FIELDS}


def test_the_table_holds_every_mode_of_the_spec_in_order() -> None:
    assert QUANTIZATION_MODES == ("none", "int8", "nf4", "nf4-dq", "fp4", "fp4-dq")
    assert tuple(MODES) == QUANTIZATION_MODES


@pytest.mark.parametrize("mode", [m for m in QUANTIZATION_MODES if "4" in m])
def test_a_four_bit_mode_means_what_its_name_says(mode: str) -> None:
    """`<quant type>[-dq]`: the naming convention litgpt uses, read from the name, not from a second table."""
    kind, _, suffix = mode.partition("-")
    config = quantization_config(mode, torch.bfloat16)
    assert _fields(config) == {"load_in_4bit": True, "load_in_8bit": False, "bnb_4bit_quant_type": kind,
                               "bnb_4bit_use_double_quant": suffix == "dq", "bnb_4bit_compute_dtype": torch.bfloat16}


def test_none_is_16_bit_lora_and_int8_is_8_bit() -> None:
    assert quantization_config("none", torch.bfloat16) is None and quantization_kwargs("none") is None
    config = quantization_config("int8", torch.bfloat16)
    assert config.load_in_8bit is True and config.load_in_4bit is False


@pytest.mark.parametrize("mode", QUANTIZATION_MODES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_the_table_drives_the_kwargs_and_the_config(mode: str, dtype: torch.dtype) -> None:
    """Both are the row's settings, plus the compute dtype for a 4-bit mode (a torch dtype in the config,
    its name in the kwargs); the config is exactly BitsAndBytesConfig(**kwargs), as recommended.yaml rebuilds it."""
    bnb = MODES[mode].bnb
    name = str(dtype).removeprefix("torch.")
    kwargs, config = quantization_kwargs(mode, name), quantization_config(mode, dtype)
    if bnb is None:
        assert kwargs is None and config is None
        return
    extra = {"bnb_4bit_compute_dtype": name} if bnb.get("load_in_4bit") else {}
    assert kwargs == {**bnb, **extra}
    assert all(isinstance(v, (bool, str)) for v in kwargs.values())  # plain YAML values
    for key, value in bnb.items():
        assert getattr(config, key) == value
    if extra:
        assert config.bnb_4bit_compute_dtype == dtype
    rebuilt = BitsAndBytesConfig(**kwargs)
    assert rebuilt.to_dict() == config.to_dict()


def test_the_kwargs_default_to_bf16_compute() -> None:
    assert quantization_kwargs("nf4")["bnb_4bit_compute_dtype"] == "bfloat16"  # the QLoRA default


def test_a_changed_row_changes_the_config_the_kwargs_and_the_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """No second copy anywhere: editing the one row is seen by every reader."""
    row = ModeSettings("renamed", "renamed (legend)", {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4",
                                                        "bnb_4bit_use_double_quant": True})
    monkeypatch.setitem(MODES, "nf4", row)
    assert quantization_config("nf4", torch.float16).bnb_4bit_quant_type == "fp4"
    assert quantization_config("nf4", torch.float16).bnb_4bit_use_double_quant is True
    assert quantization_kwargs("nf4")["bnb_4bit_quant_type"] == "fp4"
    assert mode_label("nf4") == "renamed" and mode_label("nf4", legend=True) == "renamed (legend)"


def test_the_table_cannot_be_changed_through_the_kwargs() -> None:
    quantization_kwargs("int8")["load_in_8bit"] = False
    quantization_kwargs("nf4")["bnb_4bit_quant_type"] = "fp4"
    assert quantization_kwargs("int8") == {"load_in_8bit": True}
    assert quantization_kwargs("nf4")["bnb_4bit_quant_type"] == "nf4"


def test_mode_labels() -> None:
    assert [mode_label(m) for m in QUANTIZATION_MODES] == ["16-bit LoRA", "int8", "nf4", "nf4-dq", "fp4", "fp4-dq"]
    assert mode_label("nf4-dq", legend=True) == "nf4-dq (4-bit, double quant)"
    assert mode_label("int8", legend=True) == "int8 (8-bit)"
    # `none` on an fp32 base (a CPU without native bf16) is not 16-bit, in tables and legends alike
    assert mode_label("none", "float32") == mode_label("none", "float32", legend=True) == FP32_BASE_LABEL
    assert mode_label("none", "bfloat16") == "16-bit LoRA"
    assert mode_label("nf4", "float32") == "nf4"  # only the unquantized base changes with the dtype
    assert mode_label("int2") == "int2"  # a mode from a future study is named as recorded


@pytest.mark.parametrize("mode", BAD_MODES)
@pytest.mark.parametrize("build", [lambda m: quantization_config(m, torch.bfloat16), quantization_kwargs,
                                   mode_settings], ids=["config", "kwargs", "settings"])
def test_an_unknown_mode_is_a_spec_error_naming_the_allowed_ones(mode: str, build) -> None:
    # recommended.yaml must never carry a quant type that BitsAndBytesConfig does not know.
    with pytest.raises(SpecError) as info:
        build(mode)
    assert "quantization" in str(info.value) and repr(mode) in str(info.value)
    assert "nf4-dq" in str(info.value)  # lists the allowed modes
