#!/usr/bin/env bash
# Proves harness's CUDA paths on one GPU in about 8 minutes (issue 9, section 7; steps 0-4 took 4-5.5 minutes
# on an H100, step 5 is new and not yet timed there). No network needed: only the built-in model and data.
#
#   1. `harness doctor` names the CUDA device and all six quantization modes train.
#   2. All six modes (none, int8, nf4, nf4-dq, fp4, fp4-dq) train short trials on smollm2-135m on CUDA,
#      four passes each: "cold" (the mode's first trial, which builds its cached quantized checkpoint,
#      in a fresh cache), "warm" (the cache built), "batch1" (batch 1: weights dominate) and "steady"
#      (40 steps, for throughput); GPU_CHECK_PASSES=warm,steady picks some.
#      Checks: every trial completes with device cuda; its recorded peak is CUDA's max allocated (never
#      above torch.cuda.max_memory_allocated() over the trial, which resets the counter between its
#      training and eval windows, so the script keeps the largest value seen before each reset); weight
#      memory is ordered
#      4-bit < int8 < 16-bit. The peak order 4-bit < int8 < 16-bit is reported; where it does not hold,
#      the script says why from the measured weight breakdown (see /work/shared/GPU_NOTES.md, item 1).
#   2b. A bare transformers + peft loop on the same model (none, nf4): seconds per step beside harness's.
#   3. A 2-worker sweep (`--workers 2`, the same model, both workers on the one GPU) completes all its trials.
#   4. Each LoRA variant (plain, rsLoRA, DoRA, PiSSA, LoRA+) trains on CUDA, 16-bit and NF4-DQ (not PiSSA):
#      seconds per step side by side (benchmarks/variant_step_time.py).
#   5. Packed trials: K = 1, 4, 8 packed against one at a time, 16-bit and NF4-DQ, tokens/s and peak
#      (benchmarks/pack_throughput.py, pack.json), and `harness doctor --pack-fit` on the model; 5b. a packed
#      trial against the same trial alone under bf16 autocast (benchmarks/pack_equivalence.py).
#
# Then, in a call of its own, benchmarks/gpu_time_to_target.sh (6-9 minutes): issue 22's time-to-target row
# against Trainer.hyperparameter_search on the GPU, one trial at a time and in packs of 4.
#
# Outputs (logs, modes.json, workers/, summary.json) go to "${OUT:-benchmarks/results/gpu_check}".
# Exit 0 when every check passes, 1 when one fails, 3 when torch sees no CUDA GPU.
#
#   bash benchmarks/gpu_check.sh                       # on a GPU machine
#   GPU_CHECK_MODEL=path/to/model GPU_CHECK_PASSES=steady bash benchmarks/gpu_check.sh   # another model, one pass
#   GPU_CHECK_DRY_RUN=1 bash benchmarks/gpu_check.sh   # anywhere: skips the CUDA assertion and runs every
#                                                      # step on the CPU with tiny-llama (checks the script)
set -uo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-benchmarks/results/gpu_check}"
DRY="${GPU_CHECK_DRY_RUN:-0}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
MODEL=smollm2-135m
[ "$DRY" = 1 ] && MODEL=tiny-llama
MODEL="${GPU_CHECK_MODEL:-$MODEL}"  # any model harness accepts, e.g. a local folder of safetensors
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
# A fresh harness cache, so that "cold" trials really build their quantized checkpoint (and the GGUF
# conversion of the built-in model happens here, on the CPU, before any timing).
export HARNESS_CACHE="$OUT/harness-cache"
rm -rf "$HARNESS_CACHE" "$OUT/workers" "$OUT"/*.log "$OUT"/*.json  # only what an earlier run left
mkdir -p "$OUT"
START=$(date +%s)
FAILED=()

note() { echo "gpu_check: $*" | tee -a "$OUT/gpu_check.log"; }

# step NAME SECONDS CMD...: run CMD with a time limit, its output in $OUT/NAME.log; record a failure.
step() {
    local name=$1 limit=$2
    shift 2
    local began=$(date +%s)
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    local took=$(( $(date +%s) - began ))
    if [ "$rc" -eq 0 ]; then
        note "ok    $name (${took} s)"
    else
        [ "$rc" -eq 124 ] && note "      $name ran past its ${limit} s limit"
        note "FAIL  $name (exit $rc, ${took} s): see $OUT/$name.log"
        tail -n 15 "$OUT/$name.log" | sed 's/^/      | /'
        FAILED+=("$name")
    fi
}

# ---- 0. a CUDA GPU that torch can use -----------------------------------------------------------------
if [ "$DRY" != 1 ]; then
    if ! "$PYTHON" -c 'import torch; assert torch.cuda.is_available()' 2> "$OUT/cuda.log"; then
        note "torch sees no CUDA GPU: $("$PYTHON" -c 'import torch; print(f"torch {torch.__version__}, built for CUDA {torch.version.cuda}")' 2>&1 | tail -n 1)"
        command -v nvidia-smi > /dev/null && note "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -n 1)"
        note "this check needs a CUDA build of torch on a machine with an NVIDIA GPU (GPU_CHECK_DRY_RUN=1 runs it on the CPU)"
        exit 3
    fi
else
    note "dry run: no CUDA assertion, every step on the CPU with $MODEL"
fi

# ---- 1. doctor ----------------------------------------------------------------------------------------
step doctor 90 "$PYTHON" -m harness doctor
if [ -f "$OUT/doctor.log" ]; then
    grep -q "6/6 modes train" "$OUT/doctor.log" || { note "FAIL  doctor: not every quantization mode trains"; FAILED+=(doctor-modes); }
    if [ "$DRY" != 1 ] && ! grep -q "^device  *cuda:" "$OUT/doctor.log"; then
        note "FAIL  doctor: the device is not CUDA"; FAILED+=(doctor-device)
    fi
fi

# ---- 2. six modes, one short trial each per pass: cold / warm / batch 1 / steady ---------------------
step modes 400 "$PYTHON" - "$MODEL" "$OUT/modes.json" "$DRY" <<'PY'
"""Run each quantization mode once per pass in this process and check what CUDA says about memory."""
import json
import os
import sys
import time

import torch

from harness.config.dataset import DataSpec
from harness.config.evaluation import EvalSpec
from harness.config.lora import LoraSpec
from harness.config.model import QUANTIZATION_MODES, ModelSpec, QuantSpec
from harness.config.training import TrainSpec
from harness.config.trial import TrialConfig
from harness.trial.run import TrialCache, run_trial

model, out, dry = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
cuda = torch.cuda.is_available() and not dry
# (label, train batch size, optimizer steps): "steady" is a longer warm run for throughput
PASSES = (("cold", 8, 10), ("warm", 8, 10), ("batch1", 1, 10), ("steady", 8, 40))
if os.environ.get("GPU_CHECK_PASSES"):  # e.g. "warm,steady": a quicker re-check
    PASSES = tuple(p for p in PASSES if p[0] in os.environ["GPU_CHECK_PASSES"].split(","))
cache, rows, problems = TrialCache(), [], []
# A trial resets CUDA's peak counter between its training and its eval window, so max_memory_allocated()
# after it covers only the last window: keep the largest value seen before every reset too.
window_max = [0.0]
if cuda:
    _reset_peak = torch.cuda.reset_peak_memory_stats

    def _reset_keeping_max(*args, **kwargs):
        window_max[0] = max(window_max[0], torch.cuda.max_memory_allocated())
        _reset_peak(*args, **kwargs)

    torch.cuda.reset_peak_memory_stats = _reset_keeping_max


def config(mode: str, batch: int, steps: int) -> TrialConfig:
    """r 16 on the built-in data; a small eval and 4 generated answers keep a trial to seconds."""
    return TrialConfig(model=ModelSpec(model), quant=QuantSpec(mode), lora=LoraSpec(r=16, alpha=32.0),
                       train=TrainSpec(max_steps=steps, batch_size=batch, learning_rate=3e-4, seed=0),
                       data=DataSpec(eval_size=32), eval=EvalSpec(batch_size=max(1, batch), generate_size=4))


for label, batch, steps in PASSES:
    for mode in QUANTIZATION_MODES:
        if cuda:
            torch.cuda.synchronize()
            _reset_peak()
            window_max[0] = 0.0
        began = time.perf_counter()
        result = run_trial(config(mode, batch, steps), cache).to_dict()
        if cuda:
            torch.cuda.synchronize()
        row = {"pass": label, "mode": mode, "batch": batch, "steps": steps, "seconds": round(time.perf_counter() - began, 2),
               "max_allocated_mb": max(window_max[0], torch.cuda.max_memory_allocated()) / 2**20 if cuda else None,
               "weights_mb": (result.get("weights") or {}).get("total_mb") or result["metrics"].get("base_model_mb")}
        row.update({k: result.get(k) for k in ("status", "reason", "device", "device_name", "eval_loss",
                                               "peak_memory_mb", "train_peak_memory_mb", "eval_peak_memory_mb",
                                               "train_seconds", "tokens_per_second", "optimizer", "compute_dtype",
                                               "weights")})
        rows.append(row)
        print(f"{label:<6} {mode:<7} {row['status']:<8} loss {row['eval_loss'] or float('nan'):.4f}  "
              f"peak {row['peak_memory_mb'] or 0:8.1f} MiB  max_alloc {row['max_allocated_mb'] or 0:8.1f} MiB  "
              f"weights {row['weights_mb'] or 0:7.1f} MiB  {row['tokens_per_second'] or 0:8.0f} tok/s  "
              f"{row['seconds']:6.2f} s", flush=True)
        if row["status"] != "complete":
            problems.append(f"{label} {mode}: {row['status']}: {row['reason']}")
        elif row["device"] != ("cuda" if cuda else "cpu"):
            problems.append(f"{label} {mode}: ran on {row['device']}")
        elif cuda and not (row["peak_memory_mb"] or 0) <= row["max_allocated_mb"] + 0.5:
            problems.append(f"{label} {mode}: recorded peak {row['peak_memory_mb']} MiB is not CUDA's max "
                            f"allocated ({row['max_allocated_mb']:.1f} MiB)")


def ordered(values: dict[str, float]) -> bool:
    """4-bit < int8 < 16-bit: every 4-bit mode below int8, int8 below none."""
    four = [values[m] for m in QUANTIZATION_MODES if m not in ("none", "int8")]
    return max(four) < values["int8"] < values["none"]


def by_mode(label: str, key: str) -> dict[str, float]:
    return {r["mode"]: r[key] for r in rows if r["pass"] == label and r.get(key) is not None}


weights = by_mode("warm", "weights_mb")
if cuda and len(weights) == len(QUANTIZATION_MODES) and not ordered(weights):  # the dry run's tiny model: no order
    problems.append(f"weight memory is not ordered 4-bit < int8 < 16-bit: {weights}")
peaks = {label: by_mode(label, "peak_memory_mb") for label, _, _ in PASSES}
order = {label: len(p) == len(QUANTIZATION_MODES) and ordered(p) for label, p in peaks.items()}
why = None
if not all(order.values()) and len(weights) == len(QUANTIZATION_MODES):
    rest = {m: round(peaks["warm"][m] - weights[m], 1) for m in peaks["warm"] if m in weights}
    nf4 = next((r.get("weights") or {} for r in rows if r["pass"] == "warm" and r["mode"] == "nf4"), {})
    why = (f"peak = weights + everything else (activations, logits over the vocabulary, optimizer state, eval "
           f"and generation). Weights are ordered ({', '.join(f'{m} {v:.0f}' for m, v in weights.items())} MiB) "
           f"but the rest is not ({', '.join(f'{m} {v:.0f}' for m, v in rest.items())} MiB): on a model this small "
           f"activations outweigh the weight savings, and quantized modes keep their non-quantized parameters "
           f"in fp32 after prepare_model_for_kbit_training (nf4: {nf4.get('other_by_dtype', 'breakdown not recorded')} "
           f"MiB) and an fp32 residual stream; the order needs a model of >= 1B parameters.")
    print(f"peak order 4-bit < int8 < 16-bit: {order}; why not everywhere: {why}")
cold, warm = by_mode("cold", "peak_memory_mb"), by_mode("warm", "peak_memory_mb")
inflation = {m: round(cold[m] - warm[m], 1) for m in cold if m in warm}
print(f"first trial of each mode minus a warm one (the quantized-checkpoint build): {inflation} MiB")
with open(out, "w") as handle:
    json.dump({"model": model, "cuda": cuda, "device_name": torch.cuda.get_device_name() if cuda else None,
               "rows": rows, "weights_ordered": not any(p.startswith("weight memory") for p in problems),
               "peak_ordered": order, "peak_order_explained": why, "cold_minus_warm_mb": inflation,
               "problems": problems}, handle, indent=2)
for problem in problems:
    print(f"FAIL {problem}")
sys.exit(1 if problems else 0)
PY

# ---- 2b. a bare peft loop on the same model: what a harness step costs beyond plain peft code -----------
step bare 120 "$PYTHON" - "$MODEL" "$OUT/bare.json" "$OUT/modes.json" "$DRY" <<'PY'
"""40 timed steps (after 5 warm-up) of plain transformers + peft LoRA r 16 on all linear layers, batch 8 x 64
tokens, in none and nf4, with the harness's numerics (bf16 autocast on CUDA, fused AdamW); then seconds per
step next to the harness's "steady" trials of modes.json (their batches are 8 padded examples of the built-in
data, so tokens/s differ; seconds per step compare the loop)."""
import json
import sys
import time

import torch
from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from harness.trial.models import checkpoint_path, resolve_model

model_name, out, modes_json, dry = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
cuda = torch.cuda.is_available() and not dry
device = "cuda" if cuda else "cpu"
path = checkpoint_path(resolve_model(model_name))
rows = {}
for mode in ("none", "nf4"):
    quant = None if mode == "none" else BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                          bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if cuda else torch.float32,
                                                 quantization_config=quant,
                                                 device_map={"": 0} if cuda else None)
    if quant is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-4, fused=cuda)
    ids = torch.randint(0, model.config.vocab_size, (8, 64), device=device)
    model.train()
    for step in range(45):
        if step == 5:
            if cuda:
                torch.cuda.synchronize()
            began = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - began) / 40
    rows[mode] = {"seconds_per_step": seconds, "tokens_per_second": 8 * 64 / seconds}
    del model, optimizer
    if cuda:
        torch.cuda.empty_cache()
harness_rows = [r for r in json.load(open(modes_json))["rows"] if r["pass"] == "steady"]
for r in harness_rows:
    if r["mode"] in rows and r.get("train_seconds"):
        rows[r["mode"]]["harness_seconds_per_step"] = r["train_seconds"] / r["steps"]
        rows[r["mode"]]["harness_tokens_per_second"] = r["tokens_per_second"]
for mode, r in rows.items():
    print(f"{mode:<5} bare peft {r['seconds_per_step'] * 1000:7.1f} ms/step ({r['tokens_per_second']:6.0f} tok/s at 8x64)"
          + (f"   harness {r['harness_seconds_per_step'] * 1000:7.1f} ms/step ({r['harness_tokens_per_second']:6.0f} "
             f"real tok/s)" if "harness_seconds_per_step" in r else "   harness: no steady trial"))
json.dump({"model": model_name, "device": device, "rows": rows}, open(out, "w"), indent=2)
PY

# ---- 3. two workers on one GPU ------------------------------------------------------------------------
mkdir -p "$OUT/workers"
cat > "$OUT/workers/space.yaml" <<'YAML'
axes:
  lora_r: {choices: [4, 8]}
  lora_alpha: {ratio: 2}
  learning_rate: {low: 1.0e-3, high: 1.0e-2, log: true}
  quantization: {choices: [none, nf4]}
YAML
cat > "$OUT/workers/two.yaml" <<YAML
model: $MODEL
space: $OUT/workers/space.yaml
max_steps: 5
wandb: disabled
data_options: {eval_size: 16, train_size: 64}
eval: {metrics: [], generate_size: 0}
YAML
step workers 180 "$PYTHON" -m harness sweep -e "$OUT/workers/two.yaml" --workers 2 --trials 4 --study two \
    --out "$OUT/workers/study"
[ -f "$OUT/workers/study/trials.jsonl" ] && step workers-records 30 "$PYTHON" - "$OUT/workers/study/trials.jsonl" "$DRY" <<'PY'
"""The 2-worker sweep: 4 complete trials, both workers ran some, each on the device it was given."""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1])]
device = "cpu" if sys.argv[2] == "1" else "cuda"
states = sorted(r["state"] for r in rows)
workers = sorted({r["worker"]["worker"] for r in rows})
devices = {str(r["result"].get("device")) for r in rows}
print(f"{len(rows)} trials {states}, workers {workers}, devices {sorted(devices)}, "
      f"CUDA_VISIBLE_DEVICES {sorted({str(r['worker'].get('cuda_visible_devices')) for r in rows})}")
assert states == ["COMPLETE"] * 4, states
assert workers == [1, 2], f"one worker ran every trial: {workers}"
assert devices == {device}, f"a trial ran on the wrong device: {devices}"
PY

# ---- 4. LoRA variants on CUDA (issue 13) ---------------------------------------------------------------
# rsLoRA, DoRA, PiSSA and LoRA+ (fused AdamW in its groups) train on the 16-bit base; DoRA and LoRA+ on NF4-DQ.
step variants 240 "$PYTHON" benchmarks/variant_step_time.py --model "$MODEL" --rounds 3 --steps 5 \
    --json "$OUT/variants_none.json"
step variants-nf4 240 "$PYTHON" benchmarks/variant_step_time.py --model "$MODEL" --rounds 3 --steps 5 \
    --quantization nf4-dq --variants plain,rslora,dora,lora+ --json "$OUT/variants_nf4-dq.json"

# ---- 5. packed trials on CUDA (issue 24) --------------------------------------------------------------
# Total tokens/s and peak memory of K trials packed on one copy of the base against the same K one at a time
# (K = 1, 4, 8; 16-bit and NF4-DQ), and how many pack members this GPU holds for the model: what a packed
# sweep (`harness sweep --pack K`) gains on a GPU, where a small-batch step waits on the host.
step pack 360 "$PYTHON" benchmarks/pack_throughput.py --model "$MODEL" --modes none nf4-dq --ks 1 4 8 \
    --ways one packed --steps 20 --batch-size 2 --json "$OUT/pack.json"
step pack-fit 180 "$PYTHON" -m harness doctor --quick --pack-fit "$MODEL" --mode nf4-dq --batch 8 --seq 128
# 5b. How far a packed trial ends from the same trial alone under bf16 autocast, 16-bit and NF4-DQ: the
# tolerance that holds on CUDA (tests/trial/test_pack.py states 1e-5 for fp32 on the CPU).
step pack-equal 300 "$PYTHON" benchmarks/pack_equivalence.py --model "$MODEL" --modes none nf4-dq --steps 10 \
    --json "$OUT/pack_equivalence.json"

# ---- summary ------------------------------------------------------------------------------------------
SECONDS_TAKEN=$(( $(date +%s) - START ))
"$PYTHON" - "$OUT" "$SECONDS_TAKEN" "$DRY" "${FAILED[@]}" <<'PY'
"""summary.json: what ran where, what passed, how long it took."""
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

out, seconds, dry, failed = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]
modes = json.loads((out / "modes.json").read_text()) if (out / "modes.json").exists() else {}
revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
versions = {}
for name in ("torch", "transformers", "peft", "bitsandbytes"):
    try:
        versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        versions[name] = None
summary = {"ok": not failed, "failed": failed, "seconds": seconds, "dry_run": dry, "git": revision,
           "python": platform.python_version(), "versions": versions,
           "device_name": modes.get("device_name"), "peak_ordered": modes.get("peak_ordered"),
           "peak_order_explained": modes.get("peak_order_explained"),
           "cold_minus_warm_mb": modes.get("cold_minus_warm_mb"), "problems": modes.get("problems")}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"gpu_check: {'all checks passed' if not failed else 'FAILED: ' + ', '.join(failed)} in {seconds} s "
      f"({out / 'summary.json'})")
PY
rm -rf "$HARNESS_CACHE"  # converted and quantized checkpoints: large, and rebuilt on the next run
[ "${#FAILED[@]}" -eq 0 ]
