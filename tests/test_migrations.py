"""The catalog schema comes from Alembic migrations, the same on SQLite and Postgres, and matches the models."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from db import Catalog, make_engine, sqlite_url
from db.migrate import current_revision, head_revision, head_revision_of_files, upgrade
from db.schema import Base


def _schema_drift(catalog: Catalog) -> list:
    with catalog.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        # Alembic does not read `ddl_if`: an index the models create on another database only is no drift.
        elsewhere = {index.name for table in Base.metadata.tables.values() for index in table.indexes
                     if index._ddl_if is not None and index._ddl_if.dialect not in (None, connection.dialect.name)}
        return [d for d in diffs if not (d[0] == "add_index" and d[1].name in elsewhere)]


def test_sqlite_catalog_is_migrated_to_head_and_matches_the_models(tmp_path: Path) -> None:
    catalog = Catalog(sqlite_url(tmp_path / "c.sqlite"))
    assert current_revision(catalog.engine) == head_revision() == head_revision_of_files() == "0005_catalog_scale_indexes"
    assert _schema_drift(catalog) == []
    catalog.close()
    reopened = Catalog(sqlite_url(tmp_path / "c.sqlite"))  # opening again applies nothing twice
    assert current_revision(reopened.engine) == "0005_catalog_scale_indexes"
    reopened.close()


def test_postgres_catalog_is_migrated_to_head_and_matches_the_models(postgres_url: str) -> None:
    catalog = Catalog(postgres_url)
    assert current_revision(catalog.engine) == head_revision()
    assert _schema_drift(catalog) == []
    catalog.close()


def _upgrade_from_0001_keeps_rows_and_adds_tags(url: str) -> None:
    """A catalog written by resound before tags (revision 0001) opens: its rows stay, and files can have tags."""
    engine = make_engine(url)
    upgrade(engine, "0001")
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO corpora (id, root, added_at) VALUES (1, '/c', CURRENT_TIMESTAMP)"))
        c.execute(sa.text("INSERT INTO files (id, corpus_id, path, content_hash, size, mtime, duration, source_rate, "
                          "channels, indexed_at) VALUES (5, 1, 'a.wav', 'h', 10, 1.5, 2.0, 16000, 1, CURRENT_TIMESTAMP)"))
        c.execute(sa.text("INSERT INTO segments (id, file_id, start, \"end\", modalities) VALUES (9, 5, 0, 2, 'audio')"))
    engine.dispose()
    catalog = Catalog(url)  # migrates to head on open
    try:
        assert current_revision(catalog.engine) == "0005_catalog_scale_indexes" and _schema_drift(catalog) == []
        assert catalog.segments([9])[9].path == "/c/a.wav"
        writer = catalog.writer()
        file_id, _ = writer.add_file(1, "b.wav", "h2", 10, 1.0, 2.0, 16000, 1, [(0.0, 2.0)], tags={"genre": "Jazz"})
        writer.commit(1)
        writer.close()
        assert catalog.file_tags([5, file_id]) == {file_id: {"genre": "Jazz"}}
        with catalog.engine.connect() as c:  # the keyword index: the new file's words ("a" is a stop word)
            terms = sorted(tuple(row) for row in c.execute(sa.text("SELECT file_id, term, tf FROM file_terms")))
        assert terms == [(file_id, "b", 1), (file_id, "jazz", 1)]
    finally:
        catalog.close()


def test_sqlite_catalog_of_revision_0001_is_upgraded_with_its_rows(tmp_path: Path) -> None:
    _upgrade_from_0001_keeps_rows_and_adds_tags(sqlite_url(tmp_path / "old.sqlite"))


def test_postgres_catalog_of_revision_0001_is_upgraded_with_its_rows(postgres_url: str) -> None:
    _upgrade_from_0001_keeps_rows_and_adds_tags(postgres_url)
