#!/usr/bin/env bash
# The SmolLM2-135M half of commands.sh (issue 42 allows SmolLM2 x 3 tasks first, Gemma-3-270M added later): the
# three studies, the cross-evaluation of their best config per mode with the published defaults beside them, and
# both defaults validated at 120 steps on two SmolLM2 cells. Every step resumes where it stopped.
#
# Run so far (2026-12-07, reports/defaults/README.md): the three studies, the interim cross-evaluation
#   harness defaults --study defaults_smollm2_stdlib_qa --study defaults_smollm2_headlines \
#     --study defaults_smollm2_company --top 1 --seeds 2 --no-published --reports-dir reports/defaults/interim
# (candidates only, 2 seeds), and the cross-evaluation below with the published defaults, to 4 seeds
# (reports/defaults/smollm2). The validations at 120 steps wait for the six-study choice (commands.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"

source reports/defaults/sweep_to.sh   # sweep_to STUDY [flags]: until the study has 20 finished trials

STUDIES=()
for pair in stdlib_qa:stdlib-qa headlines:headline-sentiment company:fictional-company; do
  t="${pair%%:*}"; data="${pair#*:}"
  study="defaults_smollm2_${t}"
  STUDIES+=("$study")
  sweep_to "$study" --model smollm2-135m --data "$data"
done
args=(); for s in "${STUDIES[@]}"; do args+=(--study "$s"); done
/usr/bin/time -f "defaults: %e s" \
  harness defaults "${args[@]}" --top 1 --confirm-until resolved --max-seeds 4 \
    --reports-dir reports/defaults/smollm2 --format axolotl,llamafactory,trl,unsloth
for study in defaults_smollm2_stdlib_qa defaults_smollm2_headlines; do
  /usr/bin/time -f "$study validate: %e s" \
    harness validate --study "$study" --steps 120 --top 1 --defaults-file reports/defaults/smollm2/defaults.yaml \
      --confirm-until resolved --max-seeds 4 --reports-dir "reports/defaults/smollm2/validation_${study}"
done
