"""Task metrics: each built-in against hand-computed values, loading, errors and directions."""

from __future__ import annotations

import itertools
import random

import pytest

from harness.metrics import (BUILTIN_METRICS, MetricError, check_metric_names, compute_metrics, example_scores,
                             load_metric,
                             metric_direction, registry)


def score(name: str, predictions: list[str], references: list[str]) -> float:
    return compute_metrics([name], predictions, references)[name]


# ---- exact_match -------------------------------------------------------------------------------

def test_exact_match_normalises_case_punctuation_articles_and_spaces() -> None:
    predictions = ["The Cat!", "  a   dog ", "Paris", ""]
    references = ["cat", "dog", "Paris, France", ""]
    # "cat" == "cat" (1), "dog" == "dog" (1), "paris" != "paris france" (0), "" == "" (1): 3 / 4
    assert score("exact_match", predictions, references) == pytest.approx(0.75)


def test_exact_match_empty_sides() -> None:
    assert score("exact_match", [""], ["cat"]) == 0.0
    assert score("exact_match", ["cat"], [""]) == 0.0
    assert score("exact_match", ["The."], [""]) == 1.0  # "the." normalises to "" (article, punctuation)


# ---- accuracy ----------------------------------------------------------------------------------

def test_accuracy_compares_the_first_words_to_the_label() -> None:
    predictions = ["Positive. The shares rose.", "negative", "The answer is positive", "NEUTRAL!", ""]
    references = ["positive", "positive", "positive", "neutral", "positive"]
    # first word "positive" (1); "negative" (0); "answer" after dropping "the" (0); "neutral" (1);
    # nothing (0): 2 / 5
    assert score("accuracy", predictions, references) == pytest.approx(0.4)


def test_accuracy_multi_word_labels_and_empty_reference() -> None:
    # a two-word label needs the first two words: "very positive" (1), "very" + "negative" (0)
    assert score("accuracy", ["Very positive indeed", "very negative"], ["very positive"] * 2) == 0.5
    # an empty label matches only an empty prediction
    assert score("accuracy", ["", "x"], ["", ""]) == 0.5


# ---- token_f1 ----------------------------------------------------------------------------------

def test_token_f1_hand_computed() -> None:
    # "the cat sat" -> [cat, sat]; "a cat sat down" -> [cat, sat, down]; common 2
    # precision 2/2 = 1, recall 2/3, F1 = 2 * 1 * 2/3 / (1 + 2/3) = (4/3) / (5/3) = 0.8
    assert score("token_f1", ["the cat sat"], ["a cat sat down"]) == pytest.approx(0.8)
    # [cat, cat, dog] vs [cat, dog, dog, bird]: common min(2,1) + min(1,2) = 2 (with multiplicity)
    # precision 2/3, recall 2/4, F1 = 2 * 1/3 / (2/3 + 1/2) = (2/3) / (7/6) = 4/7
    assert score("token_f1", ["cat cat dog"], ["cat dog dog bird"]) == pytest.approx(4 / 7)
    # mean over examples: (0.8 + 0) / 2
    assert score("token_f1", ["the cat sat", "x"], ["a cat sat down", "y"]) == pytest.approx(0.4)


def test_token_f1_empty_sides() -> None:
    # SQuAD v2 rule: 1.0 when both are empty after normalisation, else 0.0
    assert score("token_f1", [""], [""]) == 1.0
    assert score("token_f1", ["the"], ["A."]) == 1.0
    assert score("token_f1", [""], ["cat"]) == 0.0
    assert score("token_f1", ["cat"], [""]) == 0.0
    assert score("token_f1", ["CAT!"], ["cat"]) == 1.0


# ---- rouge_l -----------------------------------------------------------------------------------

