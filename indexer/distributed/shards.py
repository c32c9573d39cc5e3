"""Shards: what a distributed build writes to shared storage for one block of files, before the merge.

A block is a run of consecutive files to embed. Its shard holds, per file, what the catalog needs (spans,
duration, rate, channels, modalities, or the decoders' reasons for a failure) and the window vectors, in
one `.npz` file written atomically (temporary file, fsync, `os.replace`). The shard's name is a hash of the
model, the hop and the block's (path, content hash) list: a retried block rewrites the same file with the
same content, and a resumed build finds the finished files of any earlier block by path and content hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SHARD_FORMAT = "resound-shard"
SHARD_VERSION = 1
SHARD_DIR = "shards"  # under the index directory


@dataclass(frozen=True)
class ShardIdentity:
    """What makes vectors comparable: shards of another model or hop are never reused."""

    model_id: str
    checkpoint_sha256: str
    hop_seconds: float


@dataclass(frozen=True)
class BlockFile:
    """A file of a block: where a worker reads it, and the key the merge finds it by."""

    path: str  # absolute (os.fsdecode form: undecodable name bytes as surrogates)
    catalog_path: str
    content_hash: str


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

    @property
    def key(self) -> tuple[str, str]:
        return (self.catalog_path, self.content_hash)


def block_key(identity: ShardIdentity, files: Sequence[BlockFile]) -> str:
    """The shard name of a block: the same model, hop and files always give the same name."""
    digest = hashlib.sha256(json.dumps(asdict(identity), sort_keys=True).encode())
    for f in files:
        # surrogateescape: catalog paths are valid UTF-8, but be exact about what is hashed.
        digest.update(f"\0{f.catalog_path}\0{f.content_hash}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


def write_shard(path: Path, identity: ShardIdentity, entries: Sequence[ShardEntry], dim: int) -> None:
    """Write a block's entries atomically: readers see no shard or the complete one."""
    meta = {
        "format": SHARD_FORMAT,
        "version": SHARD_VERSION,
        "identity": asdict(identity),
        "dim": dim,
        # Python floats survive a JSON round trip exactly: the catalog gets the spans a local build writes.
        "files": [{"path": e.catalog_path, "content_hash": e.content_hash, "spans": e.spans, "duration": e.duration,
                   "source_rate": e.source_rate, "channels": e.channels, "modalities": e.modalities,
                   "failure": e.failure} for e in entries],
    }
    vectors = [e.vectors for e in entries if len(e.vectors)]
    stacked = np.concatenate(vectors).astype(np.float32) if vectors else np.zeros((0, dim), dtype=np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), vectors=stacked)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per writer: a retried block may run twice at once (a lost worker that was only slow).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_meta(path: Path) -> dict:
    with np.load(path) as z:  # lazy: reads the meta member only
        meta = json.loads(bytes(z["meta"]))
    if meta.get("format") != SHARD_FORMAT or meta.get("version") != SHARD_VERSION:
        raise ValueError("not a resound shard")
    return meta


def read_shard(path: Path) -> dict[tuple[str, str], ShardEntry]:
    """A shard's entries by (catalog path, content hash)."""
    with np.load(path) as z:
        meta = json.loads(bytes(z["meta"]))
        vectors = z["vectors"]
    entries, start = {}, 0
    for f in meta["files"]:
        n = len(f["spans"])
        entry = ShardEntry(f["path"], f["content_hash"], [(a, b) for a, b in f["spans"]], f["duration"],
                           f["source_rate"], f["channels"], f["modalities"], f["failure"], vectors[start : start + n])
        entries[entry.key] = entry
        start += n
    return entries


class ShardDirectory:
    """The shards of one index directory (`<index>/shards/`), found by the files they hold."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def finished(self, identity: ShardIdentity) -> dict[tuple[str, str], Path]:
        """(catalog path, content hash) -> shard, over every readable shard of this model and hop."""
        found: dict[tuple[str, str], Path] = {}
        if not self.root.is_dir():
            return found
        for path in sorted(self.root.glob("*.npz")):
            try:
                meta = _read_meta(path)
                if ShardIdentity(**meta["identity"]) != identity:
                    continue
            except (OSError, ValueError, KeyError, TypeError):
                continue  # unreadable: its files are embedded again, and `remove` drops it
            for f in meta["files"]:
                found.setdefault((f["path"], f["content_hash"]), path)
        return found

    def remove(self, keep: Iterable[Path] = ()) -> None:
        """Delete every shard (and stale temporary file) but `keep`."""
        if not self.root.is_dir():
            return
        kept = {Path(p).resolve() for p in keep}
        for path in self.root.iterdir():
            if path.resolve() not in kept and (path.suffix == ".npz" or path.name.endswith(".tmp")):
                path.unlink(missing_ok=True)
        if not kept:
            try:
                self.root.rmdir()
            except OSError:
                pass  # something else lives there; leave it
