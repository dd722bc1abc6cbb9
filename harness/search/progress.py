"""What the user sees: a live line while a trial runs, a line per finished trial, result tables."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Iterable

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from harness.config.space import describe_optional
from harness.config.objectives import direction_of, ranked


def _fmt(value: Any, spec: str = ".4g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def describe_params(params: dict[str, Any]) -> str:
    """`nf4-dq r16 a32 lr2.1e-04 dora` - the params that matter, short (optional axes when sampled)."""
    return (f"{params.get('quantization', '?')} r{params.get('lora_r', '?')} "
            f"a{_fmt(params.get('lora_alpha'), '.3g')} lr{_fmt(params.get('learning_rate'), '.1e')}"
            + (f" {params['target_modules']}" if params.get("target_modules", "all-linear") != "all-linear" else "")
            + "".join(f" {part}" for part in describe_optional(params)))


class NotebookLine:
    """In a Jupyter kernel, rich's live line: one output line updated in place (IPython's display handle),
    cleared when it stops, so that a notebook shows one line for the trial in flight, not a line per step."""

    def __init__(self, text: str) -> None:
        from IPython.display import display

        self._handle = display(text, display_id=True)

    @staticmethod
    def available() -> bool:
        """Running in a Jupyter kernel (a notebook, nbclient), not in a terminal IPython or plain Python."""
        shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
        return type(shell).__name__ == "ZMQInteractiveShell"

    def update(self, text: Any) -> None:
        if self._handle is not None:
            self._handle.update(str(text))

    def stop(self) -> None:
        self.update("")


class SweepProgress:
    """Trial n of N, step, current loss, best so far: a live line on a terminal, plain lines elsewhere."""

    def __init__(self, total: int, max_steps: int, console: Console | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console or Console(stderr=True)
        self.total, self.max_steps = total, max_steps
        self.best: float | None = None
        self._live: Live | NotebookLine | None = None
        self._head = self._pack_head = ""
        self._clock = clock
        self._first_start: float | None = None
        self._ended = 0
        self._first_step: tuple[int, float] | None = None
        """(step, time) of the trial's first reported step: its step rate leaves out loading."""
        self._last_line = 0.0

    def _started(self) -> None:
        if self._first_start is None:
            self._first_start = self._clock()

    def eta_text(self) -> str:
        """`~N min left`: the trials still to run x the measured wall time per finished trial so far (since the
        first trial started, so packs and the time between trials count); empty before the first trial ends."""
        left = self.total - self._ended
        if self._first_start is None or self._ended == 0 or left <= 0:
            return ""
        per_trial = (self._clock() - self._first_start) / self._ended
        return f"  ~{_duration(per_trial * left)} left"

    def _start_live(self, text: str) -> None:
        """The live line: rich's on a terminal, one updating output line in a notebook, none elsewhere."""
        if self.console.is_terminal:
            self._live = Live(Text(text), console=self.console, transient=True, refresh_per_second=4)
            self._live.start()
        elif NotebookLine.available():
            self._live = NotebookLine(text)

    def _trial_started(self) -> None:
        self._first_step = None
        self._last_line = self._clock()

    def start_trial(self, index: int, number: int, params: dict[str, Any]) -> None:
        self._started()
        self._trial_started()
        self._head = f"trial {index}/{self.total} (#{number}) {describe_params(params)}"
        self._start_live(self._head + "  loading...")

    def start_pack(self, members: list[tuple[int, int, dict[str, Any]]]) -> None:
        """K claimed trials (index, number, params) training as one pack: one line naming them, then the live
        line of the pack (the lowest member loss)."""
        self._started()
        self._trial_started()
        numbers = ", ".join(f"#{number}" for _, number, _ in members)
        self.note(f"pack of {len(members)} trials ({numbers}) on one copy of the base model:")
        for index, number, params in members:
            self.note(f"  trial {index}/{self.total} (#{number}) {describe_params(params)}")
        self._head = self._pack_head = f"pack of {len(members)} ({numbers})"
        self._start_live(self._head + "  loading...")

    def continue_pack(self) -> None:
        """The pack's live line again, after a member that left it was reported (`name_trial`, `end_trial`)."""
        self._head = self._pack_head
        if self._live is None:
            self._start_live(self._head)

    def name_trial(self, index: int, number: int, params: dict[str, Any]) -> None:
        """The trial the next `end_trial` line is about (a member of a pack that just ended)."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._head = f"trial {index}/{self.total} (#{number}) {describe_params(params)}"

    def step(self, step: int, loss: float) -> None:
        """The trial's step: a bar on the live line (a terminal, a notebook); elsewhere (a log file) a plain line
        at most every LOG_STEP_SECONDS, so a long trial shows it is alive and a short one adds no lines."""
        now = self._clock()
        if self._first_step is None or step <= self._first_step[0]:
            self._first_step = (step, now)
        left = self._trial_seconds_left(step, now)
        left_text = f"  ~{_duration(left)} left in this trial" if left is not None else ""
        if self._live is not None:
            best = f"  best {self.best:.4f}" if self.best is not None else ""
            self._live.update(Text(f"{self._head}  {step_bar(step, self.max_steps)}  loss {loss:.4f}{best}"
                                   f"{left_text}"))
        elif now - self._last_line >= LOG_STEP_SECONDS:
            self._last_line = now
            self.note(f"{self._head}  step {step}/{self.max_steps}  loss {loss:.4f}{left_text}")

    def _trial_seconds_left(self, step: int, now: float) -> float | None:
        """The steps still to run x the seconds per step since the trial's first reported step."""
        if self._first_step is None or not self.max_steps or step <= self._first_step[0]:
            return None
        per_step = (now - self._first_step[1]) / (step - self._first_step[0])
        return max(0.0, self.max_steps - step) * per_step

    def end_trial(self, record: dict[str, Any], best: float | None) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        self.best = best
        self._ended += 1
        state = "DIVERGED" if record.get("status") == "diverged" else record["state"]
        detail = (f"eval_loss {_fmt(record['eval_loss'], '.4f')}  peak {_fmt(record['peak_memory_mb'], '.0f')} MiB  "
                  f"{_fmt(record['tokens_per_second'], '.0f')} tok/s  {record['wall_seconds']:.0f} s")
        why = f"  ({record['error']})" if record.get("error") else ""
        best_text = f"  best {best:.4f}" if best is not None else ""
        self.console.print(f"{self._head}  {state}  {detail}{best_text}{why}{self.eta_text()}", highlight=False,
                           soft_wrap=True)

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def note(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)


