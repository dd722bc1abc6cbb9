"""`harness advise`: should this user fine-tune, retrieve, or both? Measured on the study's own held-out
questions with its task metrics (issue 12).

Four arms: the untuned model (base), the untuned model with the top-k retrieved passages in the prompt (rag),
the study's best adapter (finetuned), and both (finetuned+rag); and for each retrieval arm two failures:
retrieval returns nothing (the RAG prompt with an empty context) and retrieval returns wrong passages (the
top k of another question's fact). Every question is answered alone (batch of one, greedy), so its latency
is what one user would wait: retrieval plus generation.

`plan_advice` reads and checks everything (study, task, corpus, k, adapter) before any model loads; every
bad input is a SpecError naming what to fix. `run_advice` scores the arms (each finished arm is kept on disk,
so an interrupted run resumes where it stopped), then writes rag_vs_finetune.md/.json and the plot, and logs
the table to the study's W&B summary run. The statistics are harness.advise.advice's.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.advise.advice import (ARMS, ArmResult, advice_doc, advice_markdown, by_retrieval_hit, hit_sentences,
                                   summary_rows)
from harness.advise.corpus import OVERLAP_WORDS, PASSAGE_WORDS, Passage, load_corpus
from harness.advise.rag_prompt import INSTRUCTION
from harness.search.readout import StudyView
from harness.config.errors import SpecError
from harness.config.hashing import stable_hash
from harness.config.trial import TrialConfig

LENIENT_METRIC = "contains_answer"
"""Scored in every advise run besides the study's task metrics (harness/metrics/modules/contains_answer.py)."""
RECALL_KS = (1, 3, 5, 10)
"""Cut-offs recall is reported at (besides the run's own k)."""
MAX_CONTEXT_TOKENS = 512
"""Default cap on the tokens retrieval may add to a prompt (the model's context length caps it further)."""
ARM_ORDER = ("base", "rag", "rag:empty", "rag:wrong", "finetuned", "finetuned+rag", "finetuned+rag:empty",
             "finetuned+rag:wrong")
"""The order arms run in: every arm of one model together, so each model loads once."""


@dataclass
class AdvicePlan:
    """Everything `harness advise` needs, read and checked before any model loads."""

    view: StudyView
    config: TrialConfig
    questions: list[Any]
    """Held-out Examples (chat prompt ending in a user turn, reference answer), in the study's split order."""
    metrics: tuple[str, ...]
    primary: str
    max_new_tokens: int
    data_source: str
    passages: list[Passage]
    corpus: str
    """What the corpus is, in words (a path, or which default)."""
    gold: list[set[str]] | None
    """Per question, the ids of the passages that hold its fact; None when the corpus has no such labels (recall
    is then measured by the reference answer appearing in a passage)."""
    k: int
    retriever: str
    adapter: Path
    adapter_trial: int | None
    adapter_params: dict[str, Any] = field(default_factory=dict)

    @property
    def quantization(self) -> str:
        return str(self.adapter_params.get("quantization", self.config.quant.mode))

    def key(self, budget: int) -> str:
        """What the arms' results depend on: a resumed run reuses finished arms only when this is the same."""
        stamp = max((p.stat().st_mtime_ns for p in self.adapter.rglob("*") if p.is_file()), default=0)
        return stable_hash([self.view.name, str(self.adapter.resolve()), stamp, self.quantization,
                            [[q.prompt, q.completion] for q in self.questions], list(self.metrics),
                            self.max_new_tokens, [[p.id, p.title, p.text] for p in self.passages], self.k,
                            self.retriever, budget, INSTRUCTION])[:16]


def default_corpus(data_name: str, train: Sequence[Any], questions: Sequence[Any]) -> tuple[list[Passage], str,
                                                                                           list[set[str]] | None]:
    """The corpus when `--corpus` is not given: the built-in fictional-company task's fact sheet (one prose
    sentence per fact plus three distractor companies, with each question's gold passage), else the study's
    training examples as passages (question and answer together; no gold labels)."""
    from harness.data import company

    if data_name == company.NAME:
        rows, gold = company.fact_sheet(0)
        passages = [Passage(pid, text, title) for pid, title, text in rows]
        labels = [{gold[q.prompt[-1]["content"]]} if q.prompt[-1]["content"] in gold else set() for q in questions]
        return passages, "the fictional-company fact sheet: its facts as prose, plus 3 distractor companies", labels
    passages = [Passage(f"train-{i}", f"{_question(e)} {e.completion}".strip()) for i, e in enumerate(train)]
    return passages, f"the study's {len(passages)} training examples as passages (question and answer)", None


