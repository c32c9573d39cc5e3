"""The keyword index: each file's terms (name, folders, tags) with their counts (db/fulltext.py).

Revision ID: 0003_file_terms
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_file_terms"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    from db.fulltext import term_rows

    op.create_table(
        "file_terms",
        sa.Column("file_id", _ID, sa.ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
        sa.Column("term", sa.String(64), nullable=False),
        sa.Column("tf", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("file_id", "term"),
    )
    op.create_index("ix_file_terms_term", "file_terms", ["term"])
    # Files indexed before this revision get their terms now, from the paths and tags already stored.
    connection = op.get_bind()
    terms = sa.table("file_terms", sa.column("file_id"), sa.column("term"), sa.column("tf"))
    tags: dict[int, dict[str, str]] = {}
    for file_id, key, value in connection.execute(sa.text("SELECT file_id, key, value FROM file_tags")):
        tags.setdefault(file_id, {})[key] = value
    rows = []
    for file_id, path in connection.execute(sa.text("SELECT id, path FROM files")):
        rows.extend(term_rows(file_id, path, tags.get(file_id)))
        if len(rows) >= 10_000:
            connection.execute(terms.insert(), rows)
            rows = []
    if rows:
        connection.execute(terms.insert(), rows)


def downgrade() -> None:
    op.drop_index("ix_file_terms_term", table_name="file_terms")
    op.drop_table("file_terms")
