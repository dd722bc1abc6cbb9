"""A study as a human-readable report: PNG figures, report.md and a self-contained report.html.

`write_report(view, out_dir)` draws the figures (harness.publish.plots), writes the markdown, and renders
that same markdown with markdown-it into one offline HTML file: figures embedded as base64 data
URIs, inline CSS, no external link or resource of any kind. A figure that cannot be drawn (too few
trials, nothing varies) is skipped and the report says why; the report itself never fails for lack of data.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

from harness.evidence.longruns import latest_link, read_validation
from harness.evidence.validation import NOT_VALIDATED, headline
from harness.publish import plots
from harness.publish.plan_plot import plot_prediction, prediction_section
from harness.search.edges import study_edge_warnings
from harness.search.readout import StudyView, TrialRow, packed_note, small_eval_note
from harness.config.space import OPTIONAL_AXES, describe_optional
from harness.config.errors import one_line
from harness.search.study import public_url

FIGURES: dict[str, str] = {"history": "Optimization history", "importance": "Parameter importance",
                           "params": "Learning rate, rank and alpha", "memory_quality": "Quality against memory",
                           "curves": "Training curves"}
"""Figure name (the PNG is `<name>.png`) -> its section heading, in report order."""
TOP_TRIALS = 10
"""Completed trials listed in the best-trials table."""


@dataclass(frozen=True)
class ReportFiles:
    """What `write_report` wrote."""

    markdown: Path
    html: Path
    plots: dict[str, Path]
    """Figure name (history, importance, params, memory_quality, curves) -> its PNG."""
    skipped: dict[str, str]
    """Figure name -> the one-line reason it was not drawn."""


def write_report(view: StudyView, out_dir: str | Path, comparison_markdown: str | None = None,
                 title: str | None = None, comparison_title: str = "LoRA vs QLoRA") -> ReportFiles:
    """Write the figures, report.md and report.html of a study into `out_dir` (created if missing).

    `comparison_markdown` (e.g. a LoRA vs QLoRA table) is inserted verbatim under `comparison_title`.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless; set here rather than at import time
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    drawn, skipped, importances = _draw_figures(view, out)
    title = title or f"Sweep report: study {view.name}"
    markdown = build_markdown(view, title, drawn, skipped, importances, comparison_markdown, comparison_title)
    ranged = out / "lr_range.png"
    ranged.unlink(missing_ok=True)
    if plots.plot_lr_range(view, ranged) is None:  # only a range-tested study has the section
        drawn["lr_range"] = ranged
        markdown = markdown.replace("\n\n## Best trials\n", f"\n\n{lr_range_section(view)}\n\n## Best trials\n", 1)
    predicted = out / "prediction.png"
    predicted.unlink(missing_ok=True)
    if plot_prediction(view, predicted) is None:  # only trials run under a memory budget carry predictions
        drawn["prediction"] = predicted
        markdown = markdown.replace("\n\n## Best trials\n", f"\n\n{prediction_section(view)}\n\n## Best trials\n", 1)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(markdown, encoding="utf-8")
    images = {path.name: path.read_bytes() for path in drawn.values()}
    html_path.write_text(markdown_to_html(markdown, images, title), encoding="utf-8")
    return ReportFiles(markdown=md_path, html=html_path, plots=drawn, skipped=skipped)


def _draw_figures(view: StudyView, out: Path) -> tuple[dict[str, Path], dict[str, str], dict[str, float]]:
    drawers: dict[str, Callable[[StudyView, Path], str | None]] = {
        "history": plots.plot_history, "params": plots.plot_params,
        "memory_quality": plots.plot_memory_quality, "curves": plots.plot_curves}
    drawn: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    importances: dict[str, float] = {}
    for name in FIGURES:
        path = out / f"{name}.png"
        path.unlink(missing_ok=True)  # a stale figure from an earlier report must not survive a skip
        if name == "importance":
            importances, reason = param_importances(view)
            if not reason:
                plots.plot_importance(importances, view, path)
        else:
            reason = drawers[name](view, path)
        if reason:
            skipped[name] = reason
        else:
            drawn[name] = path
    return drawn, skipped, importances


