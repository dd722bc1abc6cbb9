"""`harness dashboard`: optuna-dashboard (an optional dependency) on a study's storage, serving the study's
artifact store (`<out>/artifacts`: the kept adapters and the report's files) beside its trials, params,
objective values (named after the objectives) and plots.

Everything that can fail on bad input (optuna-dashboard missing, no such study, a port that is taken) fails in
`open_dashboard`, before anything is printed; `Dashboard.serve` then runs until Ctrl-C.
"""

from __future__ import annotations

import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from harness.config.errors import SpecError, one_line
from harness.config.paths import study_out_dir, study_storage_url
from harness.search.artifacts import artifact_dir
from harness.search.study import load_existing_study, make_storage, public_url, resolve_url

INSTALL = "pip install 'harness[dashboard]' (or: pip install 'optuna-dashboard>=0.21')"
"""How to get optuna-dashboard, as the one-line error says."""


@dataclass
class Dashboard:
    """A dashboard bound to its port, not serving yet."""

    url: str
    """The study's page: http://HOST:PORT/dashboard/studies/ID."""
    storage: str
    """The storage it reads (password hidden)."""
    artifacts: Path | None
    """The artifact store it serves, None when the study's folder has none."""
    server: WSGIServer

    def serve(self) -> None:
        """Answer requests until Ctrl-C (or SIGTERM, as a service manager stops it), then close the port: a clean
        stop, no traceback."""
        previous = _stop_on_sigterm()
        try:
            self.server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.server.server_close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def open_dashboard(study: str, storage: str | None = None, out: str | None = None, host: str = "127.0.0.1",
                   port: int = 8080) -> Dashboard:
    """optuna-dashboard's app on the study's storage, found as every read-out command finds it (`storage`, else
    the SQLite file in the sweep folder `out`, default experiments/<study>), with the artifact store of the
    study's folder, bound to `host`:`port` (0: any free port). SpecError for bad input."""
    try:
        import optuna_dashboard
    except ImportError:
        raise SpecError(f"harness dashboard needs optuna-dashboard, which is not installed: {INSTALL}") from None
    from optuna.artifacts import FileSystemArtifactStore

    if not 0 <= port <= 65535:
        raise SpecError(f"--port must be between 0 and 65535, got {port}")
    url = study_storage_url(study, storage, out)
    loaded = load_existing_study(study, url)
    folder = artifact_dir(study_out_dir(study, out or (loaded.user_attrs.get("sweep") or {}).get("out")))
    backend = make_storage(resolve_url(url))
    store = FileSystemArtifactStore(folder) if folder.is_dir() else None
    app = optuna_dashboard.wsgi(backend, artifact_store=store)
    server = _bind(app, host, port)
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    study_id = backend.get_study_id_from_name(study)
    return Dashboard(url=f"http://{shown}:{bound}/dashboard/studies/{study_id}", storage=public_url(url),
                     artifacts=folder if store is not None else None, server=server)


class _QuietHandler(WSGIRequestHandler):
    """No line on stderr per request (the browser polls every few seconds)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        return None


class _Server6(WSGIServer):
    address_family = socket.AF_INET6


def _bind(app: Any, host: str, port: int) -> WSGIServer:
    """A single-threaded WSGI server (as optuna_dashboard.run_server uses) on host:port; a port that is taken or
    a host that is not this machine's is bad input."""
    try:
        return make_server(host, port, app, server_class=_Server6 if ":" in host else WSGIServer,
                           handler_class=_QuietHandler)
    except OSError as err:
        raise SpecError(f"cannot serve the dashboard on {host}:{port} ({one_line(err)}); pick another --port "
                        "or --host") from None


def _stop_on_sigterm() -> Any:
    """SIGTERM stops the server as Ctrl-C does; returns the previous handler (None outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)
