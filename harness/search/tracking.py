"""Weights & Biases as a sink at the edge: one W&B run per trial, used only by the sweep supervisor.

Training code never imports this module (nor wandb). Everything here is best effort: if wandb
fails in any way, a one-line warning goes to stderr and the sweep goes on without tracking.

Offline runs land in ``<study_dir>/wandb/offline-run-*`` and can be uploaded later with
``wandb sync <study_dir>/wandb/offline-run-*`` (the tests read them back with tests/wandb_reader.py).

Measured on a 2-core CPU (wandb 0.31, offline): ``import wandb`` ~0.35 s once per process; the
first ``wandb.init`` ~0.35 s (it starts the wandb-core service); after that init + finish of a
run take ~0.015 s (~0.05 s with wandb's default settings, which also print a banner).
"""

from __future__ import annotations

import netrc
import os
import sys
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from harness.config.errors import SpecError, one_line
from harness.runtime.redaction import redact_values

WandbMode = Literal["offline", "online", "disabled"]
WANDB_MODES: tuple[str, ...] = get_args(WandbMode)

DEFAULT_PROJECT = "harness"
"""W&B project of every run unless WANDB_PROJECT is set."""

# Legacy spellings wandb itself still accepts in WANDB_MODE.
_MODE_ALIASES = {"dryrun": "offline", "run": "online"}
# Settings that keep wandb quiet and cheap: no banner, no console capture, no code/git/pip
# snapshots, no system-metrics thread. Our own trial records carry memory and time.
_QUIET_SETTINGS: dict[str, Any] = {
    "silent": True,
    "console": "off",
    "save_code": False,
    "disable_git": True,
    "x_disable_stats": True,
    "x_disable_meta": True,
    "x_disable_machine_info": True,
    "x_save_requirements": False,
}
_warned: set[str] = set()


def resolve_mode(requested: str | None) -> WandbMode:
    """Turn ``--wandb`` into a mode.

    ``offline``/``online``/``disabled`` are taken as given. ``None`` or ``auto`` means: the
    WANDB_MODE environment variable if set, else ``online`` when W&B credentials exist
    (WANDB_API_KEY, or a netrc entry for the W&B host), else ``offline``.
    Raises SpecError (one line) for anything else.
    """
    if requested is None or requested == "auto":
        env = os.environ.get("WANDB_MODE", "").strip().lower()
        if env:
            mode = _MODE_ALIASES.get(env, env)
            if mode not in WANDB_MODES:
                raise SpecError(f"WANDB_MODE={env!r} is not one of {', '.join(WANDB_MODES)}")
            return mode  # type: ignore[return-value]
        return "online" if _has_credentials() else "offline"
    if requested not in WANDB_MODES:
        raise SpecError(f"--wandb {requested!r} is not one of {', '.join(WANDB_MODES)} (or auto)")
    return requested  # type: ignore[return-value]


