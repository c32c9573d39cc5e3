"""The sealed vector files of the current index generation, and the vectors deleted from them.

Revision ID: 0004_vector_files
Revises: 0003_file_terms
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_vector_files"
down_revision = "0003_file_terms"
branch_labels = None
depends_on = None


def upgrade() -> None:
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
    # An index built before this revision has one file per store, named by its generation: each becomes a
    # sealed file (vectors -1: counted when opened; level 99: merged only by `indexer compact`).
    row = op.get_bind().execute(sa.text("SELECT generation FROM index_info WHERE id = 1")).fetchone()
    if row is not None and row[0]:
        generation = int(row[0])
        files = sa.table("vector_files", sa.column("name", sa.String), sa.column("store", sa.String),
                         sa.column("vectors", sa.BigInteger), sa.column("level", sa.Integer),
                         sa.column("generation", sa.Integer))
        op.bulk_insert(files, [{"name": f"{store}.{generation}.faiss", "store": store, "vectors": -1, "level": 99,
                                "generation": generation} for store in ("segments", "files")])


def downgrade() -> None:
    op.drop_table("vector_deletions")
    op.drop_table("vector_files")