def param_importances(view: StudyView) -> tuple[dict[str, float], str | None]:
    """fANOVA importances (seed 0, so reports are reproducible) of the parameters that vary across
    the view's completed search trials, for the first objective; or ({}, the reason there are none)."""
    rows = [r for r in view.completed() if r.confirmation_of is None]
    if len(rows) < 2:
        return {}, f"needs at least 2 completed trials ({len(rows)} so far)"
    try:
        study = _subset_study(view, {r.number for r in rows})
    except Exception as error:  # noqa: BLE001 - a storage gone or unreachable: report without the figure
        return {}, f"could not open the study storage: {one_line(error)}"
    names = _varying_axes(study)
    if not names:
        return {}, "no parameter varies across the completed trials"
    import importlib.util

    import optuna

    if importlib.util.find_spec("sklearn") is None:
        return {}, "fANOVA needs scikit-learn, which is not installed (pip install scikit-learn)"
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), params=names,
            target=lambda t: t.values[0])
    except Exception as error:  # noqa: BLE001 - fANOVA on a handful of points can fail; report goes on
        return {}, f"fANOVA could not be computed: {one_line(error)}"
    if not found or not all(math.isfinite(v) for v in found.values()):
        return {}, "the objective does not vary across the completed trials"
    return dict(found), None


def _subset_study(view: StudyView, numbers: set[int]) -> Any:
    """An in-memory copy of the stored study holding only the given completed trials."""
    import optuna

    stored = optuna.load_study(study_name=view.name, storage=view.storage)
    trials = [t for t in stored.get_trials(deepcopy=False) if t.number in numbers and t.values is not None]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created in memory" line
    try:
        subset = optuna.create_study(directions=stored.directions)
    finally:
        optuna.logging.set_verbosity(verbosity)
    subset.add_trials(with_defaults_filled(trials, stored.user_attrs.get("sweep") or {}))
    return subset


def with_defaults_filled(trials: list[Any], sweep: dict[str, Any]) -> list[Any]:
    """The trials with each conditional axis a trial did not sample filled in at the value it trained with
    (its default: a PiSSA trial trained without DoRA), when the axis's distribution holds that value; so fANOVA,
    which needs every param in every trial, can weigh the conditional axes too."""
    import optuna

    from harness.evidence.grouping import default_value

    distributions: dict[str, Any] = {}
    for trial in trials:
        distributions.update(trial.distributions)
    out = []
    for trial in trials:
        params, dists = dict(trial.params), dict(trial.distributions)
        for name, dist in distributions.items():
            if name in params or name not in OPTIONAL_AXES:
                continue
            value = default_value(name, sweep)
            if _holds(dist, value):
                params[name], dists[name] = value, dist
        out.append(trial if params == trial.params else optuna.trial.create_trial(
            params=params, distributions=dists, values=trial.values, user_attrs=trial.user_attrs))
    return out


def _holds(distribution: Any, value: Any) -> bool:
    """Whether an Optuna distribution can produce `value` (a choice of a categorical, inside a range)."""
    if hasattr(distribution, "choices"):
        return any(type(c) is type(value) and c == value for c in distribution.choices)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        distribution.low <= value <= distribution.high


def _varying_axes(study: Any) -> list[str]:
    """Params with one distribution in every trial and more than one value; `lora_alpha` is left out
    when it is derived from `lora_alpha_ratio` (alpha = ratio * r: no axis of its own)."""
    from optuna.search_space import intersection_search_space

    trials = study.get_trials(deepcopy=False)
    names = sorted(intersection_search_space(trials))
    if any("lora_alpha_ratio" in t.params for t in trials):
        names = [n for n in names if n != "lora_alpha"]
    return [n for n in names if len({repr(t.params[n]) for t in trials}) > 1]


