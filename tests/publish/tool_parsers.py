"""Run by tests/publish/test_exports.py in a subprocess whose PYTHONPATH holds one tool's own code (installed
by `make test` into .tools/<tool> without its pinned dependencies, which clash with the harness's): load each
config file given with that tool's own parser and print, per file, the values as the tool parsed them (JSON).

    python tool_parsers.py axolotl|llamafactory FILE...
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import yaml

os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")  # Axolotl sends telemetry otherwise
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")  # LLaMA-Factory refuses the harness's newer transformers
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def axolotl(cfg: dict[str, Any]) -> dict[str, Any]:
    """axolotl.utils.config.validate_config with the capabilities a CPU reports; Axolotl drops unknown keys
    silently, so they are listed from its schema's field names and aliases."""
    import torch
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault
    from axolotl.utils.schemas.config import AxolotlConfigWCapabilities as Schema

    caps = {"bf16": False, "fp8": False, "tf32": False, "n_gpu": 1, "compute_capability": None}
    out = validate_config(DictDefault(dict(cfg)), capabilities=caps,
                          env_capabilities={"torch_version": torch.__version__.split("+")[0]})
    known = set(Schema.model_fields) | {f.alias for f in Schema.model_fields.values() if f.alias}
    values = {k: out.get(k) for k in cfg}
    values["datasets"] = [{k: v for k, v in dict(d).items() if v is not None} for d in out.get("datasets") or []]
    return {"values": values, "unknown": sorted(set(cfg) - known)}


def llamafactory(cfg: dict[str, Any]) -> dict[str, Any]:
    """llamafactory.hparams.get_train_args: its five argument dataclasses (unknown keys raise)."""
    from llamafactory.hparams import get_train_args

    model, data, training, finetuning, _ = get_train_args(dict(cfg))
    values: dict[str, Any] = {}
    for obj in (model, data, training, finetuning):
        for key in cfg:
            if hasattr(obj, key) and key not in values:
                values[key] = getattr(obj, key)
    values["_lora_target"] = list(finetuning.lora_target)
    values["_compute"] = {"quantization_type": getattr(model, "quantization_type", None),
                          "double_quantization": getattr(model, "double_quantization", None)}
    return {"values": json.loads(json.dumps(values, default=str)), "unknown": []}


def main() -> None:
    tool, files = sys.argv[1], sys.argv[2:]
    parse = {"axolotl": axolotl, "llamafactory": llamafactory}[tool]
    results = {}
    for path in files:
        with open(path) as handle:
            cfg = yaml.safe_load(handle)
        try:
            results[path] = json.loads(json.dumps(parse(cfg), default=str))
        except Exception as err:  # the test reports what the tool said
            results[path] = {"error": f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300]}"}
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
