"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb into a temporary folder, pg_ctl on a free
port with a unix socket only, stopped and removed afterwards. Never a mock."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator


def server_bin() -> Path | None:
    """The folder holding Debian's initdb and pg_ctl (or those on PATH); None when not installed."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def cluster(folder: Path) -> Iterator[str]:
    """Start a cluster with the binaries in `folder`; yields its SQLAlchemy URL (database `postgres`)."""
    root = Path(tempfile.mkdtemp(prefix="harness-pg-"))  # short: unix socket paths are limited to ~100 bytes
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    pg_ctl = [*as_user, str(folder / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run([*as_user, str(folder / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        options = f"-p {port} -k {root} -c listen_addresses='' -c fsync=off -c max_connections=200"
        subprocess.run([*pg_ctl, "-l", str(root / "server.log"), "-w", "-o", options, "start"], check=True,
                       capture_output=True)
        yield f"postgresql+psycopg2://postgres@/postgres?host={root}&port={port}"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
