"""Retrieval for the RAG arms of `harness advise` (issue 12): one small interface, a BM25 implementation on
`bm25s` (numpy/scipy only, runs offline), and recall@k. Dense retrieval can be added behind the same interface.
Nothing here loads a language model."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from harness.advise.corpus import Passage
from harness.config.errors import SpecError

RETRIEVERS = ("bm25",)


class Retriever(Protocol):
    """Index passages once, then return the top k for a query, best first."""

    def search(self, query: str, k: int) -> list[Passage]: ...


@dataclass(frozen=True)
class IndexStats:
    """What building an index cost."""

    passages: int
    seconds: float
    size_bytes: int


class BM25Retriever:
    """Okapi BM25 (bm25s, Lucene variant, English stopwords, lower-cased word tokens)."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        import bm25s

        if not passages:
            raise SpecError("cannot index an empty corpus")
        started = time.perf_counter()
        self.passages = list(passages)
        tokens = bm25s.tokenize([p.as_prompt() for p in self.passages], stopwords="en", show_progress=False)
        self._index = bm25s.BM25()
        self._index.index(tokens, show_progress=False)
        seconds = time.perf_counter() - started
        scores = self._index.scores
        size = sum(getattr(scores.get(key), "nbytes", 0) for key in ("data", "indices", "indptr"))
        self.stats = IndexStats(len(self.passages), seconds, int(size))

    def search(self, query: str, k: int) -> list[Passage]:
        import bm25s

        if k < 1:
            raise SpecError(f"k must be >= 1, got {k}")
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        k = min(k, len(self.passages))
        ids, scores = self._index.retrieve(tokens, k=k, show_progress=False)
        # A passage that shares no word with the query scores 0: it was not retrieved, only padded in.
        return [self.passages[int(i)] for i, s in zip(ids[0], scores[0]) if s > 0]


def make_retriever(name: str, passages: Sequence[Passage]) -> BM25Retriever:
    if name not in RETRIEVERS:
        raise SpecError(f"retriever {name!r} is not one of {', '.join(RETRIEVERS)}")
    return BM25Retriever(passages)


def recall_at_k(retriever: Retriever, queries: Sequence[str], gold: Sequence[set[str]], k: int) -> float:
    """The share of queries whose top k holds a passage with the gold fact (any of its gold passage ids)."""
    if len(queries) != len(gold) or not queries:
        raise ValueError("recall_at_k needs one non-empty gold set per query")
    hits = sum(bool({p.id for p in retriever.search(q, k)} & g) for q, g in zip(queries, gold))
    return hits / len(queries)
