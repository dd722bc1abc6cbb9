"""The data section of each tool's export: how the tool reads the user's file as it is (columns, prompt format,
which tokens are scored), so its own data preparation builds the examples the trials trained on; or, where it
cannot, one line saying what the user must change (the export's NOT EXPRESSED notes).

The harness's encoding (harness.data.encode): the prompt is the model's chat template around one user turn
(instruction + blank line + input for Alpaca rows; plain `Question: ...\\nAnswer: ` without a template); the
answer is the completion and the template's end-of-turn marker; only the answer is scored
(completion_only_loss). Plain text is the text + eos, every token scored. Chat `messages` score the last
assistant turn only."""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any

from harness.config.tools.settings import Tuned

PLAIN = "Question: {prompt}\nAnswer: "
"""harness.data.encode's prompt frame for a model without a chat template."""
DATASET = "harness_data"
"""The dataset_info.json entry LLaMA-Factory exports name."""
CLASSIFICATION = ("text + label data: the trials wrote each row into a prompt listing the train split's labels "
                  "(harness.data.classify); {tool} cannot; write the rows as prompt/completion (prompt: the "
                  "rendered template, completion: the label) and export again")


def file_type(path: str) -> str:
    """The `datasets` loader of a file: json (also .jsonl), csv or parquet."""
    suffix = PurePath(path).suffix.lower()
    return {".csv": "csv", ".parquet": "parquet"}.get(suffix, "json")


def _unknown(t: Tuned, tool: str) -> list[str]:
    if t.data_format or t.data_file != t.data:  # a built-in task's placeholder: settings.data_note says it
        return []
    return [f"data format: the export could not read {t.data_file} to see its columns; {tool}'s entry assumes chat "
            "`messages` rows; export again where the file is at hand"]


def _slot(frame: str, value: str) -> str:
    """The prompt frame as a Python format string with `value` where the user's text goes."""
    return frame.replace("{", "{{").replace("}", "}}").replace("{{prompt}}", value)


MULTI_TURN = ("Rows with several assistant turns: Axolotl scores each turn, the trials the last one only "
              "(single-turn rows are the same)")


def axolotl(t: Tuned) -> tuple[dict[str, Any], list[str]]:
    """(top-level keys: datasets, chat_template, train_on_inputs; notes). Chat `messages` with several assistant
    turns differ (MULTI_TURN, a header line)."""
    path = t.data_path or t.data_file
    entry: dict[str, Any] = {"path": path, "ds_type": file_type(path)}
    keys: dict[str, Any] = {"datasets": [entry], "train_on_inputs": not t.completion_only}
    fmt, notes = t.data_format or "messages", _unknown(t, "Axolotl")
    chat = t.frame is None or t.frame[0] != PLAIN
    if fmt == "messages":
        entry |= {"type": "chat_template", "field_messages": "messages", "roles_to_train": ["assistant"],
                  "train_on_eos": "turn"}
        keys["chat_template"] = "tokenizer_default"
        if not chat:
            notes.append("chat `messages` on a model without a chat template: the trials wrote `Question: "
                         "...\\nAnswer: `, Axolotl's chat_template needs the tokenizer's template; write the rows "
                         "as prompt/completion and export again")
    elif fmt in ("prompt_completion", "instruction"):
        if t.frame is None:
            notes.append(f"prompt format: the study's tokenizer was not at hand at export time, so the "
                         f"{fmt} rows' prompt format is unknown; export again where the study's model is cached")
        else:
            user = "{instruction}\n\n{input}" if fmt == "instruction" else "{instruction}"
            entry["type"] = {"field_instruction": "instruction" if fmt == "instruction" else "prompt",
                             "field_input": "input", "field_output": "output" if fmt == "instruction" else "completion",
                             "format": _slot(t.frame[0], user), "no_input_format": _slot(t.frame[0], "{instruction}")}
            if t.frame[1]:
                notes.append(f"answer prefix {t.frame[1]!r}: the trials put it before each completion; Axolotl's "
                             "custom format has none")
    elif fmt == "text":
        entry |= {"type": "completion", "field": "text"}
    else:
        notes.append(CLASSIFICATION.format(tool="Axolotl"))
    return keys, notes


def llamafactory(t: Tuned) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """(keys, files beside the export: dataset_info.json, notes)."""
    path = t.data_path or t.data_file
    fmt, notes = t.data_format or "messages", _unknown(t, "LLaMA-Factory")
    keys: dict[str, Any] = {"dataset": DATASET, "dataset_dir": "."}
    info: dict[str, Any] = {"file_name": path}
    if fmt == "messages":
        info |= {"formatting": "sharegpt", "columns": {"messages": "messages"},
                 "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                          "assistant_tag": "assistant", "system_tag": "system"}}
        keys["mask_history"] = t.completion_only  # the last assistant turn only, as the trials
    elif fmt == "prompt_completion":
        info["columns"] = {"prompt": "prompt", "response": "completion"}
    elif fmt == "instruction":
        info["columns"] = {"prompt": "instruction", "query": "input", "response": "output"}
        notes.append("instruction + input: LLaMA-Factory joins them with one newline, the trials with a blank line")
    elif fmt == "text":
        info["columns"] = {"prompt": "text"}
        keys["stage"] = "pt"  # plain text is pre-training data in LLaMA-Factory
    else:
        notes.append(CLASSIFICATION.format(tool="LLaMA-Factory"))
    if fmt != "text":
        keys["train_on_prompt"] = not t.completion_only
    if t.frame is not None and t.frame[0] == PLAIN and fmt != "text":
        notes.append("prompt format: the trials wrote `Question: ...\\nAnswer: ` (the model has no chat template); "
                     "LLaMA-Factory's `default` template writes `Human: ...\\nAssistant:`")
    files = {"dataset_info.json": json.dumps({DATASET: info}, indent=2) + "\n"}
    return keys, files, notes


def trl(t: Tuned, tool: str = "TRL") -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(script keys: the `datasets` list `trl sft` loads a local file with; SFTConfig keys; notes)."""
    path = t.data_path or t.data_file
    fmt, notes = t.data_format or "messages", _unknown(t, tool)
    columns = {"messages": ["messages"], "prompt_completion": ["prompt", "completion"], "text": ["text"]}
    script = {"datasets": [{"path": file_type(path), "data_files": path, **(
        {"columns": columns[fmt]} if fmt in columns else {})}]}
    sft: dict[str, Any] = {}
    if fmt == "prompt_completion":
        sft["completion_only_loss"] = t.completion_only
        if t.frame is not None:
            used = "`Question: ...\\nAnswer: `" if t.frame[0] == PLAIN else "the chat template"
            notes.append(f"prompt format: {tool} writes a string prompt as it is, the trials wrote it in {used}; "
                         "write the rows as prompt/completion message lists ([user turn], [assistant turn]) "
                         "for the template")
    elif fmt == "messages":
        if t.completion_only:
            notes.append(f"completion-only loss on messages: {tool} masks the prompt only with assistant_only_loss, "
                         "which needs {% generation %} markers in the chat template; this file scores the whole "
                         "conversation")
    elif fmt == "text":
        sft["dataset_text_field"] = "text"
    elif fmt == "instruction":
        notes.append(f"instruction/input/output: {tool} reads messages, prompt/completion or text columns; rename "
                     "them (prompt: instruction + blank line + input, completion: output) and export again")
    else:
        notes.append(CLASSIFICATION.format(tool=tool))
    return script, sft, notes
