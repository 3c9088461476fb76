"""Read an offline W&B run back from its ``.wandb`` transaction log.

Why this exists: since wandb 0.18 the reader behind ``wandb sync`` lives in the Go ``wandb-core``
binary (``core/pkg/leveldb``), and the Python ``DataStore`` is gone, so there is no Python API to
check what an offline run recorded. The format is small enough to read directly:

- file header, 7 bytes: ``b":W&B"``, magic ``0xBEE1`` (uint16 LE), format version (uint8, 0 up to
  wandb 0.31; later versions are refused with a clear error rather than misread);
- then LevelDB-log framing: 32 KiB blocks (the header counts towards the first) of chunks, each
  with a 7-byte header: CRC-32/IEEE of (type byte + payload) (uint32 LE), payload length
  (uint16 LE), type (1 full, 2 first, 3 middle, 4 last). A block tail shorter than a chunk
  header is zero padding;
- each record (one full chunk, or first + middles + last) is a ``wandb_internal_pb2.Record``.

The whole file is read into memory: this is an inspection tool for tests and users, not a
streaming sync.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypedDict

from wandb.proto import wandb_internal_pb2 as pb

_FILE_HEADER = struct.Struct("<4sHB")  # ident, magic, version
_CHUNK_HEADER = struct.Struct("<IHB")  # crc32, payload length, chunk type
_IDENT, _MAGIC, _VERSION = b":W&B", 0xBEE1, 0
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class OfflineRun(TypedDict):
    """What an offline run recorded, with values decoded from JSON."""

    path: Path  # the .wandb file read
    run_id: str
    project: str
    group: str
    name: str
    tags: list[str]
    config: dict[str, Any]
    history: list[dict[str, Any]]  # one dict per committed step, incl. ``_step``
    summary: dict[str, Any]  # last values; nested where W&B nests (summary["_wandb"]["runtime"])
    exit_code: int | None  # None when the run never finished (crashed or still running)


def find_transaction_log(path: Path) -> Path:
    """Locate the one ``.wandb`` file for ``path``.

    Args:
        path: a ``.wandb`` file, a W&B run folder (``offline-run-*``), or a job run directory
            that contains ``wandb/offline-run-*``.

    Raises:
        FileNotFoundError: no ``.wandb`` file there.
        ValueError: several runs there; names them so the caller can pick one.
    """
    if path.is_file():
        return path
    found = sorted(path.glob("run-*.wandb")) or sorted(path.glob("wandb/*run-*/run-*.wandb"))
    if not found:
        raise FileNotFoundError(f"no W&B transaction log (run-*.wandb) under {path}")
    if len(found) > 1:
        listing = ", ".join(str(p.relative_to(path)) for p in found)
        raise ValueError(f"{path} holds {len(found)} W&B runs ({listing}); pass one of them")
    return found[0]


def record_payloads(data: bytes, *, source: str = "<bytes>") -> Iterator[bytes]:
    """Split the bytes of a ``.wandb`` file into serialized records (see module docstring).

    A truncated final chunk (run still writing, or killed) ends iteration quietly; a checksum
    mismatch raises, because it means the file is corrupt rather than incomplete.
    """
    ident, magic, version = _FILE_HEADER.unpack_from(data, 0)
    if (ident, magic) != (_IDENT, _MAGIC):
        raise ValueError(f"{source}: not a W&B transaction log (header {data[:7]!r})")
    if version != _VERSION:
        raise ValueError(f"{source}: .wandb format version {version}; this reader knows {_VERSION}")
    pos, pending = _FILE_HEADER.size, bytearray()
    while True:
        block_left = _BLOCK - pos % _BLOCK
        if block_left < _CHUNK_HEADER.size:  # zero padding up to the next block
            pos += block_left
            continue
        if pos + _CHUNK_HEADER.size > len(data):
            return
        crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        if (crc, length, kind) == (0, 0, 0):  # zero-filled rest of a block
            pos += block_left
            continue
        start, end = pos + _CHUNK_HEADER.size, pos + _CHUNK_HEADER.size + length
        if end > len(data):
            return
        payload = data[start:end]
        if zlib.crc32(bytes([kind]) + payload) != crc:
            raise ValueError(f"{source}: checksum mismatch in chunk at byte {pos}")
        pending += payload
        if kind in (_FULL, _LAST):
            yield bytes(pending)
            pending.clear()
        pos = end


def iter_records(log_path: Path) -> Iterator[pb.Record]:
    """Yield the protobuf records of one ``.wandb`` file in the order they were written."""
    for payload in record_payloads(log_path.read_bytes(), source=str(log_path)):
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


def _key_path(item: Any) -> list[str]:
    """``nested_key`` when set, else ``[key]``. W&B splits logged dicts (and media, e.g. an
    image's ``_type``/``path``) into paths; ``"train/loss"`` stays one key."""
    return list(item.nested_key) or [item.key]


def _set_nested(target: dict[str, Any], keys: list[str], value: Any) -> None:
    *parents, leaf = keys
    for key in parents:
        target = target.setdefault(key, {})
    target[leaf] = value


def _remove_nested(target: dict[str, Any], keys: list[str]) -> None:
    *parents, leaf = keys
    for key in parents:
        target = target.get(key, {})
    target.pop(leaf, None)


def _apply(target: dict[str, Any], updates: Any, removes: Any = ()) -> None:
    for item in updates:
        _set_nested(target, _key_path(item), json.loads(item.value_json))
    for item in removes:
        _remove_nested(target, _key_path(item))


def _on_run(record: pb.Record, out: OfflineRun) -> None:
    run = record.run
    out.update(run_id=run.run_id, project=run.project, group=run.run_group,
               name=run.display_name, tags=list(run.tags))
    _apply(out["config"], run.config.update, run.config.remove)


def _on_config(record: pb.Record, out: OfflineRun) -> None:
    _apply(out["config"], record.config.update, record.config.remove)


def _on_history(record: pb.Record, out: OfflineRun) -> None:
    row: dict[str, Any] = {}
    _apply(row, record.history.item)
    out["history"].append(row)


def _on_summary(record: pb.Record, out: OfflineRun) -> None:
    _apply(out["summary"], record.summary.update, record.summary.remove)


def _on_exit(record: pb.Record, out: OfflineRun) -> None:
    out["exit_code"] = record.exit.exit_code


# Record type (the ``record_type`` oneof) -> how it changes the result; other types are skipped.
_HANDLERS: dict[str, Callable[[pb.Record, OfflineRun], None]] = {
    "run": _on_run, "config": _on_config, "history": _on_history,
    "summary": _on_summary, "exit": _on_exit,
}


def read_offline_run(path: Path) -> OfflineRun:
    """Read what an offline W&B run logged: config, history rows, summary and exit code.

    Args:
        path: see :func:`find_transaction_log` (a job run directory works).

    Returns:
        The decoded run; ``history`` keeps W&B's own keys (``_step``, ``_timestamp``, ...)
        and images appear as their ``{"_type": "image-file", "path": ...}`` reference.

    Example::

        run = read_offline_run(job_dir)
        losses = [row["train/loss"] for row in run["history"] if "train/loss" in row]
    """
    log_path = find_transaction_log(Path(path))
    out = OfflineRun(path=log_path, run_id="", project="", group="", name="", tags=[],
                     config={}, history=[], summary={}, exit_code=None)
    for record in iter_records(log_path):
        handler = _HANDLERS.get(record.WhichOneof("record_type") or "")
        if handler is not None:
            handler(record, out)
    return out
