"""Fast tests of the built-in tasks: registry, sizes, determinism, and that each split tests what it claims."""

from __future__ import annotations

import random
import re
import time
from collections import Counter

import pytest

from harness.data import (
    DataError,
    builtin_names,
    builtin_task,
    company,
    describe_builtins,
    headlines,
    load_examples,
)
from harness.config.dataset import DataSpec

ALL = 10**6  # an eval_size larger than any split: no cap
METRICS = {"exact_match", "accuracy", "rouge_l", "token_f1"}


def question(example) -> str:
    return example.prompt[-1]["content"]


def test_registry_records():
    assert builtin_names() == ["stdlib-qa", "headline-sentiment", "fictional-company"]
    for name in builtin_names():
        task = builtin_task(name)
        assert task.name == name and "\n" not in task.description and task.description
        assert task.metrics and set(task.metrics) <= METRICS
        assert 1 <= task.max_new_tokens <= 64
    assert builtin_task("stdlib-qa").metrics == ("rouge_l", "token_f1")
    assert builtin_task("headline-sentiment").metrics == ("accuracy",)
    assert builtin_task("fictional-company").metrics == ("exact_match", "token_f1")
    with pytest.raises(DataError, match="'nope' is not a built-in dataset; the built-ins are stdlib-qa"):
        builtin_task("nope")


def test_describe_builtins_counts():
    rows = {row[0]: row for row in describe_builtins()}
    assert list(rows) == builtin_names()
    assert rows["headline-sentiment"][2:] == (1000, 150, ("accuracy",))
    _, _, n_train, n_eval, metrics = rows["fictional-company"]
    assert 180 <= n_train <= 480 and 60 <= n_eval <= 240 and metrics == ("exact_match", "token_f1")
    assert rows["stdlib-qa"][2] >= 900


@pytest.mark.parametrize("name", ["stdlib-qa", "headline-sentiment", "fictional-company"])
def test_each_builtin_loads_fast_deterministically_with_its_scoring(name):
    start = time.perf_counter()
    splits = load_examples(DataSpec(name=name, eval_size=ALL))
    assert time.perf_counter() - start < 1.0  # measured: 0.1 s for stdlib-qa, under 0.02 s for the others
    task = builtin_task(name)
    assert load_examples(DataSpec(name=name, eval_size=ALL)) == splits
    assert (splits.metrics, splits.max_new_tokens) == (task.metrics, task.max_new_tokens)
    assert splits.source.startswith(f"built-in {name} (")
    assert not {question(e) for e in splits.train} & {question(e) for e in splits.eval}
    assert all(e.prompt[-1]["role"] == "user" and e.completion.strip() for e in splits.train + splits.eval)
    capped = load_examples(DataSpec(name=name, eval_size=20, train_size=50))
    assert capped.eval == splits.eval[:20] and capped.train == splits.train[:50]


@pytest.mark.parametrize("build", [headlines.build_headlines, company.build_company])
def test_generated_tasks_depend_only_on_the_seed(build):
    assert build(0) == build(0)
    assert build(1) == build(1)
    assert build(0) != build(1)
    random.seed(12345)  # the global generator must play no part
    assert build(0) == build(0)


def test_builtin_rejects_file_settings_and_takes_a_system_prompt():
    with pytest.raises(DataError, match="built-in task; format, template only apply to data files"):
        load_examples(DataSpec(name="headline-sentiment", format="text", template="{text}"))
    with pytest.raises(DataError, match="column_map only apply"):
        load_examples(DataSpec(name="stdlib-qa", column_map=(("prompt", "q"),)))
    splits = load_examples(DataSpec(name="fictional-company", system_prompt="Answer briefly."))
    assert all(e.prompt[0] == {"role": "system", "content": "Answer briefly."} for e in splits.train + splits.eval)


# ---- headline-sentiment --------------------------------------------------------------------------

HEADLINE = re.compile(r"\n\nHeadline: (.+)$")


def headline(example) -> str:
    return HEADLINE.search(question(example)).group(1)


def test_headlines_balanced_labelled_and_phrased_as_a_one_word_question():
    train, held_out = headlines.build_headlines(0)
    assert (len(train), len(held_out)) == (1000, 150)
    assert Counter(e.completion for e in held_out) == {"negative": 50, "neutral": 50, "positive": 50}
    assert set(Counter(e.completion for e in train).values()) <= {333, 334}
    example = train[0]
    assert example.prompt[0]["content"].startswith(headlines.INSTRUCTION)
    assert "one word: positive, negative or neutral" in example.prompt[0]["content"]
    assert len({headline(e) for e in train}) == 1000  # no duplicate headline to memorise


def test_headline_eval_companies_and_two_frames_are_never_trained_on():
    train, held_out = headlines.build_headlines(0)
    train_text = " ".join(headline(e) for e in train)
    firsts_in_eval = {first for first in headlines.FIRST if any(f" {first} " in f" {headline(e)} " for e in held_out)}
    assert len(firsts_in_eval) >= 10
    assert not {first for first in firsts_in_eval if re.search(rf"\b{first}\b", train_text)}
    def eval_frame(example) -> bool:
        return headline(example).endswith(", company says") or headline(example).startswith("Market movers: ")

    assert any(eval_frame(e) for e in held_out) and not any(eval_frame(e) for e in train)


def test_headline_events_carry_the_label():
    train, _ = headlines.build_headlines(0)
    # "cuts full-year outlook" is always negative, "names new chief financial officer" always neutral.
    assert {e.completion for e in train if "cuts full-year outlook" in headline(e)} == {"negative"}
    assert {e.completion for e in train if "names new chief financial officer" in headline(e)} <= {"neutral"}


# ---- fictional-company ---------------------------------------------------------------------------


def test_company_facts_size_and_short_answers():
    facts = company.company_facts(random.Random(0))
    assert 60 <= len(facts) <= 120
    assert all(1 <= len(f.answer.split()) <= 3 for f in facts)
    assert {f.kind for f in facts} == set(company.PHRASINGS)
    train, held_out = company.build_company(0)
    assert (len(train), len(held_out)) == (4 * len(facts), 2 * len(facts))


def test_company_phrasings_are_distinct_and_eval_ones_never_trained():
    for kind, (train_phr, eval_phr) in company.PHRASINGS.items():
        assert len(train_phr) in (3, 4) and len(eval_phr) in (1, 2), kind
        assert len(set(train_phr + eval_phr)) == len(train_phr) + len(eval_phr), kind
    train, held_out = company.build_company(0)
    assert not {question(e) for e in train} & {question(e) for e in held_out}


def test_company_eval_asks_about_facts_that_training_teaches():
    train, held_out = company.build_company(0)
    taught = Counter(e.completion for e in train)
    for example in held_out:
        assert taught[example.completion] >= 4, example  # every eval answer is trained 4+ times
    ceo = next(e for e in train if re.match(r"Who is the CEO of ", question(e)))
    asked = [e for e in held_out if "chief executive officer" in question(e) or "'s CEO" in question(e)]
    assert asked and {e.completion for e in asked} == {ceo.completion}