def _question(example: Any) -> str:
    return example.prompt[-1]["content"] if example.prompt else ""


def plan_advice(view: StudyView, *, corpus: str | None = None, k: int = 3, retriever: str = "bm25",
                adapter: str | None = None, questions: int | None = None, out: str | None = None,
                passage_words: int = PASSAGE_WORDS, overlap_words: int = OVERLAP_WORDS,
                metric: str | None = None) -> AdvicePlan:
    """Check the inputs and gather what the arms need; raises SpecError (one line) for any bad input. Loads
    the study's data (built at run time, or read from its file) but no tokenizer and no model."""
    from harness.data import load_examples
    from harness.config.experiment import build_sweep_spec
    from harness.metrics import BUILTIN_METRICS
    from harness.advise.retrieval import RETRIEVERS
    from harness.search.sweep import trial_config
    from harness.trial.run import task_metric_names

    if k < 1:
        raise SpecError(f"--k must be >= 1 (passages retrieved per question), got {k}")
    if retriever not in RETRIEVERS:
        raise SpecError(f"--retriever {retriever!r} is not one of {', '.join(RETRIEVERS)}")
    if questions is not None and questions < 1:
        raise SpecError(f"--questions must be >= 1, got {questions}")
    if not view.sweep:
        raise SpecError(f"study {view.name!r} was not created by `harness sweep`; advise needs its data and model")
    adapter_dir, trial, params = _adapter(view, adapter, out)
    spec = build_sweep_spec(view.sweep, {}, f"study {view.name}")
    config = trial_config(spec, params or _some_params(view))
    splits = load_examples(config.data)
    names = tuple(task_metric_names(config, splits))
    if not names:
        raise SpecError(f"study {view.name!r}: its data ({splits.source}) has no generated answers to score (plain "
                        "text, or no task metrics), so there is nothing to compare retrieval and fine-tuning on; "
                        "use a study on question/answer data")
    held_out = [e for e in splits.eval if e.prompt and e.prompt[-1].get("role") == "user"]
    if not held_out:
        raise SpecError(f"study {view.name!r}: no held-out example of {splits.source} is a question (a chat prompt "
                        "ending in a user turn)")
    held_out = held_out[:questions] if questions else held_out
    if corpus is None:
        passages, label, gold = default_corpus(config.data.name, splits.train, held_out)
    else:
        passages, label, gold = load_corpus(corpus, passage_words, overlap_words), str(corpus), None
    # contains_answer beside the study's metrics: an untuned instruct model that states the right fact in a
    # sentence scores 0 exact match; the lenient reading shows whether the fact was there.
    names = names if LENIENT_METRIC in names else (*names, LENIENT_METRIC)
    unscorable = [m for m in names if m not in BUILTIN_METRICS]
    if unscorable:  # checked here, before any model loads, not after an arm has been generated
        raise SpecError(f"metric {unscorable[0]!r} has no per-question score (only the built-ins do); advise needs "
                        "per-question scores for its intervals")
    if metric is not None and metric not in names:
        raise SpecError(f"--metric {metric!r} is not one of the metrics advise scores: {', '.join(names)}")
    primary = metric or (view.task_metric if view.task_metric in names else names[0])
    return AdvicePlan(view, config, held_out, names, primary,
                      config.eval.max_new_tokens or splits.max_new_tokens, splits.source, passages, label, gold, k,
                      retriever, adapter_dir, trial, params)


def _some_params(view: StudyView) -> dict[str, Any]:
    rows = view.completed() or list(view.rows)
    return dict(rows[0].params)


