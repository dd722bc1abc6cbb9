"""Bad data ends in one DataError line that names the file, record or column and the fix (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.data import DataError, load_examples
from harness.config.dataset import DataSpec


def jsonl(records: list) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def labeled(labels: list) -> str:
    return jsonl([{"text": f"t{i}", "label": label} for i, label in enumerate(labels)])


SPLIT = [{"prompt": "q", "completion": "a", "split": "validation"}]
# (file name, content, DataSpec options, fragments the message must contain)
CASES = [
    ("bad.csv", "prompt,completion\nq,a\nq2,a2,extra\n", {}, ["bad.csv:3", "header's 2 cells", "quote cells"]),
    ("bad.csv", "prompt,completion\n", {}, ["bad.csv", "no records"]),
    ("bad.jsonl", jsonl([{"prompt": "q", "completion": " "}] * 3), {}, ["bad.jsonl", "0 usable example(s) in 3"]),
    ("bad.jsonl", jsonl(SPLIT * 2), {}, ["bad.jsonl", "2 validation", "no train records"]),
    ("bad.jsonl", jsonl([{"prompt": "q", "completion": "a", "split": "holdout"}]), {},
     ["bad.jsonl:1", "`split` is 'holdout'", "train, validation (or eval) or test"]),
    ("bad.jsonl", jsonl([{"prompt": "q", "completion": "a", "split": "train"}, {"prompt": "q", "completion": "a"}]),
     {}, ["bad.jsonl:2", "`split` is None"]),
    ("bad.jsonl", jsonl([{"prompt": "q", "completion": "a", "split": "train"},
                         {"prompt": "q", "completion": " ", "split": "test"}]), {},
     ["bad.jsonl", "no usable held-out example in 1 held-out record"]),
    ("bad.jsonl", jsonl([{"instruction": 3, "output": "o"}]), {}, ["bad.jsonl:1", "`instruction` must be a string"]),
    ("bad.jsonl", jsonl([{"instruction": "i", "input": ["x"], "output": "o"}]), {}, ["bad.jsonl:1", "`input`"]),
    ("bad.jsonl", jsonl([{"text": 5}]), {}, ["bad.jsonl:1", "`text` must be a string"]),
    ("bad.jsonl", jsonl([{"prompt": "q", "completion": "a", "messages": []}]), {},
     ["bad.jsonl", "fit several formats", "messages (messages); prompt_completion (prompt + completion)"]),
    # classification labels the template cannot map
    ("bad.jsonl", labeled(["a", "b", ""]), {}, ["bad.jsonl:3", "`label` is ''", "non-empty label"]),
    ("bad.jsonl", labeled(["a", None]), {}, ["bad.jsonl:2", "`label` is None"]),
    ("bad.jsonl", labeled(["a", "b"] * 3), {"template": "Classify: {labels}"},
     ["bad.jsonl", "no {text} placeholder", "add {text}"]),
    ("bad.jsonl", labeled(["a", "b"] * 3), {"template": "{text} -> {label}"},
     ["bad.jsonl", "unknown placeholder(s) {label}", "use {text} and {labels}"]),
    ("bad.jsonl", labeled(["a", "b"] * 3), {"template": "{text} {"}, ["bad.jsonl", "not a valid format string"]),
    ("bad.jsonl", labeled(["a"] * 5), {}, ["bad.jsonl", "the labels ['a']", "at least two distinct labels"]),
    ("bad.jsonl", labeled(["Yes", "yes", "no"] * 2), {}, ["bad.jsonl", "'Yes' and 'yes' differ only in case"]),
    ("bad.jsonl", jsonl([{"text": "t1", "label": "a", "split": "train"}, {"text": "t2", "label": "b", "split": "train"},
                         {"text": "t3", "label": "c", "split": "validation"}]), {},
     ["bad.jsonl:3", "label 'c' never occurs in the train split (labels: a, b)"]),
    ("bad.jsonl", jsonl([{"prompt": "q", "completion": "a"}] * 2), {"template": "{text}"},
     ["bad.jsonl", "template applies to classification data", "prompt_completion format"]),
    ("bad.jsonl", jsonl([{"text": "some text"}] * 2), {"system_prompt": "Be brief."},
     ["bad.jsonl", "system_prompt does not apply to plain text data"]),
]


@pytest.mark.parametrize("name, content, options, fragments", CASES)
def test_bad_data_is_one_line_naming_the_place_and_fix(tmp_path, monkeypatch, name, content, options, fragments):
    monkeypatch.chdir(tmp_path)
    Path(name).write_text(content)
    with pytest.raises(DataError) as info:
        load_examples(DataSpec(name=name, **options))
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_missing_paths_are_file_errors_not_hub_lookups(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ["data/train.jsonl", "./train", "/no/such/dir/data", "~/nothing.csv", "a/b/c"]:
        with pytest.raises(DataError, match=f"data file '{name}' not found"):
            load_examples(DataSpec(name=name))
