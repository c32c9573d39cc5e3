"""Shards: what a distributed build writes to shared storage for one block of files, before the merge.

A block is a run of consecutive files to embed. Its shard is an `indexer export` parquet file (one row per
window: path, start, end, modalities, tags, vector, path_bytes; the index's provenance under b"resound")
with the file columns a build's catalog rows need beside them (content_hash, size, mtime, duration,
source_rate, channels), so that `indexer import` (indexer/import_vectors.py) merges it into the index on
disk. Its schema metadata also lists the block's files under b"resound_shard": each file's path, content
hash, size, mtime, number of windows, or the decoders' reasons for a failure (a failed file has no rows).
Reading that list touches only the file's footer: the driver plans and resumes without reading vectors.

The file is written atomically (temporary file, fsync, `os.replace`). Its name is a hash of the model, the
hop and the block's files (path, content hash, size, mtime): a retried block rewrites the same file with the
same content, and a resumed build finds the finished blocks of an earlier run by their files.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from db.filters import TAG_KEYS
from indexer.corpus import catalog_text

SHARD_FORMAT = "resound-shard"
SHARD_VERSION = 2  # 1: npz shards read back into the driver's memory
SHARD_DIR = "shards"  # under the index directory
SHARD_SUFFIX = ".parquet"
SHARD_META_KEY = b"resound_shard"


@dataclass(frozen=True)
class ShardIdentity:
    """What makes vectors comparable: shards of another model or hop are never reused."""

    model_id: str
    checkpoint_sha256: str
    hop_seconds: float


@dataclass(frozen=True)
class BlockFile:
    """A file of a block: where a worker reads it, and what its catalog row records (path, hash, size, mtime)."""

    path: str  # absolute (os.fsdecode form: undecodable name bytes as surrogates)
    catalog_path: str
    content_hash: str
    size: int = 0
    mtime: float = 0.0

    @property
    def key(self) -> tuple[str, str, int, float]:
        """What a finished shard's file must match to stand for this file in a later run."""
        return (self.catalog_path, self.content_hash, int(self.size), float(self.mtime))


@dataclass(frozen=True)
class ShardEntry:
    """One file's result in a shard: its windows and their vectors, or why it could not be decoded."""

    catalog_path: str
    content_hash: str
    spans: list[tuple[float, float]]
    duration: float
    source_rate: int
    channels: int
    modalities: str
    failure: list[str] | None  # the decoders' reasons; None when the file was embedded
    vectors: np.ndarray  # (len(spans), dim) float32; (0, dim) for a failure
    tags: dict[str, str] = field(default_factory=dict)  # the file's container tags (TAG_KEYS)

    @property
    def key(self) -> tuple[str, str]:
        return (self.catalog_path, self.content_hash)


@dataclass(frozen=True)
class ShardFile:
    """A file as a shard's metadata lists it: enough to plan and to record a failure, no vectors."""

    catalog_path: str
    content_hash: str
    size: int
    mtime: float
    windows: int
    failure: list[str] | None

    @property
    def key(self) -> tuple[str, str, int, float]:
        return (self.catalog_path, self.content_hash, int(self.size), float(self.mtime))


@dataclass(frozen=True)
class ShardMeta:
    """A shard's identity and its files, in block order."""

    identity: ShardIdentity
    dim: int
    files: list[ShardFile]

    @property
    def windows(self) -> int:
        return sum(f.windows for f in self.files)


