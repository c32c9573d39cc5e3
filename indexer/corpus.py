"""Walking a corpus directory: which media files it holds, with size, mtime and content hash, and which
directories it could not read."""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from indexer.media import MEDIA_EXTENSIONS
from indexer.media.source import open_regular


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


@dataclass(frozen=True)
class UnreadableDirectory:
    """A directory under a corpus root that could not be listed; `path` is relative, with '/' separators."""

    path: str
    reason: str

    def holds(self, relative: str) -> bool:
        """Whether the file at `relative` (a catalog path) lies somewhere below this directory."""
        return relative.startswith(self.path + "/")


@dataclass
class CorpusScan:
    """What a walk of a corpus saw: its media files, sorted by path, and the directories it could not list
    (whose files are unknown, not gone: a build keeps what it indexed from them)."""

    root: Path
    files: list[CorpusFile]
    unreadable: list[UnreadableDirectory] = field(default_factory=list)

    def hidden(self, relative: str) -> UnreadableDirectory | None:
        """The unreadable directory that hides the catalog path `relative`, if any."""
        return next((d for d in self.unreadable if d.holds(relative)), None)


def scan_corpus(root: str | Path, extensions: frozenset[str] = MEDIA_EXTENSIONS) -> list[CorpusFile]:
    """Media files under `root` (recursively, symlinked dirs followed once), sorted by path."""
    return walk_corpus(root, extensions).files


def walk_corpus(root: str | Path, extensions: frozenset[str] = MEDIA_EXTENSIONS) -> CorpusScan:
    """Walk `root` for media files: iteratively (any depth), following symlinked directories once each
    (a loop is never walked twice: directories are known by (st_dev, st_ino)), hidden files left out.

    A media-named entry that cannot be stat'ed (a dangling link) or is not a regular file (a FIFO, a
    device) is listed, so that reading it fails and is reported. Directories that cannot be listed are
    returned in `unreadable`; the root itself unreadable raises OSError.
    """
    root = Path(root).resolve()
    files: list[CorpusFile] = []
    unreadable: list[UnreadableDirectory] = []
    top = os.stat(root)
    seen_dirs: set[tuple[int, int]] = {(top.st_dev, top.st_ino)}
    # (absolute directory, its path relative to root with a trailing '/', or '' for the root)
    pending: list[tuple[str, str]] = [(str(root), "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = list(listing)
        except OSError as e:
            if not prefix:
                raise
            unreadable.append(UnreadableDirectory(prefix.rstrip("/"), f"cannot read directory ({e.strerror or e})"))
            continue
        subdirectories = []
        for entry in entries:
            relative = prefix + entry.name
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                try:
                    st = os.stat(entry.path)
                except OSError:
                    continue  # vanished since listed
                if (st.st_dev, st.st_ino) not in seen_dirs:  # a symlink loop: do not descend again
                    seen_dirs.add((st.st_dev, st.st_ino))
                    subdirectories.append((entry.path, relative + "/"))
                continue
            if entry.name.startswith(".") or Path(entry.name).suffix.lower() not in extensions:
                continue
            try:
                st = os.stat(entry.path)
            except OSError:
                # A dangling symlink or a symlink loop: listed, so that reading it fails and is reported.
                files.append(CorpusFile(root, relative, -1, 0.0))
                continue
            if not stat.S_ISREG(st.st_mode):
                files.append(CorpusFile(root, relative, -1, 0.0))  # a FIFO or device: refused when read
                continue
            files.append(CorpusFile(root, relative, st.st_size, st.st_mtime))
        pending.extend(sorted(subdirectories, reverse=True))
    files.sort(key=lambda f: f.path)
    unreadable.sort(key=lambda d: d.path)
    return CorpusScan(root, files, unreadable)


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
    """SHA-256 of a file's bytes (what decides whether a file must be re-embedded). Raises OSError
    (NotRegularFileError for a FIFO or device: refused, never waited on)."""
    digest = hashlib.sha256()
    with open_regular(path) as f:  # never blocks on a FIFO swapped in after the scan
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
