"""Hybrid search: the words of file names, folders and tags (BM25, db/fulltext.py) fused with the vector
ranking by reciprocal rank fusion, as Elasticsearch's and OpenSearch's hybrid queries do.

Each ranking contributes its first FUSION_DEPTH files; a file ranks by the sum of 1 / (60 + rank) over the
rankings that hold it. A file whose name says nothing ("ZOOM0042.WAV") still ranks by its sound; a file
whose words match but whose sound ranks low still comes up. Hits keep `score` as the best window's
cosine (the sound's evidence) and carry the matched words, the BM25 score and the fused score beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from db.fulltext import Rows

if TYPE_CHECKING:
    from indexer.index import Index

MODES = ("hybrid", "vector", "keyword")
DEFAULT_MODE = "hybrid"  # of `search query`, the HTTP API and the page; Engine.query's default is "vector"
FUSION_DEPTH = 50  # files each ranking contributes to the fusion
RRF_K = 60  # the constant of Cormack et al. (2009), Elasticsearch's default


def keyword_rows(index: Index) -> Rows:
    """Read-only SQL over the index's catalog, for db.fulltext.rank_keywords: sqlite3 for a SQLite catalog
    (no SQLAlchemy on the cold query path), the SQLAlchemy engine's driver for Postgres."""
    if index.reader is not None:
        reader = index.reader

        def sqlite_rows(sql: str, params: Sequence[object]) -> list[tuple]:
            connection = reader._connect()
            try:
                return [tuple(row) for row in connection.execute(sql, tuple(params))]
            finally:
                connection.close()

        return sqlite_rows
    engine = index.catalog.engine

    def driver_rows(sql: str, params: Sequence[object]) -> list[tuple]:
        with engine.connect() as connection:
            if connection.dialect.paramstyle in ("format", "pyformat"):
                sql = sql.replace("?", "%s")
            return [tuple(row) for row in connection.exec_driver_sql(sql, tuple(params))]

    return driver_rows
