"""A retrieval corpus as passages (issue 12, `harness advise --corpus PATH`): a JSONL file (`text` per line,
optional `id` and `title`) or a folder of .txt / .md files split into passages of a stated size and overlap.
Read and checked here, before any model loads; every error names the file (and line) and how to fix it.
Nothing here retrieves or trains."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.config.errors import SpecError

PASSAGE_WORDS = 120
"""Words per passage when a folder of text files is split (about 160 tokens: a few fit a small model's prompt)."""
OVERLAP_WORDS = 20
"""Words two neighbouring passages of one file share, so a fact cut at a boundary is whole in one of them."""
TEXT_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Passage:
    """One retrievable piece of text."""

    id: str
    text: str
    title: str = ""

    def as_prompt(self) -> str:
        """How the passage reads in a prompt: its title (when it has one) and its text."""
        return f"{self.title}: {self.text}" if self.title else self.text


def split_words(text: str, size: int = PASSAGE_WORDS, overlap: int = OVERLAP_WORDS) -> list[str]:
    """Windows of `size` words, each starting `size - overlap` words after the previous; the last one ends with
    the text (a short tail is not a passage of its own when an earlier window already holds it)."""
    if size < 1 or not 0 <= overlap < size:
        raise SpecError(f"passage size must be >= 1 and overlap in [0, size), got size {size}, overlap {overlap}")
    words = text.split()
    if not words:
        return []
    step, out = size - overlap, []
    for start in range(0, len(words), step):
        out.append(" ".join(words[start:start + size]))
        if start + size >= len(words):
            break
    return out


def load_corpus(path: str | Path, size: int = PASSAGE_WORDS, overlap: int = OVERLAP_WORDS) -> list[Passage]:
    """Passages from a JSONL file or a folder of text files; a clear error for a missing, empty or malformed one."""
    path = Path(path)
    if path.is_dir():
        passages = _folder(path, size, overlap)
    elif path.is_file():
        passages = _jsonl(path)
    else:
        raise SpecError(f"corpus {path} does not exist (give a .jsonl file with a `text` per line, or a folder of "
                        ".txt/.md files)")
    if not passages:
        raise SpecError(f"corpus {path} holds no text (a .jsonl file with a `text` per line, or a folder of "
                        ".txt/.md files)")
    return passages


def _jsonl(path: Path) -> list[Passage]:
    if path.suffix not in (".jsonl", ".json"):
        raise SpecError(f"corpus {path}: expected a .jsonl file (one JSON object with `text` per line) or a folder")
    passages, ids = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"corpus {path}, line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise SpecError(f"{where}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            raise SpecError(f"{where}: expected an object with a non-empty `text` string")
        pid = str(row.get("id", f"line-{number}"))
        if pid in ids:
            raise SpecError(f"{where}: id {pid!r} is used twice")
        ids.add(pid)
        passages.append(Passage(pid, " ".join(row["text"].split()), str(row.get("title") or "")))
    return passages


def _folder(path: Path, size: int, overlap: int) -> list[Passage]:
    passages = []
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES):
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SpecError(f"corpus file {file} is not UTF-8 text") from None
        relative = file.relative_to(path).as_posix()
        for i, chunk in enumerate(split_words(text, size, overlap)):
            passages.append(Passage(f"{relative}#{i}", chunk, file.stem))
    return passages