def test_rouge_l_hand_computed() -> None:
    # 6 tokens each; LCS "the cat on the mat" = 5; P = R = 5/6, F1 = 5/6
    assert score("rouge_l", ["the cat sat on the mat"], ["the cat is on the mat"]) == pytest.approx(5 / 6)
    # [a b c d] vs [b d e]: LCS "b d" = 2; P = 2/4, R = 2/3, F1 = 2 * 1/3 / (1/2 + 2/3) = 4/7
    assert score("rouge_l", ["a b c d"], ["b d e"]) == pytest.approx(4 / 7)
    # order matters (unlike token F1): [b a] vs [a b] has LCS 1; P = R = 1/2, F1 = 1/2
    assert score("rouge_l", ["b a"], ["a b"]) == pytest.approx(0.5)
    # articles are kept (unlike SQuAD normalisation): [the cat] vs [cat]: LCS 1, P 1/2, R 1, F1 2/3
    assert score("rouge_l", ["the cat"], ["cat"]) == pytest.approx(2 / 3)


def test_rouge_l_tokens_split_on_punctuation_and_ignore_case() -> None:
    assert score("rouge_l", ["Hello, World!"], ["hello world"]) == 1.0
    # "state-of-the-art" -> [state, of, the, art]
    assert score("rouge_l", ["State-of-the-art."], ["state of the art"]) == 1.0
    # rouge_score's rule: an empty side scores 0, even when both are empty
    assert score("rouge_l", ["", "cat"], ["cat", ""]) == 0.0
    assert score("rouge_l", ["..."], ["..."]) == 0.0


def test_lcs_matches_brute_force() -> None:
    from harness.metrics.modules.rouge_l import lcs_length

    def brute(a: list[str], b: list[str]) -> int:
        for size in range(min(len(a), len(b)), 0, -1):
            subs = set(itertools.combinations(b, size))
            if any(c in subs for c in itertools.combinations(a, size)):
                return size
        return 0

    rng = random.Random(0)
    for _ in range(200):
        a = [rng.choice("abc") for _ in range(rng.randint(0, 6))]
        b = [rng.choice("abc") for _ in range(rng.randint(0, 6))]
        assert lcs_length(a, b) == brute(a, b), (a, b)


# ---- compute_metrics, load_metric --------------------------------------------------------------