def block_key(identity: ShardIdentity, files: Sequence[BlockFile]) -> str:
    """The shard name of a block: the same model, hop and files always give the same name."""
    digest = hashlib.sha256(json.dumps(asdict(identity), sort_keys=True).encode())
    digest.update(f"v{SHARD_VERSION}".encode())
    for f in files:
        # surrogateescape: catalog paths are valid UTF-8, but be exact about what is hashed.
        digest.update(f"\0{f.catalog_path}\0{f.content_hash}\0{int(f.size)}\0{float(f.mtime)!r}"
                      .encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


def shard_schema(dim: int, provenance: dict[str, Any], shard: dict[str, Any]) -> Any:
    """The export's parquet schema (indexer/export.py) plus the file columns `indexer import` keeps."""
    import pyarrow as pa

    return pa.schema(
        [("segment_id", pa.int64()), ("file_id", pa.int64()), ("path", pa.string()), ("start", pa.float64()),
         ("end", pa.float64()), ("modalities", pa.string())]
        + [(key, pa.string()) for key in TAG_KEYS]
        + [("vector", pa.list_(pa.float32(), dim)), ("path_bytes", pa.binary()),
           ("content_hash", pa.string()), ("size", pa.int64()), ("mtime", pa.float64()), ("duration", pa.float64()),
           ("source_rate", pa.int64()), ("channels", pa.int64())],
        metadata={b"resound": json.dumps(provenance, default=str).encode(),
                  SHARD_META_KEY: json.dumps(shard).encode()},
    )


def write_shard(path: Path, identity: ShardIdentity, provenance: dict[str, Any], files: Sequence[BlockFile],
                entries: Sequence[ShardEntry], dim: int) -> None:
    """Write a block's entries (one per file of `files`) atomically: readers see no shard or the complete one.

    `provenance`: the index's (indexer.index.Provenance as a dict), which `indexer import` checks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    shard = {
        "format": SHARD_FORMAT, "version": SHARD_VERSION, "identity": asdict(identity), "dim": dim,
        "files": [{"path": e.catalog_path, "content_hash": e.content_hash, "size": int(f.size), "mtime": float(f.mtime),
                   "windows": len(e.spans), "failure": e.failure} for f, e in zip(files, entries)],
    }
    schema = shard_schema(dim, provenance, shard)
    embedded = [(f, e) for f, e in zip(files, entries) if e.failure is None and len(e.spans)]
    per_row = [(f, e) for f, e in embedded for _ in e.spans]
    n = len(per_row)
    vectors = (np.concatenate([e.vectors for _, e in embedded]).astype(np.float32) if embedded
               else np.zeros((0, dim), dtype=np.float32))
    # Python floats survive parquet's float64 exactly: the catalog gets the spans a local build writes.
    columns: dict[str, Any] = {
        "segment_id": pa.nulls(n, pa.int64()), "file_id": pa.nulls(n, pa.int64()),  # ids come with the merge
        "path": [catalog_text(f.path) for f, _ in per_row],
        "start": [float(s[0]) for _, e in embedded for s in e.spans],
        "end": [float(s[1]) for _, e in embedded for s in e.spans],
        "modalities": [e.modalities for _, e in per_row],
        **{key: [e.tags.get(key) for _, e in per_row] for key in TAG_KEYS},
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim),
        "path_bytes": [os.fsencode(f.path) for f, _ in per_row],
        "content_hash": [e.content_hash for _, e in per_row],
        "size": [int(f.size) for f, _ in per_row],
        "mtime": [float(f.mtime) for f, _ in per_row],
        "duration": [float(e.duration) for _, e in per_row],
        "source_rate": [int(e.source_rate) for _, e in per_row],
        "channels": [int(e.channels) for _, e in per_row],
    }
    arrays = [c if isinstance(c, pa.Array) else pa.array(c, type=schema.field(name).type)
              for name, c in columns.items()]
    table = pa.Table.from_arrays(arrays, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per writer: a retried block may run twice at once (a lost worker that was only slow).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_shard(path: Path) -> ShardMeta:
    """A shard's identity and file list, from its footer (no vectors are read). Raises ValueError for a file
    that is not a shard of this version, OSError for one that cannot be read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(str(path)).metadata or {}).get(SHARD_META_KEY)
    except pa.ArrowException as e:  # ArrowInvalid for a truncated file is also a ValueError
        raise ValueError(f"{path}: not a parquet file ({e})") from e
    if raw is None:
        raise ValueError(f"{path}: not a resound shard")
    meta = json.loads(raw)
    if meta.get("format") != SHARD_FORMAT or meta.get("version") != SHARD_VERSION:
        raise ValueError(f"{path}: not a resound shard of version {SHARD_VERSION}")
    files = [ShardFile(f["path"], f["content_hash"], int(f["size"]), float(f["mtime"]), int(f["windows"]), f["failure"])
             for f in meta["files"]]
    return ShardMeta(ShardIdentity(**meta["identity"]), int(meta["dim"]), files)


class ShardDirectory:
    """The shards of one index directory (`<index>/shards/`), found by the files they hold."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}{SHARD_SUFFIX}"

    def shards(self) -> list[Path]:
        return sorted(self.root.glob(f"*{SHARD_SUFFIX}")) if self.root.is_dir() else []

    def finished(self, identity: ShardIdentity) -> dict[tuple[str, str, int, float], tuple[Path, ShardMeta]]:
        """File key (BlockFile.key) -> (shard, its metadata), over every readable shard of this model and hop."""
        found: dict[tuple[str, str, int, float], tuple[Path, ShardMeta]] = {}
        for path in self.shards():
            try:
                meta = read_shard(path)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # unreadable: its files are embedded again, and `remove` drops it
            if meta.identity != identity:
                continue
            for f in meta.files:
                found.setdefault(f.key, (path, meta))
        return found

    def remove(self, keep: Iterable[Path] = ()) -> None:
        """Delete every shard (of any version, and stale temporary files) but `keep`."""
        if not self.root.is_dir():
            return
        kept = {Path(p).resolve() for p in keep}
        for path in self.root.iterdir():
            if path.resolve() not in kept and (path.suffix in (".npz", SHARD_SUFFIX) or path.name.endswith(".tmp")):
                path.unlink(missing_ok=True)
        if not kept:
            try:
                self.root.rmdir()
            except OSError:
                pass  # something else lives there; leave it
