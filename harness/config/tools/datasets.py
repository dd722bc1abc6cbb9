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
SCORED_NEWLINE = ("Scored tokens: {tool} also scores what the chat template writes after an answer's end-of-turn "
                  "marker (ChatML's newline: one token per answer); the trials stop at the marker")
"""The one documented difference of LLaMA-Factory's and TRL's chat-template answers from the trials' (a header line)."""
PLAIN_BOUNDARY = ("Token boundary: TRL's SFTTrainer (Unsloth's) tokenizes prompt and completion as one text, so the "
                  "space after `Answer:` joins the answer's first token and is scored; the trials tokenized them "
                  "apart (the same text)")


def system_note(t: Tuned, tool: str) -> list[str]:
    """The NOT EXPRESSED line of a system_prompt a tool cannot add to the rows."""
    if not t.system_prompt:
        return []
    return [f"system_prompt {t.system_prompt!r}: the trials put it first in every prompt without a system message; "
            f"{tool}; add it to your rows (a first `system` message) and export again"]


def renamed(t: Tuned, columns: tuple[str, ...], tool: str) -> list[str]:
    """The NOT EXPRESSED line of columns the trials read under other names (column_map) that `tool` reads by
    fixed names."""
    moved = [f"{t.column(c)} -> {c}" for c in columns if t.column(c) != c]
    if not moved:
        return []
    return [f"column names: the trials read your columns through column_map; {tool} reads its columns by fixed "
            f"names; rename them in the file ({', '.join(moved)}), which this export reads"]


def axolotl(t: Tuned) -> tuple[dict[str, Any], list[str]]:
    """(top-level keys: datasets, chat_template, train_on_inputs; notes). Chat `messages` with several assistant
    turns differ (MULTI_TURN, a header line)."""
    path = t.data_path or t.data_file
    entry: dict[str, Any] = {"path": path, "ds_type": file_type(path)}
    keys: dict[str, Any] = {"datasets": [entry], "train_on_inputs": not t.completion_only}
    fmt, notes = t.data_format or "messages", _unknown(t, "Axolotl")
    chat = t.frame is None or t.frame[0] != PLAIN
    col = t.column
    if fmt == "messages":
        entry |= {"type": "chat_template", "field_messages": col("messages"), "roles_to_train": ["assistant"],
                  "train_on_eos": "turn"}
        keys["chat_template"] = "tokenizer_default"
        notes += system_note(t, "Axolotl's chat_template cannot add one with the tokenizer's template "
                                "(default_system_message works with its chatml template only)")
        if not chat:
            notes.append("chat `messages` on a model without a chat template: the trials wrote `Question: "
                         "...\\nAnswer: `, Axolotl's chat_template needs the tokenizer's template; write the rows "
                         "as prompt/completion and export again")
    elif fmt in ("prompt_completion", "instruction"):
        if t.frame is None:
            notes.append(f"prompt format: the study's tokenizer was not at hand at export time, so the "
                         f"{fmt} rows' prompt format is unknown; export again where the study's model is cached")
        else:  # the trials' prompt text, system prompt included, around the user's columns
            user = "{instruction}\n\n{input}" if fmt == "instruction" else "{instruction}"
            entry["type"] = {"field_instruction": col("instruction" if fmt == "instruction" else "prompt"),
                             "field_input": col("input"),
                             "field_output": col("output" if fmt == "instruction" else "completion"),
                             "format": _slot(t.frame[0], user), "no_input_format": _slot(t.frame[0], "{instruction}")}
            if t.frame[1]:
                notes.append(f"answer prefix {t.frame[1]!r}: the trials put it before each completion; Axolotl's "
                             "custom format has none")
    elif fmt == "text":
        entry |= {"type": "completion", "field": col("text")}
    else:
        notes.append(CLASSIFICATION.format(tool="Axolotl"))
    return keys, notes


