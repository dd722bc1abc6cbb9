"""Training data: load examples, tokenize them with an exact prompt/answer boundary, batch them.

The three steps, each a pure function of its inputs (nothing is loaded at import time and
nothing is cached between trials)::

    splits = load_examples(DataSpec(name="stdlib-qa"))          # a built-in, a file or a hub id
    tokens = tokenize_splits(splits, tokenizer, spec)            # (input_ids, labels) pairs
    batches = make_batches(tokens.train, 8, pad_id, shuffle_seed=seed)

``splits.split_hash`` identifies the eval split, so a study can check that every trial
scored the same examples. ``splits.metrics`` and ``splits.max_new_tokens`` say how to score
generated answers; ``tokens.eval_prompts`` / ``tokens.eval_references`` are what to generate
from and compare against. ``describe_builtins()`` lists the built-in tasks.
"""

from harness.data.batching import Batch, make_batches, make_step_batches, padding_efficiency
from harness.data.builtins import Task, builtin_names, builtin_task, describe_builtins
from harness.data.classify import DEFAULT_TEMPLATE
from harness.data.encode import TokenizedSplits, tokenize_splits
from harness.data.examples import IGNORE_INDEX, DataError, Example, Splits
from harness.data.load import load_examples
from harness.data.subset import intermediate_subset

__all__ = [
    "DEFAULT_TEMPLATE",
    "IGNORE_INDEX",
    "Batch",
    "DataError",
    "Example",
    "Splits",
    "Task",
    "TokenizedSplits",
    "builtin_names",
    "builtin_task",
    "describe_builtins",
    "intermediate_subset",
    "load_examples",
    "make_batches",
    "make_step_batches",
    "padding_efficiency",
    "tokenize_splits",
]
