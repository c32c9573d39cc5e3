"""Reading and writing the catalog. Writers stage rows in one transaction per checkpoint, so that the
database and the FAISS generation it names change together (see indexer/store.py)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from db import migrate
from db.fulltext import repair_terms, stage_terms
from db.records import SegmentRecord, VectorFile, join_root
from db.schema import (
    CorpusRow,
    FailureRow,
    FileRow,
    FileTagRow,
    FileTermRow,
    IndexInfoRow,
    SegmentRow,
    VectorDeletionRow,
    VectorFileRow,
    utcnow,
)
from db.session import make_engine, redact_url
from db.sqlite_reader import SEGMENTS_SELECT, reader_for

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from db.filters import SearchFilter


@dataclass(frozen=True)
class FileRecord:
    """What the catalog knows of an indexed file."""

    id: int
    corpus_id: int
    path: str
    content_hash: str
    size: int
    duration: float


@dataclass(frozen=True)
class FileSegments:
    """A file's segments in time order (for comparing files window by window)."""

    file_id: int
    path: str  # absolute
    duration: float
    segment_ids: list[int]
    starts: list[float]


@dataclass(frozen=True)
class NewFile:
    """A file and its segments to stage (see CatalogWriter.add_files)."""

    corpus_id: int
    path: str
    content_hash: str
    size: int
    mtime: float
    duration: float
    source_rate: int
    channels: int
    spans: Sequence[tuple[float, float]]
    modalities: str = "audio"
    path_bytes: bytes | None = None
    tags: Mapping[str, str] | None = None  # container tags (indexer/media/tags.py)


@dataclass(frozen=True)
class FailureRecord:
    corpus_root: str
    path: str
    content_hash: str
    reason: str


