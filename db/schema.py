"""Tables of the catalog. Segment ids are the FAISS vector ids; file ids are the file-level vector ids."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA_VERSION = 3
# The condition of the partial index of windows that hold a picture (ix_segments_visual).
VISUAL_WINDOWS = "modalities <> 'audio'"

# SQLite only makes INTEGER PRIMARY KEY an alias of its rowid (and so auto-incrementing); BIGINT on
# Postgres, where vector ids may outgrow 2**31.
_Id = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class IndexInfoRow(Base):
    """Provenance of the index (one row): what made the vectors, and which generation is current."""

    __tablename__ = "index_info"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schema_version: Mapped[int] = mapped_column(Integer, default=SCHEMA_VERSION)
    model_id: Mapped[str] = mapped_column(String(512))
    family: Mapped[str] = mapped_column(String(64))
    checkpoint: Mapped[str] = mapped_column(Text)  # where the weights were read from (path or hub file)
    checkpoint_sha256: Mapped[str] = mapped_column(String(64))
    dim: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(32))
    sample_rate: Mapped[int] = mapped_column(Integer)
    window_seconds: Mapped[float] = mapped_column(Float)
    hop_seconds: Mapped[float] = mapped_column(Float)
    preprocessing: Mapped[dict] = mapped_column(JSON)
    faiss_factory: Mapped[str] = mapped_column(String(256))
    # nprobe / efSearch chosen at build time for the target recall, and the recall measured.
    search_params: Mapped[dict] = mapped_column(JSON, default=dict)
    versions: Mapped[dict] = mapped_column(JSON)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    # The keyword index's statistics at the last commit (files; sum of their term counts), which BM25 needs
    # per query (db/fulltext.catalog_statistics); None until a commit writes them.
    keyword_files: Mapped[int | None] = mapped_column(BigInteger, nullable=True, default=None)
    keyword_terms: Mapped[int | None] = mapped_column(BigInteger, nullable=True, default=None)
    # Segment rows, kept by each commit from the rows its writer added and removed (`indexer info` at 10M
    # windows need not count them); None until a commit counts them. `indexer verify` checks it.
    segment_count: Mapped[int | None] = mapped_column(BigInteger, nullable=True, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CorpusRow(Base):
    """A corpus root directory that files were indexed from."""

    __tablename__ = "corpora"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root: Mapped[str] = mapped_column(Text, unique=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FileRow(Base):
    """An indexed media file; its id is also the id of its file-level vector."""

    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("corpus_id", "path"),  # also what folder and glob filters read a range of (SQLite)
        # Postgres: LIKE 'folder/%' reads a btree range only in byte order (text_pattern_ops) unless the
        # database's collation is "C" (db/filters.py path_prefix).
        Index("ix_files_path_pattern", "corpus_id", "path", postgresql_ops={"path": "text_pattern_ops"})
        .ddl_if(dialect="postgresql"),
        Index("ix_files_duration", "duration"),
        Index("ix_files_mtime", "mtime"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)  # POSIX path relative to the corpus root
    # The exact name bytes when they are not UTF-8 (`path` then holds \xNN escapes).
    path_bytes: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, default=None)
    content_hash: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[float] = mapped_column(Float)
    duration: Mapped[float] = mapped_column(Float)
    source_rate: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    indexed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    corpus: Mapped[CorpusRow] = relationship()
    segments: Mapped[list[SegmentRow]] = relationship(
        back_populates="file", cascade="all, delete-orphan", passive_deletes=True
    )
    tags: Mapped[list[FileTagRow]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class SegmentRow(Base):
    """A window of a file; its id is the id of its vector in the segment index."""

    __tablename__ = "segments"
    __table_args__ = (
        # The few windows that hold a picture (db/filters.py repeats this condition; migration 0005).
        Index("ix_segments_visual", "id", sqlite_where=text(VISUAL_WINDOWS), postgresql_where=text(VISUAL_WINDOWS)),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    modalities: Mapped[str] = mapped_column(String(32), default="audio")

    file: Mapped[FileRow] = relationship(back_populates="segments")


class FileTagRow(Base):
    """A tag the file's container carries (title, artist, album, genre), read at build time."""

    __tablename__ = "file_tags"
    __table_args__ = (PrimaryKeyConstraint("file_id", "key"), Index("ix_file_tags_key_folded", "key", "folded"))

    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(Text)
    # str.casefold() of `value`: filters match case-insensitively on both backends (SQLite's lower() is ASCII-only).
    folded: Mapped[str] = mapped_column(Text)


class FileTermRow(Base):
    """A term of a file's name, folders or tags, with its count: the keyword index (db/fulltext.py)."""

    __tablename__ = "file_terms"
    __table_args__ = (PrimaryKeyConstraint("file_id", "term"), Index("ix_file_terms_term", "term"))

    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    term: Mapped[str] = mapped_column(String(64))
    tf: Mapped[int] = mapped_column(Integer)


class FailureRow(Base):
    """A file that could not be indexed, with why; retried when its content changes."""

    __tablename__ = "failures"
    __table_args__ = (UniqueConstraint("corpus_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class VectorFileRow(Base):
    """A sealed vector file of the current generation (db.records.VectorFile): the catalog transaction
    that commits a generation's rows also lists its files, so the two never disagree."""

    __tablename__ = "vector_files"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    store: Mapped[str] = mapped_column(String(16))
    vectors: Mapped[int] = mapped_column(BigInteger)
    level: Mapped[int] = mapped_column(Integer)
    generation: Mapped[int] = mapped_column(Integer)  # the generation that first listed it


class VectorDeletionRow(Base):
    """A vector deleted from a sealed file (the file itself is never rewritten; a merge drops it)."""

    __tablename__ = "vector_deletions"
    __table_args__ = (PrimaryKeyConstraint("file", "vector_id"),)

    file: Mapped[str] = mapped_column(ForeignKey("vector_files.name", ondelete="CASCADE"))
    vector_id: Mapped[int] = mapped_column(BigInteger)
