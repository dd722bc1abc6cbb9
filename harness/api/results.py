"""The typed results of the Python API: each holds the data a command's documents hold, the paths it wrote,
and `_repr_html_`, so a notebook shows a table (and the key plot) inline."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd


def _html_lines(lines: list[str]) -> str:
    return "".join(f"<p>{html.escape(line)}</p>" for line in lines)


def _html_paths(paths: dict[str, Path]) -> str:
    items = "".join(f"<li>{html.escape(name)}: <code>{html.escape(str(path))}</code></li>"
                    for name, path in paths.items())
    return f"<ul>{items}</ul>" if items else ""


def _html_image(path: Path | None, width: int = 640) -> str:
    """A PNG embedded in the page (a notebook's output holds it without the file)."""
    if path is None or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" width="{width}" alt="{html.escape(Path(path).name)}"/>'


def trials_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Trial records as a DataFrame: one row per trial, the columns of `harness status`'s table."""
    from harness.search.progress import trial_cells

    columns, cells = trial_cells(rows)
    return pd.DataFrame(cells, columns=columns)


@dataclass(frozen=True)
class Best:
    """A study's best trial: its number, params, objective value(s) and the adapter it saved (if any)."""

    number: int
    params: dict[str, Any]
    value: float | None
    """The first objective's value."""
    values: tuple[float, ...]
    adapter: Path | None
    """The sweep's best_adapter folder (peft: PeftModel.from_pretrained(base, adapter)), when it exists."""


@dataclass
class StudyHandle:
    """A study: what `harness.sweep`, `harness.status` and `harness.import_` return.

    `.best` (params, value, adapter path), `.trials` (a DataFrame, one row per trial), `.study` (the Optuna
    study, loaded on first use) and `.paths` (what the sweep wrote)."""

    name: str
    storage: str
    out: Path
    outcome: Any = None
    """The harness.search.sweep.SweepOutcome of a sweep this process ran (None for status and import)."""
    imported: Any = None
    """The harness.search.importing.Imported of `harness.import_`."""
    spec: Any = None
    """The harness.config.sweep.SweepSpec the sweep ran with (sweep, worker, import_)."""

    @cached_property
    def study(self) -> Any:
        """The Optuna study (optuna.Study) in its storage."""
        from harness.search.study import load_existing_study

        return load_existing_study(self.name, self.storage)

    @property
    def objectives(self) -> list[str]:
        """The study's objectives, the first one ranking the trials."""
        if self.spec is not None:
            return list(self.spec.objectives)
        return list(self.study.user_attrs.get("objectives") or ["eval_loss"])

    @property
    def rows(self) -> list[dict[str, Any]]:
        """One record per trial, as the storage holds them (harness.search.study.study_rows)."""
        from harness.search.study import study_rows

        return study_rows(self.study)

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial, the columns of `harness status`'s table."""
        return trials_frame(self.rows)

    @property
    def best(self) -> Best | None:
        """The best completed trial (the first objective's best of a multi-objective study's Pareto front as the
        sweep reported it), None before any trial completed."""
        adapter = self.out / "best_adapter"
        adapter_path = adapter if adapter.exists() else None
        found = self.outcome.best if self.outcome is not None else None
        if found is not None:
            values = tuple(float(v) for v in found["values"])
            return Best(found["number"], dict(found["params"]), values[0], values, adapter_path)
        import optuna

        done = [t for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if t.values]
        if not done:
            return None
        sign = 1 if self.study.directions[0] == optuna.study.StudyDirection.MINIMIZE else -1
        trial = min(done, key=lambda t: sign * t.values[0])
        return Best(trial.number, dict(trial.params), float(trial.values[0]), tuple(map(float, trial.values)),
                    adapter_path)

    @property
    def paths(self) -> dict[str, Path]:
        """What the study's folder holds: trials.jsonl, the SQLite database, best_adapter, wandb (those present)."""
        candidates = {"out": self.out, "trials": self.out / "trials.jsonl", "database": self.out / "study.db",
                      "best_adapter": self.out / "best_adapter", "wandb": self.out / "wandb"}
        return {name: path for name, path in candidates.items() if path.exists()}

    def base_model_path(self) -> str:
        """The unquantized base model the study's adapters were trained on, as a folder or hub id that
        `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` load (a built-in or GGUF
        model: the safetensors checkpoint the harness converted it into, once). A QLoRA adapter loads on it too."""
        from harness.trial.models import checkpoint_path, resolve_model

        model = self.spec.model if self.spec is not None else (self.study.user_attrs.get("sweep") or {}).get("model")
        return checkpoint_path(resolve_model(str(model)))

    def baseline(self, metric: str | None = None, mode: str = "none") -> float | None:
        """The untuned base model's value of `metric` (default: the first objective) in a quantization mode."""
        from harness.search.readout import baseline_of

        return baseline_of(self.study.user_attrs, mode, metric or self.objectives[0])

    def __repr__(self) -> str:
        best = self.best
        tail = f", best #{best.number} {self.objectives[0]} {best.value:.4f}" if best and best.value is not None else ""
        return f"StudyHandle({self.name!r}, {len(self.rows)} trials{tail}, out={str(self.out)!r})"

    def _repr_html_(self) -> str:
        best = self.best
        head = f"<h4>study {html.escape(self.name)}: {len(self.rows)} trials</h4>"
        if best is not None and best.value is not None:
            base = self.baseline()
            change = f" (untuned base model: {base:.4f})" if base is not None else ""
            head += (f"<p>best trial #{best.number}: {html.escape(self.objectives[0])} {best.value:.4f}{change}; "
                     f"adapter <code>{html.escape(str(best.adapter or '-'))}</code></p>")
        return head + self.trials.to_html(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}") \
            + _html_paths(self.paths)


@dataclass
class ComparisonResult:
    """What `harness.compare` returns: the comparison (harness.evidence.compare.Comparison), its data as
    comparison.json holds it, the headline sentences and the files written."""

    comparison: Any
    markdown: Path
    json: Path

    @property
    def data(self) -> dict[str, Any]:
        """comparison.json's content."""
        return self.comparison.to_dict()

    @property
    def headlines(self) -> list[str]:
        return list(self.comparison.headlines)

    @property
    def table(self) -> pd.DataFrame:
        """One row per group (quantization mode, or --by's groups): trials, best, median, memory and time."""
        return pd.DataFrame(self.data["modes"])

    def lines(self) -> list[str]:
        """What the command line prints around its table: setup, headlines, costs, notes and warnings."""
        c = self.comparison
        return (list(c.setup), c.headlines + c.costs + [f"note: {n}" for n in c.notes]
                + [f"warning: {w}" for w in c.edge_warnings])

    def _repr_html_(self) -> str:
        setup, tail = self.lines()
        columns = [c for c in ("label", "trials", "completed", "best", "median", "train_peak_mb", "weights_mb",
                               "seconds_per_step", "tokens_per_second") if c in self.table.columns]
        return (f"<h4>{html.escape(self.comparison.title)}: study {html.escape(self.comparison.study)}</h4>"
                + _html_lines(setup) + self.table[columns].to_html(index=False, na_rep="-")
                + _html_lines(tail) + _html_paths({"markdown": self.markdown, "json": self.json}))


@dataclass
class Recommendation:
    """What `harness.recommend` returns: recommended.yaml's content, its path, and the --format exports."""

    doc: dict[str, Any]
    path: Path
    summary: list[str]
    exports: list[str] = field(default_factory=list)
    """One line per exported file (`formats=`)."""

    @property
    def config(self) -> dict[str, Any]:
        """The recommended config: the document's keyword arguments for peft.LoraConfig, BitsAndBytesConfig,
        TrainingArguments and the optimizer (`lora`, `quantization`, `training`, `optimizer`), without the
        evidence; a document without them (several studies aggregated) whole."""
        parts = {key: self.doc[key] for key in ("lora", "quantization", "training", "optimizer") if key in self.doc}
        return parts or self.doc

    def _repr_html_(self) -> str:
        import yaml

        text = yaml.safe_dump(self.config, sort_keys=False)
        return (_html_lines(self.summary + self.exports) + f"<pre>{html.escape(text)}</pre>")


@dataclass
class Report:
    """What `harness.report` returns: report.md, report.html and the plots, and the W&B summary run's folder."""

    markdown: Path
    html: Path
    plots: dict[str, Path]
    skipped: dict[str, str]
    wandb_dir: Path | None
    warnings: tuple[str, ...]

    def lines(self) -> list[str]:
        """What the command line prints."""
        out = [f"skipped {name}: {reason}" for name, reason in self.skipped.items()]
        out.append(f"written: {self.markdown} and {self.html} ({len(self.plots)} plots)")
        if self.wandb_dir:
            out.append(f"wandb:   summary run in {self.wandb_dir}")
        return out + [f"warning: {warning}" for warning in self.warnings]

    @property
    def key_plot(self) -> Path | None:
        """The plot a notebook shows first: quality against memory when drawn, else the first one."""
        for name in ("memory_quality", "history"):
            if name in self.plots:
                return self.plots[name]
        return next(iter(self.plots.values()), None)

    def _repr_html_(self) -> str:
        return _html_lines(self.lines()) + _html_image(self.key_plot)


@dataclass
class Documents:
    """What `harness.validate`, `harness.advise`, `harness.defaults` and `harness.export` return: the document's
    data (None for export), its verdict or summary lines, and the files written."""

    doc: dict[str, Any] | None
    lines: list[str]
    files: list[Path]

    def _repr_html_(self) -> str:
        return _html_lines(self.lines) + _html_paths({p.name: p for p in self.files})


@dataclass
class Text:
    """A command's plain-text answer (`harness.doctor`): shown as preformatted text in a notebook."""

    text: str
    details: Any = None

    def __str__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.text)}</pre>"
