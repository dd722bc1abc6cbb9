"""Exports that train: each tool's own data preparation (Axolotl's and LLaMA-Factory's, from .tools/ on the
harness's packages, in a subprocess as the parser tests run them; TRL's in this process) over the config the
harness exports, on a few rows of each data format, builds the token ids and label mask the harness's own
encoding (harness.data.encode) builds for the same rows; where it cannot, the export says NOT EXPRESSED and the
test checks the line, or the test names the documented difference. Unsloth's export is Python lines: the test
runs its data lines and TRL's SFTTrainer, which Unsloth's wraps (Unsloth itself needs a GPU stack). A study's
column renames (column_map) and system prompt travel too, or are NOT EXPRESSED."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.config.dataset import DataSpec
from harness.data.encode import tokenize_splits
from harness.data.examples import IGNORE_INDEX, Splits
from harness.data.load import _with_system
from harness.data.records import parse_record
from harness.publish.exports import write_exports
from tool_fixtures import recommended

from test_exports import HERE, tools_dir

pytestmark = pytest.mark.integration

ROWS: dict[str, list[dict[str, Any]]] = {
    "messages": [
        {"messages": [{"role": "user", "content": "What does len return?"},
                      {"role": "assistant", "content": "The number of items."}]},
        {"messages": [{"role": "system", "content": "Answer in one line."},
                      {"role": "user", "content": "What does abs do?"},
                      {"role": "assistant", "content": "It returns the absolute value."}]}],
    "prompt_completion": [{"prompt": "What does len return?", "completion": "The number of items."},
                          {"prompt": "What does abs do?", "completion": "It returns the absolute value."}],
    "instruction": [{"instruction": "Describe len.", "input": "", "output": "The number of items."},
                    {"instruction": "Describe this function.", "input": "abs(x)", "output": "Absolute value of x."}],
    "text": [{"text": "The len function returns the number of items."},
             {"text": "abs returns the absolute value of a number."}],
    "classification": [{"text": "Stocks fell sharply.", "label": "business"},
                       {"text": "The team won the cup.", "label": "sport"}],
}
RENAMED = {"prompt": "question", "completion": "answer", "messages": "chat", "text": "body"}
"""A user's column names, which the study read through column_map (our name -> theirs)."""
SYSTEM = "Be brief."
"""The study's system_prompt (data_options): first in every prompt without a system message of its own."""
CHATML_NEWLINE = "\n"
"""The documented difference: the newline ChatML writes after `<|im_end|>`, which Axolotl keeps unscored and
LLaMA-Factory and TRL score; the trials leave it out (the model stops at the marker)."""


def tokenizer_dir(model: str) -> str:
    """The tiny model's checkpoint folder (the SmolLM2 tokenizer; tiny-gemma3's without a chat template)."""
    from harness.trial.models import ModelError, checkpoint_path, resolve_model

    try:
        return checkpoint_path(resolve_model(model))
    except ModelError as err:
        pytest.skip(str(err))


