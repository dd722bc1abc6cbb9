"""A user's Axolotl, LLaMA-Factory or TRL file -> what a sweep takes from it: the base model, the data, the
sequence length, the training settings the file fixes, and the LoRA settings the search varies around.
Every key read is kept with its value (printed once and stored in the study); a key the harness cannot honour
is a one-line SpecError naming the file and the key."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from harness.config.errors import SpecError
from harness.config.files import load_mapping

READ_FORMATS = ("axolotl", "llamafactory", "trl")
ADAMW = ("adamw_torch", "adamw_torch_fused", "adamw_hf", "adamw", "paged_adamw_32bit")
"""Optimizer names that are the AdamW the trials train with (paged: the same update, states paged to CPU memory
under pressure)."""
ADAMW_8BIT = ("adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit", "adamw_torch_8bit")
"""AdamW with 8-bit states: the same algorithm, moments stored rounded; trials train 32-bit AdamW (said in a
note) and the user's file keeps its optimizer."""
SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant_with_warmup": "constant", "constant": "constant",
              "warmup_stable_decay": "warmup_stable_decay"}
"""transformers lr_scheduler_type -> harness scheduler (constant: flat after the warm-up)."""
_SIGNS = {"axolotl": {"base_model", "adapter", "micro_batch_size", "sequence_len", "lora_target_linear", "datasets",
                      "lr_scheduler"},
          "llamafactory": {"finetuning_type", "lora_rank", "lora_target", "cutoff_len", "template", "stage",
                           "quantization_bit"},
          "trl": {"use_peft", "lora_r", "dataset_name", "max_length", "lora_target_modules",
                  "use_bnb_nested_quant"}}


@dataclass
class ToolConfig:
    """What a sweep takes from a tool's file."""

    path: Path
    format: str
    read: dict[str, Any] = field(default_factory=dict)
    """Every key of the file the sweep uses -> its value."""
    unused: list[str] = field(default_factory=list)
    """Keys of the file the sweep does not use (kept in the file; `recommend --format same` leaves them)."""
    sweep: dict[str, Any] = field(default_factory=dict)
    """Experiment-file values: model, data, max_steps, data_options, train."""
    centre: dict[str, Any] = field(default_factory=dict)
    """The file's LoRA settings and quantization: the point the search space varies around."""
    notes: list[str] = field(default_factory=list)

    def fail(self, key: str, message: str) -> SpecError:
        return SpecError(f"{self.path}: {key}: {message}")

    def take(self, doc: dict[str, Any], key: str, default: Any = None) -> Any:
        """A key's value (recorded as read), or the default when the file lacks it."""
        if key in doc and doc[key] is not None:
            self.read[key] = doc[key]
            return doc[key]
        return default


def detect(doc: dict[str, Any], path: Path) -> str:
    """The tool a config file is for, from the keys only it uses."""
    scores = {name: len(signs & set(doc)) for name, signs in _SIGNS.items()}
    best = max(scores, key=lambda n: scores[n])
    ties = [n for n, s in scores.items() if s == scores[best]]
    if scores[best] == 0 or len(ties) > 1:
        raise SpecError(f"{path}: cannot tell which tool this config is for (no key only Axolotl, LLaMA-Factory or "
                        f"TRL uses); name it with --from-format {{{','.join(READ_FORMATS)}}}")
    return best


def read_tool_config(path: str | Path, fmt: str | None = None) -> ToolConfig:
    """Read and check a tool's config file (format detected from its keys unless `fmt` names it)."""
    path = Path(path)
    doc = load_mapping(path, missing=f"--from-config {path}: no such file",
                       not_mapping=f"{path}: expected a mapping of settings")
    if fmt is not None and fmt not in READ_FORMATS:
        raise SpecError(f"--from-format {fmt!r} is not one of {', '.join(READ_FORMATS)}")
    fmt = fmt or detect(doc, path)
    config = ToolConfig(path.resolve(), fmt)
    READERS[fmt](doc, config)
    config.unused = [k for k in doc if k not in config.read]
    return config


