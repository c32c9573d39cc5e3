"""The catalog schema comes from Alembic migrations, the same on SQLite and Postgres, and matches the models."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from db import Catalog, sqlite_url
from db.migrate import current_revision, head_revision, head_revision_of_files
from db.schema import Base


def _schema_drift(catalog: Catalog) -> list:
    with catalog.engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def test_sqlite_catalog_is_migrated_to_head_and_matches_the_models(tmp_path: Path) -> None:
    catalog = Catalog(sqlite_url(tmp_path / "c.sqlite"))
    assert current_revision(catalog.engine) == head_revision() == head_revision_of_files() == "0001"
    assert _schema_drift(catalog) == []
    catalog.close()
    reopened = Catalog(sqlite_url(tmp_path / "c.sqlite"))  # opening again applies nothing twice
    assert current_revision(reopened.engine) == "0001"
    reopened.close()


def test_postgres_catalog_is_migrated_to_head_and_matches_the_models(postgres_url: str) -> None:
    catalog = Catalog(postgres_url)
    assert current_revision(catalog.engine) == head_revision()
    assert _schema_drift(catalog) == []
    catalog.close()
