"""The trial worker's replies: a job that raises is reported to the supervisor, not raised in the worker (one
helper for every kind of job), and a failed memory probe is a fault (exit 1), not bad input (exit 2)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.config.lora import LoraSpec
from harness.config.model import ModelSpec, QuantSpec
from harness.config.trial import TrialConfig
from harness.search.exits import FAILED, exit_code
from harness.search.runner import BaselineReply, ProbeFailed, TrialRunner, _WorkerDied, reply_or_report


class _Pipe:
    """The worker's end of the pipe: what it sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def send(self, message: tuple[str, Any]) -> None:
        self.sent.append(message)


def _boom() -> dict:
    raise RuntimeError("no such adapter\nsecond line")


def test_a_job_that_succeeds_sends_its_reply() -> None:
    pipe = _Pipe()
    reply_or_report(pipe, "task", lambda: {"metrics": {"exact_match": 0.5}})
    assert pipe.sent == [("task", {"metrics": {"exact_match": 0.5}})]


def test_a_job_that_raises_is_reported_in_one_line_and_the_worker_lives_on() -> None:
    pipe = _Pipe()
    reply_or_report(pipe, "probe", _boom)
    reply_or_report(pipe, "baseline", _boom, failed=lambda reason: BaselineReply(error=reason))
    assert pipe.sent[0] == ("probe", {"error": "RuntimeError: no such adapter"})
    kind, reply = pipe.sent[1]
    assert kind == "baseline" and reply.error == "RuntimeError: no such adapter" and reply.score is None


def _config() -> TrialConfig:
    return TrialConfig(model=ModelSpec("tiny-llama"), quant=QuantSpec("nf4"), lora=LoraSpec(r=8, alpha=16.0))


@pytest.mark.parametrize("how", ["reported", "died"])
def test_a_failed_probe_is_a_fault_that_says_what_failed(how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = TrialRunner()
    monkeypatch.setattr(runner, "start", lambda: None)  # no worker process: the pipe's answer is faked
    runner._conn = _Pipe()

    def receive() -> tuple[str, Any]:
        if how == "died":
            raise _WorkerDied("trial process died: killed by SIGKILL")
        return "probe", {"error": "RuntimeError: probe step diverged"}

    monkeypatch.setattr(runner, "_receive", receive)
    with pytest.raises(ProbeFailed) as failed:
        runner.probe(_config())
    assert exit_code(failed.value) == FAILED, "a failed probe is not the user's input: exit 1, not 2"
    message = str(failed.value)
    assert message.startswith("the memory probe of tiny-llama in nf4 (batch 8) failed: ") and "\n" not in message
    assert ("SIGKILL" if how == "died" else "probe step diverged") in message
