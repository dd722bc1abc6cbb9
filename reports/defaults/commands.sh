#!/usr/bin/env bash
# The defaults run of issue 42: what `reports/defaults/` and the shipped harness/config/defaults.yaml will come
# from. RUN UP TO THE VALIDATIONS: the six studies (run_smollm2.sh, run_gemma3.sh) and the six-cell
# cross-evaluation to 4 seeds are done and its defaults.yaml ships; the 120-step validations are begun (see
# reports/defaults/README.md). Every step resumes: a second run of this script adds only what is missing
# (a cross-evaluation reads the runs an earlier set of studies left in the same cells).
#
# Six studies, {SmolLM2-135M, Gemma-3-270M} x {stdlib-qa, headline-sentiment, fictional-company}, one space
# (search_spaces/defaults.yaml: r, alpha/r, learning rate 5e-5..5e-3, none and nf4-dq), 40-step trials of 8
# sequences (experiments/defaults.yaml); then the cross-evaluation (each study's best config per mode trained in
# every cell on the cell's shared seeds, seeds added until the regrets are resolved); then both defaults validated
# at 120 steps on two cells against the cell's own best and the published defaults.
#
# Cost on 2 CPU cores with native bf16 (measured 2026-12-07: a 40-step SmolLM2-135M trial 60-75 s, a SmolLM2
# study of 20 trials 22-25 min on a quiet machine; a 40-step Gemma-3-270M trial about 80-90 s, so a Gemma study
# about 30 min): the cross-evaluation trains 12 candidates and the 4 published defaults in 6 cells on 2-4 seeds,
# 192-384 runs, about 4-8 hours (the SmolLM2 cells' runs of the interim cross-evaluation count); the
# validations at 120 steps about an hour each. Run it on a GPU if you have one (same commands; `harness doctor` first). Record the machine
# (`harness doctor --quick`), the commit and each command's wall time in reports/defaults/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

harness models install gemma3-270m   # SmolLM2-135M comes with `make`

source reports/defaults/sweep_to.sh   # sweep_to STUDY [flags]: until the study has 20 finished trials

declare -A MODELS=([smollm2]=smollm2-135m [gemma3]=gemma3-270m)
declare -A TASKS=([stdlib_qa]=stdlib-qa [headlines]=headline-sentiment [company]=fictional-company)
STUDIES=()
for m in smollm2 gemma3; do            # SmolLM2 first: if Gemma-3 has to wait, its three cells are added later
  for t in stdlib_qa headlines company; do
    study="defaults_${m}_${t}"
    STUDIES+=("$study")
    sweep_to "$study" --model "${MODELS[$m]}" --data "${TASKS[$t]}"
  done
done

# The cross-evaluation: every study's best config per mode, in every cell, on the cell's shared seeds (2, then 2
# more at a time for the candidates of unresolved regrets, at most 4); writes reports/defaults/defaults.md, .json,
# .png (the regret heatmap) and defaults.yaml, and each tool's config beside it.
args=(); for s in "${STUDIES[@]}"; do args+=(--study "$s"); done
/usr/bin/time -f "defaults: %e s" \
  harness defaults "${args[@]}" --top 1 --confirm-until resolved --max-seeds 4 \
    --reports-dir reports/defaults --format axolotl,llamafactory,trl,unsloth

# Both defaults at 120 steps on two cells (one per model), against the cell's own best (--top 1) and the published
# defaults: a defaults.yaml given to --defaults-file is trained beside the published defaults, as harness-none
# and harness-nf4-dq.
# Gemma-3 headline-sentiment saturates at 120 steps (every config but PEFT's below 0.002 nats: README), so
# Gemma-3 stdlib-qa is the Gemma cell that can tell configs apart; the headline cell's first look is kept.
for study in defaults_smollm2_stdlib_qa defaults_gemma3_headlines defaults_gemma3_stdlib_qa; do
  /usr/bin/time -f "$study validate: %e s" \
    harness validate --study "$study" --steps 120 --top 1 --defaults-file reports/defaults/defaults.yaml \
      --confirm-until resolved --max-seeds 4 --reports-dir "reports/defaults/validation_${study}"
done

# Ship what the report says: the chosen configs become `--warm-start defaults`' shipped defaults.
cp reports/defaults/defaults.yaml harness/config/defaults.yaml
