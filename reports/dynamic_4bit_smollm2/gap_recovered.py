"""How much of NF4-DQ's gap to 16-bit LoRA each kept-layer arm recovers, paired by seed.

Reads the study's trials.jsonl (the confirmation runs of each arm's best config, one per seed) and prints, per arm,
the seeds it shares with 16-bit LoRA and plain NF4-DQ, the mean eval loss over those seeds, and the share of the
NF4-DQ gap recovered, 1 - (arm - 16-bit) / (NF4-DQ - 16-bit), with a 95% interval from a bootstrap over the shared
seeds (resampling seeds; with 4 seeds it is wide: read it as such).
    .venv/bin/python reports/dynamic_4bit_smollm2/gap_recovered.py experiments/dynamic_4bit_smollm2/trials.jsonl
"""

from __future__ import annotations

import json
import random
import statistics
import sys


def arm(params: dict) -> str:
    if params.get("quantization") == "none":
        return "16-bit LoRA"
    keep = params.get("keep_16bit") or 0
    if not keep:
        return "NF4-DQ"
    return f"NF4-DQ keep {keep:.0%} {params.get('keep_16bit_rule') or 'sensitivity'}"


def main(path: str) -> None:
    losses: dict[str, dict[int, float]] = {}
    for line in open(path, encoding="utf-8"):
        record = json.loads(line)
        result = record.get("result") or {}
        seed = record.get("seed") if record.get("seed") is not None else result.get("data_seed")
        if record.get("status") != "complete" or record.get("confirmation_of") is None or seed is None:
            continue
        losses.setdefault(arm(record["params"]), {})[int(seed)] = float(result["eval_loss"])
    full, nf4 = losses["16-bit LoRA"], losses["NF4-DQ"]
    rng = random.Random(0)
    for name, by_seed in sorted(losses.items()):
        if name in ("16-bit LoRA", "NF4-DQ"):
            continue
        seeds = sorted(set(by_seed) & set(full) & set(nf4))

        def share(picked: list[int]) -> float:
            gap = statistics.mean(nf4[s] - full[s] for s in picked)
            return 1 - statistics.mean(by_seed[s] - full[s] for s in picked) / gap if gap else float("nan")

        boots = sorted(share([rng.choice(seeds) for _ in seeds]) for _ in range(10000))
        low, high = boots[250], boots[9749]
        print(f"{name}: seeds {seeds}; mean eval loss {statistics.mean(by_seed[s] for s in seeds):.4f} "
              f"(16-bit {statistics.mean(full[s] for s in seeds):.4f}, NF4-DQ {statistics.mean(nf4[s] for s in seeds):.4f}); "
              f"share of the NF4-DQ gap recovered {share(seeds):+.0%} (95% seed bootstrap {low:+.0%} to {high:+.0%})")


if __name__ == "__main__":
    main(sys.argv[1])
