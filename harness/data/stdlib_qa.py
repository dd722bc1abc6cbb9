"""``stdlib-qa``: a built-in question/answer set made from the running Python's docstrings.

Each example asks what a standard-library function, class or method does; the answer is the
first sentence of its docstring. Nothing is downloaded: the text is real, human-written
English that is already on every machine, so tests and sweeps run offline.

The held-out split is chosen by *name*: an example is held out when
``int(sha256(qualified_name)[:8], 16) % 10 == 0`` (about 10%). Keying on the name means a
function is never in both splits, so the eval loss measures generalisation to unseen
functions rather than recall, and the split is the same on every run and machine (Python's
``hash()`` is salted per process, sha256 is not). The answers do depend on the Python version
(and, for ``os``, a little on the platform), which is why :func:`stdlib_source` names it.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import sys
import warnings
from collections import Counter
from typing import Any

from harness.data.examples import Example

NAME = "stdlib-qa"

# Well-known public modules. A fixed list is more stable across machines than walking
# everything (platform-only modules, GUI toolkits, modules with side effects on import).
MODULES: tuple[str, ...] = (
    "abc", "argparse", "array", "ast", "base64", "binascii", "bisect", "bz2", "calendar",
    "cmath", "codecs", "collections", "colorsys", "configparser", "contextlib", "copy", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "email.utils", "enum", "filecmp",
    "fnmatch", "fractions", "functools", "glob", "gzip", "hashlib", "heapq", "hmac", "html",
    "inspect", "io", "ipaddress", "itertools", "json", "keyword", "linecache", "logging",
    "lzma", "math", "mimetypes", "numbers", "operator", "os", "os.path", "pathlib", "pickle",
    "pprint", "queue", "random", "re", "reprlib", "secrets", "shlex", "shutil",
    "stat", "statistics", "string", "struct", "subprocess", "sys", "tarfile",
    "tempfile", "textwrap", "threading", "time", "timeit", "traceback", "types", "typing",
    "unicodedata", "urllib.parse", "uuid", "warnings", "weakref", "zipfile", "zlib",
)

MIN_WORDS, MAX_WORDS = 4, 30
EVAL_MODULUS = 10  # 1 in 10 names is held out

# "pack(fmt, v1, v2, ...) -> bytes" and similar signature lines that some C docstrings start with.
_SIGNATURE = re.compile(r"^[\w.\[\]]+\s*\(.*\)\s*(->.*)?$|->")
# reST markup (:func:`x`, ``x``, `x`) is reduced to its text.
_REST_ROLE = re.compile(r":\w+:`([^`]*)`")
# A sentence ends at . ! ? followed by a space or the end, but not after e.g. / i.e. / etc.
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)[.!?](?=\s|$)")


def is_held_out(qualified_name: str) -> bool:
    """True when ``qualified_name`` belongs to the eval split (stable across runs and machines)."""
    digest = hashlib.sha256(qualified_name.encode()).hexdigest()
    return int(digest[:8], 16) % EVAL_MODULUS == 0


def stdlib_source() -> str:
    """The ``Splits.source`` text: the answers depend on the running Python's version."""
    return f"built-in {NAME} (Python {sys.version.split()[0]})"


def first_sentence(doc: object) -> str | None:
    """The first real sentence of a docstring, or None when it has no usable one.

    Signature lines are skipped; the first paragraph is joined into one line and cut at its
    first sentence end. Sentences under ``MIN_WORDS`` or over ``MAX_WORDS`` words give None.
    """
    if not isinstance(doc, str):  # some classes carry a descriptor as __doc__
        return None
    lines = [line.strip() for line in inspect.cleandoc(doc).splitlines()]
    while lines and (not lines[0] or _SIGNATURE.search(lines[0]) or set(lines[0]) <= {"-", "="}):
        lines.pop(0)
    paragraph: list[str] = []
    for line in lines:
        if not line:
            break
        paragraph.append(line)
    text = _REST_ROLE.sub(r"\1", " ".join(" ".join(paragraph).split())).replace("`", "")
    match = _SENTENCE_END.search(text)
    sentence = text[: match.end()] if match else text.rstrip(":;,") + "."
    # "D.count(value) -- return ..." is an old-style signature, not a sentence.
    if not sentence[:1].isupper() or any(mark in sentence for mark in (">>>", "--")):
        return None
    return sentence if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS else None


def _import_quietly(module_name: str) -> Any | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices are not our business here
        try:
            return importlib.import_module(module_name)
        except ImportError:  # e.g. ssl or sqlite3 missing from a minimal build
            return None


def _public_names(module: Any) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in dir(module) if not n.startswith("_")]
    return sorted(n for n in names if isinstance(n, str) and not n.startswith("_"))


def _defined_here(obj: Any, module: Any) -> bool:
    """Whether a module-level object belongs to ``module`` rather than being an import."""
    owner = getattr(obj, "__module__", None) or ""
    # The module itself, or its C accelerator (_heapq behind heapq, _json behind json).
    return owner.lstrip("_") == module.__name__.rsplit(".", 1)[-1] or owner == module.__name__


def _from_stdlib(member: Any) -> bool:
    """False for methods that third-party packages patch onto stdlib classes (transformers adds
    `logging.Logger.warning_once`), so the dataset does not depend on what else was imported."""
    owner = getattr(member, "__module__", None)
    return owner is None or owner.split(".")[0].lstrip("_") in sys.stdlib_module_names or \
        owner.split(".")[0] in sys.stdlib_module_names


def _candidates(module_name: str, module: Any) -> list[tuple[str, str, Any]]:
    """(qualified name, kind, object) for the module's public functions, classes and methods.

    Names are qualified by ``module_name`` as imported (``os.path.join``, not ``posixpath.join``).
    """
    has_all = hasattr(module, "__all__")
    found: list[tuple[str, str, Any]] = []
    for name in _public_names(module):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = getattr(module, name, None)
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if getattr(obj, "__name__", name) != name:  # an alias (array.ArrayType, uuid.bytes_)
            continue
        if not has_all and not _defined_here(obj, module):
            continue
        qualified = f"{module_name}.{name}"
        if inspect.isclass(obj):
            found.append((qualified, "class", obj))
            for attr, member in sorted(vars(obj).items()):
                if not attr.startswith("_") and inspect.isroutine(member) and _from_stdlib(member):
                    found.append((f"{qualified}.{attr}", "method", member))
        else:
            found.append((qualified, "function", obj))
    return found


def _question(kind: str, qualified_name: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"What does the Python {kind} `{qualified_name}` do?"}]


def build_stdlib_qa() -> list[tuple[str, Example]]:
    """All ``(qualified_name, Example)`` pairs, sorted by name.

    Each object is used once (under its first name in ``MODULES`` order), and answers shared
    by several names are dropped: such an answer does not depend on the question, and its copies
    could straddle the train/eval split.
    """
    seen: set[int] = set()
    rows: list[tuple[str, str, str]] = []
    for module_name in MODULES:
        module = _import_quietly(module_name)
        if module is None:
            continue
        for qualified, kind, obj in _candidates(module_name, module):
            key = id(getattr(obj, "__func__", obj))
            sentence = first_sentence(getattr(obj, "__doc__", None))
            if key in seen or sentence is None:
                continue
            seen.add(key)
            rows.append((qualified, kind, sentence))
    counts = Counter(sentence for _, _, sentence in rows)
    rows = sorted(row for row in rows if counts[row[2]] == 1)
    return [(name, Example(_question(kind, name), sentence)) for name, kind, sentence in rows]
