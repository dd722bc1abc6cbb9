#!/bin/bash
# reports/models/: per built-in model, the conversion (join + SHA-256 check + dequantize + save, fresh cache), a
# 16-bit load of the converted checkpoint, then a grid sweep over every quantization mode at the default batch
# (8 x 1, r 16, alpha 2r, lr 2e-4, all linear layers; stdlib-qa, 64 held-out examples, nothing generated).
# The untuned eval loss per mode is the study's baseline_by_mode; tokens/s and peak memory are each trial's.
#   reports/models/measure.sh MODEL [STEPS] [CACHE]     e.g. reports/models/measure.sh gemma3-270m 8 /tmp/cache
# EVAL=N (default 64) sets the held-out examples; BATCH=N (default 8) the sequences per step.
set -e
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 WANDB_MODE=disabled HARNESS_CACHE=${3:-/tmp/harness-models-cache}
M=${1:?model}; STEPS=${2:-8}; WORK=${WORK:-/tmp/harness-models}
mkdir -p "$WORK"
.venv/bin/harness doctor --quick
.venv/bin/python - "$M" <<'PY'
import sys, time, resource
from harness.trial.models import resolve_model, checkpoint_path, load_base_model
t = time.perf_counter(); path = checkpoint_path(resolve_model(sys.argv[1])); conv = time.perf_counter() - t
t = time.perf_counter(); load_base_model(path, "none", "cpu"); load = time.perf_counter() - t
print(f"MEASURE {sys.argv[1]} conversion_s={conv:.1f} load_none_s={load:.2f} "
      f"peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f}", flush=True)
PY
cat > "$WORK/modes_space.yaml" <<'Y'
axes:
  lora_r: 16
  lora_alpha: {ratio: 2}
  learning_rate: 2.0e-4
  quantization: {choices: [none, int8, nf4, nf4-dq, fp4, fp4-dq]}
Y
printf 'data_options: {eval_size: %s}\neval: {metrics: [], generate_size: 0}\ntrain: {batch_size: %s}\n' \
  "${EVAL:-64}" "${BATCH:-8}" > "$WORK/modes_exp.yaml"
.venv/bin/harness sweep -e "$WORK/modes_exp.yaml" --model "$M" --space "$WORK/modes_space.yaml" --sampler grid \
  --trials 6 --max-steps "$STEPS" --no-lr-range-test --study "modes-$M" --out "$WORK/modes-$M" --wandb disabled --seed 0
