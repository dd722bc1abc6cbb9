"""Task metrics through the `evaluate` library: five built-ins shipped as local scripts, anything
else from the Hugging Face hub.

The built-ins are loaded by file path, which `evaluate` never sends to the network, and each
metric object is loaded once per process (`_LOADED`): the first load copies the script into
`evaluate`'s module cache (milliseconds), later calls reuse the object. Metric objects keep
their inputs in memory (`keep_in_memory=True`), so computing writes no Arrow files or locks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

from harness.config.errors import SpecError

BUILTIN_METRICS = ("exact_match", "accuracy", "rouge_l", "token_f1", "contains_answer")
MODULES_DIR = Path(__file__).resolve().parent / "modules"
# Metric names that read as "lower is better": words found anywhere in the name, and short
# abbreviations matched only as a whole part of it ("wer" in "eval_wer", not in "answer_f1").
_LOWER_WORDS = ("loss", "error", "perplexity")
_LOWER_ABBREVIATIONS = ("wer", "cer", "mse", "mae", "rmse")
_TRUE = ("1", "ON", "YES", "TRUE")

_LOADED: dict[str, Any] = {}
"""Metric objects loaded in this process, by name: the one cache of this module."""


class MetricError(SpecError):
    """A metric that cannot be loaded or computed; the message is one line."""


def builtin_path(name: str) -> Path:
    """The local `evaluate` script of a built-in metric."""
    return MODULES_DIR / f"{name}.py"


def load_metric(name: str) -> Any:
    """The `evaluate` metric object for a name, loaded once per process.

    Built-ins come from the scripts shipped in harness (offline, no hub call). Any other name
    goes to `evaluate.load(name)`: a hub metric (from evaluate's cache when offline) or a local
    `.py` script path. Raises MetricError with one line when it cannot be loaded.
    """
    if name not in _LOADED:
        _LOADED[name] = _load(name)
    return _LOADED[name]


def _load(name: str) -> Any:
    import evaluate

    builtin = name in BUILTIN_METRICS
    try:
        with _quiet_evaluate(), _offline_if_hub_offline(evaluate, enabled=not builtin):
            return evaluate.load(str(builtin_path(name)) if builtin else name, keep_in_memory=True)
    except Exception as err:  # evaluate raises FileNotFoundError, ConnectionError, ImportError...
        reason = _one_line(err)
        if builtin:
            raise MetricError(f"built-in metric {name!r} failed to load: {reason}") from None
        if name.endswith(".py"):
            raise MetricError(f"metric script {name} failed to load: {reason}") from None
        raise MetricError(f"metric {name!r} is not built in ({', '.join(BUILTIN_METRICS)}) and cannot be "
                          f"loaded from the Hugging Face hub (offline?): {reason}") from None


def compute_metrics(names: Sequence[str], predictions: list[str], references: list[str]) -> dict[str, float]:
    """Score predictions against references with each named metric; returns {key: value}.

    A built-in gives one key, its name, with a value from 0.0 to 1.0. Another metric gives each
    scalar it returns under its own key, or under the metric's name when it returns exactly one
    (non-scalar results such as BLEU's n-gram precisions are left out). Raises MetricError (one
    line) when a metric fails, ValueError when the lists differ in length or are empty.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to score")
    scores: dict[str, float] = {}
    for name in names:
        metric = load_metric(name)
        try:
            with _quiet_evaluate():
                result = metric.compute(predictions=list(predictions), references=list(references))
        except Exception as err:  # a hub metric may want other inputs (ids, dicts) or extra packages
            raise MetricError(f"metric {name!r} failed on the generated text: {_one_line(err)}") from None
        scores.update(_scalars(name, result or {}))
    return scores


def example_scores(names: Sequence[str], predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """Each built-in metric's score of every single example (their means are the built-ins' values).

    Built-ins are means over examples, so per-example scores let two trials be compared example by
    example (a paired bootstrap). They call the metric's own `_compute` (the method an `evaluate`
    metric implements) on one pair at a time, skipping evaluate's Arrow round trip per example.
    Metrics that are not built in (BLEU, say) do not decompose into examples and are left out."""
    scores: dict[str, list[float]] = {}
    for name in names:
        if name not in BUILTIN_METRICS:
            continue
        metric = load_metric(name)
        scores[name] = [float(metric._compute(predictions=[p], references=[r])[name])
                        for p, r in zip(predictions, references)]
    return scores


def _scalars(name: str, result: dict[str, Any]) -> dict[str, float]:
    values = {key: float(value) for key, value in result.items()
              if isinstance(value, (int, float)) or getattr(value, "ndim", None) == 0}
    if len(values) == 1:
        return {name: next(iter(values.values()))}
    return values


def metric_direction(name: str) -> str:
    """`maximize` or `minimize`: built-ins are all maximized; another metric is minimized when its
    name contains loss, error or perplexity, or has wer, cer, mse, mae or rmse as a part between
    separators (`eval_loss`, `wer`, `test-cer`), case-insensitive."""
    if name in BUILTIN_METRICS:
        return "maximize"
    lowered = name.lower()
    parts = set(re.split(r"[^a-z0-9]+", lowered))
    lower_is_better = any(word in lowered for word in _LOWER_WORDS) or bool(parts & set(_LOWER_ABBREVIATIONS))
    return "minimize" if lower_is_better else "maximize"


def check_metric_names(names: Sequence[str]) -> None:
    """Validate metric names before any model loads; raises MetricError with one line.

    Built-ins always pass. A path to a `.py` script must exist. Other names may be hub metrics:
    they are loaded now only when the hub is switched off (HF_HUB_OFFLINE or HF_EVALUATE_OFFLINE),
    since then only evaluate's cache can have them; otherwise they are checked when first used.
    """
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise MetricError(f"metric name {name!r} is empty or has surrounding spaces")
        if name in seen:
            raise MetricError(f"metric {name!r} is listed twice")
        seen.add(name)
        if name in BUILTIN_METRICS:
            continue
        if name.endswith(".py"):
            if not Path(name).expanduser().is_file():
                raise MetricError(f"metric script {name} does not exist")
        elif _hub_offline():
            load_metric(name)


def _hub_offline() -> bool:
    return any(os.environ.get(var, "").upper() in _TRUE for var in ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE"))


@contextlib.contextmanager
def _offline_if_hub_offline(evaluate: Any, enabled: bool) -> Iterator[None]:
    """`evaluate` ignores HF_HUB_OFFLINE and retries the network; honour it for this load."""
    config = evaluate.config
    before = config.HF_EVALUATE_OFFLINE
    if enabled and _hub_offline():
        config.HF_EVALUATE_OFFLINE = True
    try:
        yield
    finally:
        config.HF_EVALUATE_OFFLINE = before


@contextlib.contextmanager
def _quiet_evaluate() -> Iterator[None]:
    """No warnings, info logs or progress bars from evaluate (or datasets) inside the block."""
    from evaluate.utils import logging as ev_logging

    loggers = [logging.getLogger(name) for name in ("evaluate", "datasets")]
    levels = [logger.level for logger in loggers]
    bars = ev_logging.is_progress_bar_enabled()
    ev_logging.disable_progress_bar()
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if bars:
            ev_logging.enable_progress_bar()


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."
