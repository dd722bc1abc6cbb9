"""defaults.yaml: the configs `harness defaults` chose, one per quantization mode, in recommended.yaml's format
(peft.LoraConfig, BitsAndBytesConfig, TrainingArguments load it the same way; `per_quantization` holds each
mode's choice, the top-level config is the 16-bit one when there is one). Each mode's `evidence` carries the
candidate's harness params (`params`), so that `harness validate --defaults-file` and `harness sweep
--warm-start defaults` train exactly that config (harness.config.defaults.load_harness_defaults reads them).
"""

from __future__ import annotations

from typing import Any

from harness.config.errors import SpecError
from harness.evidence.crosseval import CrossEvaluation, cell_views
from harness.evidence.longruns import config_key
from harness.evidence.recommend import Candidate, config_sections
from harness.evidence.stats import summarize
from harness.evidence.transfer import RULE


def defaults_mapping(result: CrossEvaluation) -> dict[str, Any]:
    """The defaults.yaml mapping of a cross-evaluation; SpecError when no mode has a choice."""
    doc = result.doc
    chosen = {mode: name for mode, name in doc["choice"].items() if name is not None}
    if not chosen:
        raise SpecError("no candidate completed in every cell, so there is no default to write; see defaults.md")
    per_mode = {mode: _section(result, mode, name) for mode, name in chosen.items()}
    top = per_mode.get("none") or next(iter(per_mode.values()))
    studies = [c["name"] for c in doc["cells"]]
    return {"validated": False, **{k: v for k, v in top.items() if k not in ("evidence", "validated")},
            "evidence": {"defaults": True, "studies": studies, "rule": RULE, "objective": doc["objective"],
                         "steps": doc["steps"], "choice": chosen, "report": "defaults.md",
                         **{k: top["evidence"][k] for k in ("candidate", "params", "worst_regret", "mean_regret")}},
            "per_quantization": per_mode}


def _section(result: CrossEvaluation, mode: str, name: str) -> dict[str, Any]:
    """One mode's choice in recommended.yaml's shape, from its runs in its own study's cell."""
    candidate = next(c for c in result.candidates if c.name == name)
    cell = next(c for c in result.cells if c.view.name == candidate.study)
    views = cell_views(cell)  # this cross-evaluation's linked study first, then other sets' of the same cell
    found = [(v, r) for v in views for r in v.completed() if config_key(r.params, r.training) == candidate.key]
    if not found:
        raise SpecError(f"candidate {name} has no completed run in its own study's cell {cell.linked}")
    home, runs = found[0][0], [r for _, r in found]
    sections = config_sections(Candidate(runs[0], summarize([r.values[0] for r in runs]), True,  # type: ignore[index]
                                         tuple(runs)), home)
    matrix = result.doc["modes"][mode]
    return {**sections, "validated": False,
            "evidence": {"candidate": name, "params": candidate.params, "study": candidate.study,
                         "source_trial": candidate.trial, "note": candidate.note, "quantization": mode,
                         "worst_regret": matrix["worst"][name], "mean_regret": matrix["mean"][name],
                         "median_regret": matrix.get("median", {}).get(name),
                         "regret": {cell: entry["value"] for cell, entry in matrix["regret"][name].items()},
                         "versus_published": {ref: {cell: {"difference": e["value"], "ci95": e["ci95"],
                                                           "verdict": e["verdict"]} for cell, e in row.items()}
                                              for ref, row in (matrix.get("versus_choice") or {}).items()},
                         "rule": RULE}}