def harness_rows(fmt: str, folder: str, rows: list[dict[str, Any]] | None = None,
                 system: str | None = None) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of the rows as a trial encodes them (`system`: with the study's system_prompt)."""
    from harness.trial.models import load_tokenizer

    examples = [parse_record(row, f"row {i}", fmt) for i, row in enumerate(rows or ROWS[fmt])]
    if system:
        examples = _with_system(examples, DataSpec(system_prompt=system))  # type: ignore[arg-type]
    splits = Splits(train=examples, eval=examples[:1], source="rows", split_hash="")  # type: ignore[arg-type]
    return tokenize_splits(splits, load_tokenizer(folder), DataSpec(max_seq_len=512)).train


def export(tmp_path: Path, fmt: str, model: str, formats: tuple[str, ...], *, renamed: bool = False,
           system: str | None = None) -> tuple[Path, list[str]]:
    """The rows as a JSONL file and the study's exports of it: (folder, printed lines). `renamed`: the file's
    columns are RENAMED's and the study mapped them; `system`: the study's system_prompt."""
    folder = tmp_path / f"{fmt}-{model}{'-renamed' if renamed else ''}{'-system' if system else ''}"
    folder.mkdir()
    data = folder / f"{fmt}.jsonl"
    mapping = {ours: theirs for ours, theirs in RENAMED.items() if renamed}
    rows = [{mapping.get(k, k): v for k, v in row.items()} for row in ROWS[fmt]]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    columns = {ours: theirs for ours, theirs in mapping.items() if ours in ROWS[fmt][0]}
    doc = recommended("none", evidence__data=str(data), evidence__model=model, evidence__data_format=None,
                      evidence__column_map=columns, evidence__system_prompt=system)
    lines, refused = write_exports(doc, folder, formats, "test")
    assert not refused, refused
    return folder, lines


def prepare(tool: str, pairs: list[tuple[Path, str]]) -> dict[str, Any]:
    """tests/publish/tool_data.py over (config, tokenizer folder) pairs with the tool's code on the path."""
    env = {**os.environ, "PYTHONPATH": str(tools_dir() / tool), "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(HERE / "tool_data.py"), tool, *(f"{c}::{t}" for c, t in pairs)],
                          capture_output=True, text=True, env=env, timeout=300)
    line = next((line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")), None)
    assert line is not None, proc.stderr[-3000:]
    return {Path(k).parent.name: v for k, v in json.loads(line[len("RESULTS "):]).items()}


def same(got: dict[str, Any], want: list[tuple[list[int], list[int]]], folder: str, what: str,
         trailing: str = "", scored: bool = False) -> None:
    """The tool's rows equal the harness's, shown as text (prompt, scored answer) where they differ. `trailing`:
    the documented difference of a chat template's newline after the last end-of-turn marker (CHATML_NEWLINE),
    which a tool keeps as a last token, unscored or (`scored`) scored, and the trials leave out."""
    from harness.trial.models import load_tokenizer

    assert "error" not in got, f"{what}: {got['error']}"
    tokenizer = load_tokenizer(folder)
    if trailing:
        tail = tokenizer(trailing, add_special_tokens=False)["input_ids"]
        for row in got["rows"]:
            labels = tail if scored else [IGNORE_INDEX] * len(tail)
            assert row["input_ids"][-len(tail):] == tail and row["labels"][-len(tail):] == labels, what
            row["input_ids"], row["labels"] = row["input_ids"][:-len(tail)], row["labels"][:-len(tail)]

    def shown(ids: list[int], labels: list[int]) -> tuple[str, str]:
        return (tokenizer.decode(ids), tokenizer.decode([t for t, l in zip(ids, labels) if l != IGNORE_INDEX]))

    have = [shown(r["input_ids"], r["labels"]) for r in got["rows"]]
    assert have == [shown(*pair) for pair in want], f"{what}: {have} != {[shown(*pair) for pair in want]}"
    assert [(r["input_ids"], r["labels"]) for r in got["rows"]] == [(list(i), list(l)) for i, l in want], what


def not_expressed(lines: list[str], tool: str, *starts: str) -> None:
    """Each of `starts` begins one of the tool's printed NOT EXPRESSED lines."""
    notes = [line.split("not expressed: ", 1)[1] for line in lines if line.startswith(f"{tool}: not expressed: ")]
    for start in starts:
        assert any(note.startswith(start) for note in notes), (start, notes)


def test_axolotl_prepares_every_format_as_the_trials_did(tmp_path: Path) -> None:
    chat, plain = tokenizer_dir("tiny-llama"), tokenizer_dir("tiny-gemma3")
    cases = [(fmt, chat, {}) for fmt in ("messages", "prompt_completion", "instruction", "text")]
    cases += [("prompt_completion", plain, {}), ("prompt_completion", chat, {"renamed": True, "system": SYSTEM}),
              ("text", chat, {"renamed": True})]
    folders = {}
    for fmt, tok, study in cases:
        folder, lines = export(tmp_path, fmt, "tiny-llama" if tok == chat else "tiny-gemma3", ("axolotl",), **study)
        assert not [line for line in lines if "not expressed" in line], lines
        folders[folder.name] = (fmt, tok, study.get("system"), folder / "recommended.axolotl.yaml")
    results = prepare("axolotl", [(path, tok) for _, tok, _, path in folders.values()])
    for name, (fmt, tok, system, _) in folders.items():
        # Axolotl's chat_template keeps the template's "\n" after the last <|im_end|>, unscored.
        same(results[name], harness_rows(fmt, tok, system=system), tok, f"axolotl {name}",
             CHATML_NEWLINE if fmt == "messages" else "")

    folder, lines = export(tmp_path, "classification", "tiny-llama", ("axolotl",))
    not_expressed(lines, "axolotl", "text + label data")
    assert "# NOT EXPRESSED: text + label data" in (folder / "recommended.axolotl.yaml").read_text()
    folder, lines = export(tmp_path, "messages", "tiny-llama", ("axolotl",), renamed=True, system=SYSTEM)
    not_expressed(lines, "axolotl", f"system_prompt {SYSTEM!r}")
    assert yaml.safe_load((folder / "recommended.axolotl.yaml").read_text())["datasets"][0]["field_messages"] == "chat"


def test_llamafactory_reads_the_file_through_the_dataset_info_entry_beside_it(tmp_path: Path) -> None:
    """LLaMA-Factory's own conversion and template (get_dataset, the template parsed from the tokenizer) over the
    dataset_info.json entry: the trials' rows, but for the documented differences (CHATML_NEWLINE scored; an
    Alpaca input joined with one newline, NOT EXPRESSED)."""
    chat = tokenizer_dir("tiny-llama")
    cases = [(fmt, {}) for fmt in ("messages", "prompt_completion", "instruction", "text")]
    cases += [(fmt, {"renamed": True, "system": SYSTEM}) for fmt in ("prompt_completion", "messages")]
    folders = {}
    for fmt, study in cases:
        folder, lines = export(tmp_path, fmt, "tiny-llama", ("llamafactory",), **study)
        config = yaml.safe_load((folder / "recommended.llamafactory.yaml").read_text())
        info = json.loads((folder / "dataset_info.json").read_text())[config["dataset"]]
        assert config["dataset_dir"] == str(folder.resolve()) and info["file_name"] == str(folder / f"{fmt}.jsonl")
        assert "template" not in config  # LLaMA-Factory parses the tokenizer's chat template, as the trials used
        assert config.get("default_system") == study.get("system")
        assert [line for line in lines if "not expressed" in line] == (
            ["llamafactory: not expressed: instruction + input: LLaMA-Factory joins them with one newline, the "
             "trials with a blank line"] if fmt == "instruction" else [])
        folders[folder.name] = (fmt, study.get("system"), folder / "recommended.llamafactory.yaml")
    results = prepare("llamafactory", [(path, chat) for _, _, path in folders.values()])
    for name, (fmt, system, _) in folders.items():
        if fmt == "instruction":  # as prompt/completion rows whose prompt joins instruction and input with "\n"
            rows = [{"prompt": "\n".join(filter(None, (r["instruction"], r["input"]))), "completion": r["output"]}
                    for r in ROWS[fmt]]
            want = harness_rows("prompt_completion", chat, rows)
        else:
            want = harness_rows(fmt, chat, system=system)
        same(results[name], want, chat, f"llamafactory {name}", "" if fmt == "text" else CHATML_NEWLINE, scored=True)


@pytest.fixture(scope="module")
def tiny_llama() -> Any:
    """The tiny model SFTTrainer is built around (its data preparation only reads the tokenizer), loaded once."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tokenizer_dir("tiny-llama"))


def sft_rows(model: Any, folder: str, args: Any, data: Any) -> dict[str, Any]:
    """TRL's SFTTrainer's tokenized rows (plain text rows carry no labels: its collator scores every token)."""
    from harness.trial.models import load_tokenizer
    from trl import SFTTrainer

    rows = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=load_tokenizer(folder)).train_dataset
    return {"rows": [{"input_ids": r["input_ids"], "labels": r.get("labels", r["input_ids"])} for r in rows]}


def test_trl_loads_the_file_and_scores_the_answer_the_trials_scored(tmp_path: Path, tiny_llama: Any) -> None:
    """`trl sft`'s own loading (get_dataset over the export's `datasets`) and SFTTrainer's tokenization: plain
    text as the trials (also from a renamed column); prompt/completion with the same scored answer, its prompt
    written as is (NOT EXPRESSED)."""
    from harness.trial.models import load_tokenizer
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, SFTConfig, TrlParser, get_dataset

    chat = tokenizer_dir("tiny-llama")
    tokenizer = load_tokenizer(chat)
    for fmt, study in (("text", {}), ("text", {"renamed": True}), ("prompt_completion", {})):
        folder, lines = export(tmp_path, fmt, "tiny-llama", ("trl",), **study)
        cfg = yaml.safe_load((folder / "recommended.trl.yaml").read_text())
        _, sft, _, mixture = TrlParser((ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig)).parse_dict(
            {**cfg, "use_cpu": True, "output_dir": str(folder / "out"), "report_to": "none"})
        got = sft_rows(tiny_llama, chat, sft, get_dataset(mixture)["train"])
        want = harness_rows(fmt, chat)
        if fmt == "text":
            same(got, want, chat, f"trl {folder.name}")  # every token scored, as the trials
            assert not [line for line in lines if "not expressed" in line], lines
            continue
        assert sft.completion_only_loss is True
        not_expressed(lines, "trl", "prompt format: TRL writes a string prompt as it is")
        rows = got["rows"]
        scored = [tokenizer.decode([t for t, l in zip(r["input_ids"], r["labels"]) if l != IGNORE_INDEX]) for r in rows]
        assert scored == [tokenizer.decode([t for t, l in zip(ids, labels) if l != IGNORE_INDEX]) for ids, labels in want]
        prompts = [tokenizer.decode([t for t, l in zip(r["input_ids"], r["labels"]) if l == IGNORE_INDEX]) for r in rows]
        assert prompts == [row["prompt"] for row in ROWS[fmt]]  # the documented difference: no chat template
    _, lines = export(tmp_path, "instruction", "tiny-llama", ("trl",))
    not_expressed(lines, "trl", "instruction/input/output")
    _, lines = export(tmp_path, "prompt_completion", "tiny-llama", ("trl",), renamed=True, system=SYSTEM)
    not_expressed(lines, "trl", "column names: ", f"system_prompt {SYSTEM!r}")


def retokenized(folder: str, ids: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
    """A harness row's prompt and answer text tokenized as one text, the boundary's space scored with the answer."""
    from harness.trial.models import load_tokenizer

    tokenizer = load_tokenizer(folder)
    cut = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    prompt, text = tokenizer.decode(ids[:cut]), tokenizer.decode(ids)
    whole = tokenizer(text, add_special_tokens=False)["input_ids"]
    head = len(tokenizer(prompt.rstrip(" "), add_special_tokens=False)["input_ids"])
    return whole, [IGNORE_INDEX] * head + whole[head:]


def test_unsloth_data_lines_build_the_trials_rows(tmp_path: Path, tiny_llama: Any) -> None:
    """The data lines of Unsloth's export, run as written, then TRL's SFTTrainer (Unsloth's SFTTrainer wraps it;
    Unsloth itself needs a GPU stack) with the export's training section: every format as the trials wrote it,
    chat templates, the plain prompt of a model without one, renamed columns and the system prompt included,
    but for the newline ChatML writes after `<|im_end|>`, which SFTTrainer scores (CHATML_NEWLINE, a header line)."""
    import datasets
    from trl import SFTConfig

    chat, plain = tokenizer_dir("tiny-llama"), tokenizer_dir("tiny-gemma3")
    cases = [(fmt, chat, {}) for fmt in ("messages", "prompt_completion", "instruction", "text")]
    cases += [("prompt_completion", plain, {}), ("prompt_completion", chat, {"renamed": True, "system": SYSTEM}),
              ("messages", chat, {"renamed": True, "system": SYSTEM}), ("text", chat, {"renamed": True})]
    for fmt, tok, study in cases:
        folder, lines = export(tmp_path, fmt, "tiny-llama" if tok == chat else "tiny-gemma3", ("unsloth",), **study)
        assert not [line for line in lines if "not expressed" in line], lines
        text = (folder / "recommended.unsloth.yaml").read_text()
        scope: dict[str, Any] = {"datasets": datasets}
        for line in text.splitlines():
            if line.startswith("# data = "):
                exec(line[2:], scope)  # the export's own lines, as a user pastes them
        training = {**yaml.safe_load(text)["training"], "use_cpu": True, "output_dir": str(folder / "out"),
                    "report_to": "none"}
        got = sft_rows(tiny_llama, tok, SFTConfig(**training), scope["data"])
        want = harness_rows(fmt, tok, system=study.get("system"))
        newline = CHATML_NEWLINE if tok == chat and fmt != "text" else ""
        assert (newline != "") == ("# Scored tokens: TRL's SFTTrainer" in text)
        if tok == plain:  # PLAIN_BOUNDARY: the same text, with "Answer:" + " The" tokenized as one text
            assert "# Token boundary: " in text
            want = [retokenized(tok, ids, labels) for ids, labels in want]
        same(got, want, tok, f"unsloth {folder.name}", newline, scored=True)
    _, lines = export(tmp_path, "classification", "tiny-llama", ("unsloth",))
    not_expressed(lines, "unsloth", "text + label data")
