"""The recommendation in the user's own tool: one config file per `--format` beside recommended.yaml, each
with a header that states the evidence and says every setting the tool cannot express, and (`--format same`)
the user's own file from `sweep --from-config` with the tuned values put in."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from harness.config.errors import SpecError
from harness.config.tools import axolotl, llamafactory, trl, unsloth
from harness.config.tools.rewrite import rewrite
from harness.config.tools.settings import Export, Tuned, from_recommended
from harness.publish.export_data import with_data
from harness.runtime.redaction import redact_text

TOOLS: dict[str, ModuleType] = {m.NAME: m for m in (axolotl, llamafactory, trl, unsloth)}
FORMATS = ("peft", *TOOLS, "same")
"""`peft` is recommended.yaml itself (peft + transformers); `same` is the file a sweep started from."""


def parse_formats(values: list[str] | None) -> tuple[str, ...]:
    """`--format axolotl,trl --format same` -> the formats in order; a one-line SpecError for a bad one."""
    names = [n.strip() for v in values or [] for n in v.split(",") if n.strip()]
    for name in names:
        if name not in FORMATS:
            raise SpecError(f"--format {name!r} is not one of {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(names))


def evidence_lines(doc: dict[str, Any]) -> list[str]:
    """What the numbers behind a recommendation were measured on, one fact a line (for file headers)."""
    ev = doc.get("evidence") or {}
    if "studies" in ev:
        return [f"Consensus of studies {', '.join(ev['studies'])}: {ev.get('rule')}"]
    lines = [f"Study {ev.get('study')}: trial #{ev.get('source_trial')}, "
             f"{'validated at a long budget' if doc.get('validated') else 'not validated at a long budget'}, "
             f"{'confirmed on seeds ' + str(ev.get('seeds')) if ev.get('confirmed') else 'unconfirmed (one run)'}.",
             f"Model {ev.get('model_label') or ev.get('model')} (source weights: {ev.get('source_precision')}); "
             f"device {ev.get('device')}; compute dtype {ev.get('compute_dtype')}; data {ev.get('data')}, "
             f"{ev.get('held_out_examples')} held-out examples."]
    training = doc.get("training") or {}
    if training:
        lines.append(f"Budget per run: {training.get('max_steps')} optimizer steps of "
                     f"{training.get('per_device_train_batch_size')} x {training.get('gradient_accumulation_steps', 1)} "
                     "sequences (batch x accumulation).")
    metric = (ev.get("metrics") or {}).get(ev.get("objective"))
    if metric:
        ci = metric.get("ci95")
        interval = f", 95% interval {ci[0]:.4f}..{ci[1]:.4f}" if ci else ""
        lines.append(f"{ev['objective']} {metric['mean']:.4f} (mean of n={metric['n']}{interval}); untuned base "
                     f"{_fmt(ev.get('baseline_in_mode'))}.")
    return lines


def render(export: Export, doc: dict[str, Any], command: str) -> str:
    """The file: header (what wrote it, credentials redacted; the evidence, how to load it, what it cannot
    express), then YAML."""
    command = redact_text(command)
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    header = [f"{export.tool} config of the recommended LoRA/QLoRA settings, written by `{command}` on {when} UTC.",
              *evidence_lines(doc), *export.load]
    header += [f"NOT EXPRESSED: {note}" for note in export.notes]
    body = yaml.safe_dump(export.keys, sort_keys=False, width=110)
    return "".join(f"# {line}\n" for line in header) + body


def mode_doc(doc: dict[str, Any], mode: str) -> dict[str, Any]:
    """The best config of one quantization mode (recommended.yaml's per_quantization entry), in the shape of
    the whole file, for exporting it instead of the overall best."""
    entries = doc.get("per_quantization") or {}
    if mode not in entries:
        raise SpecError(f"--quantization {mode}: this recommendation has no config in that mode "
                        f"(per_quantization has: {', '.join(entries) or 'none'})")
    return dict(entries[mode])


def write_exports(doc: dict[str, Any], folder: Path, formats: tuple[str, ...], command: str,
                  sweep: dict[str, Any] | None = None, quantization: str | None = None
                  ) -> tuple[list[str], list[str]]:
    """Write each format's file into `folder` (with `quantization`, the best config of that mode, in files
    named recommended.<tool>.<mode>.yaml). Returns the lines to print and the refusals (one line each; the
    other formats are still written)."""
    lines: list[str] = []
    refused: list[str] = []
    if quantization is not None:
        doc = mode_doc(doc, quantization)
    suffix = f".{quantization}" if quantization else ""
    tuned = with_data(from_recommended(doc)) if any(f != "peft" for f in formats) else None
    for name in formats:
        try:
            if name == "peft":
                lines.append(f"peft: {folder / 'recommended.yaml'} (peft.LoraConfig, BitsAndBytesConfig, "
                             "TrainingArguments)")
            elif name == "same":
                lines += _write_same(tuned, folder, sweep or {})
            else:
                export = TOOLS[name].export(tuned)
                path = folder / f"recommended.{name}{suffix}.yaml"
                if export.files:  # LLaMA-Factory's dataset_info.json: its dataset_dir is this folder
                    export.keys["dataset_dir"] = str(folder.resolve())
                    for file, text in export.files.items():
                        (folder / file).write_text(text)
                        lines.append(f"{name}: {folder / file}")
                path.write_text(render(export, doc, command))
                lines.append(f"{name}: {path}")
                lines += [f"{name}: not expressed: {note}" for note in export.notes]
        except SpecError as err:
            refused.append(f"--format {name} refused: {err}")
    return lines, refused


def _write_same(tuned: Tuned | None, folder: Path, sweep: dict[str, Any]) -> list[str]:
    """The user's file with the tuned values in: `<folder>/<name>.tuned<suffix>`; their file is not touched."""
    assert tuned is not None
    source = sweep.get("from_config")
    if not source:
        raise SpecError("this study was not started with `harness sweep --from-config FILE`, so there is no file "
                        "of yours to write back; name a tool instead (--format axolotl, llamafactory, trl, unsloth)")
    path = Path(source)
    if not path.is_file():
        raise SpecError(f"{path}: the file the sweep started from is gone; put it back or name a tool format")
    tool = str(sweep.get("from_format"))
    export = TOOLS[tool].export(tuned)
    changes = {k: v for k, v in export.keys.items() if k not in export.context}
    text, changed = rewrite(path.read_text(), changes, export.removes, export.defaults)
    notes = "".join(f"# harness NOT EXPRESSED: {note}\n" for note in export.notes)
    out = folder / f"{path.stem}.tuned{path.suffix or '.yaml'}"
    out.write_text(text + notes)
    lines = [f"same ({tool}): {out} (from {path}; {len(changed)} keys changed)"]
    lines += [f"  {key}: {old!r} -> {'(removed)' if new is None else repr(new)}" for key, (old, new) in changed.items()]
    return lines + [f"same: not expressed: {note}" for note in export.notes]


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)
