"""Schema migrations (Alembic): every catalog, SQLite or Postgres, is brought to the newest revision on
open, so an index built by an older resound keeps working after an upgrade."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

MIGRATIONS = Path(__file__).with_name("migrations")


def _config(connection):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the migrations the database has not had yet."""
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@lru_cache(maxsize=1)
def head_revision_of_files() -> str:
    """The newest revision, read from the migration scripts' `revision`/`down_revision` lines.

    Equal to head_revision() (tests/test_migrations.py checks it) without importing Alembic, which is
    what lets a search open a current catalog in milliseconds.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        text = script.read_text(encoding="utf-8")
        revision = re.search(r'^revision\s*(?::[^=]*)?=\s*["\']([^"\']+)["\']', text, re.MULTILINE)
        if revision:
            revisions.add(revision.group(1))
        down = re.search(r"^down_revision\s*(?::[^=]*)?=\s*(.+)$", text, re.MULTILINE)
        if down:
            parents.update(re.findall(r'["\']([^"\']+)["\']', down.group(1)))
    heads = revisions - parents
    if len(heads) != 1:
        raise RuntimeError(f"{MIGRATIONS}: expected one head revision, found {sorted(heads)}")
    return heads.pop()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()
