"""Only the exact messages judged harmless are filtered; every other warning still reaches the user."""

from __future__ import annotations

import logging
import warnings

import pytest

from harness.runtime.quiet import GRADIENT_DROP_WARNING, filter_known_warnings, quiet, silence_for_process


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_only_the_known_bitsandbytes_message_is_dropped() -> None:
    logger = logging.getLogger("bitsandbytes.autograd._functions")
    collect = _Collect()
    logger.addHandler(collect)
    try:
        filter_known_warnings()
        for known in logger.filters:  # an earlier test in this process may have shown the once-message
            getattr(known, "seen", set()).clear()
        logger.warning("MatMul8bitLt: inputs will be cast from %s to float16 during quantization", "torch.float32")
        logger.warning("MatMul8bitLt: inputs will be cast from %s to float16 during quantization", "torch.bfloat16")
        logger.warning("something else went wrong")
        # the bf16 -> fp16 cast (CUDA) is said once per process, not at every int8 layer's forward
        logger.warning("MatMul8bitLt: inputs will be cast from %s to float16 during quantization", "torch.bfloat16")
        logger.warning("something else went wrong")
    finally:
        logger.removeHandler(collect)
    assert collect.messages == ["MatMul8bitLt: inputs will be cast from torch.bfloat16 to float16 during quantization",
                                "something else went wrong", "something else went wrong"]


def test_quiet_keeps_unknown_warnings() -> None:
    with pytest.warns(UserWarning, match="a new library warning"):
        with quiet():
            warnings.warn("a new library warning", UserWarning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet():
            # the known deprecation is filtered only when transformers raises it, not from anywhere else
            warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6. Use it.", FutureWarning)
    assert [str(w.message)[:27] for w in caught] == ["`is_gradient_checkpointing`"]


def test_a_dropped_gradient_is_an_error_in_the_trial_worker() -> None:
    with warnings.catch_warnings():
        silence_for_process()
        with pytest.raises(UserWarning, match="silently incorrect behavior"):
            warnings.warn("autograd kernel was not registered to the Autograd key(s) but we are trying to backprop "
                          "through it. This may lead to silently incorrect behavior.", UserWarning)
    assert GRADIENT_DROP_WARNING.endswith("silently incorrect behavior")


def test_only_the_offline_uncached_hub_kernel_lines_are_dropped() -> None:
    """bitsandbytes' two lines for "no hub kernel offline, using my own" go; any other failure to load stays."""
    ops, hub = logging.getLogger("bitsandbytes.backends.cpu.ops"), logging.getLogger("kernels._internals.hf_hub")
    collect = _Collect()
    ops.addHandler(collect)
    hub.addHandler(collect)
    repo = "kernels-community/quantization-bitsandbytes"
    try:
        filter_known_warnings()
        ops.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
                    "`pip install kernels` and the kernels >= 0.11.1",
                    f"Version 1 of '{repo}' is not available in the local cache and Hugging Face Hub is in offline "
                    "mode. Download the kernel while online first, or pass an explicit `revision=<commit>`.")
        hub.warning(f"Skipping publisher trust check for '{repo}' because Hugging Face Hub is in offline mode.")
        ops.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
                    "`pip install kernels` and the kernels >= 0.11.1",
                    f"Kernel repository '{repo}' could not verify publisher trust status. Set trust_remote_code=True "
                    "or add the repository ID to the trust_remote_code allowlist to allow loading kernels from "
                    "untrusted sources.")
        ops.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
                    "`pip install kernels` and the kernels >= 0.11.1", "ImportError: undefined symbol")
        hub.warning("Skipping publisher trust check for 'someone/else' because Hugging Face Hub is in offline mode.")
    finally:
        ops.removeHandler(collect)
        hub.removeHandler(collect)
    assert [m[:48] for m in collect.messages] == ["Failed to load CPU gemm_4bit_forward from kernel",
                                                  "Skipping publisher trust check for 'someone/else"]
    assert "undefined symbol" in collect.messages[0]

