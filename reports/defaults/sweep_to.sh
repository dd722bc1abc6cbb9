# Sourced by commands.sh and run_smollm2.sh. `harness sweep --trials N` runs N more trials, so a second run of a
# script would add 20 to every study: sweep_to runs a study until it has 20 finished trials and skips it when it
# has them.
sweep_to() {
  local study=$1; shift
  local done=0
  if [ -f "experiments/$study/trials.jsonl" ]; then
    done=$(grep -c '"state": "COMPLETE"' "experiments/$study/trials.jsonl" || true)
  fi
  if [ "$done" -lt 20 ]; then
    /usr/bin/time -f "$study sweep: %e s" \
      harness sweep -e experiments/defaults.yaml --study "$study" --trials $((20 - done)) "$@"
  fi
}