def test_compute_metrics_several_names() -> None:
    predictions = ["Positive, clearly", "the cat sat"]
    references = ["positive", "a cat sat down"]
    scores = compute_metrics(list(BUILTIN_METRICS), predictions, references)
    assert set(scores) == set(BUILTIN_METRICS)
    # exact match: "positive clearly" != "positive" (0), "cat sat" != "cat sat down" (0)
    assert scores["exact_match"] == 0.0
    # accuracy: first word "positive" (1); first word "cat" vs label [cat, sat, down] (0): 1/2
    assert scores["accuracy"] == pytest.approx(0.5)
    # token F1: [positive clearly] vs [positive]: P 1/2, R 1, F1 2/3; second 0.8; mean (2/3 + 0.8) / 2
    assert scores["token_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    # ROUGE-L: first as token F1 (2/3); [the cat sat] vs [a cat sat down]: LCS 2, P 2/3, R 2/4,
    # F1 = 2 * 1/3 / (2/3 + 1/2) = 4/7; mean (2/3 + 4/7) / 2
    assert scores["rouge_l"] == pytest.approx((2 / 3 + 4 / 7) / 2)
    # contains answer: [positive clearly] holds [positive] (1); [cat sat] lacks [cat sat down] (0)
    assert scores["contains_answer"] == pytest.approx(0.5)
    assert all(isinstance(v, float) for v in scores.values())


def test_contains_answer_wants_the_reference_as_whole_words_in_order() -> None:
    predictions = ["The Solace Pro is a portable projector.", "It costs $169.", "projector portable",
                   "Noor Holithson", "", "2003"]
    references = ["portable projector", "$169", "portable projector", "Noor Holith", "", "2003"]
    assert example_scores(["contains_answer"], predictions, references)["contains_answer"] == [1.0, 1.0, 0.0, 0.0,
                                                                                              1.0, 1.0]


def test_compute_metrics_rejects_mismatched_or_empty_inputs() -> None:
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        compute_metrics(["exact_match"], ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no predictions"):
        compute_metrics(["exact_match"], [], [])


def test_builtins_are_shipped_and_loaded_once_without_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    import evaluate.loading

    def no_hub(*args: object, **kwargs: object) -> None:
        raise AssertionError("a built-in metric went to the hub")

    monkeypatch.setattr(evaluate.loading, "HubEvaluationModuleFactory", no_hub)
    monkeypatch.setattr(registry, "_LOADED", {})
    for name in BUILTIN_METRICS:
        assert registry.builtin_path(name).is_file()
        metric = load_metric(name)
        assert load_metric(name) is metric  # cached per process
        assert metric.compute(predictions=["x"], references=["x"]) == {name: 1.0}


def test_local_metric_script_loads_quietly(tmp_path, capfd: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "length_ratio.py"
    script.write_text(
        "import datasets\nimport evaluate\n\n\n"
        "class LengthRatio(evaluate.Metric):\n"
        "    def _info(self):\n"
        "        return evaluate.MetricInfo(description='', citation='', features=datasets.Features(\n"
        "            {'predictions': datasets.Value('string'), 'references': datasets.Value('string')}))\n\n"
        "    def _compute(self, predictions, references):\n"
        "        return {'ratio': sum(map(len, predictions)) / sum(map(len, references)), 'label': 'x'}\n")
    check_metric_names([str(script)])
    # one scalar result: stored under the metric's name; "abcd" / "ab" = 2
    assert compute_metrics([str(script)], ["abcd"], ["ab"]) == {str(script): 2.0}
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_other_metric_results_and_failures(tmp_path) -> None:
    script = tmp_path / "two_scores.py"
    script.write_text(
        "import datasets\nimport evaluate\n\n\n"
        "class TwoScores(evaluate.Metric):\n"
        "    def _info(self):\n"
        "        return evaluate.MetricInfo(description='', citation='', features=datasets.Features(\n"
        "            {'predictions': datasets.Value('string'), 'references': datasets.Value('string')}))\n\n"
        "    def _compute(self, predictions, references):\n"
        "        if predictions[0] == 'boom':\n"
        "            raise ValueError('needs token ids\\nnot text')\n"
        "        return {'hits': 1, 'misses': 0.5, 'per_item': [1.0]}\n")
    # several scalars: each under its own key; the list is left out
    assert compute_metrics([str(script)], ["a"], ["a"]) == {"hits": 1.0, "misses": 0.5}
    with pytest.raises(MetricError, match="failed on the generated text: needs token ids not text$"):
        compute_metrics([str(script)], ["boom"], ["a"])


def test_unknown_metric_offline_is_one_line_metric_error() -> None:
    name = "harness-no-such-metric"
    with pytest.raises(MetricError) as caught:
        load_metric(name)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"metric '{name}' is not built in (exact_match, accuracy, rouge_l, token_f1, contains_answer) "
                              "and cannot be loaded from the Hugging Face hub (offline?): ")
    assert isinstance(caught.value, ValueError)  # a SpecError: bad input, exit code 2


def test_check_metric_names(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    check_metric_names(list(BUILTIN_METRICS))
    check_metric_names([])
    with pytest.raises(MetricError, match="listed twice"):
        check_metric_names(["accuracy", "accuracy"])
    with pytest.raises(MetricError, match="empty"):
        check_metric_names([""])
    with pytest.raises(MetricError, match="does not exist"):
        check_metric_names([str(tmp_path / "missing.py")])
    # offline (the test set-up sets HF_HUB_OFFLINE=1): a non-built-in is loaded now and fails now
    with pytest.raises(MetricError, match="cannot be loaded"):
        check_metric_names(["harness-no-such-metric"])
    # online it may be on the hub: nothing is loaded (or fetched) until it is used
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_EVALUATE_OFFLINE", raising=False)
    monkeypatch.setattr(registry, "load_metric", lambda name: pytest.fail(f"{name} was loaded"))
    check_metric_names(["bleu", "someone/metric"])


def test_metric_direction() -> None:
    for name in BUILTIN_METRICS:
        assert metric_direction(name) == "maximize"
    for name in ("eval_loss", "perplexity", "wer", "cer", "test-cer", "mean_squared_error", "mse", "ValLoss"):
        assert metric_direction(name) == "minimize", name
    for name in ("bleu", "rougeL", "f1", "answer_f1", "precision", "sacrebleu"):
        assert metric_direction(name) == "maximize", name