def _has_credentials() -> bool:
    """True when wandb could log in without asking: WANDB_API_KEY or a netrc entry for the host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).netloc
    path = Path(os.environ.get("NETRC") or "~/.netrc").expanduser()
    try:
        creds = netrc.netrc(str(path)).authenticators(host) if host else None
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(creds and creds[2])


def configure_dirs(study_dir: Path) -> None:
    """Point everything wandb writes at ``<study_dir>/wandb`` (process-wide environment).

    Sets WANDB_DIR (runs go to ``<study_dir>/wandb/``), WANDB_CACHE_DIR (wandb-core's debug log
    and the artifact cache, ``wandb/.cache``) and WANDB_DATA_DIR (artifact staging,
    ``wandb/.data``). WANDB_CONFIG_DIR is left alone: offline runs only read it, and online runs
    need the user's login settings there. The wandb-core service reads these once, when the first
    run of the process starts.
    """
    root = Path(study_dir).resolve()
    (root / "wandb").mkdir(parents=True, exist_ok=True)
    os.environ["WANDB_DIR"] = str(root)
    os.environ["WANDB_CACHE_DIR"] = str(root / "wandb" / ".cache")
    os.environ["WANDB_DATA_DIR"] = str(root / "wandb" / ".data")


def _warn_once(what: str, exc: BaseException) -> None:
    """One line on stderr per distinct failure, so a broken wandb cannot flood a long sweep."""
    line = f"harness: W&B {what} failed ({one_line(exc)}); continuing without tracking"
    if line not in _warned:
        _warned.add(line)
        print(line, file=sys.stderr, flush=True)


class TrialRun:
    """One W&B run (per trial, or per study), or a no-op with the same interface.

    Built by :func:`start_trial_run`; never raises: the first wandb error turns the run into a
    no-op after a one-line warning.
    """

    def __init__(self, run: Any | None = None) -> None:
        self._run = run

    @property
    def active(self) -> bool:
        """True while a live wandb run is behind this object (False for a no-op)."""
        return self._run is not None

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Stream metrics (``train/loss``, ``train/lr``, ``eval/loss``...) at optimizer step ``step``.

        Calls with the same step are merged into one history row; steps must not go backwards.
        """
        if self._run is not None:
            self._guard("log", lambda: self._run.log(dict(metrics), step=int(step)))

    def log_table(self, key: str, rows: list[dict[str, Any]]) -> None:
        """Log rows of dicts (generated samples, say) as one ``wandb.Table`` under ``key``."""
        if self._run is not None and rows:
            columns = list(rows[0])

            def action() -> None:
                import wandb

                table = wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])
                self._run.log({key: table}, commit=False)

            self._guard("log", action)

    def log_images(self, images: dict[str, Path]) -> None:
        """Log PNG files as ``wandb.Image`` under their names (``plots/<name>``)."""
        if self._run is not None and images:
            def action() -> None:
                import wandb

                self._run.log({f"plots/{k}": wandb.Image(str(v)) for k, v in images.items()}, commit=False)

            self._guard("log", action)

    def log_artifact(self, path: Path, name: str, kind: str) -> None:
        """Attach a file as a W&B artifact (``kind``: its type, e.g. ``config``)."""
        if self._run is not None:
            def action() -> None:
                import wandb

                artifact = wandb.Artifact(name=name, type=kind)
                artifact.add_file(str(path))
                self._run.log_artifact(artifact)

            self._guard("log_artifact", action)

    def finish(self, summary: dict[str, Any], failed: bool) -> None:
        """Write the final metrics into ``run.summary`` and close the run (exit code 1 if failed).

        Summary values win over the last logged value of the same key. Safe to call twice.
        """
        run = self._run
        if run is not None:
            self._guard("finish", lambda: _close(run, summary, failed))
            self._run = None

    def _guard(self, what: str, action: Any) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - tracking must never take the sweep down
            _warn_once(what, exc)
            self._run = None


def _close(run: Any, summary: dict[str, Any], failed: bool) -> None:
    run.log({}, commit=True)  # flush the open history row first, so it cannot overwrite summary
    run.summary.update(dict(summary))
    run.finish(exit_code=1 if failed else 0)


def start_trial_run(*, study: str, number: int, config: dict[str, Any], params: dict[str, Any],
                    mode: WandbMode, study_dir: Path) -> TrialRun:
    """Start the W&B run of one trial: group = study, job_type ``trial``, name ``<study>-trial-<n>``.

    The run's config is the full trial config dict plus ``params`` (the Optuna params) and
    ``trial_number``. Mode ``disabled`` returns a no-op without importing wandb; any wandb failure
    returns a no-op after a one-line warning on stderr.
    """
    run_config = {**config, "params": dict(params), "trial_number": number}
    return _start(name=f"{study}-trial-{number}", group=study, job_type="trial",
                  config=run_config, mode=mode, study_dir=study_dir)


def start_study_run(*, study: str, config: dict[str, Any], mode: WandbMode,
                    study_dir: Path) -> TrialRun:
    """Start the summary run of a study: group = study, job_type ``summary``, name ``<study>-summary``.

    Same contract as :func:`start_trial_run`: the trials and comparison tables, the report's plots
    and the recommended config (as an artifact) go to it.
    """
    return _start(name=f"{study}-summary", group=study, job_type="summary",
                  config=dict(config), mode=mode, study_dir=study_dir)


def _start(*, name: str, group: str, job_type: str, config: dict[str, Any], mode: WandbMode,
           study_dir: Path) -> TrialRun:
    if mode == "disabled":
        return TrialRun(None)
    if mode not in WANDB_MODES:
        raise SpecError(f"wandb mode {mode!r} is not one of {', '.join(WANDB_MODES)}")
    try:
        configure_dirs(study_dir)
        import wandb  # lazy: only the supervisor pays for it, and only when tracking

        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            name=name, group=group, job_type=job_type, config=redact_values(config), mode=mode,
            dir=str(Path(study_dir).resolve()), reinit="create_new",
            settings=wandb.Settings(**_QUIET_SETTINGS),
        )
    except Exception as exc:  # noqa: BLE001 - tracking must never take the sweep down
        _warn_once("init", exc)
        return TrialRun(None)
    return TrialRun(run)
