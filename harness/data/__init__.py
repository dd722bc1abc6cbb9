"""Training data: load examples, tokenize them with an exact prompt/answer boundary, batch them.

The three steps, each a pure function of its inputs (nothing is loaded at import time and
nothing is cached between trials)::

    splits = load_examples(DataSpec(name="stdlib-qa"))          # or a path to a .jsonl file
    tokens = tokenize_splits(splits, tokenizer, spec)            # (input_ids, labels) pairs
    batches = make_batches(tokens.train, 8, pad_id, shuffle_seed=seed)

``splits.split_hash`` identifies the eval split, so a study can check that every trial
scored the same examples.
"""

from harness.data.batching import Batch, make_batches, padding_efficiency
from harness.data.encode import TokenizedSplits, tokenize_splits
from harness.data.examples import IGNORE_INDEX, DataError, Example, Splits
from harness.data.load import builtin_names, load_examples

__all__ = [
    "IGNORE_INDEX",
    "Batch",
    "DataError",
    "Example",
    "Splits",
    "TokenizedSplits",
    "builtin_names",
    "load_examples",
    "make_batches",
    "padding_efficiency",
    "tokenize_splits",
]
