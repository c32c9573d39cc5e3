""""More like this" for a file: the file itself first, then files ranked by file vector.

A question about files is answered with file-level vectors: the query file's vector (the normalised mean of
its windows) against every indexed file's vector (the `files` store, built the same way), not against
single windows, where one window of another take can outscore the mean of the file's own windows. A
query file that is in the index (same content hash, or same path) is found there: its stored vector is the
query (nothing to decode), and it ranks first with its exact score unless the caller leaves it out.
Each hit shows the file's windows that best match the query vector.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer.corpus import content_hash

if TYPE_CHECKING:
    from db.catalog import Catalog
    from db.fulltext import Rows
    from indexer.store import VectorStore


@dataclass(frozen=True)
class IndexedCopy:
    """An indexed file that is the query file: same bytes (content hash), and whether also the same path."""

    file_id: int
    path: str  # relative to its corpus root, as the file system names it (odd bytes as surrogates)
    same_path: bool


def indexed_copies(catalog: Catalog, path: str | Path) -> list[IndexedCopy]:
    """The indexed files holding exactly the bytes of `path`, the one at `path` itself first.

    A file at an indexed path whose bytes changed since it was indexed is not itself any more: its stored
    vector describes the old content. Unreadable query files have no copies (the caller reports the error
    when it decodes them)."""
    from sqlalchemy import select

    from db.schema import CorpusRow, FileRow

    try:
        digest = content_hash(path)
    except OSError:
        return []
    absolute = Path(os.path.abspath(path))
    with catalog.session() as s:
        rows = s.execute(select(FileRow.id, FileRow.path, FileRow.path_bytes, CorpusRow.root)
                         .join(CorpusRow, FileRow.corpus_id == CorpusRow.id)
                         .where(FileRow.content_hash == digest).order_by(FileRow.id)).all()
    # A name that is not UTF-8 is stored as text with \xNN escapes plus its exact bytes: compared as the
    # file system names it, or the query file would not be itself (and a twin would lead).
    relatives = [(file_id, os.fsdecode(raw) if raw else text, root) for file_id, text, raw, root in rows]
    copies = [IndexedCopy(file_id, relative, Path(root) / relative in (absolute, absolute.resolve()))
              for file_id, relative, root in relatives]
    return sorted(copies, key=lambda c: not c.same_path)


def file_ids_of_segments(catalog: Catalog, segment_ids: np.ndarray) -> np.ndarray:
    """The sorted distinct file ids of `segment_ids` (a filter's admitted segments)."""
    return catalog.file_ids_of_segments(segment_ids)


def segments_of_files(rows: Rows, file_ids: list[int]) -> dict[int, list[int]]:
    """Each file's segment ids, in time order (`rows`: search.hybrid.keyword_rows, which reads a SQLite
    catalog without SQLAlchemy)."""
    out: dict[int, list[int]] = {}
    for start in range(0, len(file_ids), 500):
        chunk = [int(i) for i in file_ids[start:start + 500]]
        for segment_id, file_id in rows(f"SELECT id, file_id FROM segments WHERE file_id IN ({','.join('?' * len(chunk))}) "
                                        "ORDER BY file_id, start", chunk):
            out.setdefault(int(file_id), []).append(int(segment_id))
    return out


def rank_files(files: VectorStore, vector: np.ndarray, k: int, among: np.ndarray | None,
               first: int | None, leave_out: frozenset[int]) -> list[tuple[int, float]]:
    """The `k` files whose vectors best match `vector`, best first, as (file id, cosine).

    `among`: the candidate file ids (None: all). `first`: a file that leads whatever the ranking says (the
    query file itself: ties and float rounding must not put a copy above it), when it is a candidate.
    `leave_out`: files never returned.
    """
    fetch = k + len(leave_out) + (first is not None)
    result = files.search(vector[None, :].astype(np.float32), fetch, among=among)
    ranked = [(int(i), float(s)) for i, s in zip(result.ids[0], result.scores[0])
              if i >= 0 and int(i) not in leave_out]
    if first is not None and first not in leave_out and (among is None or np.isin(first, among)):
        own = float(files.reconstruct([first])[0] @ vector)
        ranked = [(first, own)] + [(i, s) for i, s in ranked if i != first]
    return ranked[:k]
