"""A user's own config file with the tuned values put in: every other line, comment and blank kept, a comment
on each changed line with the old value, keys the file lacked appended in one marked block. Works on the text
(flat, top-level keys: Axolotl, LLaMA-Factory and TRL files are flat), so nothing the user wrote is reformatted."""

from __future__ import annotations

import re
from typing import Any

import yaml

_TOP_KEY = re.compile(r"^([A-Za-z_][\w.-]*)\s*:(.*)$")


def flow(value: Any) -> str:
    """A value as one line of YAML flow (0.0002, cosine, true, [q_proj, v_proj], {a: 1})."""
    text = yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()
    return text[1:-1]


def _block_end(lines: list[str], i: int) -> int:
    """The line after the value of the key on line i: its block is the indented lines or a list at column 0."""
    j = i + 1
    while j < len(lines) and lines[j].startswith((" ", "\t", "-")):
        j += 1
    return j


def _number(value: Any) -> Any:
    """`2e-4` as PyYAML reads it (a string: YAML 1.1 needs a dot) is the number the tools read it as."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def rewrite(text: str, changes: dict[str, Any], removes: frozenset[str] | set[str] = frozenset(),
            defaults: dict[str, Any] | None = None) -> tuple[str, dict[str, tuple[Any, Any]]]:
    """`text` with each top-level key of `changes` set to its value and each key of `removes` commented out;
    a key the file lacks is added unless its value is the tool's default for a missing key (`defaults`).
    Returns the new text and, for every key whose value changed, (old, new); old is None for a key the file
    did not have, new is None for a key commented out."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    changed: dict[str, tuple[Any, Any]] = {}
    seen: set[str] = set()
    i = 0
    while i < len(lines):
        match = _TOP_KEY.match(lines[i])
        if match and match.group(1) in removes and match.group(1) not in changes:
            j = _block_end(lines, i)
            out.append(f"# harness: removed (contradicts the tuned settings): {lines[i].rstrip()}\n")
            out.extend(f"# {line}" if line.endswith("\n") else f"# {line}\n" for line in lines[i + 1:j])
            changed[match.group(1)] = ((yaml.safe_load("".join(lines[i:j])) or {}).get(match.group(1)), None)
            i = j
            continue
        if not match or match.group(1) not in changes:
            out.append(lines[i])
            i += 1
            continue
        key = match.group(1)
        j = _block_end(lines, i)
        old = _number((yaml.safe_load("".join(lines[i:j])) or {}).get(key))
        seen.add(key)
        new = changes[key]
        if old == new:
            out.extend(lines[i:j])
        else:
            value, _, comment = match.group(2).partition(" #")
            shown = value.strip() if j == i + 1 else flow(old)
            kept = f" (your comment:{comment.rstrip()})" if comment.strip() else ""
            out.append(f"{key}: {flow(new)}  # harness: was {shown}{kept}\n")
            changed[key] = (old, new)
        i = j
    missing = [k for k in changes if k not in seen and not (defaults and k in defaults and defaults[k] == changes[k])]
    if missing:
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        out.append("# added by harness: tuned settings this file did not set\n")
        for key in missing:
            out.append(f"{key}: {flow(changes[key])}\n")
            changed[key] = (None, changes[key])
    return "".join(out), changed
