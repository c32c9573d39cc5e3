"""The metadata catalog of an index: corpora, files, segments, failures and provenance (SQLAlchemy).

One schema serves SQLite (the default, a file inside the index directory) and PostgreSQL.
"""

from db.catalog import Catalog, FileRecord, SegmentRecord
from db.filters import SearchFilter
from db.schema import Base, CorpusRow, FailureRow, FileRow, FileTagRow, IndexInfoRow, SegmentRow
from db.session import make_engine, redact_url, sqlite_url, url_without_password

__all__ = [
    "Base",
    "Catalog",
    "CorpusRow",
    "FailureRow",
    "FileRecord",
    "FileRow",
    "FileTagRow",
    "IndexInfoRow",
    "SegmentRecord",
    "SearchFilter",
    "SegmentRow",
    "make_engine",
    "redact_url",
    "sqlite_url",
    "url_without_password",
]
