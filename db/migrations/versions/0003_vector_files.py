"""The sealed vector files of the current index generation, and the vectors deleted from them.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # An index built before this revision lists no files: its generation's `segments.N.faiss` and
    # `files.N.faiss` are read as one sealed file each (indexer/index.py), and listed at its next commit.
    op.create_table(
        "vector_files",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("store", sa.String(16), nullable=False),
        sa.Column("vectors", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
    )
    op.create_table(
        "vector_deletions",
        sa.Column("file", sa.String(255), sa.ForeignKey("vector_files.name", ondelete="CASCADE"), nullable=False),
        sa.Column("vector_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("file", "vector_id"),
    )


def downgrade() -> None:
    op.drop_table("vector_deletions")
    op.drop_table("vector_files")
