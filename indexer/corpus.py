"""Walking a corpus directory: which media files it holds, with size, mtime and content hash."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from indexer.media import MEDIA_EXTENSIONS


@dataclass(frozen=True)
class CorpusFile:
    """A media file found in a corpus; `path` is relative to the corpus root, with '/' separators."""

    root: Path
    path: str
    size: int
    mtime: float

    @property
    def absolute(self) -> Path:
        return self.root / self.path

    @property
    def catalog_path(self) -> str:
        """The path as the catalog stores it: valid UTF-8, undecodable bytes written as \\xNN escapes."""
        return catalog_text(self.path)

    @property
    def path_bytes(self) -> bytes | None:
        """The exact file-name bytes when the name is not UTF-8 (None otherwise)."""
        raw = os.fsencode(self.path)
        return None if catalog_text(self.path) == self.path else raw


def catalog_text(path: str) -> str:
    """`path` (from os.walk, undecodable bytes as surrogates) as text any database accepts."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def scan_corpus(root: str | Path, extensions: frozenset[str] = MEDIA_EXTENSIONS) -> list[CorpusFile]:
    """Media files under `root` (recursively, symlinked dirs followed once), sorted by path."""
    root = Path(root).resolve()
    return sorted(_walk(root, extensions), key=lambda f: f.path)


def _walk(root: Path, extensions: frozenset[str]) -> Iterator[CorpusFile]:
    seen_dirs: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink loop: do not descend again
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames.sort()
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in extensions:
                continue
            full = Path(dirpath) / name
            try:
                stat = full.stat()
            except OSError:
                # A dangling symlink or a symlink loop: listed, so that reading it fails and is reported.
                yield CorpusFile(root, full.relative_to(root).as_posix(), -1, 0.0)
                continue
            if not full.is_file():
                continue  # a directory or device named like a media file
            yield CorpusFile(root, full.relative_to(root).as_posix(), stat.st_size, stat.st_mtime)


def corpus_file(root: Path, path: str, extensions: frozenset[str] = MEDIA_EXTENSIONS) -> CorpusFile | None:
    """The CorpusFile at `path` (relative to `root`) when `scan_corpus` would list it, else None."""
    full = root / path
    if full.name.startswith(".") or full.suffix.lower() not in extensions:
        return None
    try:
        stat = full.stat()
    except FileNotFoundError:
        return None
    except OSError:
        return CorpusFile(root, path, -1, 0.0)  # listed, so that reading it fails and is reported
    return CorpusFile(root, path, stat.st_size, stat.st_mtime) if full.is_file() else None


def content_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes (what decides whether a file must be re-embedded)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