def llamafactory(t: Tuned) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """(keys, files beside the export: dataset_info.json, notes). The column mapping of the entry reads the
    user's columns as they are named; the system prompt is LLaMA-Factory's default_system (its template's
    system message for every row without one, as the trials)."""
    path = t.data_path or t.data_file
    fmt, notes = t.data_format or "messages", _unknown(t, "LLaMA-Factory")
    col = t.column
    keys: dict[str, Any] = {"dataset": DATASET, "dataset_dir": "."}
    info: dict[str, Any] = {"file_name": path}
    if fmt == "messages":
        info |= {"formatting": "sharegpt", "columns": {"messages": col("messages")},
                 "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                          "assistant_tag": "assistant", "system_tag": "system"}}
        keys["mask_history"] = t.completion_only  # the last assistant turn only, as the trials
    elif fmt == "prompt_completion":
        info["columns"] = {"prompt": col("prompt"), "response": col("completion")}
    elif fmt == "instruction":
        info["columns"] = {"prompt": col("instruction"), "query": col("input"), "response": col("output")}
        notes.append("instruction + input: LLaMA-Factory joins them with one newline, the trials with a blank line")
    elif fmt == "text":
        info["columns"] = {"prompt": col("text")}
        # plain text is pre-training data in LLaMA-Factory, which packs rows into cutoff_len blocks (dropping
        # the remainder) unless told not to; the trials encode each row alone
        keys |= {"stage": "pt", "packing": False}
    else:
        notes.append(CLASSIFICATION.format(tool="LLaMA-Factory"))
    if fmt != "text":
        keys["train_on_prompt"] = not t.completion_only
        if t.system_prompt:
            keys["default_system"] = t.system_prompt
    if t.frame is not None and t.frame[0] == PLAIN and fmt != "text":
        notes.append("prompt format: the trials wrote `Question: ...\\nAnswer: ` (the model has no chat template); "
                     "LLaMA-Factory's `default` template writes `Human: ...\\nAssistant:`")
    files = {"dataset_info.json": json.dumps({DATASET: info}, indent=2) + "\n"}
    return keys, files, notes


TRL_COLUMNS = {"messages": ("messages",), "prompt_completion": ("prompt", "completion"), "text": ("text",)}
"""The columns TRL's SFTTrainer reads per format (text: any column dataset_text_field names)."""


def trl(t: Tuned) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(script keys: the `datasets` list `trl sft` loads a local file with; SFTConfig keys; notes)."""
    path = t.data_path or t.data_file
    fmt, notes = t.data_format or "messages", _unknown(t, "TRL")
    columns = [t.column("text")] if fmt == "text" else list(TRL_COLUMNS.get(fmt, ()))
    script = {"datasets": [{"path": file_type(path), "data_files": path, **({"columns": columns} if columns else {})}]}
    sft: dict[str, Any] = {}
    if fmt in ("messages", "prompt_completion"):
        notes += renamed(t, TRL_COLUMNS[fmt], "TRL's SFTTrainer")
        notes += system_note(t, "TRL has no setting that adds one")
    if fmt == "prompt_completion":
        sft["completion_only_loss"] = t.completion_only
        if t.frame is not None:
            used = "`Question: ...\\nAnswer: `" if t.frame[0] == PLAIN else "the chat template"
            notes.append(f"prompt format: TRL writes a string prompt as it is, the trials wrote it in {used}; "
                         "write the rows as prompt/completion message lists ([user turn], [assistant turn]) "
                         "for the template")
    elif fmt == "messages":
        if t.completion_only:
            notes.append("completion-only loss on messages: TRL masks the prompt only with assistant_only_loss, "
                         "which needs {% generation %} markers in the chat template; this file scores the whole "
                         "conversation")
    elif fmt == "text":
        sft["dataset_text_field"] = t.column("text")
    elif fmt == "instruction":
        notes.append("instruction/input/output: TRL reads messages, prompt/completion or text columns; rename "
                     "them (prompt: instruction + blank line + input, completion: output) and export again")
    else:
        notes.append(CLASSIFICATION.format(tool="TRL"))
    return script, sft, notes


def unsloth(t: Tuned) -> tuple[dict[str, Any], list[str], list[str], list[str]]:
    """(SFTConfig keys, the Python lines that load the file and write its rows as the trials did, header lines
    naming the differences left, notes).
    Unsloth is driven from Python, so what TRL's file cannot say is one `data.map` line: each row becomes a
    prompt/completion pair in the trials' form (message lists the chat template renders; the trials' plain
    prompt text for a model without one), with the system prompt and the user's column names; TRL's SFTTrainer
    (which Unsloth's wraps) then scores the completion only, as the trials."""
    path = t.data_path or t.data_file
    fmt, notes = t.data_format or "messages", _unknown(t, "Unsloth")
    lines = [f"data = datasets.load_dataset({file_type(path)!r}, data_files={path!r}, split='train')"]
    col = t.column
    if fmt == "text":
        return {"dataset_text_field": col("text")}, lines, [], notes
    if fmt == "classification":
        return {}, lines, [], [*notes, CLASSIFICATION.format(tool="Unsloth's SFTTrainer")]
    chat = t.frame is None or t.frame[0] != PLAIN
    if t.frame is None and fmt != "messages":
        notes.append(f"prompt format: the study's tokenizer was not at hand at export time; the map line writes "
                     f"the {fmt} rows as chat messages, which is right for a model with a chat template")
    system = f"[{{'role': 'system', 'content': {t.system_prompt!r}}}] + " if t.system_prompt else ""
    if fmt == "messages":
        m = f"r[{col('messages')!r}]"
        if t.system_prompt:
            system = f"([] if {m}[0]['role'] == 'system' else {system[:-3]}) + "
        row = f"{{'prompt': {system}{m}[:-1], 'completion': {m}[-1:]}}"
        if not chat:
            notes.append("chat `messages` on a model without a chat template: the trials wrote `Question: "
                         "...\\nAnswer: `; write the rows as prompt/completion and export again")
    else:
        if fmt == "instruction":
            extra = col("input")
            user = (f"r[{col('instruction')!r}] + ('\\n\\n' + r[{extra!r}] if (r.get({extra!r}) or '').strip() "
                    "else '')")
            answer = f"r[{col('output')!r}]"
        else:
            user, answer = f"r[{col('prompt')!r}]", f"r[{col('completion')!r}]"
        if chat:
            row = (f"{{'prompt': {system}[{{'role': 'user', 'content': {user}}}], "
                   f"'completion': [{{'role': 'assistant', 'content': {answer}}}]}}")
        else:  # the trials' plain frame; TRL appends the eos token to a string completion
            before, after = PLAIN.split("{prompt}")
            row = f"{{'prompt': {before!r} + {user} + {after!r}, 'completion': {answer}}}"
    lines.append(f"data = data.map(lambda r: {row}, remove_columns=data.column_names)")
    said = [SCORED_NEWLINE.format(tool="TRL's SFTTrainer (Unsloth's)") if chat else PLAIN_BOUNDARY]
    return {"completion_only_loss": t.completion_only}, lines, said, notes
