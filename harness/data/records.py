"""Turn one record of a local data file into an :class:`Example`, or say exactly what is wrong.

Two record shapes are accepted (the ones TRL and most chat datasets use):

- ``{"messages": [{"role": ..., "content": ...}, ...]}``: the last message must be the
  assistant's answer (it becomes the completion); the earlier ones are the prompt.
- ``{"prompt": ..., "completion": ...}``: the prompt is a string (one user turn) or a list of
  messages ending with a user turn; the completion is a string or a one-message assistant list.

Other keys (ids, sources, metadata) are ignored. A record whose completion is blank is not an
error but is not usable either: :func:`parse_record` returns None for it.
"""

from __future__ import annotations

from typing import Any

from harness.data.examples import DataError, Example

ROLES = ("system", "user", "assistant")
EXPECTED = "expected `messages` (a chat list ending with the assistant's answer) or `prompt` + `completion`"


def parse_record(record: Any, where: str) -> Example | None:
    """The example in ``record`` (None when its completion is blank).

    ``where`` names the record in errors, e.g. ``data/train.jsonl:12``. Raises
    :class:`DataError` when the record has neither accepted shape.
    """
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object per record, got {type(record).__name__}; {EXPECTED}")
    if "messages" in record:
        prompt, completion = _split_messages(record["messages"], where)
    elif "prompt" in record and "completion" in record:
        prompt = _prompt(record["prompt"], where)
        completion = _completion(record["completion"], where)
    else:
        raise DataError(f"{where}: record has keys {sorted(record)}; {EXPECTED}")
    return Example(prompt, completion) if completion.strip() else None


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
