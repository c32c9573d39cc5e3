"""Plain records read from the catalog (no SQLAlchemy: the search path imports them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class SegmentRecord:
    """A segment with the absolute path of its file, as search results need it."""

    id: int
    file_id: int
    path: str
    start: float
    end: float
    modalities: str
    root: str = ""  # the corpus root `path` lies under

    @property
    def relative_path(self) -> str:
        """The file's path relative to its corpus root."""
        prefix = self.root.rstrip("/") + "/"
        return self.path[len(prefix):] if self.root and self.path.startswith(prefix) else self.path


@dataclass(frozen=True)
class VectorFile:
    """A sealed, immutable file of vectors that an index generation lists (indexer/segments.py).

    `store` is "segments" (window vectors) or "files" (file-level vectors); `vectors` is how many were
    written into it (its deletions are listed apart); `level` is its merge tier: 0 for a checkpoint's
    tail, L + 1 for a merge of level-L files.
    """

    name: str
    store: str
    vectors: int
    level: int


def join_root(root: str, path: str) -> str:
    """The absolute path of a corpus file from its root and its POSIX path relative to it."""
    return str(PurePosixPath(root) / path)
