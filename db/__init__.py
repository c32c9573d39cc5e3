"""The metadata catalog of an index: corpora, files, segments, failures and provenance (SQLAlchemy).

One schema serves SQLite (the default, a file inside the index directory) and PostgreSQL. Names are
imported on first use, so that `from db import sqlite_url` does not import SQLAlchemy (a search reads a
current SQLite catalog without it: db/sqlite_reader.py).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Base": "db.schema",
    "Catalog": "db.catalog",
    "CorpusRow": "db.schema",
    "FailureRow": "db.schema",
    "FileRecord": "db.catalog",
    "FileRow": "db.schema",
    "FileTagRow": "db.schema",
    "IndexInfoRow": "db.schema",
    "SegmentRecord": "db.records",
    "SearchFilter": "db.filters",
    "SegmentRow": "db.schema",
    "make_engine": "db.session",
    "redact_url": "db.session",
    "sqlite_url": "db.session",
    "url_without_password": "db.session",
}

__all__ = ["Base", "Catalog", "CorpusRow", "FailureRow", "FileRecord", "FileRow", "FileTagRow", "IndexInfoRow",
           "SearchFilter", "SegmentRecord", "SegmentRow", "make_engine", "redact_url", "sqlite_url", "url_without_password"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'db' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
