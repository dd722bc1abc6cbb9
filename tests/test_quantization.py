"""harness.models quantization: one mode string -> a BitsAndBytesConfig (or None), and the same as kwargs.

Pure functions: nothing is loaded or quantized here.
"""

from __future__ import annotations

import pytest
import torch
from transformers import BitsAndBytesConfig

from harness.models import quantization_config, quantization_kwargs
from harness.spec import QUANTIZATION_MODES, SpecError

FIELDS = ("load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype")

# mode -> (4-bit quant type, double quantization)
FOUR_BIT = {"nf4": ("nf4", False), "nf4-dq": ("nf4", True), "fp4": ("fp4", False), "fp4-dq": ("fp4", True)}


def _fields(config: BitsAndBytesConfig) -> dict:
    return {name: getattr(config, name) for name in FIELDS}


def test_the_modes_are_the_contract() -> None:
    assert QUANTIZATION_MODES == ("none", "int8", "nf4", "nf4-dq", "fp4", "fp4-dq")
    assert set(FOUR_BIT) | {"none", "int8"} == set(QUANTIZATION_MODES)


def test_none_is_16_bit_lora() -> None:
    assert quantization_config("none", torch.bfloat16) is None
    assert quantization_kwargs("none") is None


def test_int8() -> None:
    config = quantization_config("int8", torch.bfloat16)
    assert isinstance(config, BitsAndBytesConfig)
    assert config.load_in_8bit is True
    assert config.load_in_4bit is False
    assert quantization_kwargs("int8") == {"load_in_8bit": True}


@pytest.mark.parametrize("mode", FOUR_BIT)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_four_bit_modes(mode: str, dtype: torch.dtype) -> None:
    kind, double = FOUR_BIT[mode]
    config = quantization_config(mode, dtype)
    assert isinstance(config, BitsAndBytesConfig)
    assert _fields(config) == {"load_in_4bit": True, "load_in_8bit": False, "bnb_4bit_quant_type": kind,
                               "bnb_4bit_use_double_quant": double, "bnb_4bit_compute_dtype": dtype}


@pytest.mark.parametrize("mode", FOUR_BIT)
def test_four_bit_kwargs(mode: str) -> None:
    kind, double = FOUR_BIT[mode]
    assert quantization_kwargs(mode, "float16") == {"load_in_4bit": True, "bnb_4bit_quant_type": kind,
                                                    "bnb_4bit_use_double_quant": double,
                                                    "bnb_4bit_compute_dtype": "float16"}
    assert quantization_kwargs(mode)["bnb_4bit_compute_dtype"] == "bfloat16"  # the QLoRA default


@pytest.mark.parametrize("mode", QUANTIZATION_MODES)
@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16", "float32"])
def test_kwargs_build_the_same_config(mode: str, dtype_name: str) -> None:
    """recommended.yaml's `quantization` mapping must rebuild exactly the config the trial used."""
    direct = quantization_config(mode, getattr(torch, dtype_name))
    kwargs = quantization_kwargs(mode, dtype_name)
    if direct is None:
        assert kwargs is None
        return
    assert all(isinstance(v, (bool, str)) for v in kwargs.values())  # plain YAML values
    rebuilt = BitsAndBytesConfig(**kwargs)
    assert _fields(rebuilt) == _fields(direct)
    assert rebuilt.to_dict() == direct.to_dict()


@pytest.mark.parametrize("mode", ["nf8", "int4", "NF4", "nf4-DQ", "", "4bit"])
def test_bad_mode_config(mode: str) -> None:
    with pytest.raises(SpecError) as info:
        quantization_config(mode, torch.bfloat16)
    assert "quantization" in str(info.value) and repr(mode) in str(info.value)
    assert "nf4-dq" in str(info.value)  # lists the allowed modes


@pytest.mark.parametrize("mode", ["nf8", "int4", "NF4", "nf4-DQ", "", "4bit"])
def test_bad_mode_kwargs(mode: str) -> None:
    # recommended.yaml must never carry a quant type that BitsAndBytesConfig does not know.
    with pytest.raises(SpecError) as info:
        quantization_kwargs(mode)
    assert "quantization" in str(info.value) and repr(mode) in str(info.value)
