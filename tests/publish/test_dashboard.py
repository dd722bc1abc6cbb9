"""`harness dashboard`: optuna-dashboard on a finished tiny study (2 trials of 2 steps, then `harness report`), read
through its JSON API: the study, its objective names, its trials' params, values and status, and the best adapter
and report files in its artifact store; Ctrl-C stops it cleanly. Bad input is one line."""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import zipfile
from pathlib import Path

import pytest

from helpers import REPO, assert_one_line_error, fast_experiment, load_study, run_cli, start, wait_for

from harness.search.artifacts import store_kept_adapters, store_study_files
from harness.search.sweep import status_attrs
from harness.trial.result import TrialResult

STUDY = "d"


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished study of 2 tiny trials, with its report written (so its folder holds both kinds of artifact)."""
    root = tmp_path_factory.mktemp("dashboard")
    out = root / "out"
    proc = run_cli("sweep", "-e", str(fast_experiment(root)), "--trials", "2", "--study", STUDY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning: the best adapter" not in proc.stdout + proc.stderr
    proc = run_cli("report", "--study", STUDY, "--out", str(out), "--reports-dir", str(root / "reports"),
                   "--wandb", "disabled")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "optuna-dashboard" not in proc.stdout + proc.stderr, proc.stdout
    return out


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


@pytest.mark.integration
def test_the_dashboard_serves_the_study_its_trials_and_artifacts_and_stops_on_ctrl_c(out: Path) -> None:
    proc = start(["dashboard", "--study", STUDY, "--out", str(out), "--port", "0"])
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        line = wait_for(lambda: next((x for x in lines if "http://" in x), None), 60, "the dashboard's URL", alive=proc)
        url = line.split()[1]
        base = url.split("/dashboard")[0]

        listed = json.loads(get(f"{base}/api/studies"))["study_summaries"]
        assert [s["study_name"] for s in listed] == [STUDY]
        study_id = listed[0]["study_id"]
        assert url == f"{base}/dashboard/studies/{study_id}"

        detail = json.loads(get(f"{base}/api/studies/{study_id}"))
        study = load_study(out, STUDY)
        assert detail["objective_names"] == ["eval_loss"]
        assert len(detail["trials"]) == 2
        for shown, trial in zip(detail["trials"], study.trials):
            assert shown["number"] == trial.number and shown["state"] == "Complete"
            assert shown["values"] == pytest.approx(trial.values)
            params = {p["name"]: p["param_external_value"] for p in shown["params"]}
            assert {"lora_r", "lora_alpha", "learning_rate", "quantization"} <= set(params)
            assert params["lora_r"] == str(trial.params["lora_r"])
            attrs = {a["key"]: a["value"] for a in shown["user_attrs"]}
            assert attrs["status"] == "complete" and "reason" not in attrs  # plain strings, no "null"

        artifacts = {a["filename"]: a["artifact_id"] for a in detail["artifacts"]}
        assert {"best_adapter.zip", "report.md", "report.html", "recommended.yaml"} <= set(artifacts), artifacts
        with zipfile.ZipFile(io.BytesIO(get(f"{base}/artifacts/{study_id}/{artifacts['best_adapter.zip']}"))) as z:
            assert f"trial-{study.best_trial.number}/adapter_model.safetensors" in z.namelist()
        assert get(f"{base}/artifacts/{study_id}/{artifacts['report.md']}").startswith(b"# ")

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read()  # type: ignore[union-attr]
    assert "Traceback" not in stderr and stderr.strip() == "", stderr
    assert "optuna-dashboard stopped" in "".join(lines)


@pytest.mark.integration
def test_a_missing_study_or_a_taken_port_is_one_line(out: Path) -> None:
    assert_one_line_error(run_cli("dashboard", "--study", "nope", "--out", str(out)), "'nope' not found",
                          f"studies there: {STUDY}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert_one_line_error(run_cli("dashboard", "--study", STUDY, "--out", str(out), "--port", port),
                              f"127.0.0.1:{port}", "--port")


@pytest.mark.integration
def test_without_optuna_dashboard_the_error_says_how_to_install_it(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['optuna_dashboard'] = None; sys.argv = ['harness', 'dashboard', '--study', 'x', "
            f"'--out', {str(tmp_path)!r}]; from harness.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc, "optuna-dashboard", "pip install 'harness[dashboard]'")


def test_a_trials_status_and_reason_are_plain_strings_and_a_complete_trial_has_no_reason() -> None:
    assert status_attrs(TrialResult(status="complete")) == {"status": "complete"}
    assert status_attrs(TrialResult(status="oom", reason="CUDA out of memory")) == {"status": "oom",
                                                                                   "reason": "CUDA out of memory"}


def test_a_failed_upload_is_one_warning_line_not_an_error(tmp_path: Path) -> None:
    class Broken:
        @property
        def best_trials(self) -> list:
            raise OSError("disk full\nsecond line")

    assert store_kept_adapters(Broken(), tmp_path) == ("the best adapter was not stored for optuna-dashboard "
                                                      "(OSError: disk full)")
    warning = store_study_files("x", f"sqlite:///{tmp_path}/missing.db", tmp_path, [tmp_path / "report.md"])
    assert warning is not None and warning.startswith("the report's files were not stored") and "\n" not in warning
