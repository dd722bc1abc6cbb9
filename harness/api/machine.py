"""The machine and the built-ins, from Python: `doctor`, `datasets`, `models`, `install_model` and `dashboard`."""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.api.calls import Say
from harness.api.results import Text


def doctor(*, quick: bool = False, pack_fit: str | None = None, mode: str = "nf4-dq", batch: int = 8,
           seq: int = 128, rank: int = 16, say: Say | None = None) -> Text:
    """What this machine can run (`harness doctor`): device, dtypes, bitsandbytes, which quantization modes
    work (`quick`: without the per-mode training check); with `pack_fit` (a model), how many members of a
    pack of it fit this device's memory (`.details`: the measured fit). `say`, when given, receives each part
    as soon as it is known (the measurement takes a while)."""
    from harness.trial.pack_fit import check_args, measure_pack_fit

    if pack_fit is not None:
        check_args(mode, batch=batch, seq=seq, rank=rank)  # before the report, which loads bitsandbytes
    from harness.trial.doctor import format_report, run_doctor

    say = say or (lambda line: None)
    text = format_report(run_doctor(check_modes=not quick))
    say(text)
    if pack_fit is None:
        return Text(text)
    say(f"pack fit        measuring packs of 1 and 2 of {pack_fit} ({mode})...")
    fit = measure_pack_fit(pack_fit, mode, batch=batch, seq=seq, rank=rank)
    say(f"pack fit        {fit.line()}")
    return Text(f"{text}\npack fit        {fit.line()}", fit)


def datasets() -> pd.DataFrame:
    """The built-in datasets (`harness datasets`): name, train and eval sizes, task metrics, description."""
    from harness.data import describe_builtins

    rows = [(name, n_train, n_eval, ", ".join(metrics), description)
            for name, description, n_train, n_eval, metrics in describe_builtins()]
    return pd.DataFrame(rows, columns=["name", "train", "eval", "metrics", "description"])


def models() -> pd.DataFrame:
    """The built-in real models (`harness models`): name, upstream model, family, parameters, source (every
    one has 4-bit source weights), precision per tensor kind, download size in MB, license, whether it is
    installed, and the command that installs it."""
    from harness.trial.builtins import describe_builtins

    return pd.DataFrame(describe_builtins())


def install_model(name: str, *, say: Say | None = None) -> Text:
    """Install built-in model `name` with pip into this Python's environment (`harness models install NAME`;
    nothing to do when it is installed); raises SpecError for a name that is not a built-in, RuntimeError when pip fails."""
    import subprocess
    import sys

    from harness.trial.builtins import BUILTINS, install_argv, is_installed

    argv = install_argv(name, sys.executable)
    if is_installed(BUILTINS[name]):
        return Text(f"{name} is installed")
    (say or (lambda line: None))(" ".join(["pip", *argv[3:]]))
    done = subprocess.run(argv, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pip failed (exit {done.returncode}) installing {name}")
    return Text(f"installed {name}")


def dashboard(study: str = "default", *, storage: str | None = None, out: str | None = None, port: int = 8080,
              host: str = "127.0.0.1") -> Any:
    """optuna-dashboard on the study's storage (`harness dashboard`), not yet serving: `.url` is where it will
    be, `.serve()` serves until Ctrl-C."""
    from harness.publish.dashboard import open_dashboard

    return open_dashboard(study, storage, out, host, port)
