"""Fast tests of record formats, column mapping, classification templates and the DataSpec data fields."""

from __future__ import annotations

import dataclasses
import json

import pytest

from helpers import write_jsonl
from harness.data import DEFAULT_TEMPLATE, DataError, load_examples
from harness.config.dataset import DataSpec
from harness.config.errors import SpecError
from harness.config.trial import TrialConfig

ALL = 10**6


def everything(splits) -> list:
    return splits.train + splits.eval


def load(path: str, **options):
    return load_examples(DataSpec(name=path, eval_size=ALL, **options))


# ---- each format ---------------------------------------------------------------------------------


def test_instruction_format_joins_instruction_and_input(tmp_path):
    records = [{"instruction": f"Add {i} and {i}.", "input": "" if i % 2 else f"Show work {i}.", "output": f"{2 * i}"}
               for i in range(10)]
    splits = load(write_jsonl(tmp_path / "alpaca.jsonl", records))
    assert splits.format == "instruction" and len(everything(splits)) == 10
    by_answer = {e.completion: e.prompt for e in everything(splits)}
    assert by_answer["2"] == [{"role": "user", "content": "Add 1 and 1."}]
    assert by_answer["4"] == [{"role": "user", "content": "Add 2 and 2.\n\nShow work 2."}]
    assert splits.metrics == ("exact_match", "token_f1", "rouge_l") and splits.max_new_tokens == 10


def test_instruction_without_input_column(tmp_path):
    records = [{"instruction": f"Say {i}.", "output": f"{i}"} for i in range(4)]
    splits = load(write_jsonl(tmp_path / "a.jsonl", records))
    assert {e.prompt[0]["content"] for e in everything(splits)} == {f"Say {i}." for i in range(4)}


def test_plain_text_is_an_empty_prompt_with_nothing_to_generate(tmp_path):
    records = [{"text": f"Paragraph number {i} of a long story."} for i in range(20)] + [{"text": "  "}]
    splits = load(write_jsonl(tmp_path / "lm.jsonl", records))
    assert splits.format == "text" and len(everything(splits)) == 20  # the blank text is skipped
    assert all(e.prompt == [] and e.completion.startswith("Paragraph") for e in everything(splits))
    assert (splits.metrics, splits.max_new_tokens) == ((), 0)


def test_classification_default_template_and_labels_from_train(tmp_path):
    records = [{"text": f"Review {i}: {'great' if i % 2 else 'awful'}", "label": "pos" if i % 2 else "neg"}
               for i in range(30)]
    splits = load(write_jsonl(tmp_path / "cls.jsonl", records))
    assert splits.format == "classification" and splits.labels == ("neg", "pos")
    example = next(e for e in everything(splits) if e.prompt[0]["content"].endswith("Review 3: great"
                                                                                    "\nAnswer with one of: neg, pos."))
    assert example.prompt[0]["content"] == DEFAULT_TEMPLATE.format(text="Review 3: great", labels="neg, pos")
    assert example.completion == "pos"
    assert splits.metrics == ("accuracy",) and splits.max_new_tokens >= 4


def test_classification_custom_template_and_integer_labels(tmp_path):
    records = [{"text": f"t{i}", "label": i % 3} for i in range(12)]
    splits = load(write_jsonl(tmp_path / "cls.jsonl", records), template="Label {text} as {labels}:")
    assert splits.labels == ("0", "1", "2")
    assert {e.prompt[0]["content"] for e in everything(splits)} == {f"Label t{i} as 0, 1, 2:" for i in range(12)}


def test_csv_and_parquet_classification(tmp_path):
    lines = ["text,label"] + [f'"item {i}, ok",{"a" if i % 2 else "b"}' for i in range(8)]
    (tmp_path / "c.csv").write_text("\n".join(lines) + "\n")
    from_csv = load(str(tmp_path / "c.csv"))
    assert from_csv.labels == ("a", "b") and len(everything(from_csv)) == 8
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist([{"text": f"item {i}, ok", "label": "a" if i % 2 else "b"} for i in range(8)]),
                   tmp_path / "c.parquet")
    from_parquet = load(str(tmp_path / "c.parquet"))
    assert from_parquet.labels == ("a", "b")
    assert sorted(e.completion for e in everything(from_parquet)) == sorted(e.completion for e in everything(from_csv))


