"""What a study shows, from Python: `compare`, `recommend`, `validate`, `advise`, `report`, `export` and (across
studies) `defaults`, each writing the documents its command writes and returning their data and paths."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.api.calls import Say, call_text, interruptible
from harness.api.results import ComparisonResult, Documents, Recommendation, Report
from harness.config.errors import SpecError


class ExportRefused(SpecError):
    """A --format the recommended config cannot be written in (one line per format); the other formats were
    written and `result` says which."""

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result


def check_sequential(confirm_until: str | None, resolution: str | None) -> None:
    """`confirm_until` and `resolution` of compare and validate, checked before anything runs."""
    from harness.evidence.sequential import parse_resolution

    parse_resolution(resolution)
    if confirm_until not in (None, "resolved"):
        raise SpecError(f"--confirm-until {confirm_until!r} is not a rule: the one rule is `resolved`")


def grouped_view(study: str, storage: str | None, out: str | None, by: str | None, confirm_seeds: int = 0,
                 confirm_top: int = 1, pack: int = 1, say: Say = print,
                 max_memory_mb: float | None = None) -> tuple[Any, Any]:
    """The study read back and its grouping for `by` (harness.evidence.grouping; None: by quantization mode),
    after running the confirmation trials asked for (if any, of each group). `max_memory_mb`: refused unless it is
    the study's own budget (harness.config.budget.study_budget), which its re-runs keep."""
    from harness.config.budget import study_budget
    from harness.config.experiment import build_sweep_spec
    from harness.evidence.confirm import run_confirmations
    from harness.evidence.grouping import grouping
    from harness.search.readout import open_view

    view = open_view(study, storage, out)
    if max_memory_mb is not None:
        pinned = build_sweep_spec(view.sweep, {}, f"study {study}").train.max_memory_mb if view.sweep else None
        study_budget(max_memory_mb, pinned, study)
    groups = grouping(by, view.sweep, view.attrs.get("space"))
    if not confirm_seeds:
        return view, groups
    with interruptible():
        run_confirmations(view, confirm_seeds, confirm_top, out, say=say, by=groups, pack=pack)
    return open_view(study, storage, out), groups


def compare(study: str = "default", *, storage: str | None = None, out: str | None = None,
            reports_dir: str | None = None, confirm_seeds: int = 0, confirm_top: int = 1, device: str | None = None,
            by: str = "quantization", confirm_until: str | None = None, max_seeds: int = 10,
            resolution: str | None = None, pack: int = 1, max_memory_mb: float | None = None,
            say: Say = print) -> ComparisonResult:
    """LoRA vs QLoRA (or any categorical axis, `by`): per group, quality, memory and time (`harness compare`).
    Writes comparison.md/json (comparison_by_<axes>.* with `by`) under reports_dir (default reports/<study>);
    `say` receives the confirmation runs' lines. `max_memory_mb`: the study's memory budget, which its re-runs
    keep; a positive number, and another than the study's is refused."""
    from harness.config.budget import memory_budget
    from harness.config.paths import study_reports_dir
    from harness.evidence.compare import build_comparison
    from harness.evidence.compare_doc import write_comparison
    from harness.evidence.confirm import confirm_until_resolved

    check_sequential(confirm_until, resolution)
    memory_budget(max_memory_mb)  # before any study is read: a bad budget is one line
    if confirm_until and confirm_seeds:
        raise SpecError("--confirm-until and --confirm-seeds both say how many seeds to run: give one")
    view, groups = grouped_view(study, storage, out, by, confirm_seeds, confirm_top, pack, say, max_memory_mb)
    if confirm_until:
        with interruptible():
            view = confirm_until_resolved(view, max_seeds, resolution, confirm_top, out, say, groups, pack)
    comparison = build_comparison(view, device, groups, resolution, max_seeds if confirm_until else None)
    md, js = write_comparison(comparison, Path(study_reports_dir(study, reports_dir)))
    return ComparisonResult(comparison, md, js)