def build_markdown(view: StudyView, title: str, drawn: dict[str, Path], skipped: dict[str, str],
                   importances: dict[str, float], comparison_markdown: str | None,
                   comparison_title: str = "LoRA vs QLoRA") -> str:
    """The report as markdown; figures are referenced by file name, next to report.md."""
    parts = [f"# {title}", _header(view)]
    for name, heading in FIGURES.items():
        parts.append(f"## {heading}")
        if name in drawn:
            parts.append(f"![{heading}]({drawn[name].name})")
            parts.append(_how_to_read(name, view, importances))
        else:
            parts.append(f"*Figure skipped: {skipped.get(name, 'not drawn')}.*")
    parts += ["## Best trials", best_trials_table(view)]
    edges = edge_section(view)
    if edges:
        parts += ["## Edge of the searched range", edges]
    if comparison_markdown:
        parts += [f"## {comparison_title}", comparison_markdown.strip()]
    parts.append("## Skipped figures")
    parts.append("\n".join(f"- `{name}.png`: {reason}" for name, reason in skipped.items())
                 or "None: every figure was drawn.")
    return "\n\n".join(parts) + "\n"


def lr_range_section(view: StudyView) -> str:
    """The learning-rate range test (--lr-range-test): its figure and each mode's range with the reason."""
    record = view.attrs["lr_range_test"]
    rows = [_md_row(["mode", "steps run", "range", "why"]), _md_row(["---"] * 4)]
    for mode, entry in record["modes"].items():
        rows.append(_md_row([mode, f"{len(entry.get('losses') or [])} of {entry['steps']}",
                             f"{entry['range'][0]:.3g} - {entry['range'][1]:.3g}", entry["reason"]]))
    low, high = record["range"]
    return "\n\n".join([
        "## Learning-rate range test", "![Learning-rate range test](lr_range.png)",
        "Before the search, each mode trained one adapter at a rate rising exponentially across the axis, a "
        "step at each rate; the line is the smoothed training loss (dots: each step's loss). A mode's range is "
        "the decade below the rate where its smoothed loss was lowest (shaded); the study searched the union, "
        f"[{low:.3g}, {high:.3g}] (dashed), of the axis [{record['axis'][0]:.3g}, {record['axis'][1]:.3g}].",
        "\n".join(rows)])


def _header(view: StudyView) -> str:
    sweep, attrs = view.sweep, view.attrs
    states = [r.state for r in view.rows]
    oom = sum(r.status == "oom" for r in view.rows)
    data = attrs.get("data_source") or sweep.get("data") or attrs.get("data") or "?"
    sizes = f"; {attrs.get('n_train', '?')} training / {attrs['n_eval']} held-out examples" if "n_eval" in attrs else ""
    best = _best_rows(view)[:1]
    best_text = f"; best {_fmt(_value(best[0], view))} (trial {best[0].number})" if best else ""
    source = view.source
    lines = [
        f"- **Study:** `{view.name}` in `{public_url(view.storage)}`",
        f"- **Model:** {source['label']} (`{sweep.get('model') or attrs.get('model') or '?'}`); source weights: "
        f"{source.get('precision', 'not recorded')}; **data:** {data}{sizes}",
        f"- **Device:** {', '.join(view.devices()) or 'not recorded'}",
        (f"- **Trials:** {states.count('COMPLETE')} completed, {states.count('PRUNED')} pruned, "
         f"{states.count('FAIL')} failed ({oom} out of memory){_running(states)}"),
        f"- **Objective:** `{', '.join(view.objectives)}` ({', '.join(view.directions)}){best_text}",
        f"- **Untuned base model:** {_baseline_text(view)}",
        (f"- **Budget:** {sweep.get('max_steps', '?')} optimizer steps per trial, sampler "
         f"{sweep.get('sampler', '?')}, pruner {sweep.get('pruner', '?')}")]
    if source.get("four_bit_source"):
        lines.append("- **Caveat:** the source weights were already 4-bit, so the unquantized mode is 4-bit weights "
                     "stored in higher precision and NF4/FP4 re-quantize them: mode differences measure "
                     "re-quantization error, not 16-bit vs 4-bit.")
    lines.append(_validation_line(view))
    note = small_eval_note(view.n_eval)
    if note:
        lines.append(f"- **Warning:** {note}")
    packed = packed_note(view.rows)
    if packed:
        lines.append(f"- **Packed trials:** {packed}")
    return "\n".join(lines)


