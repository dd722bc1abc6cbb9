"""Reads back what an offline W&B run recorded, for the tests: no network, no account.

`offline_runs(study_dir)` lists the run folders harness.search.tracking left under ``<study_dir>/wandb``;
`read_offline_run(folder)` decodes its binary ``run-<id>.wandb`` log (a LevelDB-style record log of
wandb's protobuf Records) into plain dicts. Needs wandb installed, for its protobuf definitions.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator


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