def recommend(study: str = "default", *, storage: str | None = None, out: str | None = None,
              reports_dir: str | None = None, from_: Iterable[str] | None = None, max_memory_mb: float | None = None,
              confirm_seeds: int = 0, confirm_top: int = 1, allow_diverged: bool = False,
              formats: Iterable[str] | str | None = None, quantization: str | None = None,
              file: str | Path | None = None, command: str | None = None, say: Say = print) -> Recommendation:
    """The recommended config(s) (`harness recommend`): recommended.yaml (what peft.LoraConfig,
    BitsAndBytesConfig and TrainingArguments load) under reports_dir (default reports/<study>, or
    reports/<S1+S2...> with `from_`, several studies aggregated), and with `formats` the Axolotl, LLaMA-Factory,
    TRL or Unsloth configs beside it. A format the config cannot be written in raises ExportRefused (a
    SpecError) after the others are written; `file` writes the YAML elsewhere."""
    from harness.config.paths import study_reports_dir
    from harness.evidence.recommend import recommend_many, recommend_study, summary_lines, write_recommended
    from harness.publish.exports import parse_formats

    from harness.config.budget import memory_budget

    max_memory_mb = memory_budget(max_memory_mb)  # before any study is read: a bad budget is one line
    wanted = parse_formats(_as_list(formats))
    names = list(from_ or [])
    command = command or call_text("recommend", study=study, from_=names or None, formats=formats)
    path = Path(file) if file is not None else None
    sweep: dict[str, Any] = {}
    if names:
        doc = recommend_many([grouped_view(n, storage, None, None, confirm_seeds, confirm_top, say=say)[0]
                              for n in names])
        path = path or Path(study_reports_dir("+".join(names), reports_dir)) / "recommended.yaml"
    else:
        view = grouped_view(study, storage, out, None, confirm_seeds, confirm_top, say=say)[0]
        doc, sweep = recommend_study(view, max_memory_mb, allow_diverged), view.sweep
        path = path or Path(study_reports_dir(study, reports_dir)) / "recommended.yaml"
    write_recommended(doc, path, command)
    result = Recommendation(doc, path, summary_lines(doc, path))
    _export(result, wanted, command, sweep, quantization)
    return result


def _as_list(formats: Iterable[str] | str | None) -> list[str] | None:
    return [formats] if isinstance(formats, str) else (list(formats) if formats is not None else None)


def _export(result: Recommendation, formats: tuple[str, ...], command: str, sweep: dict[str, Any],
            quantization: str | None) -> None:
    """Write the `formats` files beside recommended.yaml; refused formats raise ExportRefused after the others."""
    from harness.publish.exports import write_exports

    lines, refused = write_exports(result.doc, result.path.parent, formats, command, sweep, quantization)
    result.exports.extend(lines)
    if refused:
        raise ExportRefused("; ".join(refused), result)


def export(recommended: str | Path, *, formats: Iterable[str] | str | None = None, quantization: str | None = None,
           command: str | None = None) -> Recommendation:
    """An existing recommended.yaml as Axolotl, LLaMA-Factory, TRL or Unsloth configs, written beside it
    (`harness export`; default: all four)."""
    from harness.config.files import load_mapping
    from harness.publish.exports import parse_formats

    recommended = Path(recommended)
    wanted = parse_formats(_as_list(formats)) or ("axolotl", "llamafactory", "trl", "unsloth")
    if "same" in wanted:
        raise SpecError("--format same needs the study (harness recommend --study NAME --format same)")
    doc = load_mapping(recommended, missing=f"{recommended}: no such file (write one with harness recommend --study NAME)",
                       not_mapping=f"{recommended}: not a recommended.yaml (expected a mapping)")
    result = Recommendation(doc, recommended, [])
    _export(result, wanted, command or call_text("export", recommended=str(recommended), formats=formats), {},
            quantization)
    return result


