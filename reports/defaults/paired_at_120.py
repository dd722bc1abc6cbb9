"""Each shipped default against the published defaults of its mode at the long budget, paired by seed: the
differences `harness validate` does not print (it compares every config with the cell's best). Reads the
validation's linked study and its continuations from the study's database; trains nothing. The interval is over
seeds only (harness's own read-outs add the held-out set's bootstrap noise in quadrature), so it is narrower.

    python reports/defaults/paired_at_120.py defaults_smollm2_stdlib_qa 120
"""

from __future__ import annotations

import sys

import optuna

from harness.evidence.stats import paired

optuna.logging.set_verbosity(optuna.logging.WARNING)
MODES = {"harness-none": ["unsloth-16bit", "peft-defaults"], "harness-nf4-dq": ["unsloth-4bit", "qlora-guanaco-7b"]}


def seeds_of(study_name: str, steps: int) -> dict[str, dict[int, float]]:
    """source -> seed -> eval loss of the completed long runs of the study's validation at `steps`."""
    storage = f"sqlite:///experiments/{study_name}/study.db"
    names = optuna.get_all_study_names(storage=storage)
    linked = f"{study_name}@{steps}"
    out: dict[str, dict[int, float]] = {}
    for name in [n for n in names if n == linked or n.startswith(linked + "+")]:
        for t in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
            if t.state == optuna.trial.TrialState.COMPLETE and t.values:
                out.setdefault(t.user_attrs["validates"], {})[int(t.user_attrs["seed"])] = t.values[0]
    return out


def main(study_name: str, steps: int) -> None:
    runs = seeds_of(study_name, steps)
    print(f"{study_name} at {steps} steps: eval loss, published default minus harness default, paired by seed "
          "(positive: the harness default is better); 95% t interval over the seeds both ran")
    for mine, published in MODES.items():
        for other in published:
            shared = sorted(set(runs.get(mine, {})) & set(runs.get(other, {})))
            if len(shared) < 2:
                print(f"  {other} - {mine}: {len(shared)} shared seed(s), no interval")
                continue
            d = paired(runs[other], runs[mine])  # published minus harness, the paired t over the shared seeds
            mean, rel = d.diff, d.diff / d.reference
            print(f"  {other} - {mine}: {mean:+.4f} nats [{d.ci_low:+.4f}, {d.ci_high:+.4f}] "
                  f"({rel:+.1%} of the harness default's loss), seeds {shared}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