class Catalog:
    """The catalog database of one index."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        # A SQLite catalog already at the newest revision opens without Alembic (see db/sqlite_reader.py).
        reader = reader_for(url)
        if reader is None or reader.revision() != migrate.head_revision_of_files():
            migrate.upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @cached_property
    def reads(self) -> Engine:
        """The engine for single-statement reads per request (a query's hits, their tags, a filter's ids): on
        Postgres in autocommit, since a transaction around one SELECT costs a BEGIN and a ROLLBACK round
        trip each (10 hits at 1M windows: 0.64 ms p50 against 2.73 ms, bench/catalog_scale.py's machine)."""
        if self.engine.dialect.name == "postgresql":
            return self.engine.execution_options(isolation_level="AUTOCOMMIT")
        return self.engine

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self._sessions()

    # -- provenance -------------------------------------------------------------------------------
    def info(self) -> IndexInfoRow | None:
        """The provenance row, or None for an empty catalog."""
        with self.session() as s:
            return s.get(IndexInfoRow, 1)

    # -- reads -------------------------------------------------------------------------------------
    def corpus_files(self, corpus_id: int) -> dict[str, FileRecord]:
        """Indexed files of a corpus by relative path."""
        with self.session() as s:
            rows = s.execute(select(FileRow).where(FileRow.corpus_id == corpus_id)).scalars()
            return {
                r.path: FileRecord(r.id, r.corpus_id, r.path, r.content_hash, r.size, r.duration) for r in rows
            }

    def corpus_failures(self, corpus_id: int) -> dict[str, FailureRecord]:
        with self.session() as s:
            rows = s.execute(
                select(FailureRow, CorpusRow.root)
                .join(CorpusRow, FailureRow.corpus_id == CorpusRow.id)
                .where(FailureRow.corpus_id == corpus_id)
            ).all()
            return {f.path: FailureRecord(root, f.path, f.content_hash, f.reason) for f, root in rows}

    def failures(self) -> list[FailureRecord]:
        """Every file recorded as failed, in path order."""
        with self.session() as s:
            rows = s.execute(
                select(FailureRow, CorpusRow.root)
                .join(CorpusRow, FailureRow.corpus_id == CorpusRow.id)
                .order_by(CorpusRow.root, FailureRow.path)
            ).all()
            return [FailureRecord(root, f.path, f.content_hash, f.reason) for f, root in rows]

    def segments(self, ids: Iterable[int]) -> dict[int, SegmentRecord]:
        """Segments by id, with absolute file paths; unknown ids are left out."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        # The driver's cursor, not SQLAlchemy: a query's hits are looked up per request, and at 10M windows
        # Postgres answered 10 hits in 0.85 ms p50 this way against 4.5 ms through a compiled IN (...) (the
        # ORM's row objects cost 7.8 ms at 100k before that): bench/catalog_scale.py, docs/scale.md.
        found: dict[int, SegmentRecord] = {}
        with self.reads.connect() as connection:
            for seg_id, file_id, start, end, modalities, path, raw, root in _id_rows(connection, SEGMENTS_SELECT, "s.id",
                                                                                    ids):
                found[seg_id] = SegmentRecord(seg_id, file_id, join_root(root, os.fsdecode(raw) if raw else path),
                                              start, end, modalities, root)
        return found

    def matching_segment_ids(self, where: SearchFilter) -> np.ndarray:
        """Ids of the segments `where` admits, sorted (int64): the set a filtered search looks among."""
        from db.filters import segment_query

        return self._matching(segment_query, where)

    def matching_file_ids(self, where: SearchFilter) -> np.ndarray:
        """Ids of the files holding a segment `where` admits, sorted (int64)."""
        from db.filters import file_query

        return self._matching(file_query, where)

    def _matching(self, query, where: SearchFilter) -> np.ndarray:  # type: ignore[no-untyped-def]
        with self.reads.connect() as connection:
            corpora = {corpus_id: root for corpus_id, root in connection.execute(select(CorpusRow.id, CorpusRow.root))}
            compiled = query(where, corpora).compile(dialect=connection.dialect,
                                                     compile_kwargs={"render_postcompile": True})
            params = compiled.construct_params()
            found = _driver_ids(connection, str(compiled), tuple(params[name] for name in compiled.positiontup or ())
                                if compiled.positional else params)
        return np.sort(found)

    def ids(self, sql: str) -> np.ndarray:
        """The first column of a read-only statement (literal SQL, no parameters) as int64, in its order."""
        with self.engine.connect() as connection:
            return _driver_ids(connection, sql, ())

    def file_ids_of_segments(self, segment_ids: Iterable[int]) -> np.ndarray:
        """The sorted distinct file ids of `segment_ids` (unknown ids are left out)."""
        ids = [int(i) for i in segment_ids]
        if not ids:
            return np.zeros(0, dtype=np.int64)
        with self.reads.connect() as connection:
            rows = _id_rows(connection, "SELECT DISTINCT file_id FROM segments ", "id", ids)
        return np.unique(np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)))

    def file_tags(self, file_ids: Iterable[int]) -> dict[int, dict[str, str]]:
        """The container tags of files by file id (files without tags are left out)."""
        ids = [int(i) for i in file_ids]
        tags: dict[int, dict[str, str]] = {}
        if not ids:
            return tags
        with self.reads.connect() as connection:  # per request, as segments()
            for file_id, key, value in _id_rows(connection, "SELECT file_id, key, value FROM file_tags ", "file_id", ids):
                tags.setdefault(file_id, {})[key] = value
        return tags

    def iter_segments(self, block: int = 50_000) -> Iterator[list[SegmentRecord]]:
        """Every segment with its file's absolute path, in id order, `block` rows at a time."""
        last = 0
        while True:
            with self.session() as s:
                rows = s.execute(
                    select(SegmentRow, FileRow.path, FileRow.path_bytes, CorpusRow.root)
                    .join(FileRow, SegmentRow.file_id == FileRow.id)
                    .join(CorpusRow, FileRow.corpus_id == CorpusRow.id)
                    .where(SegmentRow.id > last).order_by(SegmentRow.id).limit(block)
                ).all()
            if not rows:
                return
            yield [SegmentRecord(seg.id, seg.file_id, join_root(root, os.fsdecode(raw) if raw else path), seg.start,
                                 seg.end, seg.modalities) for seg, path, raw, root in rows]
            last = rows[-1][0].id
    def files_segments(self) -> list[FileSegments]:
        """Every indexed file with its segment ids and start times in time order, by file id."""
        with self.session() as s:
            files = {
                fid: (join_root(root, os.fsdecode(raw) if raw else path), duration)
                for fid, path, raw, duration, root in s.execute(
                    select(FileRow.id, FileRow.path, FileRow.path_bytes, FileRow.duration, CorpusRow.root)
                    .join(CorpusRow, FileRow.corpus_id == CorpusRow.id)
                )
            }
            segments: dict[int, tuple[list[int], list[float]]] = {}
            for seg_id, file_id, start in s.execute(
                select(SegmentRow.id, SegmentRow.file_id, SegmentRow.start).order_by(SegmentRow.file_id, SegmentRow.start)
            ):
                ids, starts = segments.setdefault(file_id, ([], []))
                ids.append(seg_id)
                starts.append(start)
        return [FileSegments(fid, *files[fid], *segments[fid]) for fid in sorted(segments) if fid in files]

    def counts(self) -> dict[str, int]:
        """Numbers of corpora, files, segments and failures."""
        with self.session() as s:
            # The count the last commit stored (CatalogWriter.commit): counting 10M rows took 0.3-0.6 s.
            segments = self.stored_segment_count()
            return {
                "corpora": s.scalar(select(func.count()).select_from(CorpusRow)) or 0,
                "files": s.scalar(select(func.count()).select_from(FileRow)) or 0,
                "segments": segments if segments is not None else
                s.scalar(select(func.count()).select_from(SegmentRow)) or 0,
                "failures": s.scalar(select(func.count()).select_from(FailureRow)) or 0,
            }

    def stored_segment_count(self) -> int | None:
        """The segment count the last commit stored (None: none stored yet)."""
        with self.session() as s:
            return s.scalar(select(IndexInfoRow.segment_count).where(IndexInfoRow.id == 1))

    def corpus_roots(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(CorpusRow.root).order_by(CorpusRow.id)))

    def segment_ids(self) -> list[int]:
        with self.session() as s:
            return list(s.scalars(select(SegmentRow.id).order_by(SegmentRow.id)))

    def vector_files(self) -> tuple[int, list[VectorFile], dict[str, np.ndarray]]:
        """(generation, its sealed vector files in listing order, the ids deleted from each file), read in
        one transaction so that they belong together."""
        with self.session() as s:
            info = s.get(IndexInfoRow, 1)
            files = [VectorFile(r.name, r.store, r.vectors, r.level)
                     for r in s.scalars(select(VectorFileRow).order_by(VectorFileRow.store, VectorFileRow.name))]
            deletions = _grouped(s.execute(select(VectorDeletionRow.file, VectorDeletionRow.vector_id)))
        return (info.generation if info is not None else 0), files, deletions

    def writer(self) -> CatalogWriter:
        return CatalogWriter(self.session())


