"""The retrieval half of `harness advise` (issue 12, groundwork): corpus loading and its errors, passage
splitting, BM25 search and recall@k on a hand-built corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.advise.corpus import Passage, load_corpus, split_words
from harness.advise.retrieval import BM25Retriever, make_retriever, recall_at_k
from harness.config.errors import SpecError

FACTS = [
    Passage("acme-founded", "Acme Robotics was founded in 1987 in Oslo by Ingrid Berg.", "Acme Robotics"),
    Passage("acme-product", "The flagship product of Acme Robotics is a warehouse arm called Heron.", "Acme Robotics"),
    Passage("finch-city", "Blue Finch Coffee roasts all of its beans in Lyon.", "Blue Finch Coffee"),
    Passage("zephyr-ceo", "Zephyr Labs is led by chief executive Tomas Varga.", "Zephyr Labs"),
]


def test_bm25_finds_the_passage_with_the_fact_and_recall_counts_hits() -> None:
    retriever = BM25Retriever(FACTS)
    assert retriever.search("Who founded Acme Robotics?", 1)[0].id == "acme-founded"
    assert retriever.search("Where does Blue Finch Coffee roast its beans?", 1)[0].id == "finch-city"
    assert retriever.search("xylophone quartz", 3) == []  # no shared word: nothing retrieved, not padding
    assert len(retriever.search("Acme Robotics", 10)) == 2  # k larger than the matches: only real matches
    queries = ["Who founded Acme Robotics?", "Who leads Zephyr Labs?", "What is Heron?", "What does Lyon export?"]
    gold = [{"acme-founded"}, {"zephyr-ceo"}, {"acme-product"}, {"nothing-about-lyon-exports"}]
    assert recall_at_k(retriever, queries, gold, 1) == pytest.approx(3 / 4)
    assert retriever.stats.passages == 4 and retriever.stats.size_bytes > 0
    with pytest.raises(SpecError, match="k must be >= 1"):
        retriever.search("Acme", 0)
    with pytest.raises(SpecError, match="retriever 'dense' is not one of bm25"):
        make_retriever("dense", FACTS)


def test_recall_at_k_grows_with_k_on_a_distractor_heavy_corpus() -> None:
    # the gold passage shares one rare word with the query; distractors share the company name
    distractors = [Passage(f"d{i}", f"Acme Robotics opened office number {i} in a new city.") for i in range(8)]
    corpus = [Passage("gold", "Acme Robotics named its first robot Heron."), *distractors]
    retriever = BM25Retriever(corpus)
    queries, gold = ["What did Acme Robotics name its first robot?"], [{"gold"}]
    assert recall_at_k(retriever, queries, gold, 1) == 1.0
    assert recall_at_k(retriever, ["Which office did Acme Robotics open?"], gold, 1) == 0.0
    assert recall_at_k(retriever, ["Which office did Acme Robotics open?"], gold, 9) == 1.0


def test_split_words_windows_overlap_and_keep_the_tail() -> None:
    text = " ".join(f"w{i}" for i in range(10))
    assert split_words(text, 4, 1) == ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]
    assert split_words(text, 20, 5) == [text]
    assert split_words("   ", 4, 1) == []
    with pytest.raises(SpecError, match="overlap in \\[0, size\\)"):
        split_words(text, 4, 4)


def test_a_jsonl_corpus_loads_ids_titles_and_rejects_bad_lines(tmp_path: Path) -> None:
    good = tmp_path / "corpus.jsonl"
    good.write_text(json.dumps({"id": "x", "title": "T", "text": "some  text\nhere"}) + "\n\n"
                    + json.dumps({"text": "second"}) + "\n")
    passages = load_corpus(good)
    assert passages == [Passage("x", "some text here", "T"), Passage("line-3", "second", "")]
    assert passages[0].as_prompt() == "T: some text here"
    cases = {"{not json": "line 1: not valid JSON", json.dumps({"title": "no text"}): "line 1: expected an object",
             json.dumps({"id": 1, "text": "a"}) + "\n" + json.dumps({"id": 1, "text": "b"}): "line 2: id '1' is used twice"}
    for content, message in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(content)
        with pytest.raises(SpecError, match=message):
            load_corpus(bad)


def test_a_folder_corpus_is_split_into_passages_and_empty_inputs_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text(" ".join(f"w{i}" for i in range(10)))
    (folder / "sub" / "b.txt").write_text("short note")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    passages = load_corpus(folder, size=6, overlap=2)
    assert [p.id for p in passages] == ["a.md#0", "a.md#1", "sub/b.txt#0"]
    assert passages[1].text == "w4 w5 w6 w7 w8 w9" and passages[2].title == "b"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SpecError, match="holds no text"):
        load_corpus(empty)
    with pytest.raises(SpecError, match="does not exist"):
        load_corpus(tmp_path / "missing.jsonl")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    with pytest.raises(SpecError, match="holds no text"):
        load_corpus(tmp_path / "blank.jsonl")
    with pytest.raises(SpecError, match="cannot index an empty corpus"):
        BM25Retriever([])


def _words(text: str) -> int:
    return len(text.split())


def test_a_rag_prompt_puts_passages_best_first_before_the_question_and_fits_the_budget() -> None:
    from harness.advise.rag_prompt import INSTRUCTION, with_passages

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who founded Acme?"}]
    whole = with_passages(messages, FACTS[:2], budget=1000, count=_words)
    content = whole.messages[-1]["content"]
    assert whole.messages[0] == messages[0] and messages[-1]["content"] == "Who founded Acme?"  # input untouched
    assert content.startswith(INSTRUCTION) and content.endswith("Question: Who founded Acme?")
    assert content.index("[1] Acme Robotics: Acme Robotics was founded") < content.index("[2] Acme Robotics: The flagship")
    assert whole.passages == ("acme-founded", "acme-product") and not whole.truncated
    assert whole.added_tokens == _words(content) - _words("Who founded Acme?")

    # a budget that holds the first passage but not the second: the second is left out, not cut
    first_only = with_passages(messages, FACTS[:2], budget=whole.added_tokens - 5, count=_words)
    assert first_only.passages == ("acme-founded",) and not first_only.truncated
    assert first_only.added_tokens <= whole.added_tokens - 5
    # a budget smaller than the first passage: it is cut to fit
    alone = with_passages(messages, FACTS[:1], budget=1000, count=_words).added_tokens
    cut = with_passages(messages, FACTS[:2], budget=alone - 4, count=_words)
    assert cut.passages == ("acme-founded",) and cut.truncated and cut.added_tokens == alone - 4
    assert "[1] Acme Robotics: Acme" in cut.messages[-1]["content"] and "Heron" not in cut.messages[-1]["content"]
    # nothing retrieved, or no room at all: the question as it was (the no-passage arm)
    assert with_passages(messages, [], budget=100, count=_words).messages == messages
    assert with_passages(messages, FACTS, budget=0, count=_words).passages == ()
    with pytest.raises(ValueError, match="end with a user turn"):
        with_passages([{"role": "assistant", "content": "hi"}], FACTS, budget=10, count=_words)


def test_the_fictional_company_fact_sheet_states_each_fact_once_in_prose_with_distractors() -> None:
    from harness.data.company import PHRASINGS, build_company, fact_sheet

    rows, gold = fact_sheet(seed=0, distractors=3)
    passages = {pid: text for pid, _, text in rows}
    assert len(passages) == len(rows)  # ids are unique
    companies = {title for _, title, _ in rows}
    assert len(companies) == 4  # the company and three distractors
    _, held_out = build_company(0)
    for example in held_out:  # every held-out question has one gold passage, which states its answer
        question = example.prompt[0]["content"]
        assert example.completion in passages[gold[question]], (question, passages[gold[question]])
    questions = {t.split("{")[0] for pair in PHRASINGS.values() for phrasings in pair for t in phrasings}
    assert not any(text.startswith(q) for text in passages.values() for q in questions if len(q) > 12)
    assert not any(text.endswith("?") for text in passages.values())


def test_bm25_recall_on_the_fact_sheet_is_measured_not_assumed() -> None:
    from harness.data.company import build_company, fact_sheet

    rows, gold = fact_sheet(seed=0, distractors=3)
    retriever = BM25Retriever([Passage(pid, text, title) for pid, title, text in rows])
    _, held_out = build_company(0)
    questions = [e.prompt[0]["content"] for e in held_out]
    golds = [{gold[q]} for q in questions]
    at = {k: recall_at_k(retriever, questions, golds, k) for k in (1, 3, 10)}
    assert at[1] <= at[3] <= at[10]
    assert at[10] > 0.5  # the right company and fact are usually among the top 10 of 300 passages
    assert at[1] < 1.0  # paraphrased questions and look-alike distractors: retrieval is not trivial
