"""`harness doctor`: what this machine can run, found out by trying it on a tiny in-memory model.

Every quantization mode is exercised for real: a tiny random Llama (2 layers, hidden 64, vocab
128, no download) is saved to a temporary folder, loaded in that mode, given a LoRA adapter and
trained for one optimizer step. A mode is ok when the loss is finite and every LoRA B matrix
changed. A failing mode is a one-line result, never a crash. On a 2-core CPU the whole check
takes about 5 s, most of it importing transformers and peft.
"""

from __future__ import annotations

import gc
import importlib.metadata
import importlib.util
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.runtime.devices import bf16_supported, compute_dtype, loaded_hub_kernels, pick_device
from harness.trial.models import INSTALL_HINT as BUILTIN_INSTALL, TINY_LLAMA, smollm2_gguf_path
from harness.trial.quantization import quantization_config
from harness.runtime.quiet import quiet
from harness.config.errors import one_line
from harness.config.model import QUANTIZATION_MODES

VERSIONED_PACKAGES = ("torch", "transformers", "peft", "bitsandbytes", "optuna", "wandb", "datasets")
BUILTIN_MODEL = "smollm2-135m"
TINY_VOCAB = 128
"""Vocabulary of the tiny model the checks train (models.TINY_LLAMA otherwise): token ids are random."""


@dataclass(frozen=True)
class ModeCheck:
    """The outcome of training one step in one quantization mode."""

    mode: str
    ok: bool
    detail: str
    """What happened ("trained 1 step, loss 4.85, 0.05 s") or the one-line error."""


@dataclass(frozen=True)
class DoctorReport:
    """What this machine can run."""

    device: str
    """Where trials run: "cuda: NVIDIA H100 80GB HBM3 (79 GiB)" or "cpu: 2 cores"."""
    compute_dtype: str
    """dtype of 16-bit LoRA weights and of QLoRA compute ("bfloat16", "float16", "float32")."""
    bf16_supported: bool
    versions: dict[str, str]
    """python and each package in VERSIONED_PACKAGES ("not installed" when missing)."""
    bnb_backend: str
    """bitsandbytes backend and native library, or why bitsandbytes is unusable."""
    modes: list[ModeCheck] = field(default_factory=list)
    """One check per quantization mode; empty when run_doctor(check_modes=False)."""
    builtin_model: str = ""
    """Whether the built-in real model is installed, and where (or how to install it)."""
    seconds: float = 0.0
    """Wall time of run_doctor."""


def describe_device(device: str) -> str:
    """A one-line description of ``device``: name and memory for CUDA, usable cores for CPU."""
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        return f"cuda: {props.name} ({props.total_memory / 2**30:.0f} GiB)"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"cpu: {cores} cores{_unused_gpu_warning()}"


def _unused_gpu_warning() -> str:
    """Said loudly beside a CPU device when the machine has an NVIDIA GPU that torch does not use (a CPU
    build of torch, or a driver torch cannot talk to): every trial would quietly run on the CPU."""
    if not (os.path.exists("/dev/nvidia0") or os.path.isdir("/proc/driver/nvidia/gpus")):
        return ""
    if torch.version.cuda is None:
        return (f" -- WARNING: this machine has an NVIDIA GPU but torch {torch.__version__} is a CPU build; "
                "trials run on the CPU: install a CUDA build of torch")
    return " -- WARNING: this machine has an NVIDIA GPU but torch.cuda.is_available() is False; trials run on the CPU"


