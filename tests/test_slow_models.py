"""The real Gemma-3-270M and Qwen2.5-Coder-1.5B-Instruct from their part packages; marked slow, each skipped (saying
how to install it) where its packages are not installed. `make test` does not install them: Gemma's first use
converts for about a minute and its trials take minutes on 2 cores (README, "Models").

- the precision each row of harness.trial.builtins states is what the file holds;
- the converted checkpoint's weights equal the `gguf` package's own dequantization of the file, for every tensor
  type these files use (Q4_K, Q5_0, Q6_K, Q8_0 from Gemma; Q4_1 and F32 from SmolLM2);
- a short sweep trains each model from its built-in name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import records, run_cli
from harness.trial import builtins
from harness.trial.models import cache_dir, checkpoint_path, resolve_model

pytestmark = pytest.mark.slow

REAL = ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-1.5b"]

# GGUF tensor name -> the converted checkpoint's, for tensors stored as they are (not the q/k projections of a
# Llama, which transformers permutes back; not Gemma's norms, stored with +1).
HF_NAMES = {"token_embd": "model.embed_tokens", "ffn_down": "mlp.down_proj", "ffn_up": "mlp.up_proj",
            "ffn_gate": "mlp.gate_proj", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
            "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_norm": "input_layernorm"}
TYPES = {"gemma3-270m": ("Q4_K", "Q5_0", "Q6_K", "Q8_0"), "smollm2-135m": ("Q4_1", "F32")}


def _installed(name: str) -> builtins.Builtin:
    row = builtins.BUILTINS[name]
    if not builtins.is_installed(row):
        pytest.skip(f"{name} is not installed ({row.install_command})")
    return row


def _gguf_file(row: builtins.Builtin) -> Path:
    parts = builtins.part_paths(row)
    if len(parts) == 1:
        return parts[0]
    return builtins.join_parts(row, parts, builtins.joined_path(row, cache_dir()))


@pytest.mark.parametrize("name", REAL)
def test_each_row_states_the_precision_its_file_holds(name: str) -> None:
    from harness.trial.source import gguf_types, precision_of

    row = _installed(name)
    path = _gguf_file(row)
    assert path.stat().st_size == row.size
    assert precision_of(gguf_types(str(path))) == row.precision


def _hf_name(gguf_name: str, skip_qk: bool) -> str | None:
    """`blk.3.ffn_down.weight` -> `model.layers.3.mlp.down_proj.weight` (None for a tensor not stored as is)."""
    parts = gguf_name.split(".")
    if parts[0] == "token_embd":
        return "model.embed_tokens.weight"
    if parts[0] != "blk" or parts[2] not in HF_NAMES or (skip_qk and parts[2] in ("attn_q", "attn_k")):
        return None
    if parts[2] == "attn_norm" and not skip_qk:  # Gemma's norms are stored with +1
        return None
    return f"model.layers.{parts[1]}.{HF_NAMES[parts[2]]}.{parts[3]}"


@pytest.mark.parametrize("name", list(TYPES))
def test_the_converted_weights_are_gguf_s_own_dequantization(name: str) -> None:
    """Per tensor type, the first tensor of that type stored as it is: harness's checkpoint (bf16) holds exactly
    gguf.quants.dequantize of the file's bytes, rounded to bf16."""
    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors import safe_open

    row = _installed(name)
    path = _gguf_file(row)
    folder = Path(checkpoint_path(resolve_model(name)))
    wanted = set(TYPES[name])
    with safe_open(str(folder / "model.safetensors"), "pt") as converted:
        for tensor in GGUFReader(str(path)).tensors:
            kind = tensor.tensor_type.name
            hf = _hf_name(tensor.name, skip_qk=row.family == "llama")
            if kind not in wanted or hf is None:
                continue
            ours = converted.get_tensor(hf)
            theirs = torch.from_numpy(dequantize(tensor.data, tensor.tensor_type).copy()).reshape(ours.shape)
            assert torch.equal(ours, theirs.to(ours.dtype)), f"{name}: {tensor.name} ({kind}) != gguf's dequantize"
            wanted.discard(kind)
    assert not wanted, f"{name}: no tensor of type {sorted(wanted)} checked"


@pytest.mark.parametrize("name, label, template", [
    ("gemma3-270m", "Gemma-3-270M (Q4_K_M GGUF, dequantized to bf16)", "plain: Question: "),
    ("qwen2.5-coder-1.5b", "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, dequantized to bf16)", "chat template"),
])
def test_a_short_sweep_trains_the_real_model_from_its_name(name: str, label: str, template: str,
                                                           tmp_path: Path) -> None:
    _installed(name)
    (tmp_path / "exp.yaml").write_text("data_options: {eval_size: 8, train_size: 64}\n"
                                       "eval: {metrics: [], generate_size: 0}\n")
    (tmp_path / "space.yaml").write_text("axes:\n  lora_r: 8\n  lora_alpha: 16\n  learning_rate: 5.0e-4\n"
                                         "  quantization: nf4\n")
    out = tmp_path / "s"
    proc = run_cli("sweep", "-e", str(tmp_path / "exp.yaml"), "--model", name, "--space", str(tmp_path / "space.yaml"),
                   "--trials", "1", "--max-steps", "2", "--no-lr-range-test", "--study", "s", "--out", str(out),
                   "--wandb", "disabled", timeout=1500, fresh=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = records(out)
    assert row["state"] == "COMPLETE", row["error"]
    assert row["result"]["prompt_template"].startswith(template)
    import optuna

    study = optuna.load_study(study_name="s", storage=f"sqlite:///{out}/study.db")
    assert study.user_attrs["model_source"]["label"] == label
    assert 1.0 < study.user_attrs["baseline_eval_loss"] < 9.0  # a real model, not random weights (ln 262144 = 12.5)
