"""Indexes for archive-scale catalogs (bench/catalog_scale.py, docs/scale.md "Catalog at 10M segments").

- ix_segments_visual: the windows that hold a picture, a partial index (only those rows), so that a
  `--has visual` / `--has av` filter reads them instead of every window (10M rows at 10M windows); the
  filter's SQL repeats the index's condition (db/filters.py segment_query).
- ix_files_duration, ix_files_mtime: duration and modified-time filters read a range of files instead of
  all of them.
- ix_files_path_pattern (Postgres only): (corpus_id, path text_pattern_ops), so that a folder or glob
  prefix (LIKE 'folder/%') reads a range whatever the database's collation; SQLite reads a range of the
  (corpus_id, path) unique index instead.
- index_info.keyword_files / keyword_terms: the keyword index's statistics (files, sum of term counts),
  written by every commit, so that a keyword or hybrid query does not sum file_terms whole.
- index_info.segment_count: the segment rows, kept by every commit, so that `indexer info` does not count
  10M rows.

On an existing catalog the upgrade builds these once (the partial index scans the segments table one time:
seconds at 10M windows, see docs/scale.md).

Revision ID: 0005_catalog_scale_indexes
Revises: 0004_vector_files
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_catalog_scale_indexes"
down_revision = "0004_vector_files"
branch_labels = None
depends_on = None

_VISUAL = "modalities <> 'audio'"


def upgrade() -> None:
    op.create_index("ix_segments_visual", "segments", ["id"], sqlite_where=sa.text(_VISUAL),
                    postgresql_where=sa.text(_VISUAL))
    op.create_index("ix_files_duration", "files", ["duration"])
    op.create_index("ix_files_mtime", "files", ["mtime"])
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_files_path_pattern", "files", ["corpus_id", "path"],
                        postgresql_ops={"path": "text_pattern_ops"})
    op.add_column("index_info", sa.Column("keyword_files", sa.BigInteger(), nullable=True))
    op.add_column("index_info", sa.Column("keyword_terms", sa.BigInteger(), nullable=True))
    op.add_column("index_info", sa.Column("segment_count", sa.BigInteger(), nullable=True))
    op.execute("UPDATE index_info SET keyword_files = (SELECT COUNT(*) FROM files), "
               "keyword_terms = (SELECT COALESCE(SUM(tf), 0) FROM file_terms), "
               "segment_count = (SELECT COUNT(*) FROM segments)")


def downgrade() -> None:
    with op.batch_alter_table("index_info") as batch:
        batch.drop_column("segment_count")
        batch.drop_column("keyword_terms")
        batch.drop_column("keyword_files")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_files_path_pattern", table_name="files")
    op.drop_index("ix_files_mtime", table_name="files")
    op.drop_index("ix_files_duration", table_name="files")
    op.drop_index("ix_segments_visual", table_name="segments")