def test_system_prompt_is_prepended_unless_the_chat_has_one(tmp_path):
    records = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(3)]
    records.append({"messages": [{"role": "system", "content": "Own."}, {"role": "user", "content": "q"},
                                 {"role": "assistant", "content": "a"}]})
    path = write_jsonl(tmp_path / "pc.jsonl", records[:3])
    splits = load(path, system_prompt="Be terse.")
    assert all(e.prompt[0] == {"role": "system", "content": "Be terse."} and len(e.prompt) == 2
               for e in everything(splits))
    chat = load(write_jsonl(tmp_path / "chat.jsonl", [records[3]] * 2), system_prompt="Be terse.")
    assert all(e.prompt[0]["content"] == "Own." for e in everything(chat))


# ---- column mapping and format override ----------------------------------------------------------


def test_column_map_reads_other_column_names(tmp_path):
    records = [{"question": f"q{i}", "answer": f"a{i}", "prompt": "ignored"} for i in range(6)]
    path = write_jsonl(tmp_path / "qa.jsonl", records)
    splits = load(path, column_map=(("prompt", "question"), ("completion", "answer")))
    assert splits.format == "prompt_completion"
    assert {e.prompt[0]["content"] for e in everything(splits)} == {f"q{i}" for i in range(6)}


def test_column_map_naming_a_missing_column(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}] * 2)
    with pytest.raises(DataError, match=r"qa.jsonl:1: column_map maps completion -> 'reply' but the columns are "
                                        r"\['question', 'answer'\]"):
        load(path, column_map={"prompt": "question", "completion": "reply"})


def test_ambiguous_columns_need_a_format(tmp_path):
    records = [{"instruction": f"i{i}", "output": f"o{i}", "text": f"full text {i}"} for i in range(4)]
    path = write_jsonl(tmp_path / "alpaca.jsonl", records)
    with pytest.raises(DataError) as info:
        load(path)
    message = str(info.value)
    assert "alpaca.jsonl: columns ['instruction', 'output', 'text'] fit several formats" in message
    assert "instruction (instruction + output); text (text)" in message and "set format to one of" in message
    assert load(path, format="instruction").format == "instruction"
    assert all(e.prompt == [] for e in everything(load(path, format="text")))


def test_explicit_format_reports_the_record_missing_its_columns(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    with pytest.raises(DataError, match=r"x.jsonl:2: record has keys \['text'\] but the data is in classification "
                                        r"format, which needs `text` \+ `label`"):
        load(path)


# ---- DataSpec fields -----------------------------------------------------------------------------


def test_dataspec_data_fields_validate_and_normalise():
    spec = DataSpec(column_map={"prompt": "q", "completion": "a"})
    assert spec.column_map == (("completion", "a"), ("prompt", "q"))
    assert DataSpec(column_map=[["prompt", "q"]]).column_map == (("prompt", "q"),)
    hash(spec)  # still hashable
    for bad, match in [({"format": "tsv"}, "format 'tsv' is not one of auto, messages"),
                       ({"column_map": {"question": "q"}}, "column_map key 'question' is not one of"),
                       ({"column_map": {"prompt": ""}}, "column_map\\['prompt'\\] must be a column name"),
                       ({"column_map": {"prompt": "x", "completion": "x"}}, "maps two of our columns to one"),
                       ({"column_map": "prompt=q"}, "column_map must map"),
                       ({"system_prompt": " "}, "system_prompt must be a non-empty string"),
                       ({"template": 3}, "template must be a non-empty string")]:
        with pytest.raises(SpecError, match=match):
            DataSpec(**bad)


def test_dataspec_round_trips_through_json():
    config = TrialConfig(data=DataSpec(format="classification", column_map={"text": "body"}, system_prompt="S",
                                       template="{text}?"))
    again = TrialConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and dataclasses.asdict(again.data)["column_map"] == (("text", "body"),)
