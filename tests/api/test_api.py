"""The Python API (harness.sweep and the rest): the same study as the command line for the same arguments, bad
input as a SpecError that leaves the interpreter running, Ctrl-C as KeyboardInterrupt, and a cheap import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness.config.errors import SpecError
from helpers import REPO, fast_experiment, load_study, run_cli


def test_importing_harness_loads_no_torch_and_documents_every_name() -> None:
    code = ("import sys, json, harness; print(json.dumps({'heavy': [m for m in ('torch', 'transformers', "
            "'optuna', 'peft', 'pandas') if m in sys.modules], 'all': harness.__all__}))")
    seen = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                     cwd=REPO).stdout)
    assert seen["heavy"] == []
    commands = ["sweep", "worker", "import_", "status", "compare", "recommend", "validate", "advise", "report",
                "export", "doctor", "datasets", "dashboard"]
    assert set(commands) <= set(seen["all"]) and "SpecError" in seen["all"]
    for name in seen["all"]:
        value = getattr(harness, name)
        assert name == "__version__" or (value.__doc__ or "").strip(), f"harness.{name} has no docstring"
    assert harness.SpecError is SpecError


@pytest.mark.parametrize("call, needle", [
    (lambda tmp: harness.sweep(model="tiny-llama", sampler="bogus", out=str(tmp)), "sampler"),
    (lambda tmp: harness.sweep(model="tiny-llama", trials=0, out=str(tmp)), "trials"),
    (lambda tmp: harness.sweep(from_format="axolotl", out=str(tmp)), "--from-config"),
    (lambda tmp: harness.compare("s", out=str(tmp), confirm_until="soon"), "--confirm-until"),
    (lambda tmp: harness.advise("s", out=str(tmp), max_context_tokens=0), "--max-context-tokens"),
    (lambda tmp: harness.status("nothing-here", out=str(tmp)), "nothing-here"),
    (lambda tmp: harness.export(tmp / "missing.yaml"), "no such file"),
])
def test_bad_input_raises_spec_error_and_the_interpreter_goes_on(tmp_path: Path, call, needle: str) -> None:
    with pytest.raises(SpecError) as raised:
        call(tmp_path)
    message = str(raised.value)
    assert needle in message and "\n" not in message


def test_a_sweeps_ctrl_c_is_a_keyboard_interrupt_with_the_resume_message() -> None:
    from harness.api.calls import interruptible
    from harness.search.sweep import SweepInterrupted

    with pytest.raises(KeyboardInterrupt, match="resumed"):
        with interruptible():
            raise SweepInterrupted("interrupted during trial 0; it is recorded as failed and the sweep can be resumed")
    with pytest.raises(SpecError):  # only interruptions become KeyboardInterrupt
        with interruptible():
            raise SpecError("bad")


@pytest.mark.integration
@pytest.mark.usefixtures("tiny_checkpoint")
def test_the_api_and_the_command_line_make_the_same_study(tmp_path: Path) -> None:
    """2 tiny-llama trials of 2 steps, the same seed: the same params, the same losses, the same status table."""
    experiment = fast_experiment(tmp_path)
    cli_out, api_out = tmp_path / "cli", tmp_path / "api"
    proc = run_cli("sweep", "-e", str(experiment), "--trials", "2", "--seed", "7", "--study", "s", "--out", str(cli_out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    handle = harness.sweep(experiment, trials=2, seed=7, study="s", out=str(api_out), say=lambda line: None)

    cli_study, api_study = load_study(cli_out, "s"), handle.study
    assert [t.params for t in api_study.trials] == [t.params for t in cli_study.trials]
    assert [t.state for t in api_study.trials] == [t.state for t in cli_study.trials]
    assert [t.values[0] for t in api_study.trials] == pytest.approx([t.values[0] for t in cli_study.trials], rel=1e-5)

    best = min(cli_study.best_trials, key=lambda t: t.values[0])
    assert (handle.best.number, handle.best.params) == (best.number, best.params)
    assert handle.best.value == pytest.approx(best.values[0], rel=1e-5)
    assert handle.best.adapter == api_out / "best_adapter" and (handle.best.adapter / "adapter_config.json").exists()
    assert handle.paths["trials"] == api_out / "trials.jsonl"

    status = run_cli("status", "--study", "s", "--out", str(api_out))
    header = next(line for line in status.stdout.splitlines() if "state" in line and "quant" in line)
    table_columns = [cell.strip() for cell in header.strip("┃│ ").replace("┃", "│").split("│")]
    assert list(handle.trials.columns) == table_columns
    assert handle.trials["#"].tolist() == [0, 1] and len(handle.trials) == 2
    assert "<table" in handle._repr_html_() and "best trial #" in handle._repr_html_()


def test_a_command_named_as_a_subpackage_stays_the_command_after_that_subpackage_is_imported() -> None:
    """`harness.advise` (the command) and `harness/advise/` (its layer): importing the latter, as calling the
    former does, must not replace the command (a second call in a notebook failed: 'module' is not callable)."""
    import importlib

    import harness

    importlib.import_module("harness.advise.run")
    assert callable(harness.advise) and harness.advise.__module__ == "harness.api.readouts"
