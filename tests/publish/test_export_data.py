"""Exports that train: each tool's own data preparation (Axolotl's and LLaMA-Factory's, from .tools/ on the
harness's packages, in a subprocess as the parser tests run them; TRL's in this process) over the config the
harness exports, on a few rows of each data format, builds the token ids and label mask the harness's own
encoding (harness.data.encode) builds for the same rows; where it cannot, the export says NOT EXPRESSED and the
test checks the line, or the test names the documented difference."""

from __future__ import annotations

import importlib.util
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


def tokenizer_dir(model: str) -> str:
    """The tiny model's checkpoint folder (the SmolLM2 tokenizer; tiny-gemma3's without a chat template)."""
    from harness.trial.models import ModelError, checkpoint_path, resolve_model

    try:
        return checkpoint_path(resolve_model(model))
    except ModelError as err:
        pytest.skip(str(err))


def harness_rows(fmt: str, folder: str, rows: list[dict[str, Any]] | None = None) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of the rows as a trial encodes them."""
    from harness.trial.models import load_tokenizer

    examples = [parse_record(row, f"row {i}", fmt) for i, row in enumerate(rows or ROWS[fmt])]
    splits = Splits(train=examples, eval=examples[:1], source="rows", split_hash="")  # type: ignore[arg-type]
    return tokenize_splits(splits, load_tokenizer(folder), DataSpec(max_seq_len=512)).train


def export(tmp_path: Path, fmt: str, model: str, formats: tuple[str, ...]) -> tuple[Path, list[str]]:
    """The rows as a JSONL file and the study's exports of it: (folder, printed lines)."""
    folder = tmp_path / f"{fmt}-{model}"
    folder.mkdir()
    data = folder / f"{fmt}.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS[fmt]))
    doc = recommended("none", evidence__data=str(data), evidence__model=model, evidence__data_format=None)
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
         trailing: str = "") -> None:
    """The tool's rows equal the harness's, shown as text (prompt, scored answer) where they differ. `trailing`:
    the documented difference of a chat template's newline after the last end-of-turn marker, which a tool keeps
    as an unscored last token and the trials leave out (the model stops at the marker)."""
    from harness.trial.models import load_tokenizer

    assert "error" not in got, f"{what}: {got['error']}"
    tokenizer = load_tokenizer(folder)
    if trailing:
        tail = tokenizer(trailing, add_special_tokens=False)["input_ids"]
        for row in got["rows"]:
            assert row["input_ids"][-len(tail):] == tail and set(row["labels"][-len(tail):]) == {IGNORE_INDEX}, what
            row["input_ids"], row["labels"] = row["input_ids"][:-len(tail)], row["labels"][:-len(tail)]

    def shown(ids: list[int], labels: list[int]) -> tuple[str, str]:
        return (tokenizer.decode(ids), tokenizer.decode([t for t, l in zip(ids, labels) if l != IGNORE_INDEX]))

    have = [shown(r["input_ids"], r["labels"]) for r in got["rows"]]
    assert have == [shown(*pair) for pair in want], f"{what}: {have} != {[shown(*pair) for pair in want]}"
    assert [(r["input_ids"], r["labels"]) for r in got["rows"]] == [(list(i), list(l)) for i, l in want], what


def test_axolotl_prepares_every_format_as_the_trials_did(tmp_path: Path) -> None:
    chat, plain = tokenizer_dir("tiny-llama"), tokenizer_dir("tiny-gemma3")
    cases = [(fmt, chat) for fmt in ("messages", "prompt_completion", "instruction", "text")]
    cases.append(("prompt_completion", plain))
    folders = {}
    for fmt, tok in cases:
        folder, lines = export(tmp_path, fmt, "tiny-llama" if tok == chat else "tiny-gemma3", ("axolotl",))
        assert not [line for line in lines if "not expressed" in line], lines
        folders[folder.name] = (fmt, tok, folder / "recommended.axolotl.yaml")
    results = prepare("axolotl", [(path, tok) for _, tok, path in folders.values()])
    for name, (fmt, tok, _) in folders.items():
        # Axolotl's chat_template keeps the template's "\n" after the last <|im_end|>, unscored.
        same(results[name], harness_rows(fmt, tok), tok, f"axolotl {name}", "\n" if fmt == "messages" else "")

    folder, lines = export(tmp_path, "classification", "tiny-llama", ("axolotl",))
    assert any("axolotl: not expressed: text + label data" in line for line in lines), lines
    assert "# NOT EXPRESSED: text + label data" in (folder / "recommended.axolotl.yaml").read_text()


