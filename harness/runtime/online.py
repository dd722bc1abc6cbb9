"""Whether the Hugging Face hub can be reached, decided once per process and within seconds.

Without this, a machine with no network and no `HF_HUB_OFFLINE` pays huggingface_hub's retries (about
25 s, a dozen log lines) on every hub request, even for a model that is in the local cache, and a typo
such as `--model smollm2-13m` ends in a multi-line connection error. So before the first hub request,
`hub_offline()` honours the offline switches, else opens one TCP connection to the hub's endpoint
(`HF_ENDPOINT`, or the proxy that requests to it would use) with a short timeout. When that fails the
process goes offline: `HF_HUB_OFFLINE=1` for itself and the processes it starts, so cached models and
datasets load from the cache at once and anything else fails with the one-line "not cached" error.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import threading
import urllib.parse
import urllib.request

PROBE_SECONDS = 2.0
"""How long the reachability probe waits for a TCP connection (a reachable hub answers in milliseconds)."""
OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's reading of a boolean environment variable
_went_offline = False  # set by go_offline: the switch in the environment is ours, not the user's


def hub_offline() -> bool:
    """True when an offline switch is set, or when the hub cannot be reached (then offline mode is turned on
    for this process and its children, see the module docstring)."""
    if offline_by_env():
        return True
    if _reachable(*hub_address()):
        return False
    go_offline()
    return True


def offline_reason() -> str:
    """Why the hub is not used, for error messages: the switch that is set, or the endpoint that failed."""
    switch = next((name for name in OFFLINE_SWITCHES if _is_true(os.environ.get(name))), None)
    if switch and not _went_offline:
        return f"{switch} is set"
    host, port = hub_address()
    return f"{host}:{port} is unreachable"


def offline_by_env() -> bool:
    """Whether an offline switch (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE, HF_DATASETS_OFFLINE) is on."""
    return any(_is_true(os.environ.get(name)) for name in OFFLINE_SWITCHES)


def hub_address() -> tuple[str, int]:
    """(host, port) that a request to the hub connects to first: the https proxy when one is configured for
    the endpoint, else the endpoint itself (`HF_ENDPOINT`, default https://huggingface.co)."""
    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    proxy = urllib.request.getproxies().get(endpoint.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        endpoint = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host = endpoint.hostname or host
    return host, endpoint.port or (443 if endpoint.scheme == "https" else 80)


def go_offline() -> None:
    """Turn on offline mode for this process and the processes it starts. huggingface_hub and datasets read
    the variable when imported, so where they already are, their flag is set too."""
    global _went_offline
    _went_offline = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        hub.HF_HUB_OFFLINE = True
    datasets = sys.modules.get("datasets.config")
    if datasets is not None:
        datasets.HF_HUB_OFFLINE = datasets.HF_DATASETS_OFFLINE = True


@functools.cache
def _reachable(host: str, port: int) -> bool:
    """Whether a TCP connection to (host, port) opens within PROBE_SECONDS, name lookup included (run in a
    thread because getaddrinfo has no timeout of its own). Cached: asked once per process."""
    opened: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=PROBE_SECONDS):
                opened.append(True)
        except OSError:
            opened.append(False)

    thread = threading.Thread(target=probe, daemon=True, name="harness-hub-probe")
    thread.start()
    thread.join(PROBE_SECONDS + 1)
    return bool(opened and opened[0])


def _is_true(value: str | None) -> bool:
    return (value or "").strip().upper() in _TRUE
