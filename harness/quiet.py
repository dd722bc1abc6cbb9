"""Library chatter (warnings, progress bars, info logs) kept out of the user's terminal."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Iterator


def silence_for_process() -> None:
    """For the trial worker: library warnings and progress bars off for the whole process."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.simplefilter("ignore")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence library chatter for a block and restore it afterwards."""
    from transformers.utils import logging as hf_logging

    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    bnb_logger = logging.getLogger("bitsandbytes")
    bnb_level = bnb_logger.level
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    bnb_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        bnb_logger.setLevel(bnb_level)
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
