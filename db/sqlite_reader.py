"""Read-only access to a SQLite catalog with the standard library's sqlite3.

A search reads three things from the catalog: the schema revision, the provenance row and the segments
of its hits. Importing SQLAlchemy and Alembic for that costs a cold `search query` about half a second,
so SQLite catalogs are read here; writers and PostgreSQL catalogs go through SQLAlchemy (db/catalog.py).
Each call opens its own connection (about 0.1 ms), so one reader serves any number of threads.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from db.records import SegmentRecord, VectorFile, join_root

if TYPE_CHECKING:
    import numpy as np

# SQLite's limit on bound parameters is 32766 (3.32+); stay well below it.
_MAX_PARAMS = 900
# A query's hits: three primary-key lookups per id (tests/test_catalog_scale.py checks the plan).
SEGMENTS_SELECT = ('SELECT s.id, s.file_id, s.start, s."end", s.modalities, f.path, f.path_bytes, c.root '
                   "FROM segments s JOIN files f ON s.file_id = f.id JOIN corpora c ON f.corpus_id = c.id ")
SEGMENTS_SQL = SEGMENTS_SELECT + "WHERE s.id IN ({marks})"


class SqliteReader:
    """Reads an existing SQLite catalog file without SQLAlchemy."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None)  # autocommit: every read sees the last commit
        connection.row_factory = sqlite3.Row
        return connection

    def revision(self) -> str | None:
        """The Alembic revision the catalog is at; None for a new (or not yet migrated) file."""
        if not self.path.is_file():
            return None
        connection = self._connect()
        try:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:  # no alembic_version table yet
            return None
        finally:
            connection.close()
        return row[0] if row else None

    def info(self) -> SimpleNamespace | None:
        """The provenance row (columns as attributes, JSON columns decoded), or None for an empty catalog."""
        connection = self._connect()
        try:
            json_columns = {r["name"] for r in connection.execute("PRAGMA table_info(index_info)")
                            if r["type"].upper() == "JSON"}
            row = connection.execute("SELECT * FROM index_info WHERE id = 1").fetchone()
        finally:
            connection.close()
        if row is None:
            return None
        return SimpleNamespace(**{key: json.loads(row[key]) if key in json_columns and row[key] is not None
                                  else row[key] for key in row.keys()})  # noqa: SIM118 - sqlite3.Row iterates values

    def vector_files(self) -> tuple[int, list[VectorFile], dict[str, np.ndarray]]:
        """As Catalog.vector_files: the generation, its sealed vector files and their deletions, read in one
        transaction."""
        import numpy as np

        connection = self._connect()
        try:
            connection.execute("BEGIN")
            row = connection.execute("SELECT generation FROM index_info WHERE id = 1").fetchone()
            files = [VectorFile(r["name"], r["store"], r["vectors"], r["level"]) for r in connection.execute(
                "SELECT name, store, vectors, level FROM vector_files ORDER BY store, name")]
            pairs = connection.execute("SELECT file, vector_id FROM vector_deletions ORDER BY file").fetchall()
            connection.execute("COMMIT")
        finally:
            connection.close()
        deletions: dict[str, list[int]] = {}
        for name, vector_id in pairs:
            deletions.setdefault(name, []).append(vector_id)
        return ((row[0] if row else 0), files,
                {name: np.unique(np.asarray(ids, dtype=np.int64)) for name, ids in deletions.items()})

    def segments(self, ids: Iterable[int]) -> dict[int, SegmentRecord]:
        """Segments by id, with absolute file paths; unknown ids are left out (as Catalog.segments)."""
        ids = [int(i) for i in ids]
        found: dict[int, SegmentRecord] = {}
        connection = self._connect()
        try:
            for at in range(0, len(ids), _MAX_PARAMS):
                chunk = ids[at:at + _MAX_PARAMS]
                for r in connection.execute(SEGMENTS_SQL.format(marks=",".join("?" * len(chunk))), chunk):
                    path = join_root(r["root"], os.fsdecode(r["path_bytes"]) if r["path_bytes"] else r["path"])
                    found[r["id"]] = SegmentRecord(r["id"], r["file_id"], path, r["start"], r["end"], r["modalities"],
                                                   r["root"])
        finally:
            connection.close()
        return found


def file_tags_of(reader: SqliteReader, file_ids: Iterable[int]) -> dict[int, dict[str, str]]:
    """The tags of files by file id (as Catalog.file_tags), read with sqlite3."""
    ids = [int(i) for i in file_ids]
    tags: dict[int, dict[str, str]] = {}
    connection = reader._connect()
    try:
        for at in range(0, len(ids), _MAX_PARAMS):
            chunk = ids[at:at + _MAX_PARAMS]
            for file_id, key, value in connection.execute(
                    f"SELECT file_id, key, value FROM file_tags WHERE file_id IN ({','.join('?' * len(chunk))})", chunk):
                tags.setdefault(file_id, {})[key] = value
    finally:
        connection.close()
    return tags


def reader_for(url: str) -> SqliteReader | None:
    """A reader for a `sqlite:///path` catalog URL; None for other databases (and in-memory SQLite)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url or url == prefix or url.endswith(":memory:"):
        return None
    return SqliteReader(url[len(prefix):])