def validate(study: str = "default", *, storage: str | None = None, out: str | None = None,
             reports_dir: str | None = None, steps: int | None = None, epochs: float | None = None, top: int = 3,
             seeds: int = 2, defaults: bool = True, defaults_file: str | Path | None = None, workers: int = 1,
             wandb: str | None = None, confirm_until: str | None = None, max_seeds: int = 10,
             resolution: str | None = None, pack: int = 1, max_memory_mb: float | None = None,
             report_only: bool = False, command: str | None = None, say: Say = print) -> Documents:
    """Re-train the top configs and the published defaults at the real budget (`harness validate`): does the
    ranking hold? Writes validation.md/json/png; returns the document, its verdict lines and the files.
    `max_memory_mb`: the long runs' memory budget (fitted or infeasible, as `sweep`'s), pinned in the linked
    study; default the study's own. `report_only`: train nothing, write the read-out of the long runs done so
    far (of the `steps`/`epochs` budget, else the latest validation): a validation stopped part-way."""
    from harness.config.budget import memory_budget
    from harness.config.paths import study_reports_dir
    from harness.evidence.longruns import read_validation
    from harness.evidence.validate import long_budget
    from harness.evidence.validation import verdict_lines
    from harness.publish.documents import write_validation

    check_sequential(confirm_until, resolution)
    options = dict(steps=steps, epochs=epochs, top=top, defaults=defaults,
                   defaults_file=Path(defaults_file) if defaults_file else None, out=out, workers=workers,
                   wandb=wandb, pack=pack, max_memory_mb=memory_budget(max_memory_mb))
    view = grouped_view(study, storage, out, None)[0]
    if report_only:
        result = read_validation(view, None if steps is None and epochs is None else long_budget(view, steps, epochs))
        say(f"validation: nothing trained (--report-only); the read-out of the {result.long_steps}-step runs done so far")
    else:
        result = _validate(view, confirm_until, max_seeds, resolution, seeds, options, say)
    files = write_validation(result.doc, Path(study_reports_dir(study, reports_dir)),
                             command or call_text("validate", study=study, steps=steps, epochs=epochs))
    return Documents(result.doc, list(verdict_lines(result.doc)), list(files))


def _validate(view: Any, confirm_until: str | None, max_seeds: int, resolution: str | None, seeds: int,
              options: dict[str, Any], say: Say) -> Any:
    """`harness validate`'s long runs, sequential or at a fixed number of seeds, and their read-out."""
    from harness.evidence.validate import run_validation, validate_until_resolved

    with interruptible():
        if confirm_until:
            result = validate_until_resolved(view, max_seeds, resolution, say=say, **options)
        else:
            result = run_validation(view, seeds=seeds, say=say, **options)
    return result


def advise(study: str = "default", *, storage: str | None = None, out: str | None = None,
           reports_dir: str | None = None, corpus: str | None = None, k: int = 3, retriever: str = "bm25",
           adapter: str | None = None, questions: int | None = None, max_context_tokens: int = 512,
           passage_words: int = 120, overlap_words: int = 20, metric: str | None = None, wandb: str = "auto",
           command: str | None = None, say: Say = print) -> Documents:
    """Should you fine-tune, retrieve, or both? (`harness advise`): scores base, rag, finetuned and
    finetuned+rag on the study's held-out questions; returns the document, its verdict and the files."""
    from harness.advise.run import plan_advice, run_advice
    from harness.config.paths import study_reports_dir
    from harness.search.readout import open_view

    if max_context_tokens < 1:
        raise SpecError(f"--max-context-tokens must be >= 1, got {max_context_tokens}")
    plan = plan_advice(open_view(study, storage, out), corpus=corpus, k=k, retriever=retriever, adapter=adapter,
                       questions=questions, out=out, passage_words=passage_words, overlap_words=overlap_words,
                       metric=metric)
    doc, files = run_advice(plan, reports_dir=Path(study_reports_dir(study, reports_dir)), out=out,
                            max_context_tokens=max_context_tokens, wandb=wandb,
                            command=command or call_text("advise", study=study), say=say)
    return Documents(doc, list(doc["verdict"]), list(files))


