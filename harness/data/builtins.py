"""The built-in tasks: datasets built at run time from nothing but the running Python and a seed.

Each is a :class:`Task` record: how to build its (train, eval) examples and how to score what a
model generates for them. ``load_examples(DataSpec(name=...))`` builds them with seed 0, so
every trial of every study sees the same split.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from harness.data import company, headlines, stdlib_qa
from harness.data.examples import DataError, Example

BuildFn = Callable[[int], tuple[list[Example], list[Example]]]


@dataclass(frozen=True)
class Task:
    """A built-in dataset and the way its answers are scored."""

    name: str
    description: str
    """One line for ``harness datasets``."""
    build: BuildFn
    """seed -> (train examples, eval examples), each in a fixed, spread-out order."""
    metrics: tuple[str, ...]
    """Task metrics that fit its answers: ``exact_match``, ``accuracy``, ``rouge_l``, ``token_f1``."""
    max_new_tokens: int
    """Generation budget for one answer, in tokens (answers plus the end-of-turn marker fit)."""
    version: Callable[[], str] | None = None
    """What the examples depend on besides the seed (stdlib-qa: the Python version)."""
    format: str = "prompt_completion"
    """The record shape its examples have (``Splits.format``)."""
    labels: tuple[str, ...] = ()
    """Classification tasks: every answer is one of these."""

    def source(self, seed: int = 0) -> str:
        """The ``Splits.source`` text, e.g. ``built-in headline-sentiment (seed 0)``."""
        return f"built-in {self.name} ({self.version() if self.version else f'seed {seed}'})"


def _stdlib_split(seed: int) -> tuple[list[Example], list[Example]]:
    """stdlib-qa holds out by name hash (see stdlib_qa), so the seed changes nothing."""
    del seed
    rows = sorted(stdlib_qa.build_stdlib_qa(), key=lambda row: hashlib.sha256(row[0].encode()).hexdigest())
    train = [example for name, example in rows if not stdlib_qa.is_held_out(name)]
    held_out = [example for name, example in rows if stdlib_qa.is_held_out(name)]
    return train, held_out


TASKS: dict[str, Task] = {task.name: task for task in (
    Task(stdlib_qa.NAME, "question about a Python standard-library function or class -> its one-line description",
         _stdlib_split, ("rouge_l", "token_f1"), 40, version=lambda: f"Python {sys.version.split()[0]}"),
    Task(headlines.NAME, "financial-news headline -> positive, negative or neutral (unseen companies in eval)",
         headlines.build_headlines, ("accuracy",), 4, format="classification", labels=headlines.LABELS),
    Task(company.NAME, "knowledge injection: facts about a fictional company, eval on unseen paraphrased questions",
         company.build_company, ("exact_match", "token_f1"), 16),
)}


def builtin_names() -> list[str]:
    """Names ``DataSpec.name`` accepts besides a file path or hub dataset id."""
    return list(TASKS)


def builtin_task(name: str) -> Task:
    """The :class:`Task` called ``name``; raises :class:`DataError` naming the built-ins if none is."""
    if name not in TASKS:
        raise DataError(f"{name!r} is not a built-in dataset; the built-ins are {', '.join(TASKS)}")
    return TASKS[name]


def describe_builtins() -> list[tuple[str, str, int, int, tuple[str, ...]]]:
    """(name, description, train examples, eval examples, metrics) per built-in, for ``harness datasets``.

    The counts are before ``DataSpec.train_size`` / ``eval_size`` caps. Builds every task (well
    under a second each).
    """
    rows = []
    for task in TASKS.values():
        train, held_out = task.build(0)
        rows.append((task.name, task.description, len(train), len(held_out), task.metrics))
    return rows
