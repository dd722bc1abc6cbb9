"""Run by tests/publish/test_export_data.py in a subprocess whose PYTHONPATH holds one tool's own code (.tools/<tool>,
installed without its pinned dependencies): the tool's own data preparation over an exported config, with the
model swapped for a local tokenizer, and print the tokenized training examples it builds (JSON, file order).

    python tool_data.py axolotl|llamafactory CONFIG::TOKENIZER_DIR...
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import yaml

os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

Rows = list[dict[str, list[int]]]


def axolotl(cfg: dict[str, Any], tokenizer_dir: str) -> Rows:
    """validate_config, then the dataset's strategy as axolotl.utils.data.wrappers.get_dataset_wrapper picks it
    (`axolotl.prompt_strategies.load` of the type; `user_defined` for a custom format mapping) wrapped by
    axolotl.datasets.wrap_dataset_for_tokenized_prompt, over the file as `load_dataset(ds_type, data_files=path)`
    reads it (what Axolotl's loader does for a local file). axolotl.utils.data itself is not imported: its
    package imports the multipack sampler, which needs numba (not installed here)."""
    import torch
    from axolotl.datasets import wrap_dataset_for_tokenized_prompt
    from axolotl.prompt_strategies import load
    from axolotl.utils.config import normalize_config, validate_config
    from axolotl.utils.dict import DictDefault
    from datasets import load_dataset
    from transformers import AutoTokenizer

    cfg = {**cfg, "base_model": tokenizer_dir, "dataset_num_proc": 1}
    caps = {"bf16": False, "fp8": False, "tf32": False, "n_gpu": 1, "compute_capability": None}
    out = validate_config(DictDefault(cfg), capabilities=caps,
                          env_capabilities={"torch_version": torch.__version__.split("+")[0]})
    normalize_config(out)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    entry = out.datasets[0]
    data = load_dataset(entry.ds_type or "json", data_files=entry.path, split="train")  # Axolotl's default too
    if isinstance(entry.type, dict):
        strategy = load("user_defined", tokenizer, out, DictDefault(dict(entry.type)).to_dict())
    else:
        strategy = load(entry.type, tokenizer, out, entry)
    assert strategy is not None, f"Axolotl has no strategy {entry.type!r}"
    rows = wrap_dataset_for_tokenized_prompt(strategy, data, process_count=1, keep_in_memory=True)
    return [{"input_ids": list(r["input_ids"]), "labels": list(r["labels"])} for r in rows]


def stub_torchaudio() -> None:
    """Put a stand-in `torchaudio` module in sys.modules where the real one is missing (PyPI has no torchaudio
    for torch 2.13). llamafactory.data imports it at the top of its multimodal plugin (mm_plugin.py), which
    uses it only to read and resample audio inputs (MMPluginMixin._regularize_audios): not on the path of text
    rows. Any attribute of the stand-in raises, so a row that did reach audio code fails the test instead of
    passing. transformers, peft and datasets are imported first, so their own checks (find_spec, cached)
    still see torchaudio missing and never take the stand-in for the package."""
    import importlib.util
    import types

    if "torchaudio" in sys.modules or importlib.util.find_spec("torchaudio") is not None:
        return
    import datasets  # noqa: F401  (datasets.config records TORCHAUDIO_AVAILABLE = False at import)
    import peft  # noqa: F401
    from transformers.utils.import_utils import is_torchaudio_available

    assert not is_torchaudio_available()  # cached: transformers never looks again

    class Missing(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            raise ImportError(f"torchaudio.{name}: torchaudio is not installed (a stand-in for the test)")

    sys.modules["torchaudio"] = Missing("torchaudio")


def llamafactory(cfg: dict[str, Any], tokenizer_dir: str) -> Rows:
    """get_train_args, the template it picks (get_template_and_fix_tokenizer) and llamafactory.data.get_dataset."""
    stub_torchaudio()
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from transformers import AutoTokenizer

    cfg = {**cfg, "model_name_or_path": tokenizer_dir, "overwrite_cache": True, "preprocessing_num_workers": None}
    model_args, data_args, training_args, _, _ = get_train_args(cfg)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    module = get_dataset(template, model_args, data_args, training_args, cfg.get("stage", "sft"), tokenizer)
    rows = module["train_dataset"]
    # stage pt rows carry no labels: its collator (DataCollatorForLanguageModeling, mlm=False) scores every token
    return [{"input_ids": list(r["input_ids"]), "labels": list(r.get("labels", r["input_ids"]))} for r in rows]


def main() -> None:
    tool, pairs = sys.argv[1], sys.argv[2:]
    prepare = {"axolotl": axolotl, "llamafactory": llamafactory}[tool]
    results: dict[str, Any] = {}
    for pair in pairs:
        config, tokenizer_dir = pair.split("::")
        with open(config) as handle:
            cfg = yaml.safe_load(handle)
        try:
            results[config] = {"rows": prepare(cfg, tokenizer_dir)}
        except Exception as err:  # the test reports what the tool said
            results[config] = {"error": f"{type(err).__name__}: {str(err).strip()[:400]}"}
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
