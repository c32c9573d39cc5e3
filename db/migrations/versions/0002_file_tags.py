"""Container tags of each file (title, artist, album, genre), for search filters and exports.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Files indexed before this revision simply have no tags until they change and are read again.
    op.create_table(
        "file_tags",
        sa.Column("file_id", _ID, sa.ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("folded", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("file_id", "key"),
    )
    op.create_index("ix_file_tags_key_folded", "file_tags", ["key", "folded"])


def downgrade() -> None:
    op.drop_index("ix_file_tags_key_folded", table_name="file_tags")
    op.drop_table("file_tags")
