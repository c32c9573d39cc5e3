"""Opening media files safely, and reading a file once so that its content hash and its vectors agree.

`open_regular` opens without blocking and refuses what is not a regular file: a FIFO swapped in for a
file after the corpus scan would otherwise block `open` forever, and a device named `x.wav` would
stream forever. Every decoder opens through it (see `open_media`).

`read_snapshot` reads a file once: the content hash is computed from the bytes the decoder then reads.
A file up to `SNAPSHOT_MAX_BYTES` is kept in memory and decoded from there, so a rewrite while it is being
indexed cannot mix two versions. A larger one is hashed from the same open descriptor and re-read from
disk by the decoder; `MediaSnapshot.check_unchanged` then compares the file's identity (inode, size,
mtime, ctime: ctime changes with every write and cannot be set back) with the one it had when hashed.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# Files up to this size are read into memory once and decoded from there (a decoding worker holds two).
SNAPSHOT_MAX_BYTES = 64 * 2**20
_READ_BLOCK = 1 << 20


class NotRegularFileError(OSError):
    """A path that names a FIFO, a device, a socket or a directory where a media file was expected."""

    def __init__(self, path: str | Path, mode: int):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a file")
        super().__init__(f"not a regular file: {kind}")
        self.strerror = f"not a regular file: {kind}"
        self.filename = str(path)

    def __str__(self) -> str:
        return self.strerror  # the reason alone: messages name the file themselves


class FileChangedError(OSError):
    """A file rewritten or replaced while it was being indexed (its hash and its audio would disagree)."""

    def __init__(self, path: str | Path):
        super().__init__("the file changed while it was being read")
        self.strerror = "the file changed while it was being read"
        self.filename = str(path)

    def __str__(self) -> str:
        return self.strerror


@dataclass(frozen=True)
class FileIdentity:
    """What changes when a file's content does: which inode, its size and its modification times."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def open_regular(path: str | Path) -> BinaryIO:
    """`path` opened for binary reading, never blocking; raises NotRegularFileError unless it is a regular
    file (checked on what was opened, so a swap between a check and the open cannot slip through)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path, mode)
        f = os.fdopen(fd, "rb")
        f.raw.name = os.fspath(path)  # decoders quote the file's name in their errors, not a descriptor number
        return f
    except BaseException:
        os.close(fd)
        raise


@dataclass(frozen=True)
class MediaSnapshot:
    """A media file as it was read once: its path (for messages and its type), the SHA-256 of the bytes
    read, and those bytes when the file is small enough to keep (else None: decoders re-read `path`)."""

    path: Path
    content_hash: str
    identity: FileIdentity
    data: bytes | None = None

    def open(self) -> BinaryIO:
        """The snapshot's bytes from the start: from memory, or from disk when the identity still holds."""
        if self.data is not None:
            memory = io.BytesIO(self.data)
            memory.name = os.fspath(self.path)  # as open_regular's: decoders quote it in their errors
            return memory
        f = open_regular(self.path)
        if FileIdentity.of(os.fstat(f.fileno())) != self.identity:
            f.close()
            raise FileChangedError(self.path)
        return f

    def check_unchanged(self) -> None:
        """Raise FileChangedError when a snapshot read from disk no longer matches its file (an in-memory
        one always does: its bytes are the ones hashed)."""
        if self.data is not None:
            return
        try:
            current = FileIdentity.of(os.stat(self.path))
        except OSError as e:
            raise FileChangedError(self.path) from e
        if current != self.identity:
            raise FileChangedError(self.path)


def read_snapshot(path: str | Path, max_bytes: int | None = None) -> MediaSnapshot:
    """Read `path` once, keeping its bytes up to `max_bytes` (default SNAPSHOT_MAX_BYTES; see the module
    docstring). Raises OSError (NotRegularFileError, FileChangedError)."""
    path = Path(path)
    max_bytes = SNAPSHOT_MAX_BYTES if max_bytes is None else max_bytes
    digest = hashlib.sha256()
    with open_regular(path) as f:
        before = FileIdentity.of(os.fstat(f.fileno()))
        keep = before.size <= max_bytes
        blocks: list[bytes] = []
        size = 0
        while block := f.read(_READ_BLOCK):
            digest.update(block)
            size += len(block)
            if keep and size <= max_bytes:
                blocks.append(block)
            else:
                keep, blocks = False, []  # grew past the limit while being read: decoded from disk, checked
        after = FileIdentity.of(os.fstat(f.fileno()))
    if after != before or size != after.size:
        # Written to while being hashed: neither the bytes read nor a re-read can be trusted to agree.
        raise FileChangedError(path)
    return MediaSnapshot(path, digest.hexdigest(), after, b"".join(blocks) if keep else None)


# What decoders accept: a path (opened with open_regular) or a snapshot (its bytes).
MediaSource = str | Path | MediaSnapshot


def media_path(source: MediaSource) -> Path:
    """The file a source names (for messages and for its type, by suffix)."""
    return source.path if isinstance(source, MediaSnapshot) else Path(source)


def open_media(source: MediaSource) -> BinaryIO:
    """A source's bytes, opened for reading from the start (see open_regular and MediaSnapshot.open)."""
    return source.open() if isinstance(source, MediaSnapshot) else open_regular(source)