def test_llamafactory_reads_the_file_through_the_dataset_info_entry_beside_it(tmp_path: Path) -> None:
    chat = tokenizer_dir("tiny-llama")
    folders = {}
    for fmt in ("messages", "prompt_completion", "instruction", "text"):
        folder, lines = export(tmp_path, fmt, "tiny-llama", ("llamafactory",))
        config = yaml.safe_load((folder / "recommended.llamafactory.yaml").read_text())
        info = json.loads((folder / "dataset_info.json").read_text())[config["dataset"]]
        assert config["dataset_dir"] == str(folder.resolve()) and info["file_name"] == str(folder / f"{fmt}.jsonl")
        assert "template" not in config  # LLaMA-Factory parses the tokenizer's chat template, as the trials used
        folders[folder.name] = (fmt, folder / "recommended.llamafactory.yaml")
    assert info["columns"] == {"prompt": "text"} and config["stage"] == "pt"
    if importlib.util.find_spec("torchaudio") is None:
        pytest.skip("llamafactory.data imports torchaudio (its multimodal plugin), which has no build for this "
                    "torch here; the dataset_info.json entries are checked above")
    results = prepare("llamafactory", [(path, chat) for _, path in folders.values()])
    for name, (fmt, _) in folders.items():
        same(results[name], harness_rows(fmt, chat), chat, f"llamafactory {name}")


def test_trl_loads_the_file_and_scores_the_answer_the_trials_scored(tmp_path: Path) -> None:
    """`trl sft`'s own loading (get_dataset over the export's `datasets`) and SFTTrainer's tokenization: plain
    text as the trials; prompt/completion with the same scored answer, its prompt written as is (NOT EXPRESSED)."""
    from harness.trial.models import load_tokenizer
    from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, SFTConfig, SFTTrainer, TrlParser, get_dataset

    chat = tokenizer_dir("tiny-llama")
    tokenizer = load_tokenizer(chat)
    for fmt in ("text", "prompt_completion"):
        folder, lines = export(tmp_path, fmt, "tiny-llama", ("trl",))
        cfg = yaml.safe_load((folder / "recommended.trl.yaml").read_text())
        _, sft, _, mixture = TrlParser((ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig)).parse_dict(
            {**cfg, "use_cpu": True, "output_dir": str(folder / "out"), "report_to": "none"})
        data = get_dataset(mixture)["train"]
        rows = SFTTrainer(model=chat, args=sft, train_dataset=data, processing_class=tokenizer).train_dataset
        want = harness_rows(fmt, chat)
        if fmt == "text":
            assert [r["input_ids"] for r in rows] == [ids for ids, _ in want]  # every token scored, as the trials
            assert sft.dataset_text_field == "text"
            continue
        assert sft.completion_only_loss is True
        assert any("trl: not expressed: prompt format: TRL writes a string prompt as it is" in line for line in lines)
        scored = [tokenizer.decode([t for t, l in zip(r["input_ids"], r["labels"]) if l != IGNORE_INDEX]) for r in rows]
        assert scored == [tokenizer.decode([t for t, l in zip(ids, labels) if l != IGNORE_INDEX]) for ids, labels in want]
        prompts = [tokenizer.decode([t for t, l in zip(r["input_ids"], r["labels"]) if l == IGNORE_INDEX]) for r in rows]
        assert prompts == [row["prompt"] for row in ROWS[fmt]]  # the documented difference: no chat template
    folder, lines = export(tmp_path, "instruction", "tiny-llama", ("trl",))
    assert any("trl: not expressed: instruction/input/output" in line for line in lines)
