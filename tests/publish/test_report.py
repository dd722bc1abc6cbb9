"""The study report: figures, report.md and an offline report.html, from a real tiny-llama study
(one sweep per module: 5 trials of 6 steps, 16-bit LoRA vs nf4, the median pruner on)."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import optuna
import pytest
from helpers import run_cli

from harness.publish.plots import pareto_front
from harness.search.readout import StudyView, open_view
from harness.publish.report import FIGURES, ReportFiles, _header, best_trials_table, markdown_to_html, write_report

COMPARISON = "| mode | eval loss (nats per token) |\n| --- | ---: |\n| 16-bit LoRA | 10.70 |\n| nf4 | 10.69 |"
# quantization and learning rate vary, so every figure has something to show; tiny evals keep it fast.
SPACE = """axes:
  lora_r: {low: 4, high: 16, step: 4}
  lora_alpha: {ratio: {choices: [1, 2]}}
  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
  quantization: {choices: [none, nf4]}
  lora_dropout: 0.0
  target_modules: all-linear
"""
EXPERIMENT = """model: tiny-llama
space: {space}
trials: 5
max_steps: 6
pruner: median
wandb: disabled
lr_range_test: false  # the report of a range-tested study: tests/search/test_lr_narrowing.py
train: {{batch_size: 4}}
data_options: {{eval_size: 8}}
eval: {{generate_size: 2, max_new_tokens: 4}}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyView, Path]:
    root = tmp_path_factory.mktemp("report-study")
    (root / "space.yaml").write_text(SPACE)
    (root / "exp.yaml").write_text(EXPERIMENT.format(space=root / "space.yaml"))
    out = root / "out"
    # Trial 2 diverges (an injected NaN loss), so the figures have a PRUNED-state trial to draw; the
    # pruner itself compares trials within a mode only after 3 of that mode completed. A cache of its own: a
    # memory probe another test left in the run's cache (tiny-llama, nf4, 128 tokens) would give these trials
    # planner predictions, and the figures of a study without them are what these tests check.
    proc = run_cli("sweep", "-e", str(root / "exp.yaml"), "--study", "r", "--out", str(out),
                   env={"HARNESS_INJECT_FAULTS": "2:nan", "HARNESS_CACHE": str(root / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return open_view("r", out=str(out)), out


@pytest.fixture(scope="module")
def report(study: tuple[StudyView, Path], tmp_path_factory: pytest.TempPathFactory) -> ReportFiles:
    return write_report(study[0], tmp_path_factory.mktemp("report") / "r", comparison_markdown=COMPARISON)


@pytest.mark.integration
def test_every_figure_is_a_real_png(report: ReportFiles) -> None:
    assert report.skipped == {}
    assert set(report.plots) == set(FIGURES)
    for name, path in report.plots.items():
        assert path == report.markdown.parent / f"{name}.png"
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5_000, (name, len(data))


@pytest.mark.integration
def test_markdown_embeds_figures_best_trials_and_comparison(study: tuple[StudyView, Path],
                                                            report: ReportFiles) -> None:
    view, out = study
    text = report.markdown.read_text()
    for name in FIGURES:
        assert f"]({name}.png)" in text
    assert {r.state for r in view.rows} >= {"COMPLETE", "PRUNED"}
    assert "pruned" in text and "untuned base model" in text.lower()
    best = optuna.load_study(study_name="r", storage=f"sqlite:///{out}/study.db").best_trial
    table = text.split("## Best trials", 1)[1]
    first_row = [line for line in table.splitlines() if line.startswith("|")][2]
    assert first_row.startswith(f"| {best.number} |") and f"{best.value:.4f}" in first_row
    assert "## LoRA vs QLoRA\n\n" + COMPARISON in text


@pytest.mark.integration
def test_html_is_self_contained(report: ReportFiles) -> None:
    page = report.html.read_text()
    assert page.count("data:image/png;base64,") == len(FIGURES)
    for banned in ("http://", "https://", 'src="http', "<link", "<script"):
        assert banned not in page, banned
    assert "<h2>LoRA vs QLoRA</h2>" in page and "<td>16-bit LoRA</td>" in page
    assert "<h2>Best trials</h2>" in page and "<table>" in page


@pytest.mark.integration
def test_single_completed_trial_skips_importance_with_a_reason(study: tuple[StudyView, Path],
                                                               tmp_path: Path) -> None:
    view, _ = study
    first = view.completed()[0]
    rows = tuple(r for r in view.rows if r.state != "COMPLETE" or r is first)
    files = write_report(dataclasses.replace(view, rows=rows), tmp_path / "one")
    assert "at least 2 completed trials" in files.skipped["importance"]
    assert not (tmp_path / "one" / "importance.png").exists()
    text = files.markdown.read_text()
    assert "`importance.png`: needs at least 2 completed trials" in text and "](importance.png)" not in text
    assert files.html.read_text().count("data:image/png;base64,") == len(files.plots)
    assert f"| {first.number} |" in text


@pytest.mark.integration
def test_a_packed_trials_memory_is_marked_as_its_packs(study: tuple[StudyView, Path]) -> None:
    view, _ = study
    best = next(r for r in view.rows if r.state == "COMPLETE")
    packed = dataclasses.replace(best, result={**best.result, "pack_size": 3})
    view = dataclasses.replace(view, rows=tuple(packed if r is best else r for r in view.rows))
    row = next(line for line in best_trials_table(view).splitlines() if line.startswith(f"| {best.number} |"))
    assert f"{best.metric('peak_memory_mb'):.0f} (pack of 3) |" in row
    header = _header(view)
    assert "- **Packed trials:** 1 run(s) trained in packs of 3" in header
    assert "**Packed trials:**" not in _header(study[0])


def test_html_conversion_renders_tables_lists_and_escapes_text() -> None:
    page = markdown_to_html("# A <b>\n\n<script>x()</script>\n\n- `x|y` item\n- **two**\n\n"
                            "| a | b |\n|---|--:|\n| 1 \\| 2 | <3 |", {}, "t")
    assert "<h1>A &lt;b&gt;</h1>" in page and "<b>" not in page and "<script" not in page
    assert "<ul>\n<li><code>x|y</code> item</li>\n<li><strong>two</strong></li>\n</ul>" in page
    table = page.split("<table>", 1)[1].split("</table>", 1)[0]
    assert '<th>a</th>\n<th style="text-align:right">b</th>' in table
    assert '<td>1 | 2</td>\n<td style="text-align:right">&lt;3</td>' in table


def test_html_conversion_keeps_link_text_and_loads_nothing_remote() -> None:
    page = markdown_to_html("see [docs](https://example.org/a) and <http://example.org/b>, [ref][r] and "
                            "https://example.org/c\n\n[r]: https://example.org/d\n\n"
                            "![remote](https://example.org/x.png) ![plain](http://example.org/y.png) "
                            "![local](far.png)", {}, "t")
    assert "<p>see docs and http&#58;//example.org/b, ref and https&#58;//example.org/c</p>" in page
    assert "<a " not in page and "href" not in page and "<img" not in page
    assert "http://" not in page and "https://" not in page
    assert "<em>[figure: remote]</em> <em>[figure: plain]</em> <em>[figure: local]</em>" in page


def test_html_conversion_embeds_the_plots_it_is_given() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    page = markdown_to_html("## History\n\n![Optimization history](history.png)\n\nsee ![small](history.png)",
                            {"history.png": png}, "t")
    data = base64.b64encode(png).decode("ascii")
    assert f'<figure><img alt="Optimization history" src="data:image/png;base64,{data}"></figure>' in page
    assert f'<p>see <img alt="small" src="data:image/png;base64,{data}"></p>' in page
    assert 'src="history.png"' not in page


def test_pareto_front_keeps_points_nothing_beats() -> None:
    points = [(100.0, 2.0), (120.0, 1.5), (130.0, 1.8), (90.0, 2.5), (150.0, 1.2)]
    assert pareto_front(points, minimize=True) == [(90.0, 2.5), (100.0, 2.0), (120.0, 1.5), (150.0, 1.2)]
    assert pareto_front(points, minimize=False) == [(90.0, 2.5)]


def _with_predictions(view: StudyView, peak_error: float, step_error: float,
                      eval_error: float | None = None) -> StudyView:
    """The study's completed trials given planner predictions off their measurements by the given relative errors."""
    from harness.publish.plan_plot import measured_train_peak

    rows = []
    for row in view.rows:
        if row.state == "COMPLETE":
            predicted = {"predicted_peak_memory_mb": measured_train_peak(row) * (1 + peak_error),
                         "predicted_step_seconds": row.seconds_per_step * (1 + step_error)}
            if eval_error is not None:
                predicted["predicted_eval_peak_memory_mb"] = row.metric("eval_peak_memory_mb") * (1 + eval_error)
            row = dataclasses.replace(row, result={**row.result, **predicted})
        rows.append(row)
    return dataclasses.replace(view, rows=tuple(rows))


@pytest.mark.integration
def test_trials_with_planner_predictions_get_the_predicted_against_measured_figure(
        study: tuple[StudyView, Path], tmp_path: Path) -> None:
    from harness.publish.plan_plot import prediction_checks

    view = _with_predictions(study[0], peak_error=0.10, step_error=-0.30, eval_error=-0.20)
    memory, evaluation, steps = prediction_checks(view)
    done = len(view.completed())
    assert [len(memory.points), len(steps.points)] == [done, done]
    assert memory.errors == pytest.approx([0.10] * done) and memory.within_goal == done
    assert steps.errors == pytest.approx([-0.30] * done) and steps.within_goal == 0
    assert evaluation.name == "evaluation peak" and evaluation.errors == pytest.approx([-0.20] * done)
    files = write_report(view, tmp_path / "planned")
    assert (tmp_path / "planned" / "prediction.png").read_bytes().startswith(b"\x89PNG")
    text = files.markdown.read_text()
    assert "## Planner: predicted against measured" in text and "](prediction.png)" in text
    assert f"peak memory: {done} of {done} trials within ±15%; median error +10.0%" in text
    assert f"s/step: 0 of {done} trials within ±20%; median error -30.0%" in text
    assert f"evaluation peak: 0 of {done} trials within ±15%; median error -20.0%" in text
    assert text.index("## Planner") < text.index("## Best trials")


@pytest.mark.integration
def test_trials_without_predictions_draw_no_planner_figure(report: ReportFiles) -> None:
    assert "prediction" not in report.plots and not (report.markdown.parent / "prediction.png").exists()
    assert "## Planner" not in report.markdown.read_text()