class CatalogWriter:
    """One build's open transaction. Nothing is visible to readers until `commit(generation)`.

    Used as a context manager: what was not committed when the block ends is rolled back on an exception
    (a kill leaves it uncommitted anyway), and the session is closed either way."""

    def __init__(self, session: Session):
        self.session = session
        self._segments_added = 0  # segment rows staged minus removed since the last commit

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc_type is not None:
                self.rollback()
        finally:
            self.close()

    def ensure_info(self, **provenance: object) -> IndexInfoRow:
        """The provenance row, created from `provenance` when the catalog is new."""
        row = self.session.get(IndexInfoRow, 1)
        if row is None:
            row = IndexInfoRow(id=1, generation=0, **provenance)
            self.session.add(row)
            self.session.flush()
        return row

    def update_info(self, **fields: object) -> None:
        """Stage changes to the provenance row (index type and search parameters after a conversion)."""
        row = self.session.get(IndexInfoRow, 1)
        for name, value in fields.items():
            setattr(row, name, value)

    def corpus_id(self, root: str) -> int:
        row = self.session.execute(select(CorpusRow).where(CorpusRow.root == root)).scalar_one_or_none()
        if row is None:
            row = CorpusRow(root=root)
            self.session.add(row)
            self.session.flush()
        return row.id

    def add_file(
        self,
        corpus_id: int,
        path: str,
        content_hash: str,
        size: int,
        mtime: float,
        duration: float,
        source_rate: int,
        channels: int,
        spans: Sequence[tuple[float, float]],
        modalities: str = "audio",
        path_bytes: bytes | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[int, list[int]]:
        """Stage a file, its segments and its container tags; returns (file id, segment ids in `spans` order)."""
        file_row = FileRow(
            corpus_id=corpus_id,
            path=path,
            path_bytes=path_bytes,
            content_hash=content_hash,
            size=size,
            mtime=mtime,
            duration=duration,
            source_rate=source_rate,
            channels=channels,
        )
        self.session.add(file_row)
        self.session.flush()
        segment_rows = [SegmentRow(file_id=file_row.id, start=a, end=b, modalities=modalities) for a, b in spans]
        self.session.add_all(segment_rows)
        self.session.add_all(FileTagRow(file_id=file_row.id, key=key, value=value, folded=value.casefold())
                             for key, value in (tags or {}).items())
        self.session.flush()
        stage_terms(self.session, [(file_row.id, path, tags)], new=True)  # the keyword index, in the same transaction
        self.clear_failure(corpus_id, path)
        self._segments_added += len(segment_rows)
        return file_row.id, [r.id for r in segment_rows]

    def file_ids(self, corpus_id: int, paths: Sequence[str]) -> dict[str, int]:
        """Ids of the files of a corpus among `paths` (relative), by path (unknown ones left out)."""
        found: dict[str, int] = {}
        for start in range(0, len(paths), _IN_CHUNK):
            rows = self.session.execute(select(FileRow.path, FileRow.id).where(
                FileRow.corpus_id == corpus_id, FileRow.path.in_(paths[start : start + _IN_CHUNK])))
            found.update((path, file_id) for path, file_id in rows)
        return found

    def move_file(self, file_id: int, path: str, size: int, mtime: float, path_bytes: bytes | None = None) -> None:
        """Stage a file's new path (a rename or move of the same content): id and segments stay."""
        row = self.session.get(FileRow, file_id)
        corpus_id = row.corpus_id
        row.path, row.path_bytes, row.size, row.mtime = path, path_bytes, size, mtime
        self.session.flush()
        repair_terms(self.session, [file_id])  # a new name, new words
        self.clear_failure(corpus_id, path)

    def add_files(self, files: Sequence[NewFile]) -> list[tuple[int, list[int]]]:
        """Stage many files, their segments and tags in a few statements (file rows, segment rows, tag rows,
        and the clearing of their earlier failures); returns (file id, segment ids in `spans` order) per file.

        The rows are those `add_file` stages one file at a time, written with one multi-row INSERT each
        (ids come back in parameter order) instead of two flushes and a DELETE per file.
        """
        if not files:
            return []
        rows = [
            {"corpus_id": f.corpus_id, "path": f.path, "path_bytes": f.path_bytes, "content_hash": f.content_hash,
             "size": f.size, "mtime": f.mtime, "duration": f.duration, "source_rate": f.source_rate,
             "channels": f.channels}
            for f in files
        ]
        file_ids = self._inserted(FileRow, rows)
        segments = [
            {"file_id": file_id, "start": a, "end": b, "modalities": f.modalities}
            for file_id, f in zip(file_ids, files)
            for a, b in f.spans
        ]
        segment_ids = self._inserted(SegmentRow, segments) if segments else []
        by_corpus: dict[int, list[str]] = {}
        for f in files:
            by_corpus.setdefault(f.corpus_id, []).append(f.path)
        for corpus_id, paths in by_corpus.items():
            for start in range(0, len(paths), _IN_CHUNK):  # bound the IN list (SQLite's variable limit)
                self.session.execute(delete(FailureRow).where(
                    FailureRow.corpus_id == corpus_id, FailureRow.path.in_(paths[start : start + _IN_CHUNK])))
        tag_rows = [{"file_id": file_id, "key": key, "value": value, "folded": value.casefold()}
                    for file_id, f in zip(file_ids, files) for key, value in (f.tags or {}).items()]
        if tag_rows:
            self.session.execute(insert(FileTagRow), tag_rows)
        stage_terms(self.session, [(file_id, f.path, f.tags) for file_id, f in zip(file_ids, files)], new=True)
        self._segments_added += len(segment_ids)
        result, start = [], 0
        for file_id, f in zip(file_ids, files):
            result.append((file_id, segment_ids[start : start + len(f.spans)]))
            start += len(f.spans)
        return result

    def _inserted(self, table: type, rows: list[dict[str, Any]]) -> list[int]:
        """Insert `rows` into `table` (files or segments); returns their ids in `rows` order.

        SQLite cannot promise RETURNING's order for a multi-row INSERT, so SQLAlchemy sends such an insert one
        row per statement there (87 us a segment row: 15 minutes of a 10M-window import). Under the writer
        lock no one else inserts, so on SQLite the ids are given here, after the largest ever handed out
        (AUTOINCREMENT's sqlite_sequence: ids of removed rows are never reused, as FAISS deletions need), in
        one executemany; other databases return them in order from batched statements."""
        if self.session.get_bind().dialect.name != "sqlite":
            return list(self.session.scalars(insert(table).returning(table.id, sort_by_parameter_order=True), rows))
        name = table.__tablename__
        used = self.session.execute(text("SELECT seq FROM sqlite_sequence WHERE name = :name"), {"name": name}).scalar()
        largest = self.session.execute(select(func.max(table.id))).scalar()
        first = max(used or 0, largest or 0) + 1
        ids = list(range(first, first + len(rows)))
        # The table's Core insert: the ORM's bulk path spends 14 us a row collecting what it already has.
        self.session.execute(insert(table.__table__), [{"id": i, **row} for i, row in zip(ids, rows)])
        return ids

    def remove_file(self, file_id: int) -> list[int]:
        """Stage the removal of a file and its segments; returns the segment ids removed."""
        segment_ids = list(self.session.scalars(select(SegmentRow.id).where(SegmentRow.file_id == file_id)))
        self.session.execute(delete(SegmentRow).where(SegmentRow.file_id == file_id))
        self.session.execute(delete(FileTagRow).where(FileTagRow.file_id == file_id))
        self.session.execute(delete(FileRow).where(FileRow.id == file_id))
        self._segments_added -= len(segment_ids)
        return segment_ids

    def record_failure(self, corpus_id: int, path: str, content_hash: str, reason: str) -> None:
        self.clear_failure(corpus_id, path)
        self.session.add(FailureRow(corpus_id=corpus_id, path=path, content_hash=content_hash, reason=reason))

    def clear_failure(self, corpus_id: int, path: str) -> None:
        self.session.execute(
            delete(FailureRow).where(FailureRow.corpus_id == corpus_id, FailureRow.path == path)
        )

    def commit(self, generation: int, files: Sequence[VectorFile] | None = None,
               deletions: Mapping[str, Iterable[int]] | None = None) -> None:
        """Make the staged rows visible, naming `generation` as the current FAISS files: with `files`, the
        sealed vector files it consists of (those no longer listed leave with their deletions) and the ids
        newly deleted from them (`deletions`, by file name), all in this one transaction."""
        info = self.session.get(IndexInfoRow, 1)
        if info is not None:
            info.generation = generation
            info.updated_at = utcnow()
            # The keyword index's collection statistics, exact for the rows this transaction commits, so that a
            # query reads two numbers instead of summing file_terms whole (db/fulltext.catalog_statistics).
            self.session.flush()
            info.keyword_files = self.session.scalar(select(func.count()).select_from(FileRow)) or 0
            info.keyword_terms = self.session.scalar(select(func.coalesce(func.sum(FileTermRow.tf), 0))) or 0
            # In SQL, not through the row object: it adds to what the database holds, whatever this session read.
            unsynchronized = {"synchronize_session": False}
            self.session.execute(update(IndexInfoRow).where(IndexInfoRow.id == 1, IndexInfoRow.segment_count.is_not(None))
                                 .values(segment_count=IndexInfoRow.segment_count + self._segments_added),
                                 execution_options=unsynchronized)
            self.session.execute(update(IndexInfoRow).where(IndexInfoRow.id == 1, IndexInfoRow.segment_count.is_(None))
                                 .values(segment_count=select(func.count()).select_from(SegmentRow).scalar_subquery()),
                                 execution_options=unsynchronized)
        if files is not None:
            self._list_vector_files(generation, files, deletions or {})
        self.session.commit()
        self._segments_added = 0

    def recount(self) -> None:
        """Stage a recount of the segment rows at the next commit (`indexer verify --repair`)."""
        self.session.execute(update(IndexInfoRow).where(IndexInfoRow.id == 1).values(segment_count=None),
                             execution_options={"synchronize_session": False})

    def _list_vector_files(self, generation: int, files: Sequence[VectorFile],
                           deletions: Mapping[str, Iterable[int]]) -> None:
        listed = set(self.session.scalars(select(VectorFileRow.name)))
        wanted = {f.name for f in files}
        gone = sorted(listed - wanted)
        for start in range(0, len(gone), _IN_CHUNK):
            chunk = gone[start : start + _IN_CHUNK]
            # Explicitly: SQLite enforces ON DELETE CASCADE only with its foreign keys pragma on.
            self.session.execute(delete(VectorDeletionRow).where(VectorDeletionRow.file.in_(chunk)))
            self.session.execute(delete(VectorFileRow).where(VectorFileRow.name.in_(chunk)))
        new = [{"name": f.name, "store": f.store, "vectors": f.vectors, "level": f.level, "generation": generation}
               for f in files if f.name not in listed]
        if new:
            self.session.execute(insert(VectorFileRow), new)
        rows = [{"file": name, "vector_id": int(i)} for name, ids in deletions.items() if name in wanted for i in ids]
        for start in range(0, len(rows), 50_000):
            self.session.execute(insert(VectorDeletionRow), rows[start : start + 50_000])

    def rollback(self) -> None:
        self.session.rollback()
        self._segments_added = 0

    def close(self) -> None:
        self.session.close()



def _id_rows(connection, select_from: str, column: str, ids: list[int]) -> list[tuple]:  # type: ignore[no-untyped-def]
    """Rows of `select_from` + a condition that `column` is one of `ids`, through the driver's cursor: one
    statement text whatever the number of ids on Postgres (= ANY of an array, which psycopg prepares after a
    few uses), IN lists of at most _IN_CHUNK ids elsewhere."""
    cursor = connection.connection.cursor()
    try:
        if connection.dialect.name == "postgresql":
            cursor.execute(f"{select_from}WHERE {column} = ANY(%s)", (ids,))
            return list(cursor.fetchall())
        rows: list[tuple] = []
        mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            cursor.execute(f"{select_from}WHERE {column} IN ({', '.join([mark] * len(chunk))})", chunk)
            rows.extend(cursor.fetchall())
        return rows
    finally:
        cursor.close()


def _driver_ids(connection, sql: str, params: object) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The first column of `sql` as int64, read through the driver's cursor: hundreds of thousands of ids
    cost 6x less than through SQLAlchemy's row objects (bench/filtered_search.py --catalog), and are read in
    blocks, so that 10M ids (`indexer verify`) never exist as 10M Python tuples at once."""
    cursor = connection.connection.cursor()
    try:
        if params:
            cursor.execute(sql, params)
        else:
            cursor.execute(sql)
        blocks = [np.zeros(0, dtype=np.int64)]
        while rows := cursor.fetchmany(1 << 16):
            blocks.append(np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)))
    finally:
        cursor.close()
    return np.concatenate(blocks)


def _grouped(pairs: Iterable[tuple[str, int]]) -> dict[str, np.ndarray]:
    """(file name, vector id) pairs as sorted id arrays by file name."""
    grouped: dict[str, list[int]] = {}
    for name, vector_id in pairs:
        grouped.setdefault(name, []).append(vector_id)
    return {name: np.unique(np.asarray(ids, dtype=np.int64)) for name, ids in grouped.items()}


# Values per IN (...) list: under SQLite's oldest default limit of 999 bound variables.
_IN_CHUNK = 500
