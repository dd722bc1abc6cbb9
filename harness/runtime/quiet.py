"""Library chatter kept out of the user's terminal, one known message at a time.

Nothing is silenced wholesale: a library warning is often the only sign of a wrong result (torch's
"This may lead to silently incorrect behavior" is what revealed that bitsandbytes' CPU inference
repack drops gradients). Only the exact messages in `HARMLESS_WARNINGS` and `HARMLESS_LOG_MESSAGES`
are filtered, each read and judged harmless; those in `ONCE_LOG_MESSAGES` are shown once per process
instead of at every call; progress bars are turned off (they are not warnings).
Every other warning reaches stderr, and in the trial worker the autograd warning above is an error,
so a trial that would train with dropped gradients fails with that reason instead of scoring.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from typing import Iterator

HARMLESS_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # peft's k-bit preparation asks the old name; transformers 5 renamed it, same answer.
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated and will be removed in v6", "transformers"),
    # Raised once when bitsandbytes' import touches torch.jit; nothing of ours uses TorchScript.
    (DeprecationWarning, r"`torch.jit.script_method` is deprecated", "torch"),
)
"""(category, message regex from its start, module prefix) of warnings judged harmless."""

HARMLESS_LOG_MESSAGES: dict[str, tuple[str, ...]] = {
    # LLM.int8 quantizes activations in fp16 by design; on CPU the inputs are fp32, so bitsandbytes
    # says so at every forward of every int8 layer (thousands of lines per trial).
    "bitsandbytes.autograd._functions": (
        r"MatMul8bitLt: inputs will be cast from torch\.float32 to float16 during quantization",),
    # On a CPU with AVX512-BF16, importing bitsandbytes asks the `kernels` package for a 4-bit matmul kernel
    # from the Hugging Face hub. When the kernel is not cached and the hub is offline (as harness runs when
    # it is unreachable), or when `kernels` refuses it because its publisher's trust cannot be verified
    # (kernels 0.19 does not trust it by default), bitsandbytes says so in every process and uses its own
    # C kernel: the one every test and committed report here ran on. Only these two cases are dropped; any
    # other failure to load the kernel still shows. Which kernel ran is in `harness doctor` and in each
    # trial's record (`worker.hub_kernels`).
    "bitsandbytes.backends.cpu.ops": (
        r"Failed to load CPU gemm_4bit_forward from kernels-community: Version \d+ of "
        r"'kernels-community/quantization-bitsandbytes' is not available in the local cache and Hugging Face "
        r"Hub is in offline mode\.",
        r"Failed to load CPU gemm_4bit_forward from kernels-community: Kernel repository "
        r"'kernels-community/quantization-bitsandbytes' could not verify publisher trust status\.",),
    "kernels._internals.hf_hub": (
        r"Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes' because Hugging "
        r"Face Hub is in offline mode\.$",),
}
"""logger name (the module that logs; a filter on a parent logger does not see its children's records)
-> regexes of log records judged harmless (matched against the formatted message)."""

ONCE_LOG_MESSAGES: dict[str, tuple[str, ...]] = {
    # On CUDA the compute dtype is bf16 and LLM.int8 casts it to fp16 (range 65504 against bf16's 3e38):
    # worth knowing once per process, not at every forward of every int8 layer (seen on an H100: one line
    # per layer per step). A value that overflowed fp16 would show as an inf/NaN loss, which the trial
    # records as diverged.
    "bitsandbytes.autograd._functions": (
        r"MatMul8bitLt: inputs will be cast from torch\.bfloat16 to float16 during quantization",),
}
"""logger name -> regexes of log records shown the first time only, in each process."""

GRADIENT_DROP_WARNING = r".*This may lead to silently incorrect behavior"
"""torch's warning when backward runs through an op without an autograd kernel (gradients dropped)."""


class _DropKnown(logging.Filter):
    """Drops the log records whose message matches one of the given patterns; keeps every other."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.match(message) for p in self.patterns)


class _Once(logging.Filter):
    """Keeps the first record that matches each pattern and drops its repeats; keeps every other."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]
        self.seen: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for index, pattern in enumerate(self.patterns):
            if pattern.match(message):
                if index in self.seen:
                    return False
                self.seen.add(index)
        return True


def _install_log_filters() -> None:
    for kind, table in ((_DropKnown, HARMLESS_LOG_MESSAGES), (_Once, ONCE_LOG_MESSAGES)):
        for name, patterns in table.items():
            logger = logging.getLogger(name)
            if not any(isinstance(f, kind) for f in logger.filters):
                logger.addFilter(kind(patterns))


def filter_known_warnings() -> None:
    """Install the filters for the known harmless messages (idempotent; keeps every other warning)."""
    for category, message, module in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    _install_log_filters()


def silence_for_process() -> None:
    """For the trial worker: progress bars off, the known harmless messages filtered, and a dropped
    gradient made an error (the trial fails with it rather than report a silently wrong result)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    filter_known_warnings()
    warnings.filterwarnings("error", message=GRADIENT_DROP_WARNING, category=UserWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Progress bars off for a block (model loading, conversion) and the known harmless messages
    filtered; restored afterwards. Warnings not listed in this module still reach stderr."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            filter_known_warnings()
            yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()