def report(study: str = "default", *, storage: str | None = None, out: str | None = None,
           reports_dir: str | None = None, wandb: str = "auto", by: str = "quantization",
           command: str | None = None) -> Report:
    """report.md and a self-contained report.html with plots, and a W&B summary run (`harness report`)."""
    from harness.config.paths import study_reports_dir
    from harness.publish.folder import publish

    view, groups = grouped_view(study, storage, out, by)
    published = publish(view, Path(study_reports_dir(study, reports_dir)), wandb,
                        command or call_text("report", study=study, by=None if by == "quantization" else by),
                        out, groups)
    files = published.files
    return Report(files.markdown, files.html, dict(files.plots), dict(files.skipped), published.wandb_dir,
                  tuple(published.warnings))


def defaults(studies: Iterable[str], *, storage: str | None = None, top: int = 1, seeds: int | None = None,
             confirm_until: str | None = None, max_seeds: int = 10, resolution: str | None = None,
             published: bool = True, defaults_file: str | Path | None = None, report_only: bool = False,
             reports_dir: str | None = None, workers: int = 1, pack: int = 1, max_memory_mb: float | None = None,
             wandb: str | None = None, formats: Iterable[str] | str | None = None, command: str | None = None,
             say: Say = print) -> Documents:
    """Default configs that transfer (`harness defaults`): every study's top configs per quantization mode
    trained in every study's cell (its model, data, budget and evaluation settings) on the cell's shared seeds,
    and per mode the candidate with the smallest worst-cell regret; `published`: the published defaults are
    trained in every cell too, on the same seeds, and each is compared with its mode's choice (`defaults_file`:
    other references, in harness/config/published_defaults.yaml's format; `report_only`: train nothing, write
    the read-out of the runs done so far). Writes defaults.md/json/png and
    defaults.yaml (recommended.yaml's format; `formats` as recommend's) under reports_dir (default
    reports/defaults); returns the document, the printed lines and the files."""
    from harness.config.budget import memory_budget
    from harness.evidence.crosseval import cross_evaluate
    from harness.evidence.defaults_file import defaults_mapping
    from harness.evidence.recommend import write_recommended
    from harness.evidence.transfer import summary_lines
    from harness.publish.documents import write_defaults
    from harness.publish.exports import parse_formats

    check_sequential(confirm_until, resolution)
    if confirm_until and seeds is not None:
        raise SpecError("--confirm-until and --seeds both say how many seeds to run: give one")
    seeds = 2 if seeds is None else seeds
    if seeds < 1:
        raise SpecError(f"--seeds must be >= 1, got {seeds}")
    names = list(studies or [])
    wanted = parse_formats(_as_list(formats))
    budget = memory_budget(max_memory_mb)
    folder = Path(reports_dir or "reports/defaults")
    command = command or call_text("defaults", studies=names, top=top, seeds=seeds, confirm_until=confirm_until)
    sequential = {"max_seeds": max_seeds, "resolution": resolution or "1%"} if confirm_until else None
    with interruptible():
        result = cross_evaluate(names, storage=storage, top=top, seeds=seeds, sequential=sequential,
                                references=published, workers=workers,
                                defaults_file=Path(defaults_file) if defaults_file else None, train=not report_only, pack=pack, wandb=wandb, max_memory_mb=budget, say=say)
    files = write_defaults(result.doc, folder, command)
    lines = summary_lines(result.doc)
    try:
        mapping = defaults_mapping(result)
    except SpecError as err:
        return Documents(result.doc, lines + [f"no defaults.yaml: {err}"], files)
    path = write_recommended(mapping, folder / "defaults.yaml", command)
    recommendation = Recommendation(mapping, path, [])
    _export(recommendation, wanted, command, {}, None)
    return Documents(result.doc, lines + recommendation.exports, [*files, path])
