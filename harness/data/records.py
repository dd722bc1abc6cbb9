"""Turn one record of a data file or hub dataset into an :class:`Example`, or say exactly what is wrong.

The record shapes (``DataSpec.format``; detected from the columns by :mod:`harness.data.formats`):

- ``messages``: ``[{"role": ..., "content": ...}, ...]``; the last message must be the
  assistant's answer (it becomes the completion); the earlier ones are the prompt.
- ``prompt_completion``: the prompt is a string (one user turn) or a list of messages ending
  with a user turn; the completion is a string or a one-message assistant list.
- ``instruction``: Alpaca style; the prompt is ``instruction`` (+ a blank line + ``input`` when
  that is not blank), the completion is ``output``.
- ``text``: plain text for language modelling; the example has an empty prompt.
- ``classification``: ``text`` + ``label``; parsed into a :class:`Labeled` whose prompt is
  rendered later, once the label set of the train split is known.

Other keys (ids, sources, metadata) are ignored. A record whose answer (or text) is blank is
not an error but is not usable either: :func:`parse_record` returns None for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.data.examples import DataError, Example

ROLES = ("system", "user", "assistant")
REQUIRED: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "prompt_completion": ("prompt", "completion"),
    "instruction": ("instruction", "output"),
    "text": ("text",),
    "classification": ("text", "label"),
}
"""The columns each format needs (``instruction`` also reads an optional ``input``)."""


@dataclass(frozen=True)
class Labeled:
    """A classification record before its prompt is rendered."""

    text: str
    label: str
    where: str
    """The record's location, for errors about its label."""


def parse_record(record: Any, where: str, fmt: str) -> Example | Labeled | None:
    """The example in ``record`` read as format ``fmt`` (None when its answer or text is blank).

    ``where`` names the record in errors, e.g. ``data/train.jsonl:12``. Raises
    :class:`DataError` when the record lacks a column ``fmt`` needs or a value has the wrong type.
    """
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object per record, got {type(record).__name__}")
    missing = [column for column in REQUIRED[fmt] if column not in record]
    if missing:
        raise DataError(f"{where}: record has keys {list(record)} but the data is in {fmt} format, which needs "
                        f"{' + '.join(f'`{c}`' for c in REQUIRED[fmt])}; add {missing} or map them with column_map")
    if fmt == "messages":
        prompt, completion = _split_messages(record["messages"], where)
    elif fmt == "prompt_completion":
        prompt, completion = _prompt(record["prompt"], where), _completion(record["completion"], where)
    elif fmt == "instruction":
        prompt, completion = _instruction(record, where), _string(record, "output", where)
    elif fmt == "text":
        text = _string(record, "text", where)
        return Example([], text) if text.strip() else None
    else:
        return _labeled(record, where)
    return Example(prompt, completion) if completion.strip() else None


def _string(record: dict[str, Any], column: str, where: str) -> str:
    value = record[column]
    if not isinstance(value, str):
        raise DataError(f"{where}: `{column}` must be a string, got {_short(value)}")
    return value


def _instruction(record: dict[str, Any], where: str) -> list[dict[str, str]]:
    text = _string(record, "instruction", where)
    extra = record.get("input")
    if extra is not None and not isinstance(extra, str):
        raise DataError(f"{where}: `input` must be a string (or absent), got {_short(extra)}")
    if extra and extra.strip():
        text = f"{text}\n\n{extra}"
    return [{"role": "user", "content": text}]


def _labeled(record: dict[str, Any], where: str) -> Labeled | None:
    text, label = _string(record, "text", where), record["label"]
    # Integer and boolean labels (0/1 sentiment files) become their text; the prompt lists them so.
    if isinstance(label, (int, float)):  # bool is an int too
        label = str(label)
    if not isinstance(label, str) or not label.strip():
        raise DataError(f"{where}: `label` is {_short(label)}; every classification record needs a non-empty "
                        "label (the answer the model learns to give)")
    return Labeled(text, label.strip(), where) if text.strip() else None


def _messages(value: Any, where: str, field: str) -> list[dict[str, str]]:
    """A validated chat list, each message reduced to its role and content."""
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: `{field}` must be a non-empty list of messages, got {_short(value)}")
    out = []
    for i, message in enumerate(value):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if role not in ROLES or not isinstance(content, str):
            raise DataError(f"{where}: `{field}[{i}]` must be {{\"role\": one of {', '.join(ROLES)}, "
                            f"\"content\": a string}}, got {_short(message)}")
        out.append({"role": role, "content": content})
    return out


def _split_messages(value: Any, where: str) -> tuple[list[dict[str, str]], str]:
    messages = _messages(value, where, "messages")
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last message has role {messages[-1]['role']!r}; "
                        "end `messages` with the assistant's answer (it is what the model learns)")
    prompt = messages[:-1]
    _check_prompt_ends_with_user(prompt, where, "messages")
    return prompt, messages[-1]["content"]


def _prompt(value: Any, where: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    prompt = _messages(value, where, "prompt")
    _check_prompt_ends_with_user(prompt, where, "prompt")
    return prompt


def _completion(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1:
        (message,) = _messages(value, where, "completion")
        if message["role"] == "assistant":
            return message["content"]
    raise DataError(f"{where}: `completion` must be a string or one assistant message, got {_short(value)}")


def _check_prompt_ends_with_user(prompt: list[dict[str, str]], where: str, field: str) -> None:
    if not prompt or prompt[-1]["role"] != "user":
        found = prompt[-1]["role"] if prompt else "nothing"
        raise DataError(f"{where}: the answer in `{field}` follows {found!r}; "
                        "the message before the answer must be a user turn")


def _short(value: Any, limit: int = 60) -> str:
    """A value for an error message, cut to ``limit`` characters so the message stays one line."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."