def package_versions() -> dict[str, str]:
    """Python's version and each package's installed version."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def bnb_backend() -> str:
    """Which bitsandbytes backend and native library this process uses (importing it quietly), or
    `unusable: <why>` when quantized modes cannot run (see QUANTIZED_UNUSABLE)."""
    try:
        with quiet():
            from bitsandbytes import cextension
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return f"{QUANTIZED_UNUSABLE}: {one_line(exc)}"
    backend = cextension.BNB_BACKEND
    failure = _native_load_error(cextension)
    if failure is not None and backend not in ("CPU", "XPU"):  # a GPU backend has no fallback without it
        return f"{QUANTIZED_UNUSABLE}: {backend} native library failed to load: {failure}"
    native = vars(cextension.lib).get("_lib")  # vars(): the library object answers any attribute with a stub
    library = Path(native._name).name if native is not None else "no native library (PyTorch fallback)"
    if backend == "CPU":
        kernels = loaded_hub_kernels()
        four_bit = f"hub kernel {', '.join(kernels)}" if kernels else "its own"
        return f"{backend}: {library}, {torch.backends.cpu.get_cpu_capability()}; 4-bit matmul: {four_bit}"
    return f"{backend}: {library}"


QUANTIZED_UNUSABLE = "unusable"
"""How bnb_backend's answer starts when bitsandbytes cannot run here; the quantized modes are then reported
as not available with that reason rather than tried."""


def _native_load_error(cextension: Any) -> str | None:
    """Why bitsandbytes' native library did not load (first line of its error), or None when it did. On a
    failed load bitsandbytes keeps a stand-in object that raises only when a native function is called."""
    mock = getattr(cextension, "ErrorHandlerMockBNBNativeLibrary", None)
    if mock is None or not isinstance(cextension.lib, mock):
        return None
    message = str(vars(cextension.lib).get("error_msg") or "unknown error").strip()
    return one_line(message) or "unknown error"


def builtin_model_status() -> str:
    """Whether the built-in real model's package is installed, found without importing it."""
    gguf = smollm2_gguf_path()
    if gguf is None:
        return f"{BUILTIN_MODEL}: not installed: {BUILTIN_INSTALL}"
    from harness.trial.models import resolve_model
    from harness.trial.source import describe_source

    label = describe_source(resolve_model(BUILTIN_MODEL)).label  # the source is 4-bit: say so
    return f"{BUILTIN_MODEL}: installed: {label} ({gguf}, {gguf.stat().st_size / 2**20:.0f} MiB)"


def other_models_status() -> str:
    """Which of the other built-in real models are installed (`harness models` says how to install each)."""
    from harness.trial.builtins import BUILTINS, is_installed

    states = [f"{name} {'installed' if is_installed(row) else 'not installed'}"
              for name, row in BUILTINS.items() if name != BUILTIN_MODEL]
    return ", ".join(states) + " (harness models)"


def run_doctor(check_modes: bool = True) -> DoctorReport:
    """Inspect this machine; with ``check_modes``, train one step in every quantization mode."""
    start = time.perf_counter()
    device = pick_device()
    dtype = compute_dtype(device)
    bnb = bnb_backend()
    unusable = bnb.startswith(QUANTIZED_UNUSABLE)
    modes = check_quantization_modes(device, dtype, bnb if unusable else None) if check_modes else []
    return DoctorReport(
        device=describe_device(device), compute_dtype=_dtype_name(dtype),
        bf16_supported=bf16_supported(device), versions=package_versions(),
        bnb_backend=bnb, modes=modes, builtin_model=builtin_model_status(),
        seconds=time.perf_counter() - start)


def check_quantization_modes(device: str, dtype: torch.dtype, bnb_unusable: str | None = None) -> list[ModeCheck]:
    """Train one LoRA step on a tiny random Llama in each mode of QUANTIZATION_MODES; with `bnb_unusable`
    (bitsandbytes cannot run here, and why) the quantized modes are reported as not available, not tried."""
    cuda_devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    # fork_rng: the checks seed torch, and must not change the caller's random streams
    with quiet(), torch.random.fork_rng(devices=cuda_devices), tempfile.TemporaryDirectory() as tmp:
        try:
            _save_tiny_llama(Path(tmp))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            return [ModeCheck(mode, False, f"tiny model: {one_line(exc)}") for mode in QUANTIZATION_MODES]
        return [_check_mode(Path(tmp), mode, device, dtype) if mode == "none" or bnb_unusable is None
                else ModeCheck(mode, False, f"not available: bitsandbytes {bnb_unusable}")
                for mode in QUANTIZATION_MODES]