TRIAL_COLUMNS: dict[str, str] = {
    "#": "", "state": "", "quant": "", "r": "", "alpha": ".3g", "lr": ".2e", "variant": "", "eval_loss": ".4f",
    "ppl": ".2f", "peak MiB": ".0f", "train s": ".1f", "tok/s": ".0f", "note": ""}
"""The columns of the status table and how each number is shown (a task metric's column: .3f)."""


LOG_STEP_SECONDS = 60.0
"""Off a terminal, the least time between two step lines of one trial."""
BAR_WIDTH = 20


def step_bar(step: int, max_steps: int) -> str:
    """`step 12/40 [######--------------]`; just `step 12` when the step count is not known."""
    if not max_steps:
        return f"step {step}"
    filled = min(BAR_WIDTH, round(BAR_WIDTH * step / max_steps))
    return f"step {step}/{max_steps} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}]"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def trial_cells(rows: Iterable[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The status table of trial records (from trials.jsonl or the study) as column names and raw values, one
    list per trial: what `harness status` shows and what the Python API's `trials` DataFrame holds."""
    rows = list(rows)
    task_metrics = sorted({k for row in rows for k in (row.get("metrics") or {}) if k != "base_model_mb"})
    variants = any(describe_optional(row.get("params", {})) for row in rows)  # a space with variant/training axes
    columns = ["#", "state", "quant", "r", "alpha", "lr", *(["variant"] if variants else []), "eval_loss", "ppl",
               *task_metrics, "peak MiB", "train s", "tok/s", "note"]
    cells = []
    for row in rows:
        params = row.get("params", {})
        metrics = row.get("metrics") or {}
        row = {**row.get("result", {}), **{k: v for k, v in row.items() if v is not None}}
        cells.append([row["number"], row["state"], params.get("quantization"), params.get("lora_r"),
                      params.get("lora_alpha"), params.get("learning_rate"),
                      *([",".join(describe_optional(params)) or None] if variants else []),
                      row.get("eval_loss"), row.get("perplexity"), *(metrics.get(m) for m in task_metrics),
                      row.get("peak_memory_mb"), row.get("train_seconds"), row.get("tokens_per_second"),
                      (row.get("error") or "")[:60]])
    return columns, cells


def trials_table(rows: Iterable[dict[str, Any]], title: str) -> Table:
    """A table of trial records (from trials.jsonl or the study): params and measured results."""
    table = Table(title=title, title_justify="left")
    columns, cells = trial_cells(rows)
    for name in columns:
        table.add_column(name, justify="right" if name not in ("state", "quant", "variant", "note") else "left",
                         no_wrap=name == "variant")
    for values in cells:
        table.add_row(*(_fmt(value, TRIAL_COLUMNS.get(name, ".3f")) if name != "note" else value
                        for name, value in zip(columns, values)))
    return table


def pareto_table(front: list[dict[str, Any]], objectives: Iterable[str]) -> Table:
    """The Pareto-optimal trials of a multi-objective study: params and one column per objective."""
    objectives = list(objectives)
    table = Table(title=f"Pareto front over {', '.join(objectives)} ({len(front)} trials)", title_justify="left")
    for name in ["#", "params", *objectives]:
        table.add_column(name, justify="left" if name == "params" else "right")
    for entry in front:
        table.add_row(str(entry["number"]), describe_params(entry["params"]),
                      *(_fmt(entry["values"][name], ".4g") for name in objectives))
    return table


def print_table(table: Table) -> None:
    Console(file=sys.stdout, width=max(140, Console().width)).print(table)


STATE_ORDER = {"COMPLETE": 0, "PRUNED": 1, "FAIL": 2}
"""Finished trials first, then pruned, then failed; running ones last."""


def ranked_records(records: Iterable[dict[str, Any]], objective: str) -> list[dict[str, Any]]:
    """trials.jsonl records best first under the objective's direction, grouped by state."""
    best_first = ranked(records, direction_of(objective), lambda record: record_value(record, objective))
    return sorted(best_first, key=lambda record: STATE_ORDER.get(record["state"], 3))


def record_value(record: dict[str, Any], name: str) -> float | None:
    """An objective's value in a trials.jsonl record: a top-level key, a result field or a task metric."""
    for source in (record, record.get("result") or {}, record.get("metrics") or {}):
        if source.get(name) is not None:
            return source[name]
    return None


def print_status(loaded: Any, url: str) -> None:
    """`harness status`: every trial of a study (an Optuna study) as the storage holds it, and the untuned
    baseline."""
    from harness.search.readout import baseline_of
    from harness.search.study import public_url, study_rows

    rows = study_rows(loaded)
    print_table(trials_table(rows, f"study {loaded.study_name}: {len(rows)} trials ({public_url(url)})"))
    objective = (loaded.user_attrs.get("objectives") or ["eval_loss"])[0]
    base = baseline_of(loaded.user_attrs, "none", objective)
    if base is not None:
        print(f"untuned base model {objective}: {base:.4f}")


def print_sweep_end(outcome: Any, objectives: tuple[str, ...]) -> None:
    """What a finished `harness sweep` prints: its trials best first, the Pareto front, where things are."""
    from harness.search.edges import edge_warnings
    from harness.search.study import public_url

    records = ranked_records(outcome.records, objectives[0])
    print_table(trials_table(records[:10], f"study {outcome.study}: {len(outcome.records)} trials this run, "
                                           "best first"))
    if outcome.pareto:
        print_table(pareto_table(outcome.pareto, objectives))
    say = print
    base = outcome.baseline(objectives[0])
    if outcome.best is not None:
        best = outcome.best["values"][0]
        line = f"best trial #{outcome.best['number']}: {objectives[0]} {best:.4f}"
        if base is not None:
            line += f"  (untuned base model: {base:.4f}, change {best - base:+.4f})"
        say(line)
        for warning in edge_warnings(outcome.study_attrs.get("space"), outcome.best["params"]):
            say(f"warning: {warning}")
    if outcome.time_budget is not None:
        from harness.search.time_budget import end_line

        say(end_line(outcome.time_budget))
    out = outcome.out_dir
    say(f"study:   {public_url(outcome.storage)} (study name {outcome.study!r})")
    say(f"trials:  {out / 'trials.jsonl'}")
    if (out / "best_adapter").exists():
        say(f"adapter: {out / 'best_adapter'} (peft: PeftModel.from_pretrained(base, path))")
    if (out / "wandb").exists():
        say(f"wandb:   {out / 'wandb'} (offline runs: wandb sync {out / 'wandb'}/offline-run-*)")


def comparison_table(comparison: Any) -> Table:
    """The LoRA vs QLoRA table of `harness compare` (a harness.evidence.compare.Comparison)."""
    metric = comparison.task_metric
    where = f", {comparison.device}" if comparison.device else ""
    by_mode = comparison.by_mode
    what = "LoRA vs QLoRA" if by_mode else f"by {', '.join(comparison.by)}"
    table = Table(title=f"study {comparison.study}: {what} ({comparison.objective}, "
                        f"{'lower' if comparison.minimize else 'higher'} is better{where})", title_justify="left")
    first = "mode" if by_mode else "group"
    columns = [first, "trials done/pruned/div/fail/oom", "untuned", "best", "median", "confirmed mean ± std (n)",
               *([f"best {metric}"] if metric else []), "train peak MiB", "weights MiB", "s/step", "tok/s"]
    for name in columns:
        table.add_column(name, justify="left" if name == first else "right")
    for m in comparison.modes:
        c = m.confirmed.objective if m.confirmed else None
        confirmed = "-" if c is None else f"{c.mean:.4f}" + (f" ± {c.std:.4f}" if c.std is not None else "") + f" ({c.n})"
        counts = f"{m.trials}: {m.completed}/{m.pruned}/{m.diverged}/{m.failed}/{m.oom}"
        table.add_row(m.label, counts, _num(m.untuned, 4), _num(m.best, 4), _num(m.median, 4), confirmed,
                      *([_num(m.best_task, 3)] if metric else []), _num(m.train_peak_mb, 0), _num(m.weights_mb, 0),
                      _num(m.seconds_per_step, 2), _num(m.tokens_per_second, 0))
    return table


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
