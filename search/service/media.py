"""Serving indexed media: files by catalog id only, and only when they lie inside their corpus.

A client never names a path. It names a file id the catalog gave it; the path is the catalog's, joined to
the corpus root, and its real location (symlinks resolved) must still be inside that root. Byte ranges
(RFC 9110 section 14) let the page's audio player seek without downloading the whole file.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from db import Catalog, CorpusRow, FileRow, SegmentRecord
from search.service.errors import ForbiddenMediaError, NotFoundError, RangeNotSatisfiableError

# Ids are int64 in the catalog and in FAISS; a larger number cannot name anything.
MAX_ID = 2**63 - 1
CHUNK_BYTES = 64 * 1024

CONTENT_TYPES = {
    ".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".opus": "audio/ogg",
    ".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".aac": "audio/aac", ".aiff": "audio/aiff", ".aif": "audio/aiff",
    ".wma": "audio/x-ms-wma", ".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm",
    ".mkv": "video/x-matroska", ".mov": "video/quicktime", ".avi": "video/x-msvideo",
}


@dataclass(frozen=True)
class MediaFile:
    """An indexed file as it is on disk now: its real path (inside its corpus), size and type."""

    file_id: int
    path: Path
    size: int
    mtime_ns: int
    content_type: str

    @property
    def etag(self) -> str:
        """Changes whenever the file does (a re-encoded file keeps its id until the next build)."""
        digest = hashlib.sha256(f"{self.file_id}:{self.size}:{self.mtime_ns}".encode()).hexdigest()[:20]
        return f'"{digest}"'


class CorpusMedia:
    """Looks up the files and segments of one catalog for serving."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def file(self, file_id: int) -> MediaFile:
        """The file with catalog id `file_id`. Raises NotFoundError or ForbiddenMediaError."""
        if not 0 < file_id <= MAX_ID:
            raise NotFoundError(f"file {file_id} is not in the index")
        with self.catalog.session() as s:
            row = s.execute(
                select(FileRow.path, FileRow.path_bytes, CorpusRow.root)
                .join(CorpusRow, FileRow.corpus_id == CorpusRow.id)
                .where(FileRow.id == file_id)
            ).first()
        if row is None:
            raise NotFoundError(f"file {file_id} is not in the index")
        relative = os.fsdecode(row.path_bytes) if row.path_bytes else row.path
        path = inside_corpus(row.root, relative, f"file {file_id}")
        try:
            stat = path.stat()
        except OSError as e:
            raise NotFoundError(f"file {file_id} is no longer readable on disk") from e
        return MediaFile(file_id, path, stat.st_size, stat.st_mtime_ns,
                         CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream"))

    def segment(self, segment_id: int) -> SegmentRecord:
        """The segment with catalog id `segment_id`. Raises NotFoundError."""
        if not 0 < segment_id <= MAX_ID:
            raise NotFoundError(f"segment {segment_id} is not in the index")
        segment = self.catalog.segments([segment_id]).get(segment_id)
        if segment is None:
            raise NotFoundError(f"segment {segment_id} is not in the index")
        return segment


def inside_corpus(root: str, relative: str, what: str) -> Path:
    """The real path of `relative` under `root`, refused unless it is a regular file inside `root`.

    Symlinks are resolved first, so a link (or a catalog row) pointing out of the corpus is refused even
    though the build followed it: the service only ever reveals what lies under a corpus root.
    """
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, relative))
    if os.path.commonpath([real_root, real]) != real_root or real == real_root:
        raise ForbiddenMediaError(f"{what} resolves outside its corpus; it is not served")
    if not os.path.isfile(real):
        raise NotFoundError(f"{what} is no longer on disk")
    return Path(real)


_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte positions a `Range` header asks for, or None to send everything.

    None also for what RFC 9110 lets a server ignore: a malformed header, another unit, several ranges.
    Raises RangeNotSatisfiableError (416) for a range that starts past the end of the file.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _RANGE.match(spec)
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first_text, last_text = match.groups()
    if first_text == "":  # a suffix: the last N bytes
        length = int(last_text)
        if length == 0 or size == 0:
            raise RangeNotSatisfiableError(f"range {spec.strip()} selects no byte of {size}", size)
        return max(0, size - length), size - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # invalid syntax: ignored
    last = int(last_text) if last_text else size - 1
    if first >= size:
        raise RangeNotSatisfiableError(f"range {spec.strip()} starts beyond the file's {size} bytes", size)
    return first, min(last, size - 1)


def read_bytes(path: Path, first: int, length: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
    """`length` bytes of `path` from `first`, in chunks (the response streams; nothing is held whole)."""
    with open(path, "rb") as f:
        f.seek(first)
        left = length
        while left > 0:
            block = f.read(min(chunk, left))
            if not block:
                return  # the file shrank while being sent; the client sees a short body
            left -= len(block)
            yield block