def _check_mode(model_dir: Path, mode: str, device: str, dtype: torch.dtype) -> ModeCheck:
    start = time.perf_counter()
    try:
        loss, changed, kinds = _train_one_step(model_dir, mode, device, dtype)
    except Exception as exc:  # noqa: BLE001 - a failing mode is a result
        return ModeCheck(mode, False, one_line(exc))
    finally:
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    seconds = time.perf_counter() - start
    if not math.isfinite(loss):
        return ModeCheck(mode, False, f"loss is {loss} after 1 step")
    if not changed:
        return ModeCheck(mode, False, "LoRA weights did not change after 1 optimizer step")
    if set(kinds) != ({mode} if mode != "none" else set()):
        return ModeCheck(mode, False, f"base layers loaded as {sorted(set(kinds)) or 'unquantized'}")
    stored = f"{len(kinds)} {mode} layers" if kinds else f"{_dtype_name(dtype)} weights"
    return ModeCheck(mode, True, f"trained 1 step on {stored}, loss {loss:.2f}, {seconds:.2f} s")


def _train_one_step(model_dir: Path, mode: str, device: str,
                    dtype: torch.dtype) -> tuple[float, bool, list[str]]:
    """Load ``model_dir`` in ``mode``, attach LoRA r=4, take one AdamW step.

    Returns the loss, whether every LoRA B matrix changed, and the storage mode of each quantized
    base layer (so a mode that silently loaded in another format is caught).
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, device_map={"": device},
        quantization_config=quantization_config(mode, dtype))
    kinds = _quantized_kinds(model)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    lora_b = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    ids = torch.randint(0, TINY_VOCAB, (2, 16), device=device)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    params = dict(model.named_parameters())
    changed = bool(lora_b) and all(not torch.equal(params[n].detach(), v) for n, v in lora_b.items())
    return float(loss.detach().float()), changed, kinds


def _quantized_kinds(model: torch.nn.Module) -> list[str]:
    """The mode each bitsandbytes layer of ``model`` is actually stored in ("int8", "nf4-dq"...)."""
    kinds = []
    for module in model.modules():
        if type(module).__module__.startswith("bitsandbytes"):
            state = getattr(getattr(module, "weight", None), "quant_state", None)
            if state is None:
                kinds.append("int8")
            else:
                kinds.append(state.quant_type + ("-dq" if state.nested else ""))
    return kinds


def _save_tiny_llama(folder: Path) -> None:
    """The tiny random Llama of models.TINY_LLAMA with a vocabulary of TINY_VOCAB, saved to ``folder``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=TINY_VOCAB, **TINY_LLAMA)).save_pretrained(folder)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


CPU_KINDS = {
    True: "native bf16 (AVX512-BF16 or AMX): bf16 compute; `make sweep` took 5-9 min on 2 cores",
    False: "no native bf16 (AVX2 only): fp32 compute, a SmolLM2-135M trial about 4x slower than with native bf16; "
           "`make sweep` took 21 min on 2 cores (AMD EPYC Zen 3, 2026-12-07), `make test` about 15 min",
}
"""What each kind of CPU means for a user's time, as measured on this project's 2-core machines (docs/setup.md)."""


def cpu_kind(bf16: bool) -> str:
    """The kind of CPU, by whether bf16 is native, and what to expect of it."""
    return CPU_KINDS[bf16]


def format_report(report: DoctorReport) -> str:
    """The report as aligned plain text for the terminal; on a CPU its second line says which kind of CPU this
    is and what to expect of it."""
    yes_no = "yes" if report.bf16_supported else "no"
    versions = ", ".join(f"{name} {version}" for name, version in report.versions.items())
    lines = [
        f"device          {report.device}",
        *([f"cpu kind        {cpu_kind(report.bf16_supported)}"] if report.device.startswith("cpu") else []),
        f"compute dtype   {report.compute_dtype} (native bf16: {yes_no})",
        f"bitsandbytes    {report.bnb_backend}",
        f"built-in model  {report.builtin_model}",
        f"other models    {other_models_status()}",
        f"versions        {versions}",
    ]
    if not report.modes:
        lines.append("quantization    not checked")
    else:
        works = sum(check.ok for check in report.modes)
        lines.append(f"quantization    {works}/{len(report.modes)} modes train "
                     "(tiny random Llama, LoRA r=4, one optimizer step):")
        lines += [f"  {'ok' if c.ok else 'FAIL':<4}  {c.mode:<7} {c.detail}" for c in report.modes]
    lines.append(f"checked in {report.seconds:.1f} s")
    return "\n".join(lines)
