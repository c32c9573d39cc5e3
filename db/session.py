"""Database engines for the catalog: SQLite files (WAL, foreign keys on) and any SQLAlchemy URL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

# SQLAlchemy is imported where it is used: sqlite_url() is on the search path, which reads SQLite
# catalogs without it (db/sqlite_reader.py).
if TYPE_CHECKING:
    from sqlalchemy import Engine


def sqlite_url(path: str | Path) -> str:
    """SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{Path(path).resolve()}"


def redact_url(url: str) -> str:
    """`url` with any password replaced, safe to print or store."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: show nothing that could be a secret
        return "<unparseable database URL>"


def url_without_password(url: str) -> str:
    """`url` with its password removed (not masked), so that it can be stored and used again."""
    from sqlalchemy.engine import URL, make_url

    parsed = make_url(url)
    # URL.set(password=None) means "leave unchanged", so rebuild the URL without it.
    bare = URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database, parsed.query)
    return bare.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL so that searches read while a build writes."""
    from sqlalchemy import create_engine, event

    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine
