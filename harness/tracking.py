"""Weights & Biases as a sink at the edge: one W&B run per trial, used only by the sweep supervisor.

Training code never imports this module (nor wandb). Everything here is best effort: if wandb
fails in any way, a one-line warning goes to stderr and the sweep goes on without tracking.

Offline runs land in ``<study_dir>/wandb/offline-run-*`` and can be uploaded later with
``wandb sync <study_dir>/wandb/offline-run-*``; :func:`read_offline_run` reads one back without
a network or an account (tests use it to check what was recorded).

Measured on a 2-core CPU (wandb 0.31, offline): ``import wandb`` ~0.35 s once per process; the
first ``wandb.init`` ~0.35 s (it starts the wandb-core service); after that init + finish of a
run take ~0.015 s (~0.05 s with wandb's default settings, which also print a banner).
"""

from __future__ import annotations

import json
import netrc
import os
import struct
import sys
import zlib
from pathlib import Path
from typing import Any, Iterator, Literal, get_args
from urllib.parse import urlsplit

from harness.spec import SpecError

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
    detail = (str(exc).strip().splitlines() or [""])[0][:200]
    line = f"harness: W&B {what} failed ({type(exc).__name__}: {detail}); continuing without tracking"
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
            name=name, group=group, job_type=job_type, config=config, mode=mode,
            dir=str(Path(study_dir).resolve()), reinit="create_new",
            settings=wandb.Settings(**_QUIET_SETTINGS),
        )
    except Exception as exc:  # noqa: BLE001 - tracking must never take the sweep down
        _warn_once("init", exc)
        return TrialRun(None)
    return TrialRun(run)


def offline_runs(study_dir: Path) -> list[Path]:
    """The offline run folders under ``<study_dir>/wandb``, sorted by name.

    Names are ``offline-run-<start time, to the second>-<random id>``: runs started within the same
    second are in no particular order, so find a trial's run by its ``name`` (read_offline_run).
    """
    root = Path(study_dir) / "wandb"
    return sorted(p for p in root.glob("offline-run-*") if p.is_dir()) if root.is_dir() else []


def read_offline_run(path: Path) -> dict[str, Any]:
    """Read back what an offline run recorded, from its ``run-<id>.wandb`` log (no network).

    ``path`` is the run folder or the ``.wandb`` file. Returns ``id``, ``name``, ``project``,
    ``group``, ``job_type``, ``config`` (user keys), ``summary`` (user keys: the last logged value
    of each metric, overridden by explicit summary updates), ``history`` (one dict per step, with
    ``_step``) and ``exit_code`` (None when the run never finished). Media, artifacts, files and
    system metrics are not read. Needs wandb installed (for its protobuf definitions).
    """
    from wandb.proto import wandb_internal_pb2 as pb

    out: dict[str, Any] = {"id": None, "name": None, "project": None, "group": None,
                           "job_type": None, "config": {}, "summary": {}, "history": [],
                           "exit_code": None}
    for payload in _log_records(_wandb_file(Path(path))):
        record = pb.Record()
        record.ParseFromString(payload)
        _apply_record(out, record)
    out["config"].pop("_wandb", None)
    out["summary"] = {k: v for k, v in out["summary"].items() if not k.startswith("_")}
    return out


def _apply_record(out: dict[str, Any], record: Any) -> None:
    kind = record.WhichOneof("record_type")
    if kind == "run":
        run = record.run
        out.update(id=run.run_id, name=run.display_name, project=run.project,
                   group=run.run_group, job_type=run.job_type)
        _apply_items(out["config"], run.config.update)
    elif kind == "config":
        _apply_items(out["config"], record.config.update)
    elif kind == "summary":
        _apply_items(out["summary"], record.summary.update)
    elif kind == "history":
        row: dict[str, Any] = {}
        _apply_items(row, record.history.item)
        out["history"].append(row)
    elif kind == "exit":
        out["exit_code"] = record.exit.exit_code


def _apply_items(target: dict[str, Any], items: Any) -> None:
    """Apply wandb ``{key | nested_key, value_json}`` items to a (nested) dict."""
    for item in items:
        keys = list(item.nested_key) or [item.key]
        node = target
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = json.loads(item.value_json)


def _wandb_file(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(path.glob("run-*.wandb"))
    if not found:
        raise FileNotFoundError(f"no run-*.wandb file in {path}")
    return found[0]


# The .wandb file is a LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version 0),
# then 32 KiB blocks of chunks, each `crc32 (4) | length (2) | type (1) | payload`, where the
# types FULL=1, FIRST=2, MIDDLE=3, LAST=4 reassemble one protobuf Record per message.
_HEADER = struct.Struct("<4sHB")
_CHUNK = struct.Struct("<IHB")
_BLOCK = 32 * 1024


def _log_records(path: Path) -> Iterator[bytes]:
    """The raw Record payloads of a ``.wandb`` file; stops at the first torn or corrupt chunk."""
    data = path.read_bytes()
    ident, magic, _ = _HEADER.unpack_from(data)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path} is not a W&B run log")
    pos, parts = _HEADER.size, b""
    while pos + _CHUNK.size <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK.size:  # block trailer padding
            pos += left
            continue
        crc, length, kind = _CHUNK.unpack_from(data, pos)
        payload = data[pos + _CHUNK.size: pos + _CHUNK.size + length]
        if len(payload) < length or zlib.crc32(payload, zlib.crc32(bytes([kind]))) != crc:
            return
        pos += _CHUNK.size + length
        parts = payload if kind in (1, 2) else parts + payload
        if kind in (1, 4):
            yield parts
