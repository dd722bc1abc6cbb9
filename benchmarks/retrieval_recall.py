"""BM25 recall@k on the fictional-company fact sheet (issue 12 groundwork): the share of held-out questions
whose gold passage is in the top k, against the company's facts plus three distractor companies.
Run: python benchmarks/retrieval_recall.py [seed]"""

from __future__ import annotations

import sys

from harness.advise.corpus import Passage
from harness.data.company import build_company, fact_sheet
from harness.advise.retrieval import BM25Retriever, recall_at_k


def main(seed: int = 0) -> None:
    rows, gold = fact_sheet(seed=seed, distractors=3)
    retriever = BM25Retriever([Passage(pid, text, title) for pid, title, text in rows])
    questions = [e.prompt[0]["content"] for e in build_company(seed)[1]]
    golds = [{gold[q]} for q in questions]
    print(f"fictional-company seed {seed}: {len(questions)} held-out questions, {len(rows)} passages "
          f"(index built in {retriever.stats.seconds:.3f} s, {retriever.stats.size_bytes} bytes)")
    for k in (1, 3, 5, 10):
        print(f"recall@{k}: {recall_at_k(retriever, questions, golds, k):.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
