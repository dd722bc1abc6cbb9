"""Reports name the base model and the precision its weights had before harness touched them."""

from __future__ import annotations

import pytest

from harness.trial.models import ResolvedModel, resolve_model
from harness.trial.source import describe_source

pytestmark = pytest.mark.integration  # reads the real model's GGUF file or builds tiny-llama


def test_the_builtin_model_says_it_comes_from_a_4bit_gguf() -> None:
    info = describe_source(resolve_model("smollm2-135m"))
    assert info.label == "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to bf16)"
    assert info.four_bit_source is True
    assert "Q4_1 linear weights (210)" in info.precision and "Q8_0 embedding (1)" in info.precision


def test_tiny_llama_and_a_checkpoint_folder_say_their_dtype(tiny_checkpoint: str) -> None:
    tiny = describe_source(resolve_model("tiny-llama"))
    assert tiny.label.startswith("tiny-llama (random weights") and tiny.four_bit_source is False
    folder = describe_source(ResolvedModel(tiny_checkpoint, "local", tiny_checkpoint))
    assert folder.label.endswith("(f32 weights)") and folder.precision.startswith("f32 (")
    assert folder.four_bit_source is False


@pytest.mark.slow
def test_a_gguf_file_given_as_a_path_is_named_by_its_own_quantization_mix() -> None:
    """Gemma-3-270M's file is a Q4_K_M mix whose most common tensor type is Q5_0: the label says Q4_K_M."""
    from harness.trial import builtins

    row = builtins.BUILTINS["gemma3-270m"]
    if not builtins.is_installed(row):
        pytest.skip(f"gemma3-270m is not installed ({row.install_command})")
    from harness.trial.models import cache_dir

    path = builtins.join_parts(row, builtins.part_paths(row), builtins.joined_path(row, cache_dir()))
    info = describe_source(resolve_model(str(path)))
    assert "(Q4_K_M GGUF, dequantized to bf16)" in info.label and info.four_bit_source
    assert info.precision == row.precision
