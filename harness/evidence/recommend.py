"""recommended.yaml: the config to use from now on, in the shapes plain peft/transformers code loads.

`lora` -> peft.LoraConfig(**lora) (rsLoRA, DoRA and the init included), `quantization` ->
transformers.BitsAndBytesConfig(**quantization) (null: 16-bit LoRA), `training` ->
transformers.TrainingArguments(output_dir=..., **training) (batch, accumulation, warm-up, decay, schedule,
clipping), `optimizer` -> peft.optimizers.create_loraplus_optimizer(model, torch.optim.AdamW, **optimizer)
(LoRA+; null: the Trainer's own AdamW).
`evidence` says where the numbers come from. Ranking rule: confirmed configs (fresh-seed re-runs)
by their mean; only when a study has none, single search trials by their value, marked unconfirmed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.search.edges import study_edge_warnings
from harness.trial.models import target_modules
from harness.trial.quantization import mode_label, quantization_kwargs
from harness.search.readout import PACK_SHARED, StudyView, TrialRow, alone_rows, packed_note, small_eval_note
from harness.config.space import lora_fields, quant_fields, train_fields
from harness.config.errors import SpecError
from harness.config.lora import LoraSpec
from harness.config.model import QUANTIZATION_MODES, QuantSpec
from harness.config.training import TrainSpec
from harness.trial.train import SCHEDULER_NAMES, scheduler_kwargs
from harness.evidence.stats import Summary, summarize
from harness.search.study import public_url
from harness.runtime.redaction import redact_text, redact_values
from harness.evidence.longruns import config_key, latest_link, read_validation
from harness.evidence.validation import NOT_VALIDATED, headline

VALIDATED_RULE = ("validated configs (the study's top configs and the published defaults re-trained from scratch at "
                  "the long budget with fresh seeds, `harness validate`) ranked by the mean of their long-budget "
                  "runs, leaving out a config one of whose long runs diverged or failed (unless --allow-diverged)")
SINGLE_RULE = ("configs re-run with fresh seeds (harness compare --confirm-seeds K) ranked by the mean of those "
               "seeds, leaving out a config any of whose seeds diverged or failed (unless --allow-diverged); a study "
               "without confirmations falls back to its single best trials, marked unconfirmed")


@dataclass(frozen=True)
class Candidate:
    """A config of one study with the evidence for it."""

    source: TrialRow
    """The search trial whose params this is."""
    objective: Summary
    """Over the confirmation seeds when confirmed, else the single search trial."""
    confirmed: bool
    runs: tuple[TrialRow, ...]
    """The completed trials the numbers come from."""
    bad_seeds: tuple[TrialRow, ...] = ()
    """Confirmation runs of this config that diverged, failed, ran out of memory or were stopped."""

    @property
    def mode(self) -> str:
        return self.source.quantization

    def key(self) -> tuple[Any, ...]:
        """What makes two studies' configs the same config (for --from aggregation): every param (the optional
        axes included) with the learning rate rounded."""
        p = {**self.source.params, "learning_rate": round(float(self.source.params["learning_rate"]), 12)}
        p.pop("lora_alpha_ratio", None)  # alpha itself is a param
        return tuple(sorted((k, str(v)) for k, v in p.items()))

    def measured(self, name: str) -> list[float]:
        """A metric over the runs; a memory or time figure (PACK_SHARED) over those that trained alone, when
        some trained in packs (theirs are the pack's)."""
        runs = alone_rows(self.runs) if name in PACK_SHARED else self.runs
        return [v for v in (r.metric(name) for r in runs) if v is not None]

    def median(self, name: str) -> float | None:
        values = self.measured(name)
        return statistics.median(values) if values else None

    def largest(self, name: str) -> float | None:
        """The largest value over the runs (a memory budget must hold for every seed, not the median)."""
        values = self.measured(name)
        return max(values) if values else None

    def against(self) -> str | None:
        """"1 of 3 seeds diverged" and the like, or None when every seed completed."""
        if not self.bad_seeds:
            return None
        total = len(self.runs) + len(self.bad_seeds)
        kinds: dict[str, int] = {}
        for row in self.bad_seeds:
            kinds[row.status or row.state.lower()] = kinds.get(row.status or row.state.lower(), 0) + 1
        return "; ".join(f"{n} of {total} seeds {kind}" for kind, n in sorted(kinds.items()))


def candidates(view: StudyView, allow_diverged: bool = False) -> list[Candidate]:
    """The study's configs, best first, by the rule in SINGLE_RULE."""
    search = [r for r in view.search_rows() if r.state == "COMPLETE" and r.values]
    confirmed = []
    for source in search:
        finished = [r for r in view.rows if r.confirmation_of == source.number and r.finished and not r.interrupted]
        runs = [r for r in finished if r.state == "COMPLETE" and r.values]
        bad = tuple(r for r in finished if not (r.state == "COMPLETE" and r.values))
        if runs and (allow_diverged or not bad):
            confirmed.append(Candidate(source, summarize([r.values[0] for r in runs]), True, tuple(runs), bad))
    pool = confirmed or [Candidate(r, summarize([r.values[0]]), False, (r,)) for r in search]
    if not pool:
        raise SpecError(f"study {view.name!r} has no completed trials to recommend from")
    return view.ranked(pool, lambda c: c.objective.mean)


def config_sections(candidate: Candidate, view: StudyView) -> dict[str, Any]:
    """The lora / quantization / training sections for one candidate."""
    p, config = candidate.source.params, candidate.source.config
    stored = config.get("train") or {}
    train = TrainSpec(**{k: v for k, v in stored.items() if k in {f.name for f in dataclasses.fields(TrainSpec)}})
    train = dataclasses.replace(train, **train_fields(p))
    variant = LoraSpec(**lora_fields(p))
    result = candidate.source.result
    dtype = str(result.get("compute_dtype") or "bfloat16")
    lora = {"r": int(p["lora_r"]), "lora_alpha": float(p["lora_alpha"]), "lora_dropout": float(p["lora_dropout"]),
            "target_modules": target_modules(str(p["target_modules"])), "bias": "none", "task_type": "CAUSAL_LM",
            "use_rslora": variant.use_rslora, "use_dora": variant.use_dora, "init_lora_weights": variant.peft_init}
    training = {
        "learning_rate": float(p["learning_rate"]),
        "max_steps": int(stored.get("max_steps") or view.sweep.get("max_steps") or train.max_steps),
        "per_device_train_batch_size": train.batch_size, "gradient_accumulation_steps": train.grad_accum,
        "warmup_steps": float(train.warmup_ratio),  # < 1: a fraction of max_steps in transformers 5
        "weight_decay": float(train.weight_decay), "max_grad_norm": float(train.max_grad_norm),
        "lr_scheduler_type": _scheduler_name(train),
        "optim": str(result.get("optimizer") or "adamw_torch"), "seed": 0,
        "gradient_checkpointing": train.gradient_checkpointing}
    if train.gradient_checkpointing:
        training["gradient_checkpointing_kwargs"] = {"use_reentrant": False}  # as the trials ran it
    if scheduler_kwargs(train):
        training["lr_scheduler_kwargs"] = scheduler_kwargs(train)
    if str(result.get("device", "")).startswith("cuda") and dtype == "bfloat16":
        training["bf16"] = True  # the trials trained under bf16 autocast on CUDA
    optimizer = None
    if train.loraplus_lr_ratio != 1.0:
        optimizer = {"lr": float(p["learning_rate"]), "loraplus_lr_ratio": float(train.loraplus_lr_ratio),
                     "weight_decay": float(train.weight_decay)}
    skip = result.get("kept_16bit_skip_modules") or ()  # keep_16bit: its layers stay 16-bit where the tool can say so
    return {"lora": lora, "quantization": quantization_kwargs(candidate.mode, dtype, skip), "training": training,
            "optimizer": optimizer}


def _scheduler_name(train: TrainSpec) -> str:
    """transformers' lr_scheduler_type for the trials' schedule: harness's `constant` keeps its warm-up
    (`constant_with_warmup`; transformers' `constant` would drop it), plain `constant` when there is none."""
    if train.scheduler == "constant" and train.warmup_steps == 0:
        return "constant"
    return SCHEDULER_NAMES.get(train.scheduler, train.scheduler)


def evidence(candidate: Candidate, view: StudyView) -> dict[str, Any]:
    """Which study and trials the numbers come from, and the metrics with their spread."""
    finished = [r for r in view.rows if r.finished]
    metrics: dict[str, Any] = {view.objective: candidate.objective.to_dict()}
    task = view.task_metric
    if task and task != view.objective:
        values = [v for v in (r.metric(task) for r in candidate.runs) if v is not None]
        if values:
            metrics[task] = summarize(values).to_dict()
    for name in ("peak_memory_mb", "train_peak_memory_mb", "eval_peak_memory_mb", "base_model_mb",
                 "tokens_per_second"):
        if candidate.median(name) is not None:
            metrics[name] = {"median": round(candidate.median(name), 2),  # type: ignore[arg-type]
                             "max": round(candidate.largest(name), 2)}  # type: ignore[arg-type]
    steps = [r.seconds_per_step for r in alone_rows(candidate.runs) if r.seconds_per_step is not None]
    if steps:
        metrics["seconds_per_step"] = {"median": round(statistics.median(steps), 4)}
    result = candidate.source.result
    notes = [n for n in (small_eval_note(view.n_eval), candidate.against(), packed_note(candidate.runs)) if n]
    return {"study": view.name, "storage": public_url(view.storage), "model": view.sweep.get("model"),
            "model_label": view.source["label"], "source_precision": view.source.get("precision"),
            "device": result.get("device_name") or result.get("device"), "compute_dtype": result.get("compute_dtype"),
            "optimizer": result.get("optimizer"), "held_out_examples": view.n_eval,
            "data": view.sweep.get("data"), "max_seq_len": (view.sweep.get("data_options") or {}).get("max_seq_len"),
            "data_format": (view.sweep.get("data_options") or {}).get("format"),
            "completion_only_loss": (view.sweep.get("data_options") or {}).get("completion_only_loss", True),
            # how the trials read the user's file, for the tools' exports: renamed columns, an added system message
            "column_map": dict((view.sweep.get("data_options") or {}).get("column_map") or ()),
            "system_prompt": (view.sweep.get("data_options") or {}).get("system_prompt"),
            "space": view.sweep.get("space"), "quantization": candidate.mode,
            "trials_finished": len(finished), "trials_completed": len(view.completed()),
            "source_trial": candidate.source.number, "confirmed": candidate.confirmed,
            "seeds": sorted({r.seed for r in candidate.runs if r.seed is not None}),
            "trials": [r.number for r in candidate.runs], "objective": view.objective,
            "direction": view.directions[0], "baseline": view.baseline("none"),
            "baseline_in_mode": view.baseline(candidate.mode), "metrics": metrics, "notes": notes,
            **kept_evidence(candidate.source.params, result),
            "edge_warnings": study_edge_warnings(view, candidate.source.params)}


def kept_evidence(params: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """The layers a config kept in 16-bit (keep_16bit), how they were chosen, their parameter share and the weight
    memory they add; nothing for a config that kept none."""
    if not result.get("kept_16bit_modules"):
        return {}
    quant = QuantSpec(str(params.get("quantization")), **quant_fields(params))
    return {"keep_16bit": quant.keep_16bit, "keep_16bit_rule": quant.keep_16bit_rule,
            "kept_16bit_modules": list(result["kept_16bit_modules"]),
            "kept_16bit_fraction": result.get("kept_16bit_fraction"),
            "kept_16bit_added_mb": result.get("kept_16bit_added_mb")}


def validated_candidates(view: StudyView, allow_diverged: bool = False) -> tuple[list[Candidate], Any] | None:
    """The study's longest validation as candidates, best long-budget mean first (VALIDATED_RULE), with the
    validation itself; None when the study has none or no long run completed."""
    if latest_link(view) is None:
        return None
    validation = read_validation(view)
    long_view = validation.long_view
    assert long_view is not None
    pool = []
    for key in dict.fromkeys(config_key(r.params, r.training) for r in long_view.rows):
        mine = [r for r in long_view.rows if config_key(r.params, r.training) == key and r.finished]
        runs = [r for r in mine if r.state == "COMPLETE" and r.values]
        bad = tuple(r for r in mine if r.status in ("diverged", "oom")
                    or (r.state == "FAIL" and not (r.reason or "").startswith("interrupted")
                        and "worker lost" not in (r.reason or "")))
        if runs and (allow_diverged or not bad):
            pool.append(Candidate(runs[0], summarize([r.values[0] for r in runs]), True, tuple(runs), bad))
    if not pool:
        return None
    return long_view.ranked(pool, lambda c: c.objective.mean), validation


def _validation_evidence(candidate: Candidate, validation: Any) -> dict[str, Any]:
    """evidence.validation: where the long runs are, how the short-budget ranking held, the defaults."""
    doc = validation.doc
    return {"study": doc.get("study"), "linked_study": validation.study, "short_steps": doc["short_steps"],
            "long_steps": doc["long_steps"], "source": _source_of(candidate, doc),
            "spearman": doc["spearman"], "kendall": doc["kendall"], "regret": doc["regret"],
            "winner_held": doc["winner_held"], "published_defaults": doc["defaults"],
            "skipped_defaults": doc.get("skipped_defaults") or {}, "report": "validation.md"}


def _source_of(candidate: Candidate, doc: dict[str, Any]) -> str:
    """`search` or the published default's name that a validated candidate is."""
    key = config_key(candidate.source.params, candidate.source.training)
    names = [p["source"] for p in doc.get("plan") or [] if config_key(p["params"], p.get("training")) == key]
    return "search" if "search" in names or not names else names[0]


def recommend_study(view: StudyView, max_memory_mb: float | None = None, allow_diverged: bool = False
                    ) -> dict[str, Any]:
    """The recommended.yaml mapping for one study: from its validation when it has one (VALIDATED_RULE), else
    from its short trials (SINGLE_RULE; `validated: false`). Configs with a diverged or failed seed are left out
    unless `allow_diverged`; the evidence lists them."""
    ranked = candidates(view, allow_diverged)
    validated = validated_candidates(view, allow_diverged)
    if validated is not None:
        long_ranked, validation = validated
        best, where = long_ranked[0], validation.long_view
        doc: dict[str, Any] = {"validated": True, **config_sections(best, where),
                               "evidence": {**evidence(best, where), "rule": VALIDATED_RULE,
                                            "validation": _validation_evidence(best, validation)}}
    else:
        long_ranked, where = [], view
        best = ranked[0]
        doc = {"validated": False, **config_sections(best, view),
               "evidence": {**evidence(best, view), "rule": SINGLE_RULE, "validation": NOT_VALIDATED}}
    left_out = _left_out(view, allow_diverged) if validated is None else []  # the short ranking's left-outs
    if left_out:
        doc["evidence"]["left_out"] = left_out
    doc["per_quantization"] = {}
    for mode in dict.fromkeys([*(c.mode for c in long_ranked), *(c.mode for c in ranked)]):
        top = next((c for c in long_ranked if c.mode == mode), None)
        if top is not None:
            doc["per_quantization"][mode] = {**config_sections(top, where), "evidence": evidence(top, where),
                                             "validated": True}
        else:
            top = next(c for c in ranked if c.mode == mode)
            doc["per_quantization"][mode] = {**config_sections(top, view), "evidence": evidence(top, view),
                                             "validated": False}
    if max_memory_mb is not None:
        doc["within_memory"] = _within_memory(ranked, view, max_memory_mb)
    return doc


def _left_out(view: StudyView, allow_diverged: bool) -> list[str]:
    """Confirmed configs that are not recommended because a seed diverged or failed."""
    if allow_diverged:
        return []
    kept = {c.source.number for c in candidates(view, allow_diverged=False) if c.confirmed}
    return [f"trial #{c.source.number} ({c.mode}, mean {c.objective.mean:.4f}): {c.against()}"
            for c in candidates(view, allow_diverged=True) if c.confirmed and c.source.number not in kept]


def _within_memory(ranked: list[Candidate], view: StudyView, limit: float) -> dict[str, Any]:
    """The best config whose largest measured peak (over all its runs) fits the budget."""
    fits = [c for c in ranked if (c.largest("peak_memory_mb") or math.inf) <= limit]
    if not fits:
        lowest = min((c.largest("peak_memory_mb") or math.inf) for c in ranked)
        return {"max_memory_mb": limit, "config": None,
                "reason": f"no config fits: the smallest largest-peak measured was {lowest:.0f} MiB"}
    return {"max_memory_mb": limit, **config_sections(fits[0], view), "evidence": evidence(fits[0], view)}


def recommend_many(views: list[StudyView]) -> dict[str, Any]:
    """Defaults across several studies (models, datasets): see the `rule` written into the file."""
    ranked = {v.name: candidates(v) for v in views}
    gaps: dict[tuple[Any, ...], list[float]] = {}
    for view in views:
        best = ranked[view.name][0].objective.mean
        for c in ranked[view.name]:
            gaps.setdefault(c.key(), []).append(abs(c.objective.mean - best) / (abs(best) or 1.0))
    shared = {k: g for k, g in gaps.items() if len(g) == len(views)}
    if shared:
        key = min(shared, key=lambda k: statistics.mean(shared[k]))
        rule = (f"the config run in all {len(views)} studies with the smallest mean relative gap to each study's "
                f"best ({100 * statistics.mean(shared[key]):.2f}%); each study ranked by: {SINGLE_RULE}")
        view, pick = next((v, c) for v in views for c in ranked[v.name] if c.key() == key)
        sections = config_sections(pick, view)
    else:
        sections, rule = _consensus([(v, ranked[v.name][0]) for v in views])
    per_study = {v.name: evidence(ranked[v.name][0], v) for v in views}
    return {**sections, "evidence": {"studies": per_study, "rule": rule}}


def _consensus(picks: list[tuple[StudyView, Candidate]]) -> tuple[dict[str, Any], str]:
    """No config ran in every study: majority quantization and targets, median rank and alpha,
    geometric-mean learning rate of the studies' best configs."""
    view, first = picks[0]
    sections = config_sections(first, view)
    params = [c.source.params for _, c in picks]
    mode = Counter(p["quantization"] for p in params).most_common(1)[0][0]
    sections["quantization"] = quantization_kwargs(mode)
    sections["lora"]["target_modules"] = target_modules(Counter(p["target_modules"] for p in params).most_common(1)[0][0])
    sections["lora"]["r"] = int(statistics.median_low([int(p["lora_r"]) for p in params]))
    sections["lora"]["lora_alpha"] = float(statistics.median_low([float(p["lora_alpha"]) for p in params]))
    sections["training"]["learning_rate"] = float(math.exp(statistics.mean(math.log(p["learning_rate"]) for p in params)))
    rule = (f"no config was run in all {len(picks)} studies, so a consensus of each study's best: majority "
            "quantization and target modules, median (lower) rank and alpha, geometric-mean learning rate")
    return sections, rule


def summary_lines(doc: dict[str, Any], path: Path) -> list[str]:
    """What `harness recommend` prints about the file it wrote."""
    evidence = doc["evidence"]
    lines = [f"recommended: {path}", f"rule: {evidence['rule']}"]
    if "metrics" in evidence:
        summary = evidence["metrics"][evidence["objective"]]
        spread = f" +/- {summary['std']:.4f}" if summary.get("std") is not None else ""
        mode = mode_label(evidence["quantization"], evidence.get("compute_dtype"))
        lines += [f"best: {mode}, r {doc['lora']['r']}, alpha {doc['lora']['lora_alpha']:g}{_variant_text(doc)}, "
                  f"lr {doc['training']['learning_rate']:.3g}, {doc['training']['max_steps']} steps, "
                  f"from trial #{evidence['source_trial']} of {evidence['study']} "
                  f"({'validated' if doc.get('validated') else 'confirmed' if evidence['confirmed'] else 'unconfirmed'}): "
                  f"{evidence['objective']} {summary['mean']:.4f}{spread} (n={summary['n']})",
                  f"measured on: {evidence['model_label']}; {evidence.get('device')}"]
    lines += _validation_lines(doc)
    lines += [f"left out: {line} (--allow-diverged keeps it)" for line in evidence.get("left_out", [])]
    return (lines + [f"note: {line}" for line in evidence.get("notes", [])]
            + [f"warning: {line}" for line in evidence.get("edge_warnings", [])])


def _variant_text(doc: dict[str, Any]) -> str:
    """`, DoRA, init pissa, LoRA+ x16` for a recommended variant; empty for plain LoRA."""
    lora, optimizer = doc["lora"], doc.get("optimizer")
    parts = [name for key, name in (("use_rslora", "rsLoRA"), ("use_dora", "DoRA")) if lora.get(key)]
    if lora.get("init_lora_weights", True) is not True:
        parts.append(f"init {lora['init_lora_weights']}")
    if optimizer:
        parts.append(f"LoRA+ x{optimizer['loraplus_lr_ratio']:g}")
    return "".join(f", {part}" for part in parts)


def _validation_lines(doc: dict[str, Any]) -> list[str]:
    """Whether the recommendation was validated at a long budget, and how the short ranking held."""
    if doc.get("validated") is None:
        return []
    if not doc["validated"]:
        return [f"not validated: {NOT_VALIDATED.split(' means ', 1)[1]}"]
    v = doc["evidence"]["validation"]
    return [f"{headline({**v, 'objective': doc['evidence']['objective'], 'recommended': {'source': v['source']}})} "
            f"({v['linked_study']})"]


def write_recommended(doc: dict[str, Any], path: Path, command: str) -> Path:
    """Write the YAML with a header that says how to load it and what produced it (`command`, credentials
    redacted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    command, doc = redact_text(command), redact_values(doc)
    header = (f"# Recommended LoRA/QLoRA config, written by `{command}` on "
              f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.\n"
              "# Load it without harness:\n"
              "#   cfg = yaml.safe_load(open(path))\n"
              "#   peft.LoraConfig(**cfg['lora'])\n"
              "#   transformers.BitsAndBytesConfig(**cfg['quantization']) if cfg['quantization'] else None  "
              "# null: 16-bit LoRA\n"
              "#   transformers.TrainingArguments(output_dir='out', **cfg['training'])\n"
              "#   LoRA+ (optimizer not null): opt = peft.optimizers.create_loraplus_optimizer(model, torch.optim.AdamW, "
              "**cfg['optimizer']); Trainer(..., optimizers=(opt, None))\n"
              "#   PiSSA / OLoRA init (lora.init_lora_weights): peft re-runs it on your base; keep the quantization "
              "null for PiSSA\n"
              "# per_quantization holds the best config of each mode in the same shape"
              f" ({', '.join(map(mode_label, QUANTIZATION_MODES))}).\n" + _measured_on(doc["evidence"]))
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=110))
    return path


def _measured_on(evidence: dict[str, Any]) -> str:
    """Header lines saying what the numbers were measured on (one study; --from lists its studies)."""
    if "model_label" not in evidence:
        return ""
    lines = [f"# Measured on {evidence['model_label']} (source weights: {evidence.get('source_precision')}),",
             f"# {evidence.get('device')}, compute dtype {evidence.get('compute_dtype')}, optimizer "
             f"{evidence.get('optimizer')}, {evidence.get('held_out_examples')} held-out examples.",
             "# `training` and bnb_4bit_compute_dtype are what the trials ran with; on a GPU with bf16, bfloat16 "
             "compute (and bf16: true) is the usual choice."]
    return "\n".join(lines) + "\n"