def _validation_line(view: StudyView) -> str:
    """Whether the study's ranking was checked at a long budget (harness validate), in one line."""
    of = view.attrs.get("validation_of")
    if of:
        return (f"- **Validation:** this study re-trains configs of `{of['study']}` ({of.get('short_steps')}-step "
                f"trials) at {view.sweep.get('max_steps')} steps")
    if latest_link(view) is None:
        return f"- **Not validated:** {NOT_VALIDATED.split(' means ', 1)[1]}."
    return f"- **Validation:** {headline(read_validation(view).doc)} (validation.md)."


def _running(states: list[str]) -> str:
    unfinished = states.count("RUNNING") + states.count("WAITING")
    return f", {unfinished} still running or waiting" if unfinished else ""


def _baseline_text(view: StudyView) -> str:
    """The untuned base model's scores in every mode the study scored it in."""
    parts = []
    for mode in view.baseline_modes():
        scores = view.baseline_scores(mode)
        if scores is None:
            parts.append(f"{mode}: missing ({view.baseline_missing(mode) or 'not scored'})")
            continue
        parts.append(f"{mode}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return "; ".join(parts) or "not scored"


def _how_to_read(name: str, view: StudyView, importances: dict[str, float]) -> str:
    better = "lower" if view.minimize else "higher"
    quality, quality_min = plots.quality_metric(view)
    top = ", ".join(f"`{k}` {v:.2f}" for k, v in sorted(importances.items(), key=lambda kv: -kv[1]))
    sentences = {
        "history": f"Each dot is a completed trial ({better} is better), crosses are pruned trials at their "
                   "last reported value, the step line is the best found so far and the dashed line is the "
                   "untuned base model.",
        "importance": f"The share of the variation in `{view.objective}` that fANOVA attributes to each "
                      f"parameter that varied (they sum to 1; seed 0): {top}. A conditional axis counts at its "
                      "default in the trials that did not sample it (the value they trained with).",
        "params": f"Each panel shows one parameter against `{view.objective}` ({better} is better); a clear "
                  "trend in a panel means that parameter matters, a flat cloud means it does not.",
        "memory_quality": f"Points further left need less memory and points further "
                          f"{'down' if quality_min else 'up'} score better on `{quality}`; the circled points "
                          "on the step line are the Pareto front, where less memory costs quality.",
        "curves": "One line per trial coloured by quantization; completed trials are solid and pruned ones "
                  "dashed, so you can see where the pruner stopped a trial that was falling behind."
                  if plots.shows_intermediate(view) else
                  "Training loss per optimizer step, one line per trial coloured by quantization and lightly "
                  "smoothed; a curve that falls faster learns faster on the training data (eval loss may differ).",
    }
    return sentences[name]


def best_trials_table(view: StudyView) -> str:
    """A markdown table of the top completed trials by the first objective, best first."""
    extra = [m for m in ("eval_loss", view.task_metric) if m and m != view.objective]
    rows = _best_rows(view)[:TOP_TRIALS]
    variants = any(k in OPTIONAL_AXES for r in rows for k in r.params)  # the space searched variant/training axes
    header = ["trial", "quantization", "lora_r", "lora_alpha", "learning_rate", *(["variant"] if variants else []),
              view.objective, "peak memory (MiB)", "s/step", "tokens/s", *extra]
    lines = [_md_row(header), _md_row(["---:", "---"] + ["---:"] * (len(header) - 2))]
    for row in rows:
        cells = [_trial_cell(row), f"`{row.quantization}`", _fmt(row.params.get("lora_r")),
                 _fmt(row.params.get("lora_alpha")), _fmt(row.params.get("learning_rate"), ".2e"),
                 *([", ".join(describe_optional(row.params)) or "plain"] if variants else []),
                 _fmt(_value(row, view)), _fmt(row.metric("peak_memory_mb"), ".0f") + _pack_of(row),
                 _fmt(row.seconds_per_step, ".2f"), _fmt(row.metric("tokens_per_second"), ".0f")]
        lines.append(_md_row(cells + [_fmt(row.metric(m), ".4f") for m in extra]))
    if len(lines) == 2:
        return "No trial has completed yet."
    return "\n".join(lines)


def _pack_of(row: TrialRow) -> str:
    """" (pack of K)" after a figure that is a pack's, not the trial's alone; else nothing."""
    return f" (pack of {row.pack_size})" if row.pack_size > 1 else ""


def edge_section(view: StudyView) -> str | None:
    """Where the best trial's numeric axes sit at the edge of the searched range (harness.search.edges), or None."""
    best = _best_rows(view)[:1]
    warnings = study_edge_warnings(view, best[0].params) if best else []
    if not warnings:
        return None
    return (f"The best trial (#{best[0].number}) sits at the edge of what was searched:\n\n"
            + "\n".join(f"- **Warning:** {w}" for w in warnings))


def _best_rows(view: StudyView) -> list[TrialRow]:
    return [r for r in view.ranked(view.completed(), lambda r: _value(r, view)) if _value(r, view) is not None]


def _value(row: TrialRow, view: StudyView) -> float | None:
    return plots.row_value(row, view.objective)


def _trial_cell(row: TrialRow) -> str:
    return f"{row.number} (re-run of {row.confirmation_of}, seed {row.seed})" if row.confirmation_of is not None \
        else str(row.number)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _fmt(value: Any, spec: str = "") -> str:
    """A number for a table: `spec` when given, else integers as is and floats to 4 significant-ish places."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if spec:
        return format(value, spec)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        return str(int(value))
    return format(value, ".4f") if isinstance(value, float) and abs(value) >= 0.01 else format(value, ".4g")


# --- markdown -> self-contained HTML ---------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.5; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f3f3f3; padding: .05em .3em; border-radius: 3px; font-size: 0.92em; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figure { margin: 1em 0; }
"""


def markdown_to_html(markdown: str, images: dict[str, bytes], title: str) -> str:
    """The report's markdown (CommonMark with pipe tables, rendered by markdown-it) as one HTML page.

    Images named in `images` are embedded as base64 PNG data URIs (a paragraph holding only such an
    image becomes a <figure>); any other image becomes its alt text, links become their text and raw
    HTML stays text, so the page loads nothing from anywhere."""
    body = _renderer().render(markdown, {"images": images})
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n")
    # Belt and braces: a URL quoted in text stays readable but is no longer a URL in the file.
    return re.sub(r"(?i)\b(https?):(?=//)", r"\1&#58;", page)


def _renderer() -> MarkdownIt:
    """markdown-it with tables on, raw HTML off, links as their text and images only from `env["images"]`."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.add_render_rule("link_open", _nothing)
    md.add_render_rule("link_close", _nothing)
    md.add_render_rule("image", _image)
    md.add_render_rule("paragraph_open", _paragraph_open)
    md.add_render_rule("paragraph_close", _paragraph_close)
    return md


# Render rules, called as markdown-it's renderer methods: (renderer, tokens, idx, options, env) -> HTML.

def _nothing(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    return ""


def _image(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    token = tokens[idx]
    alt = html.escape(self.renderInlineAsText(token.children or [], options, env))
    data = env["images"].get(token.attrGet("src"))
    if data is None:
        return f"<em>[figure: {alt}]</em>"
    return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def _lone_figure(tokens: Sequence[Token], idx: int, env: EnvType) -> bool:
    """Whether tokens[idx] is the inline content of a paragraph holding nothing but an embedded image."""
    if not (0 <= idx < len(tokens) and tokens[idx].type == "inline"):
        return False
    children = tokens[idx].children or []
    return len(children) == 1 and children[0].type == "image" and children[0].attrGet("src") in env["images"]


def _paragraph_open(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict,
                    env: EnvType) -> str:
    return "<figure>" if _lone_figure(tokens, idx + 1, env) else self.renderToken(tokens, idx, options, env)


def _paragraph_close(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict,
                     env: EnvType) -> str:
    return "</figure>\n" if _lone_figure(tokens, idx - 1, env) else self.renderToken(tokens, idx, options, env)