def _adapter(view: StudyView, adapter: str | None, out: str | None) -> tuple[Path, int | None, dict[str, Any]]:
    """The fine-tuned arm's adapter folder, the trial it came from (when it is one of the study's) and that
    trial's params (its quantization mode is the one every arm loads the model in)."""
    if adapter is not None:
        path = Path(adapter)
        if not (path / "adapter_config.json").is_file():
            raise SpecError(f"--adapter {path}: no adapter_config.json there (give a folder peft saved, e.g. "
                            "<out>/best_adapter or <out>/adapters/trial-N)")
    else:
        path = view.out_dir(out) / "best_adapter"
        if not (path / "adapter_config.json").is_file():
            raise SpecError(f"study {view.name!r} has no kept adapter at {path} (the sweep keeps the best trial's); "
                            "pass --adapter PATH, or --out with the sweep's folder")
    match = re.fullmatch(r"trial-(\d+)", path.resolve().name)
    if match:
        number = int(match.group(1))
        row = next((r for r in view.rows if r.number == number), None)
        if row is not None:
            return path, number, dict(row.params)
    return path, None, {}


def wrong_passages(results: Sequence[Sequence[Passage]], relevant: Callable[[int, Passage], bool],
                   k: int) -> list[list[Passage]]:
    """For question i, the top k of another question whose results hold nothing relevant to i (a different
    fact): question j = i + n/2 and onwards (deterministic), its passages that are relevant to i removed.
    Empty only when no other question's results avoid question i's fact."""
    n, out = len(results), []
    for i in range(n):
        chosen: list[Passage] = []
        for step in range(n - 1):
            j = (i + n // 2 + step) % n
            if j == i:
                continue
            chosen = [p for p in results[j] if not relevant(i, p)][:k]
            if chosen:
                break
        out.append(chosen)
    return out


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w$%.,]+", " ", text.lower()).split())


def relevance(plan: AdvicePlan) -> tuple[Callable[[int, Passage], bool], str]:
    """Whether passage p holds question i's fact, and how that is decided (for the report)."""
    if plan.gold is not None:
        gold = plan.gold
        return (lambda i, p: p.id in gold[i]), "the passage labelled with the question's fact is in the top k"
    answers = [_normal(q.completion) for q in plan.questions]
    return ((lambda i, p: bool(answers[i]) and answers[i] in _normal(p.as_prompt())),
            "the reference answer appears in a passage of the top k (no gold labels in the corpus)")


@dataclass(frozen=True)
class Retrieved:
    """Retrieval for every question: top k, wrong passages, recall, index cost."""

    top: list[list[Passage]]
    wrong: list[list[Passage]]
    search_seconds: list[float]
    recall: dict[str, float]
    definition: str
    stats: Any
    hits: list[bool] = field(default_factory=list)
    """Per question: a passage holding its fact is in its top k."""


def retrieve_all(plan: AdvicePlan) -> Retrieved:
    from harness.advise.retrieval import make_retriever

    index = make_retriever(plan.retriever, plan.passages)
    deepest = max(plan.k, *RECALL_KS)
    ranked, seconds = [], []
    for q in plan.questions:
        started = time.perf_counter()
        ranked.append(index.search(_question(q), deepest))
        seconds.append(time.perf_counter() - started)
    relevant, definition = relevance(plan)
    recall = {str(c): sum(any(relevant(i, p) for p in r[:c]) for i, r in enumerate(ranked)) / len(ranked)
              for c in sorted({*RECALL_KS, plan.k})}
    top = [r[:plan.k] for r in ranked]
    hits = [any(relevant(i, p) for p in passages) for i, passages in enumerate(top)]
    return Retrieved(top, wrong_passages(top, relevant, plan.k), seconds, recall, definition, index.stats, hits)


def context_budget(plan: AdvicePlan, tokenizer: Any, max_positions: int | None, cap: int) -> int:
    """Tokens retrieval may add to a prompt: `cap`, and what the model's context leaves after the longest
    question and its answer."""
    from harness.data.encode import prompt_ids

    longest = max(len(ids) for ids in prompt_ids(tokenizer, plan.questions))
    room = cap if not max_positions else min(cap, max_positions - longest - plan.max_new_tokens)
    if room < 1:
        raise SpecError(f"no room for passages: the model's context ({max_positions} tokens) is filled by the longest "
                        f"question ({longest}) and its answer ({plan.max_new_tokens})")
    return room


