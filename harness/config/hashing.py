"""Short hashes that are stable across runs and machines: of a search space, a held-out split, a config."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def stable_hash(obj: Any) -> str:
    """A short hash of a JSON-able object that is stable across runs and machines."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
