"""`harness advise` (issue 12): the statistics and verdict on hand-built arms, the corpus a study gets by
default, the wrong-passage and no-passage arms, the RAG prompt through the chat template on a fixed example,
the command line on tiny-llama (every key, the W&B table, resuming) and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from helpers import assert_one_line_error, run_cli, write_jsonl
from harness.advise.advice import (ARMS, ArmResult, advice_doc, advice_markdown, by_retrieval_hit, hit_sentences,
                                   summary_rows)
from harness.advise.run import (AdvicePlan, Retrieved, arm_prompts, context_budget, default_corpus, relevance,
                                wrong_passages)
from harness.advise.corpus import Passage
from harness.data.examples import Example
from harness.config.errors import SpecError


def _arm(name: str, em: list[float], latency: float = 0.1, added: int = 0) -> ArmResult:
    n = len(em)
    return ArmResult(name, {"exact_match": em, "token_f1": [min(1.0, v + 0.1) for v in em]}, [latency] * n,
                     [20 + added] * n, [added] * n, 100.0)


# 40 questions: retrieval answers 30, fine-tuning 12, both 31; wrong passages drag rag to 4, no passages to 0.
N = 40
ARMS_40 = {
    "base": _arm("base", [0.0] * N),
    "rag": _arm("rag", [1.0] * 30 + [0.0] * 10, 0.2, 90),
    "finetuned": _arm("finetuned", [1.0] * 12 + [0.0] * 28),
    "finetuned+rag": _arm("finetuned+rag", [1.0] * 31 + [0.0] * 9, 0.2, 90),
    "rag:empty": _arm("rag:empty", [0.0] * N, 0.15, 25),
    "rag:wrong": _arm("rag:wrong", [1.0] * 4 + [0.0] * 36, 0.2, 90),
    "finetuned+rag:empty": _arm("finetuned+rag:empty", [1.0] * 10 + [0.0] * 30, 0.15, 25),
    "finetuned+rag:wrong": _arm("finetuned+rag:wrong", [1.0] * 6 + [0.0] * 34, 0.2, 90),
}


def test_the_advice_doc_has_intervals_paired_differences_and_a_verdict_the_intervals_support() -> None:
    doc = advice_doc(ARMS_40, ["exact_match", "token_f1"], "exact_match")
    rag = doc["arms"]["rag"]["metrics"]["exact_match"]
    assert rag["mean"] == pytest.approx(0.75)
    low, high = rag["ci95"]
    assert 0.55 < low < 0.75 < high < 0.9  # binomial sd at n 40 is 0.068: about +/- 0.13
    assert doc["arms"]["base"]["metrics"]["exact_match"]["ci95"] == [0.0, 0.0]
    versus = next(d for d in doc["differences"] if (d["a"], d["b"], d["metric"]) == ("rag", "finetuned", "exact_match"))
    assert versus["diff"] == pytest.approx(0.45) and versus["ci95"][0] > 0
    on_top = next(d for d in doc["differences"]
                  if (d["a"], d["b"], d["metric"]) == ("finetuned+rag", "rag", "exact_match"))
    assert on_top["diff"] == pytest.approx(0.025) and on_top["ci95"][0] <= 0 <= on_top["ci95"][1]
    kept = {(r["failed"], r["metric"]): r for r in doc["retention"]}
    assert kept[("rag:wrong", "exact_match")]["kept"] == pytest.approx(4 / 30)
    assert kept[("finetuned+rag:empty", "exact_match")]["kept"] == pytest.approx(10 / 31)
    verdict = doc["verdict"]
    assert verdict[0].startswith("retrieval alone beats fine-tuning by 0.450 exact match (95% CI +0.")
    assert any(line.startswith("fine-tuning adds nothing distinguishable on top of retrieval (+0.025")
               for line in verdict)
    assert any(line.startswith("retrieval adds 0.475 exact match on top of fine-tuning") for line in verdict)
    assert "when retrieval returns wrong passages, rag keeps 0.13 of its exact match" in " | ".join(verdict)
    # an arm whose own score is not distinguishable from 0 has nothing to keep: no sentence about it
    weak = dict(ARMS_40, rag=_arm("rag", [1.0] + [0.0] * (N - 1)))
    assert not any(line.startswith("when retrieval") and ", rag keeps" in line
                   for line in advice_doc(weak, ["exact_match"], "exact_match")["verdict"])
    assert any("wrong passages make the finetuned model worse than no retrieval" in line for line in verdict)
    assert doc["best_arm"] == "finetuned+rag"
    assert doc["arms"]["rag"]["added_tokens_mean"] == 90 and doc["arms"]["rag"]["latency_median_s"] == 0.2
    assert [r["arm"] for r in summary_rows(doc)] == list(ARMS_40)
    md = advice_markdown(doc, "harness advise --study s", "rag_vs_finetune.png")
    assert "| rag | base | top-k | 0.750 (" in md and "![exact_match per arm](rag_vs_finetune.png)" in md


def test_retrieval_arms_are_split_by_whether_the_fact_was_retrieved() -> None:
    doc = advice_doc(ARMS_40, ["exact_match"], "exact_match")
    hits = [True] * 32 + [False] * 8  # rag answers the first 30: 30 of 32 hits, 0 of 8 misses
    doc["by_retrieval_hit"] = by_retrieval_hit(doc, ARMS_40, hits)
    rag = doc["by_retrieval_hit"]["rag"]["exact_match"]
    assert (rag["hit"]["n"], rag["miss"]["n"]) == (32, 8)
    assert rag["hit"]["mean"] == pytest.approx(30 / 32) and rag["miss"]["mean"] == 0.0
    assert rag["hit"]["ci95"][0] < 30 / 32 < rag["hit"]["ci95"][1] and rag["miss"]["ci95"] == [0.0, 0.0]
    assert hit_sentences(doc)[0].startswith("rag scores 0.938 exact match on the 32 questions whose fact was retrieved")
    assert "| rag | exact_match | 32, 0.938 (" in advice_markdown(doc, "c", None)
    doc["by_retrieval_hit"] = by_retrieval_hit(doc, ARMS_40, [True] * 40)
    assert doc["by_retrieval_hit"]["rag"]["exact_match"]["miss"] == {"n": 0, "mean": None, "ci95": None}
    assert not hit_sentences(doc)


def test_fine_tuning_ahead_and_too_few_questions_are_said_as_such() -> None:
    arms = {"rag": _arm("rag", [1.0] * 5 + [0.0] * 15), "finetuned": _arm("finetuned", [1.0] * 15 + [0.0] * 5)}
    ahead = advice_doc(arms, ["exact_match"], "exact_match")["verdict"][0]
    assert ahead.startswith("fine-tuning beats retrieval alone by 0.500 exact match (95% CI +0.")  # its direction
    low, high = (float(x) for x in ahead.split("95% CI ")[1].rstrip(")").split(" to "))
    assert 0 < low < 0.5 < high
    tied = {"rag": _arm("rag", [1.0, 0.0, 1.0]), "finetuned": _arm("finetuned", [0.0, 1.0, 1.0])}
    assert advice_doc(tied, ["exact_match"], "exact_match")["verdict"][0].startswith(
        "retrieval alone and fine-tuning alone are not distinguishable (+0.000 exact match")
    with pytest.raises(ValueError, match="one score per question"):
        advice_doc({"rag": _arm("rag", [1.0]), "finetuned": _arm("finetuned", [1.0, 0.0])}, ["exact_match"],
                   "exact_match")


def test_fictional_company_defaults_to_its_fact_sheet_and_other_data_to_its_training_examples() -> None:
    from harness.data import company

    train, held_out = company.build_company(0)
    passages, label, gold = default_corpus("fictional-company", train, held_out[:10])
    assert "fact sheet" in label and len(passages) > 4 * 70  # the company and 3 distractors
    assert gold is not None and all(len(g) == 1 for g in gold)
    by_id = {p.id: p for p in passages}
    for question, ids in zip(held_out[:10], gold):
        assert question.completion in by_id[next(iter(ids))].text  # the gold passage states the answer
    questions = [Example([{"role": "user", "content": "What does os.getcwd do?"}], "Return the cwd."),
                 Example([{"role": "user", "content": "What does math.sqrt do?"}], "Return the square root of x.")]
    passages, label, gold = default_corpus("stdlib-qa", questions, questions)
    assert gold is None and "training examples" in label
    assert passages[0] == Passage("train-0", "What does os.getcwd do? Return the cwd.")
    plan = _plan(questions, passages, None)
    relevant, definition = relevance(plan)
    assert "reference answer appears" in definition
    assert relevant(0, passages[0]) and not relevant(0, passages[1]) and relevant(1, passages[1])


def test_wrong_passages_come_from_another_fact_and_never_hold_the_question_s_own() -> None:
    facts = [Passage(f"p{i}", f"fact {i}") for i in range(6)]
    top = [[facts[i], facts[(i + 1) % 6]] for i in range(6)]  # each question's top 2 overlaps its neighbour's
    gold = [{f"p{i}"} for i in range(6)]
    wrong = wrong_passages(top, lambda i, p: p.id in gold[i], 2)
    for i, passages in enumerate(wrong):
        assert passages and all(p.id not in gold[i] for p in passages)
        assert [p.id for p in passages] != [p.id for p in top[i]]
    assert wrong == wrong_passages(top, lambda i, p: p.id in gold[i], 2)  # deterministic
    assert wrong_passages([[facts[0]]], lambda i, p: True, 1) == [[]]  # nothing else to give: empty


def _plan(questions: list[Example], passages: list[Passage], gold: list[set[str]] | None) -> AdvicePlan:
    return AdvicePlan(view=None, config=None, questions=questions, metrics=("exact_match",),  # type: ignore[arg-type]
                      primary="exact_match", max_new_tokens=8, data_source="test", passages=passages, corpus="test",
                      gold=gold, k=2, retriever="bm25", adapter=Path("."), adapter_trial=None)


def test_each_arm_s_prompt_through_the_chat_template_on_a_fixed_example(tiny_checkpoint: str) -> None:
    from harness.trial.models import load_tokenizer
    from harness.advise.rag_prompt import INSTRUCTION, NO_CONTEXT

    tokenizer = load_tokenizer(tiny_checkpoint)
    question = Example([{"role": "user", "content": "Who leads Zephyr Labs?"}], "Tomas Varga")
    gold = Passage("zephyr-ceo", "Zephyr Labs is led by chief executive Tomas Varga.", "Zephyr Labs")
    second = Passage("zephyr-city", "Zephyr Labs sits in Graz.", "Zephyr Labs")
    other = Passage("acme", "Acme Robotics was founded in 1987.", "Acme Robotics")
    plan = _plan([question], [gold, second, other], [{"zephyr-ceo"}])
    retrieved = Retrieved([[gold, second]], [[other]], [0.001], {}, "", None)
    texts = {}
    for retrieval in ("off", "top-k", "empty", "wrong"):
        ids, added, cut = arm_prompts(plan, retrieved, tokenizer, 400, retrieval)
        texts[retrieval] = tokenizer.decode(ids[0])
        assert cut == 0 and (added[0] == 0) == (retrieval == "off")
    rag = texts["top-k"]
    # The chat template wraps the one user turn; the passages come best first, before the question in it.
    assert rag.startswith("<|im_start|>") and rag.endswith("<|im_start|>assistant\n")
    user = rag[rag.index("<|im_start|>user\n"):]
    assert user.index(INSTRUCTION) < user.index("[1] Zephyr Labs: Zephyr Labs is led") < \
        user.index("[2] Zephyr Labs: Zephyr Labs sits") < user.index("Question: Who leads Zephyr Labs?")
    assert "Who leads Zephyr Labs?<|im_end|>" in texts["off"] and INSTRUCTION not in texts["off"]
    assert NO_CONTEXT in texts["empty"] and "Tomas" not in texts["empty"]
    assert "Acme Robotics was founded" in texts["wrong"] and "Tomas" not in texts["wrong"]
    assert len(set(texts.values())) == 4  # every arm's prompt is really different
    # A budget too small for the first passage cuts it; the second is left out.
    alone = arm_prompts(plan, Retrieved([[gold]], [[other]], [0.0], {}, "", None), tokenizer, 400, "top-k")[1][0]
    ids, added, cut = arm_prompts(plan, retrieved, tokenizer, alone - 3, "top-k")
    text = tokenizer.decode(ids[0])
    assert cut == 1 and "[2]" not in text and "Question: Who leads Zephyr Labs?" in text
    # The budget leaves room for the longest question and its answer in the model's context.
    assert context_budget(plan, tokenizer, 512, 1000) == 512 - len(arm_prompts(plan, retrieved, tokenizer, 1,
                                                                                "off")[0][0]) - 8
    with pytest.raises(SpecError, match="no room for passages"):
        context_budget(plan, tokenizer, 20, 1000)


def test_every_arm_is_described() -> None:
    assert set(ARMS) == {"base", "rag", "finetuned", "finetuned+rag", "rag:empty", "rag:wrong",
                         "finetuned+rag:empty", "finetuned+rag:wrong"}


SWEEP = {"model": "tiny-llama", "data": "fictional-company", "space": "tiny", "max_steps": 2, "seed": 0,
         "objectives": ["exact_match"], "data_options": {"eval_size": 8, "train_size": 32}}


@pytest.mark.integration
def test_advise_refuses_bad_input_in_one_line_before_any_model_loads(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/study.db"
    # The model is a folder that does not exist: any error that came after loading it would name it instead.
    missing_model = {**SWEEP, "model": str(tmp_path / "no-such-model")}
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    text_file = tmp_path / "notes.jsonl"
    write_jsonl(text_file, [{"text": f"note number {i} about nothing in particular"} for i in range(30)])
    for name, sweep in (("s", missing_model), ("plain", {**missing_model, "data": str(text_file), "data_options": {}}),
                        ("bleu", {**missing_model, "eval": {"metrics": ["exact_match", "sacrebleu"]}})):
        study = optuna.create_study(study_name=name, storage=url)
        study.set_user_attr("sweep", sweep)
        study.enqueue_trial({"quantization": "none", "lora_r": 4, "lora_alpha": 8.0, "learning_rate": 1e-3,
                             "lora_dropout": 0.0, "target_modules": "all-linear"})
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": \n')
    base = ["advise", "--storage", url, "--reports-dir", str(tmp_path / "r"), "--adapter", str(adapter),
            "--wandb", "disabled"]
    assert_one_line_error(run_cli(*base, "--study", "nope"), "study 'nope' not found")
    assert_one_line_error(run_cli(*base, "--study", "s", "--k", "0"), "--k must be >= 1")
    assert_one_line_error(run_cli(*base, "--study", "s", "--corpus", str(empty)), "holds no text")
    assert_one_line_error(run_cli(*base, "--study", "s", "--corpus", str(broken)), "broken.jsonl, line 2")
    assert_one_line_error(run_cli(*base, "--study", "s", "--corpus", str(tmp_path / "none.jsonl")), "does not exist")
    assert_one_line_error(run_cli(*base, "--study", "plain"), "has no generated answers")
    assert_one_line_error(run_cli(*base, "--study", "s", "--metric", "bleu"), "--metric 'bleu' is not one of")
    assert_one_line_error(run_cli(*base, "--study", "bleu"), "metric 'sacrebleu' has no per-question score")
    assert_one_line_error(run_cli(*base[:-4], "--wandb", "disabled", "--study", "s"), "no kept adapter")


@pytest.mark.integration
def test_advise_end_to_end_on_tiny_llama_writes_every_key_and_resumes(tmp_path: Path) -> None:
    out, reports = tmp_path / "sweep", tmp_path / "reports"
    exp = tmp_path / "k.yaml"
    exp.write_text("model: tiny-llama\ndata: fictional-company\nspace: tiny\ntrials: 1\nmax_steps: 2\nwandb: disabled\n"
                   "objectives: [exact_match]\ndata_options: {eval_size: 8, train_size: 32}\neval: {generate_size: 8}\n")
    swept = run_cli("sweep", "-e", str(exp), "--study", "k", "--out", str(out))
    assert swept.returncode == 0, swept.stderr[-3000:]
    from harness.data import company

    rows, _ = company.fact_sheet(0)
    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(corpus, [{"id": pid, "title": title, "text": text} for pid, title, text in rows[:40]])
    args = ["advise", "--study", "k", "--out", str(out), "--reports-dir", str(reports), "--corpus", str(corpus),
            "--k", "2", "--questions", "4", "--wandb", "offline"]
    done = run_cli(*args, env={"WANDB_MODE": "offline"})
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((reports / "rag_vs_finetune.json").read_text())
    assert list(doc["arms"]) == ["base", "rag", "rag:empty", "rag:wrong", "finetuned", "finetuned+rag",
                                 "finetuned+rag:empty", "finetuned+rag:wrong"]
    assert doc["metrics"] == ["exact_match", "token_f1", "contains_answer"] and doc["primary"] == "exact_match"
    for arm in doc["arms"].values():
        for metric in doc["metrics"]:
            s = arm["metrics"][metric]
            assert 0.0 <= s["ci95"][0] <= s["mean"] <= s["ci95"][1] <= 1.0
        assert arm["latency_median_s"] > 0 and arm["prompt_tokens_mean"] > 0 and arm["peak_memory_mb"] > 0
    assert doc["arms"]["base"]["added_tokens_mean"] == 0 and doc["arms"]["rag"]["added_tokens_mean"] > 0
    retr = doc["retriever"]
    assert (retr["name"], retr["k"], retr["passages"]) == ("bm25", 2, 40)
    assert set(retr["recall_at_k"]) == {"1", "2", "3", "5", "10"} and retr["index_bytes"] > 0
    assert retr["index_seconds"] >= 0 and "reference answer" in retr["recall_definition"]
    assert doc["questions"] == 4 and doc["verdict"] and doc["differences"] and doc["command"].startswith("harness advise")
    assert doc["context"]["adapter"]["trial"] == 0 and doc["context"]["model"].startswith("tiny-llama")
    assert (reports / "rag_vs_finetune.png").stat().st_size > 10_000
    assert (reports / "rag_vs_finetune.md").read_text().startswith("# Retrieval, fine-tuning or both? Study `k`")
    tables = list((out / "wandb").rglob("*rag_vs_finetune*.table.json"))
    assert tables, "the W&B summary run has no rag_vs_finetune table"
    assert len(json.loads(tables[0].read_text())["data"]) == 8
    again = run_cli(*args[:-2], "--wandb", "disabled")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("reused from") == 8  # every arm was kept: nothing is scored twice