def arm_prompts(plan: AdvicePlan, retrieved: Retrieved, tokenizer: Any, budget: int,
                retrieval: str) -> tuple[list[list[int]], list[int], int]:
    """(prompt ids, tokens retrieval added, prompts with a cut passage) of every question for one kind of
    retrieval: off, top-k, empty or wrong."""
    from harness.data.encode import prompt_ids
    from harness.data.examples import Example
    from harness.advise.rag_prompt import with_passages, without_passages

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    if retrieval == "off":
        return prompt_ids(tokenizer, plan.questions), [0] * len(plan.questions), 0
    built = []
    for i, q in enumerate(plan.questions):
        if retrieval == "empty":
            built.append(without_passages(q.prompt, count))
        else:
            found = retrieved.top[i] if retrieval == "top-k" else retrieved.wrong[i]
            built.append(with_passages(q.prompt, found, budget, count) if found else without_passages(q.prompt, count))
    ids = prompt_ids(tokenizer, [Example(b.messages, q.completion) for b, q in zip(built, plan.questions)])
    return ids, [b.added_tokens for b in built], sum(b.truncated for b in built)


def score_arm(name: str, model: Any, tokenizer: Any, plan: AdvicePlan, prompts: list[list[int]], added: list[int],
              search_seconds: list[float], truncated: int, device: str, meter: Any) -> ArmResult:
    """Answer every question alone (greedy), time it, and score the answers with the task metrics."""
    from harness.trial.generation import generate
    from harness.metrics import example_scores

    meter.reset()
    predictions, latencies = [], []
    for i, prompt in enumerate(prompts):
        started = time.perf_counter()
        answer = generate(model, tokenizer, [prompt], max_new_tokens=plan.max_new_tokens, batch_size=1,
                          device=device)[0]
        # An arm with retrieval waits for the search too (also when it found nothing or the wrong passages).
        latencies.append(time.perf_counter() - started + (search_seconds[i] if ARMS[name][1] != "off" else 0.0))
        predictions.append(answer)
    references = [q.completion for q in plan.questions]
    scores = example_scores(plan.metrics, predictions, references)  # every metric is a built-in (plan_advice)
    samples = [{"question": _question(q), "prediction": p, "reference": q.completion}
               for q, p in list(zip(plan.questions, predictions))[:3]]
    return ArmResult(name, scores, latencies, [len(p) for p in prompts], added, meter.peak_mb(), truncated, samples)


def run_advice(plan: AdvicePlan, *, reports_dir: Path, out: str | None = None, max_context_tokens: int =
               MAX_CONTEXT_TOKENS, wandb: str | None = "auto", command: str = "harness advise",
               say: Callable[[str], None] = print) -> tuple[dict[str, Any], list[Path]]:
    """Score every arm (reusing arms a previous run of the same plan finished), then write the report."""
    from harness.runtime.devices import device_name, pick_device
    from harness.trial.models import load_base_model, load_tokenizer
    from harness.trial.run import MemoryMeter, TrialCache, release_memory

    device = pick_device()
    checkpoint = TrialCache().checkpoint(plan.config.model.name)
    tokenizer = load_tokenizer(checkpoint)
    budget = context_budget(plan, tokenizer, _max_positions(checkpoint), max_context_tokens)
    started = time.perf_counter()
    retrieved = retrieve_all(plan)
    say(f"retrieval: {plan.retriever} over {len(plan.passages)} passages, index built in "
        f"{retrieved.stats.seconds:.2f} s; recall " + ", ".join(f"@{c} {v:.3f}" for c, v in retrieved.recall.items()))
    cache = plan.view.out_dir(out) / "advise" / plan.key(budget)
    cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, ArmResult] = {}
    meter = MemoryMeter(device)
    for model_kind in ("base", "finetuned"):
        arms = [a for a in ARM_ORDER if ARMS[a][0] == model_kind]
        todo = [a for a in arms if not (cache / f"{_file(a)}.json").exists()]
        for a in arms:
            if a not in todo:
                results[a] = ArmResult(**json.loads((cache / f"{_file(a)}.json").read_text()))
                say(f"arm {a}: reused from {cache}")
        if not todo:
            continue
        model = load_base_model(checkpoint, plan.quantization, device, plan.config.data.max_seq_len)
        if model_kind == "finetuned":
            from peft import PeftModel

            from harness.runtime.quiet import quiet

            with quiet():  # peft's loader trips transformers' known is_gradient_checkpointing deprecation
                model = PeftModel.from_pretrained(model, str(plan.adapter))
        try:
            for a in todo:
                say(f"arm {a}: {len(plan.questions)} questions, one at a time...")
                prompts, added, cut = arm_prompts(plan, retrieved, tokenizer, budget, ARMS[a][1])
                result = score_arm(a, model, tokenizer, plan, prompts, added, retrieved.search_seconds, cut, device,
                                   meter)
                (cache / f"{_file(a)}.json").write_text(json.dumps(result.__dict__))
                results[a] = result
                say(f"arm {a}: " + ", ".join(f"{m} {statistics.fmean(result.scores[m]):.3f}" for m in plan.metrics)
                    + f", median {statistics.median(result.latencies):.3f} s/question")
        finally:
            del model
            release_memory(device)
    doc = advice_doc({a: results[a] for a in ARM_ORDER}, plan.metrics, plan.primary)
    doc["by_retrieval_hit"] = by_retrieval_hit(doc, results, retrieved.hits)
    doc["verdict"] += hit_sentences(doc)
    doc["retriever"] = {"name": plan.retriever, "k": plan.k, "corpus": plan.corpus, "passages": len(plan.passages),
                        "index_seconds": retrieved.stats.seconds, "index_bytes": retrieved.stats.size_bytes,
                        "recall_at_k": retrieved.recall, "recall_definition": retrieved.definition,
                        "search_median_s": statistics.median(retrieved.search_seconds),
                        "context_budget_tokens": budget, "truncated_prompts": results["rag"].truncated}
    doc["context"] = _context(plan, device, device_name(device), time.perf_counter() - started)
    files = write_advice(doc, reports_dir, command)
    _log_wandb(plan, doc, files, wandb, out)
    return doc, files


