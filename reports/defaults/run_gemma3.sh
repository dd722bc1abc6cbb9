#!/usr/bin/env bash
# The Gemma-3-270M studies of commands.sh, one after another (each about 30 min on 2 cores with native bf16):
# the second model's three cells. Every study resumes where it stopped (sweep_to counts its finished trials).
# The six-study cross-evaluation and the validations are commands.sh's next steps.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH"

harness models install gemma3-270m
source reports/defaults/sweep_to.sh   # sweep_to STUDY [flags]: until the study has 20 finished trials

for pair in stdlib_qa:stdlib-qa headlines:headline-sentiment company:fictional-company; do
  sweep_to "defaults_gemma3_${pair%%:*}" --model gemma3-270m --data "${pair#*:}"
done
