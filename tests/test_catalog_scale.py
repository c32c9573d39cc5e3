"""The catalog at archive scale: migration 0005 upgrades an existing catalog, and the statements a search,
a filter and `indexer verify` run are served by indexes, not by reading the big tables whole (the timings are
bench/catalog_scale.py's; here, the plans and the answers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from db import Catalog, SearchFilter, make_engine, sqlite_url
from db.catalog import NewFile
from db.filters import segment_query
from db.migrate import current_revision, head_revision, upgrade
from db.sqlite_reader import SEGMENTS_SQL, SqliteReader
from indexer.verify import catalog_checks

PATHS = ["Drums/kick.wav", "drums/snare.wav", "drums/deep/tom.flac", "drumsticks.wav", "fx/a%_b/zap.mp4",
         "Ünï/çødé.wav"]


def _fill(catalog: Catalog) -> dict[str, list[int]]:
    """Two windows per file (the .mp4's hold a picture); returns each path's segment ids."""
    writer = catalog.writer()
    corpus = writer.corpus_id("/corpus")
    added = writer.add_files([
        NewFile(corpus, path, f"h{i}", 10, 1000.0 * i, 5.0 + i, 16000, 1, [(0.0, 2.0), (2.0, 4.0)],
                modalities="audio+visual" if path.endswith(".mp4") else "audio",
                tags={"genre": "Jazz"} if i % 2 else None)
        for i, path in enumerate(PATHS)])
    writer.commit(1)
    writer.close()
    return {path: segments for path, (_, segments) in zip(PATHS, added)}


def _admitted(catalog: Catalog, **conditions: object) -> set[str]:
    ids = catalog.matching_segment_ids(SearchFilter(**conditions))  # type: ignore[arg-type]
    return {Path(r.path).relative_to("/corpus").as_posix() for r in catalog.segments(ids.tolist()).values()}


def _old_catalog(url: str) -> None:
    """A catalog as resound wrote it before migration 0005, with a file of two windows (one with a picture)."""
    engine = make_engine(url)
    upgrade(engine, "0004_vector_files")
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO corpora (id, root, added_at) VALUES (1, '/c', CURRENT_TIMESTAMP)"))
        c.execute(sa.text("INSERT INTO files (id, corpus_id, path, content_hash, size, mtime, duration, source_rate, "
                          "channels, indexed_at) VALUES (5, 1, 'v/a.mp4', 'h', 10, 1.5, 2.0, 16000, 1, CURRENT_TIMESTAMP)"))
        c.execute(sa.text("INSERT INTO segments (id, file_id, start, \"end\", modalities) VALUES "
                          "(9, 5, 0, 1, 'audio'), (10, 5, 1, 2, 'audio+visual')"))
    engine.dispose()


def _upgraded(url: str) -> None:
    _old_catalog(url)
    catalog = Catalog(url)  # migrates to head on open
    try:
        assert current_revision(catalog.engine) == head_revision() == "0005_catalog_scale_indexes"
        indexes = {table: {i["name"] for i in sa.inspect(catalog.engine).get_indexes(table)}
                   for table in ("segments", "files")}
        assert {"ix_segments_visual", "ix_segments_file_id"} <= indexes["segments"]
        assert {"ix_files_duration", "ix_files_mtime"} <= indexes["files"]
        assert catalog.matching_segment_ids(SearchFilter(modality="visual")).tolist() == [10]
        assert catalog.matching_segment_ids(SearchFilter(modality="audio")).tolist() == [9, 10]
        assert catalog.matching_segment_ids(SearchFilter(under="/c/v")).tolist() == [9, 10]
        assert catalog.segments([9])[9].path == "/c/v/a.mp4"
    finally:
        catalog.close()


def test_migration_0005_upgrades_an_existing_sqlite_catalog(tmp_path: Path) -> None:
    _upgraded(sqlite_url(tmp_path / "old.sqlite"))


def test_migration_0005_upgrades_an_existing_postgres_catalog(postgres_url: str) -> None:
    _upgraded(postgres_url)


@pytest.fixture(params=["sqlite", "postgres"])
def filled(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else sqlite_url(tmp_path / "c.sqlite")
    catalog = Catalog(url)
    segments = _fill(catalog)
    yield catalog, segments
    catalog.close()


def test_folder_and_glob_filters_match_paths_case_sensitively_on_both_backends(filled) -> None:  # type: ignore[no-untyped-def]
    catalog, _ = filled
    assert _admitted(catalog, under_relative="drums") == {"drums/snare.wav", "drums/deep/tom.flac"}
    assert _admitted(catalog, under_relative="Drums") == {"Drums/kick.wav"}
    assert _admitted(catalog, under="/corpus/drums/deep") == {"drums/deep/tom.flac"}
    assert _admitted(catalog, under="/corpus/drums/deep/tom.flac") == {"drums/deep/tom.flac"}
    assert _admitted(catalog, under_relative="fx/a%_b") == {"fx/a%_b/zap.mp4"}  # LIKE's wildcards are literal
    assert _admitted(catalog, under_relative="fx/a") == set()
    assert _admitted(catalog, under_relative="Ünï") == {"Ünï/çødé.wav"}
    assert _admitted(catalog, glob="drums*") == {"drums/snare.wav", "drums/deep/tom.flac", "drumsticks.wav"}
    assert _admitted(catalog, glob="drums/*.wav") == {"drums/snare.wav"}
    assert _admitted(catalog, glob="fx/a%_b/*") == {"fx/a%_b/zap.mp4"}
    assert _admitted(catalog, glob="[Dd]rums/*") == {"Drums/kick.wav", "drums/snare.wav", "drums/deep/tom.flac"}
    assert _admitted(catalog, modality="visual") == _admitted(catalog, modality="av") == {"fx/a%_b/zap.mp4"}
    assert _admitted(catalog, tags=(("genre", "jazz"),), under_relative="drums") == {"drums/snare.wav"}


def test_verify_reads_the_catalog_side_as_sorted_ids(filled) -> None:  # type: ignore[no-untyped-def]
    catalog, segments = filled
    checks = catalog_checks(catalog)
    assert checks.segment_ids.tolist() == sorted(i for ids in segments.values() for i in ids)
    assert checks.file_ids.dtype == np.int64 and len(checks.file_ids) == len(PATHS)
    assert checks.files_without_segments.tolist() == [] and checks.keyword_files == []
    with catalog.engine.begin() as c:  # a file whose windows are gone, and words of a file that is gone
        c.execute(sa.text("DELETE FROM segments WHERE file_id = :f"), {"f": int(checks.file_ids[0])})
        c.execute(sa.text("UPDATE file_terms SET tf = tf + 1 WHERE file_id = :f"), {"f": int(checks.file_ids[1])})
    checks = catalog_checks(catalog)
    assert checks.files_without_segments.tolist() == [int(checks.file_ids[0])]
    assert checks.keyword_files == [int(checks.file_ids[1])]


def _plan(catalog: Catalog, sql: str) -> list[str]:
    with catalog.engine.connect() as connection:
        return [row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]


def _filter_sql(catalog: Catalog, where: SearchFilter) -> str:
    return str(segment_query(where, {1: "/corpus"}).compile(dialect=catalog.engine.dialect,
                                                            compile_kwargs={"literal_binds": True}))


def _scans(plan: list[str]) -> list[str]:
    """Plan lines that read a big table whole (SQLite names a full scan 'SCAN table', an index read 'SEARCH';
    a scan of the partial index of picture windows reads only those)."""
    return [line for line in plan if line.startswith("SCAN") and line.split()[1] in
            ("segments", "s", "files", "f", "file_tags", "file_terms") and not line.endswith("INDEX ix_segments_visual")]


@pytest.mark.parametrize("where", [
    SearchFilter(under="/corpus/drums"), SearchFilter(under_relative="drums"), SearchFilter(glob="drums/*.wav"),
    SearchFilter(tags=(("genre", "jazz"),)), SearchFilter(modality="visual"), SearchFilter(min_duration=7.0),
    SearchFilter(modified_before=2000.0), SearchFilter(under_relative="drums", tags=(("genre", "jazz"),)),
], ids=["under", "under-relative", "glob-prefix", "tag", "has-visual", "duration", "mtime", "under-and-tag"])
def test_hit_lookup_and_filters_are_index_searches_not_scans(tmp_path: Path, where: SearchFilter) -> None:
    catalog = Catalog(sqlite_url(tmp_path / "c.sqlite"))
    try:
        segments = _fill(catalog)
        hits = SEGMENTS_SQL.format(marks=",".join(str(i) for ids in segments.values() for i in ids[:1]))
        assert _scans(_plan(catalog, hits)) == [], _plan(catalog, hits)
        assert SqliteReader(tmp_path / "c.sqlite").segments([segments["drums/snare.wav"][1]])[
            segments["drums/snare.wav"][1]].path == "/corpus/drums/snare.wav"
        sql = _filter_sql(catalog, where)
        assert _scans(_plan(catalog, sql)) == [], (sql, _plan(catalog, sql))
        if where.under or where.under_relative or where.glob:  # a range of paths, not every file of a corpus
            assert any("corpus_id=? AND path>" in line for line in _plan(catalog, sql)), _plan(catalog, sql)
        files = "SELECT f.id FROM files f WHERE NOT EXISTS (SELECT 1 FROM segments s WHERE s.file_id = f.id)"
        assert [line for line in _plan(catalog, files) if line.startswith("SCAN") and "s" in line.split()[1:2]] == []
    finally:
        catalog.close()


def test_each_commit_stores_the_statistics_a_query_would_count(filled) -> None:  # type: ignore[no-untyped-def]
    from db.fulltext import catalog_statistics, collection_statistics, query_terms, rank_keywords

    catalog, _ = filled
    writer = catalog.writer()
    writer.ensure_info(model_id="m", family="f", checkpoint="c", checkpoint_sha256="0" * 64, dim=4, metric="ip",
                       sample_rate=16000, window_seconds=1.0, hop_seconds=1.0, preprocessing={}, faiss_factory="Flat",
                       search_params={}, versions={})
    writer.commit(2)
    writer.close()

    def rows(sql: str, params):  # type: ignore[no-untyped-def]
        with catalog.engine.connect() as c:
            marks = "?" if c.dialect.paramstyle == "qmark" else "%s"
            return [tuple(r) for r in c.exec_driver_sql(sql.replace("?", marks), tuple(params))]

    assert catalog_statistics(rows) == collection_statistics(rows) == (len(PATHS), collection_statistics(rows)[1])
    before = [(h.file_id, round(h.score, 9)) for h in rank_keywords(rows, query_terms("drums snare"))]
    writer = catalog.writer()
    writer.remove_file(catalog.file_ids_of_segments(catalog.ids("SELECT id FROM segments")).tolist()[0])
    writer.commit(3)
    writer.close()
    assert catalog_statistics(rows) == collection_statistics(rows)
    assert catalog_statistics(rows)[0] == len(PATHS) - 1
    # The segment count `indexer info` shows is kept the same way, from the rows each writer adds and removes.
    assert catalog.counts()["segments"] == catalog.stored_segment_count() == rows("SELECT COUNT(*) FROM segments", [])[0][0]
    assert catalog.stored_segment_count() == 2 * (len(PATHS) - 1)
    assert before and rank_keywords(rows, query_terms("drums snare"))  # still ranks, with the new statistics


def test_postgres_reads_a_folder_as_a_range_of_the_pattern_index(postgres_url: str) -> None:
    """Whatever the database's collation, a folder's LIKE 'drums/%' can read a range of ix_files_path_pattern
    (text_pattern_ops). A few rows never make the planner prefer an index, so the check rules out sequential
    scans and, in a transaction it rolls back, the other indexes on corpus_id, which a 10M catalog's
    statistics rule out (bench/catalog_scale.py --plans shows the plans at that size)."""
    from db.filters import path_prefix
    from db.schema import FileRow

    catalog = Catalog(postgres_url)
    try:
        _fill(catalog)
        statement = sa.select(FileRow.id).where(FileRow.corpus_id == 1, path_prefix("drums/"))
        sql = str(statement.compile(dialect=catalog.engine.dialect, compile_kwargs={"literal_binds": True}))
        with catalog.engine.connect() as connection, connection.begin() as transaction:
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            connection.exec_driver_sql("DROP INDEX ix_files_corpus_id")
            connection.exec_driver_sql("ALTER TABLE files DROP CONSTRAINT files_corpus_id_path_key")
            plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + sql))
            transaction.rollback()
        assert "using ix_files_path_pattern" in plan and "path ~>=~ 'drums/'" in plan, plan
        assert sorted(p for p, _ in _admitted_paths(catalog, sql)) == ["drums/deep/tom.flac", "drums/snare.wav"]
    finally:
        catalog.close()


def _admitted_paths(catalog: Catalog, files_sql: str) -> list[tuple[str, int]]:
    with catalog.engine.connect() as connection:
        return [(path, file_id) for path, file_id in connection.exec_driver_sql(
            f"SELECT path, id FROM files WHERE id IN ({files_sql})")]


def test_a_filters_files_are_those_of_its_segments(filled) -> None:  # type: ignore[no-untyped-def]
    """Keyword and file-level searches within a filter read the filter's files from the files' own conditions;
    they are exactly the files of the segments the filter admits."""
    catalog, _ = filled
    for conditions in ({"under_relative": "drums"}, {"glob": "*.wav"}, {"modality": "visual"},
                       {"tags": (("genre", "jazz"),)}, {"min_duration": 7.0, "modality": "audio"}, {"extensions": ("ogg",)}):
        where = SearchFilter(**conditions)  # type: ignore[arg-type]
        expected = catalog.file_ids_of_segments(catalog.matching_segment_ids(where)).tolist()
        assert catalog.matching_file_ids(where).tolist() == expected, conditions
    assert len(catalog.matching_file_ids(SearchFilter(glob="*.wav"))) == 4


def test_a_writer_block_that_raises_leaves_nothing_of_its_rows(filled) -> None:  # type: ignore[no-untyped-def]
    catalog, _ = filled
    before = catalog.counts()
    with pytest.raises(KeyError, match="the build failed"):
        with catalog.writer() as writer:
            corpus = writer.corpus_id("/corpus")
            writer.add_files([NewFile(corpus, "late.wav", "hx", 10, 1.0, 2.0, 16000, 1, [(0.0, 2.0)])])
            raise KeyError("the build failed")
    assert catalog.counts() == before
    with catalog.writer() as writer:  # the block commits what it commits; the session is closed after it
        corpus = writer.corpus_id("/corpus")
        writer.add_files([NewFile(corpus, "late.wav", "hx", 10, 1.0, 2.0, 16000, 1, [(0.0, 2.0)])])
        writer.commit(2)
    assert catalog.counts()["segments"] == before["segments"] + 1