def _file(arm: str) -> str:
    return arm.replace("+", "_plus_").replace(":", "_")


def _max_positions(checkpoint: str) -> int | None:
    from transformers import AutoConfig

    value = getattr(AutoConfig.from_pretrained(checkpoint), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) else None


def _context(plan: AdvicePlan, device: str, name: str, seconds: float) -> dict[str, Any]:
    """What the numbers were measured on (every number says what it is)."""
    params = plan.adapter_params
    text = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(params.items()))
    return {"study": plan.view.name, "model": plan.view.source.get("label"),
            "source_precision": plan.view.source.get("precision"), "device": name, "device_kind": device,
            "data_source": plan.data_source, "max_new_tokens": plan.max_new_tokens,
            "max_steps": plan.view.sweep.get("max_steps"), "seconds": seconds, "rag_instruction": INSTRUCTION,
            "adapter": {"path": str(plan.adapter), "trial": plan.adapter_trial, "params": params,
                        "params_text": text, "quantization": plan.quantization},
            "memory_note": ("CUDA max allocated during the arm" if device == "cuda" else
                            "the process's peak resident set during the arm (model, tokenizer, index and Python "
                            "included; CPU)")}


def write_advice(doc: dict[str, Any], reports_dir: Path, command: str) -> list[Path]:
    """rag_vs_finetune.json, .md and .png in the study's reports folder."""
    from harness.publish.plots import plot_advice
    from harness.publish.documents import write_doc_files

    return write_doc_files(reports_dir, "rag_vs_finetune", doc, command, plot_advice, advice_markdown)


def _log_wandb(plan: AdvicePlan, doc: dict[str, Any], files: list[Path], mode: str | None, out: str | None) -> None:
    """The arms table and the plot on the study's W&B summary run (group = study, job_type summary)."""
    from harness.search import tracking

    resolved = tracking.resolve_mode(mode)
    if resolved == "disabled":
        return
    run = tracking.start_study_run(study=plan.view.name, config={"study": plan.view.name, "advise": doc["retriever"],
                                                                 "adapter": doc["context"]["adapter"]},
                                   mode=resolved, study_dir=plan.view.out_dir(out))
    run.log_table("rag_vs_finetune", summary_rows(doc))
    run.log_images({p.stem: p for p in files if p.suffix == ".png"})
    run.finish({f"advise/{a}/{doc['primary']}": arm["metrics"][doc["primary"]]["mean"]
                for a, arm in doc["arms"].items()} | {"advise/verdict": " ".join(doc["verdict"])}, failed=False)