def _number(config: ToolConfig, key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise config.fail(key, f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise config.fail(key, f"expected a finite number, got {value!r}")
    return number


TRANSFORMERS_DEFAULTS = {"scheduler": "linear", "warmup_ratio": 0.0, "weight_decay": 0.0, "max_grad_norm": 1.0}
"""transformers.TrainingArguments' values (TRL and LLaMA-Factory keep them) of the training settings a file
leaves out: the trials train with what the user's tool would."""
AXOLOTL_DEFAULTS = {**TRANSFORMERS_DEFAULTS, "scheduler": "cosine"}


def _common(doc: dict[str, Any], config: ToolConfig, keys: dict[str, str], defaults: dict[str, Any]) -> None:
    """The training keys every tool names its own way: `keys` maps our role -> the tool's key; a setting the
    file leaves out takes the tool's default (`defaults`), said in a note."""
    train: dict[str, Any] = {}
    steps = config.take(doc, keys["max_steps"])
    if steps is not None and int(steps) > 0:
        config.sweep["max_steps"] = int(steps)
    elif keys.get("epochs") and config.take(doc, keys["epochs"]) is not None:
        config.notes.append(f"{keys['epochs']} {doc[keys['epochs']]}: sweep trials run --max-steps optimizer steps "
                            f"each; validate at your budget afterwards (harness validate --epochs "
                            f"{doc[keys['epochs']]})")
    for role, name in (("batch_size", keys["batch"]), ("grad_accum", "gradient_accumulation_steps"),
                       ("seed", "seed")):
        value = config.take(doc, name)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if role == "seed" else 1):
                raise config.fail(name, f"expected a positive whole number, got {value!r}")
            train[role] = value
    for role, name in (("weight_decay", "weight_decay"), ("max_grad_norm", "max_grad_norm")):
        value = config.take(doc, name)
        if value is not None:
            train[role] = _number(config, name, value)
    ratio, steps_w = config.take(doc, "warmup_ratio"), config.take(doc, "warmup_steps")
    if ratio is not None:
        train["warmup_ratio"] = _number(config, "warmup_ratio", ratio)
    elif steps_w is not None:
        value = _number(config, "warmup_steps", steps_w)
        if value >= 1:
            if "max_steps" not in config.sweep:
                raise config.fail("warmup_steps", f"{steps_w} steps without max_steps: write warmup_ratio instead")
            value = value / config.sweep["max_steps"]
        train["warmup_ratio"] = value
    scheduler = config.take(doc, keys["scheduler"])
    if scheduler is not None:
        if scheduler not in SCHEDULERS:
            raise config.fail(keys["scheduler"], f"{scheduler!r}: trials train with one of {', '.join(SCHEDULERS)}; "
                                                 "set one of them in a copy of the file")
        train["scheduler"] = SCHEDULERS[scheduler]
        if scheduler == "constant":
            train["warmup_ratio"] = 0.0
    optimizer = config.take(doc, keys["optim"])
    if optimizer in ADAMW_8BIT:
        config.notes.append(f"{keys['optim']} {optimizer}: trials train with 32-bit AdamW (the same update, moments "
                            "not rounded to 8 bits); the tuned file keeps your optimizer")
    elif optimizer is not None and optimizer not in ADAMW:
        raise config.fail(keys["optim"], f"{optimizer!r}: trials train with AdamW (torch); set {keys['optim']}: "
                                         "adamw_torch in a copy of the file, or remove the key")
    plus = config.take(doc, "loraplus_lr_ratio")
    if plus is not None:
        train["loraplus_lr_ratio"] = _number(config, "loraplus_lr_ratio", plus)
    length = config.take(doc, keys["length"])
    if length is not None:
        if not isinstance(length, int) or length < 8:
            raise config.fail(keys["length"], f"expected a whole number >= 8, got {length!r}")
        config.sweep.setdefault("data_options", {})["max_seq_len"] = length
    missing = {k: v for k, v in defaults.items() if k not in train}
    if missing:
        config.notes.append(f"not in the file, so {config.format}'s defaults: "
                            + ", ".join(f"{k} {v}" for k, v in missing.items()))
    config.sweep["train"] = {**missing, **train}
    lr = config.take(doc, "learning_rate")
    if lr is not None:
        config.centre["learning_rate"] = _number(config, "learning_rate", lr)


def _lora(config: ToolConfig, r: Any, alpha: Any, dropout: Any, targets: str, keys: tuple[str, str, str]) -> None:
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise config.fail(keys[0], f"expected a positive whole number, got {r!r}")
    config.centre |= {"lora_r": r, "lora_alpha": _number(config, keys[1], alpha),
                      "lora_dropout": _number(config, keys[2], dropout), "target_modules": targets}


def _axolotl(doc: dict[str, Any], config: ToolConfig) -> None:
    config.sweep["model"] = str(config.take(doc, "base_model") or "")
    if not config.sweep["model"]:
        raise config.fail("base_model", "missing: name the model to fine-tune")
    adapter = config.take(doc, "adapter")
    if adapter not in ("lora", "qlora"):
        raise config.fail("adapter", f"{adapter!r}: the harness tunes LoRA and QLoRA adapters (lora or qlora)")
    four, eight = config.take(doc, "load_in_4bit", False), config.take(doc, "load_in_8bit", False)
    if adapter == "qlora" or four:
        kwargs = config.take(doc, "bnb_config_kwargs", {}) or {}
        kind = str(kwargs.get("bnb_4bit_quant_type", "nf4"))
        double = bool(kwargs.get("bnb_4bit_use_double_quant", True))  # Axolotl's qlora default: nf4 + double quant
        if kind not in ("nf4", "fp4"):
            raise config.fail("bnb_config_kwargs", f"bnb_4bit_quant_type {kind!r} is not nf4 or fp4")
        config.centre["quantization"] = kind + ("-dq" if double else "")
    else:
        config.centre["quantization"] = "int8" if eight else "none"
    if config.take(doc, "lora_target_linear"):
        targets = "all-linear"
    else:
        modules = config.take(doc, "lora_target_modules")
        if not modules:
            raise config.fail("lora_target_modules", "missing: name the modules, or set lora_target_linear: true")
        targets = ",".join(modules) if isinstance(modules, list) else str(modules)
    _lora(config, config.take(doc, "lora_r", 8), config.take(doc, "lora_alpha", 16),
          config.take(doc, "lora_dropout", 0.0), targets, ("lora_r", "lora_alpha", "lora_dropout"))
    for ours, theirs in (("use_rslora", "peft_use_rslora"), ("use_dora", "peft_use_dora")):
        if config.take(doc, theirs):
            config.centre[ours] = True
    template = config.take(doc, "chat_template")
    if template not in (None, "tokenizer_default"):
        raise config.fail("chat_template", f"{template!r}: trials format examples with the model tokenizer's own "
                                           "chat template; set chat_template: tokenizer_default or remove the key")
    datasets = config.take(doc, "datasets")
    if not isinstance(datasets, list) or len(datasets) != 1 or not isinstance(datasets[0], dict):
        raise config.fail("datasets", "expected one dataset ({path: ..., type: ...}); a sweep trains on one")
    config.sweep["data"], fmt, columns = _axolotl_dataset(config, datasets[0])
    config.sweep.setdefault("data_options", {}).update(format=fmt, **({"column_map": columns} if columns else {}))
    _common(doc, config, {"max_steps": "max_steps", "epochs": "num_epochs", "batch": "micro_batch_size",
                          "scheduler": "lr_scheduler", "optim": "optimizer", "length": "sequence_len"}, AXOLOTL_DEFAULTS)


def _axolotl_dataset(config: ToolConfig, entry: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    kind = entry.get("type")
    path = entry.get("path")
    if not path:
        raise config.fail("datasets[0].path", "missing")
    if kind == "chat_template":
        field_name = entry.get("field_messages", "messages")
        return str(path), "messages", ({"messages": field_name} if field_name != "messages" else {})
    if kind == "alpaca":
        return str(path), "instruction", {}
    if kind == "completion":
        field_name = entry.get("field", "text")
        return str(path), "text", ({"text": field_name} if field_name != "text" else {})
    raise config.fail("datasets[0].type", f"{kind!r}: the harness reads chat_template (messages), alpaca "
                                          "(instruction/input/output) or completion (text) datasets")


def _llamafactory(doc: dict[str, Any], config: ToolConfig) -> None:
    config.sweep["model"] = str(config.take(doc, "model_name_or_path") or "")
    if not config.sweep["model"]:
        raise config.fail("model_name_or_path", "missing: name the model to fine-tune")
    for key, allowed in (("stage", ("sft",)), ("finetuning_type", ("lora",))):
        value = config.take(doc, key, allowed[0])
        if value not in allowed:
            raise config.fail(key, f"{value!r}: the harness tunes supervised LoRA fine-tunes ({key}: {allowed[0]})")
    config.take(doc, "do_train")
    bits = config.take(doc, "quantization_bit")
    method = config.take(doc, "quantization_method", "bnb")
    if bits is not None and method not in ("bnb", "bitsandbytes"):
        raise config.fail("quantization_method", f"{method!r}: the harness quantizes with bitsandbytes (bnb)")
    if bits == 4:
        kind = str(config.take(doc, "quantization_type", "nf4"))
        if kind not in ("nf4", "fp4"):
            raise config.fail("quantization_type", f"{kind!r} is not nf4 or fp4")
        double = bool(config.take(doc, "double_quantization", True))  # LLaMA-Factory's default
        config.centre["quantization"] = kind + ("-dq" if double else "")
    elif bits == 8:
        config.centre["quantization"] = "int8"
    elif bits is None:
        config.centre["quantization"] = "none"
    else:
        raise config.fail("quantization_bit", f"{bits!r}: bitsandbytes trains at 4 or 8 bits")
    target = str(config.take(doc, "lora_target", "all"))
    rank = config.take(doc, "lora_rank", 8)
    _lora(config, rank, config.take(doc, "lora_alpha", 2 * rank if isinstance(rank, int) else rank),
          config.take(doc, "lora_dropout", 0.0), "all-linear" if target == "all" else target.replace(" ", ""),
          ("lora_rank", "lora_alpha", "lora_dropout"))
    for key in ("use_rslora", "use_dora"):
        if config.take(doc, key):
            config.centre[key] = True
    if config.take(doc, "template") is not None:
        config.notes.append(f"template {doc['template']}: trials format examples with the model tokenizer's own "
                            "chat template, which is what LLaMA-Factory's family templates reproduce")
    names = str(config.take(doc, "dataset") or "")
    if not names or "," in names:
        raise config.fail("dataset", f"{names!r}: a sweep trains on one dataset; name one (or merge them into one "
                                     "file with one dataset_info.json entry)")
    folder = Path(config.take(doc, "dataset_dir", "data"))
    folder = folder if folder.is_absolute() else config.path.parent / folder
    config.sweep["data"], fmt, columns = _llamafactory_dataset(config, folder, names)
    config.sweep.setdefault("data_options", {}).update(format=fmt, **({"column_map": columns} if columns else {}))
    _common(doc, config, {"max_steps": "max_steps", "epochs": "num_train_epochs", "batch": "per_device_train_batch_size",
                          "scheduler": "lr_scheduler_type", "optim": "optim", "length": "cutoff_len"}, TRANSFORMERS_DEFAULTS)


def _llamafactory_dataset(config: ToolConfig, folder: Path, name: str) -> tuple[str, str, dict[str, str]]:
    """A dataset name -> its file and format, from `<dataset_dir>/dataset_info.json` as LLaMA-Factory reads it."""
    info_path = folder / "dataset_info.json"
    try:
        info = json.loads(info_path.read_text())[name]
    except FileNotFoundError:
        raise config.fail("dataset_dir", f"{info_path} not found (LLaMA-Factory names datasets there)") from None
    except (KeyError, json.JSONDecodeError):
        raise config.fail("dataset", f"{name!r} is not in {info_path}") from None
    source = info.get("file_name") and str(folder / info["file_name"]) or info.get("hf_hub_url")
    if not source:
        raise config.fail("dataset", f"{name!r} in {info_path} has neither file_name nor hf_hub_url")
    columns = info.get("columns") or {}
    if info.get("formatting", "alpaca") == "alpaca":
        ours = {"instruction": columns.get("prompt", "instruction"), "input": columns.get("query", "input"),
                "output": columns.get("response", "output")}
        return source, "instruction", {k: v for k, v in ours.items() if k != v}
    tags = info.get("tags") or {}
    if tags.get("role_tag", "from") != "role" or tags.get("content_tag", "value") != "content":
        raise config.fail("dataset", f"{name!r} is sharegpt with from/value tags; the harness reads messages with "
                                     "role/content (set tags role_tag: role, content_tag: content on such data)")
    column = columns.get("messages", "conversations")
    return source, "messages", ({"messages": column} if column != "messages" else {})


def _trl(doc: dict[str, Any], config: ToolConfig) -> None:
    config.sweep["model"] = str(config.take(doc, "model_name_or_path") or "")
    if not config.sweep["model"]:
        raise config.fail("model_name_or_path", "missing: name the model to fine-tune")
    if not config.take(doc, "use_peft", False):
        raise config.fail("use_peft", "missing or false: the harness tunes LoRA adapters (use_peft: true)")
    four, eight = config.take(doc, "load_in_4bit", False), config.take(doc, "load_in_8bit", False)
    if four:
        kind = str(config.take(doc, "bnb_4bit_quant_type", "nf4"))
        if kind not in ("nf4", "fp4"):
            raise config.fail("bnb_4bit_quant_type", f"{kind!r} is not nf4 or fp4")
        config.centre["quantization"] = kind + ("-dq" if config.take(doc, "use_bnb_nested_quant", False) else "")
    else:
        config.centre["quantization"] = "int8" if eight else "none"
    modules = config.take(doc, "lora_target_modules")
    if modules in (None, [], "all-linear", ["all-linear"]):
        targets = "all-linear"
        if modules is None:
            config.notes.append("lora_target_modules not set: peft's per-model default; the sweep uses all-linear")
    else:
        targets = ",".join(modules) if isinstance(modules, list) else str(modules)
    _lora(config, config.take(doc, "lora_r", 16), config.take(doc, "lora_alpha", 32),
          config.take(doc, "lora_dropout", 0.05), targets, ("lora_r", "lora_alpha", "lora_dropout"))
    for key in ("use_rslora", "use_dora"):
        if config.take(doc, key):
            config.centre[key] = True
    data = config.take(doc, "dataset_name")
    if not data:
        raise config.fail("dataset_name", "missing: a local file or a hub dataset id")
    config.sweep["data"] = str(data)
    _common(doc, config, {"max_steps": "max_steps", "epochs": "num_train_epochs", "batch": "per_device_train_batch_size",
                          "scheduler": "lr_scheduler_type", "optim": "optim", "length": "max_length"}, TRANSFORMERS_DEFAULTS)


READERS: dict[str, Callable[[dict[str, Any], ToolConfig], None]] = {
    "axolotl": _axolotl, "llamafactory": _llamafactory, "trl": _trl}


def space_around(config: ToolConfig) -> dict[str, Any]:
    """A search space around the file's values: rank halved and doubled, alpha/r halved and doubled, the
    learning rate within 4x either way; quantization, dropout, targets and the variants fixed as the file has
    them."""
    c = config.centre
    r, ratio = c["lora_r"], c["lora_alpha"] / c["lora_r"]
    lr = c.get("learning_rate", 2e-4)
    axes: dict[str, Any] = {
        "lora_r": {"choices": sorted({max(1, r // 2), r, 2 * r})},
        "lora_alpha": {"ratio": {"choices": sorted({ratio / 2, ratio, 2 * ratio})}},
        "learning_rate": {"low": lr / 4, "high": min(lr * 4, 0.5), "log": True},
        "quantization": c["quantization"], "lora_dropout": c["lora_dropout"], "target_modules": c["target_modules"]}
    for key in ("use_rslora", "use_dora"):
        if c.get(key):
            axes[key] = True
    return {"description": f"around the LoRA settings of {config.path.name} ({config.format}): rank x0.5/x1/x2, "
                           "alpha/r x0.5/x1/x2, learning rate within 4x", "axes": axes}


def sweep_values(config: ToolConfig, experiment: dict[str, Any]) -> dict[str, Any]:
    """Experiment-file values from the tool's file, under those of an experiment file given beside it (its
    sections merged key by key)."""
    values: dict[str, Any] = {"study": config.path.stem, **config.sweep, "from_config": str(config.path),
                              "from_format": config.format, "from_values": json.loads(json.dumps(config.read))}
    for key, value in experiment.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return values


def summary_lines(config: ToolConfig) -> list[str]:
    """What `sweep --from-config` prints at the start: each value read, the notes, the keys not used."""
    lines = [f"from {config.path} ({config.format}):"]
    lines += [f"  {key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}"
              for key, value in config.read.items()]
    lines += [f"  note: {note}" for note in config.notes]
    if config.unused:
        lines.append(f"  not used by the sweep (kept in your file): {', '.join(config.unused)}")
    return lines
