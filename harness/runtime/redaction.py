"""What a credential looks like outside the process that needs it: the one home of redaction.

A storage URL may carry a password (`postgresql://user:PASSWORD@host/db`) or a secret query parameter
(`?password=...`, `?sslpassword=...`, `?api_key=...`). Whatever the harness prints, writes or logs (console lines,
the command line echoed in a report or recommended.yaml header, the sweep settings stored in a study and copied
into W&B configs) goes through `redact_text` or `redact_url` first. File paths (SQLite, journal files) are left
as they are: they hold no credential. Redaction hides too much rather than too little: a URL it cannot parse
loses everything between its `user:` and its last `@`.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

HIDDEN = "***"
"""What a redacted credential is replaced with."""

_USERINFO = re.compile(r"^(?P<head>[A-Za-z][\w+.-]*://[^:@/?#\s]*):(?P<password>.+)@")
"""scheme://user:PASSWORD@ (greedy to the last `@`: a password with an unescaped `@` stays hidden whole)."""

_SECRET_PARAM = re.compile(r"(?P<key>(?:^|(?<=[?&;\s]))[\w.-]*(?:pass|passwd|password|pwd|secret|token|api[_-]?key"
                           r"|access[_-]?key|private[_-]?key)=)(?P<value>[^&;#\s]+)", re.IGNORECASE)
"""key=value where the key ends in a secret's name (password=, sslpassword=, passwd=, api_key=, token=...;
not max_tokens=)."""

_URL_IN_TEXT = re.compile(r"[A-Za-z][\w+.-]*://\S+")


def redact_url(url: str) -> str:
    """`url` fit to print, write or log: its password and secret query parameters replaced by ***; a string
    without `://` (a file path) is returned as it is."""
    if "://" not in url:
        return url
    url = _USERINFO.sub(lambda m: f"{m['head']}:{HIDDEN}@", url, count=1)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}{HIDDEN}", url)


def redact_text(text: str) -> str:
    """Free text (an error message, a log line, a command line) with every URL in it redacted, and any
    `password=...`-style pair outside a URL too."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}{HIDDEN}", text)


def redact_command(argv: Sequence[str], program: str = "harness") -> str:
    """A command line (`program` and its arguments, as `sys.argv[1:]`) fit to echo in a file header or log."""
    return " ".join([program, *(redact_text(arg) for arg in argv)])


def redact_values(value: Any) -> Any:
    """A copy of a JSON-like value (mappings, lists, strings) with every string redacted: stored settings before
    they are copied into a W&B config, a report or a study's attrs."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact_values(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_values(item) for item in value)
    return value


def has_password(url: str | None) -> bool:
    """Whether a storage URL carries a credential of its own (a password or a secret query parameter)."""
    return bool(url) and redact_url(url) != url


SECRET_ARGS_NOTE = ("a password on the command line can be read by every user of this machine (ps, /proc) while the "
                    "command runs; leave it out of the URL and give it with PGPASSWORD or ~/.pgpass, or put the "
                    "whole URL in HARNESS_STORAGE")
"""The one-line note the command line prints when one of its arguments carries a credential."""


def secret_in_args(argv: Sequence[str]) -> bool:
    """Whether any argument carries a credential that redaction would hide."""
    return any(redact_text(arg) != arg for arg in argv)
