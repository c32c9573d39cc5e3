"""`indexer export`: an index's segment vectors with their file, window and tag columns, for other tools.

One row per segment, in segment id order:

    segment_id  file_id  path  start  end  modalities  title  artist  album  genre  vector  path_bytes

`path` is the file's absolute path as UTF-8 text (a name that is not UTF-8 shows its odd bytes as
backslash escapes, caf\\xe9.wav) and `path_bytes` its exact bytes, which `indexer import` reads back;
`start`/`end` the window in seconds, tags null (parquet) or "" (npz) where the file has none, and
`vector` the unit vector as the index stores it (float32; approximate for quantised index types).
Parquet keeps the vector as a fixed-size list (pandas, pyarrow, polars and Hugging Face `datasets` read
it) and the index's provenance as JSON in the schema metadata under b"resound"; npz holds the same
columns as arrays (`vectors` is (n, dim)) and the provenance as a JSON string. Both are written to a
temporary file and renamed, so a reader never sees half an export.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from db.filters import TAG_KEYS
from indexer.corpus import catalog_text
from indexer.errors import IndexCorruptError, IndexNotFoundError, MissingDependencyError, ResoundError
from indexer.index import Index

EXPORT_FORMATS = ("parquet", "npz")
BLOCK_ROWS = 50_000  # segments read, reconstructed and written at a time (parquet: one row group each)


class ExportError(ResoundError):
    """An export that cannot be written as asked (unknown format, unwritable destination)."""


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    path: Path
    format: str
    rows: int
    dim: int


@dataclass
class _Block:
    segment_id: np.ndarray
    file_id: np.ndarray
    path: list[str]
    start: np.ndarray
    end: np.ndarray
    modalities: list[str]
    tags: dict[str, list[str | None]]
    vectors: np.ndarray


def export_format(out: str | Path, fmt: str | None) -> str:
    """The format to write: `fmt`, or the one `out`'s suffix names. Raises ExportError."""
    if fmt is None:
        fmt = Path(out).suffix.lower().lstrip(".")
        if fmt not in EXPORT_FORMATS:
            raise ExportError(f"{out}: cannot tell the format from the suffix; give one of {', '.join(EXPORT_FORMATS)}")
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    named = Path(out).suffix.lower().lstrip(".")
    if named in EXPORT_FORMATS and named != fmt:
        raise ExportError(f"{out}: the name says {named}, the format asked for is {fmt}: "
                          f"name the file .{fmt} or drop --format")
    return fmt


def export_index(index_path: str | Path, out: str | Path, fmt: str | None = None, db_url: str | None = None) -> ExportReport:
    """Write the segment vectors of the index at `index_path` with their columns to `out` (parquet or npz).

    Raises IndexNotFoundError, IndexCorruptError (a segment without a vector: run `indexer verify`),
    MissingDependencyError (parquet without pyarrow) and ExportError.
    """
    fmt = export_format(out, fmt)
    out = Path(out)
    if fmt == "parquet":
        _pyarrow()  # fail before reading anything
    if not out.parent.is_dir():
        raise ExportError(f"{out}: folder {out.parent} does not exist")
    index = Index(index_path, db_url=db_url)
    try:
        provenance = index.provenance()
        if provenance is None:
            raise IndexNotFoundError(f"{index.path}: the index holds no vectors yet")
        store = index.load_stores(mmap=True)["segments"]
        meta = {"index": str(index.path), "generation": index.generation(), **asdict(provenance)}
        blocks = _blocks(index, store)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            rows = (_write_parquet if fmt == "parquet" else _write_npz)(tmp, blocks, provenance.dim, meta)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        index.close()
    return ExportReport(out, fmt, rows, provenance.dim)


def _blocks(index: Index, store: Any) -> Iterator[_Block]:
    for segments in index.catalog.iter_segments(BLOCK_ROWS):
        ids = np.array([s.id for s in segments], dtype=np.int64)
        try:
            vectors = store.reconstruct(ids)
        except RuntimeError as e:
            raise IndexCorruptError(f"{index.path}: a segment of the catalog has no vector in the index "
                                    f"(run `indexer verify --repair`)") from e
        file_tags = index.catalog.file_tags({s.file_id for s in segments})
        yield _Block(
            segment_id=ids,
            file_id=np.array([s.file_id for s in segments], dtype=np.int64),
            path=[s.path for s in segments],
            start=np.array([s.start for s in segments], dtype=np.float64),
            end=np.array([s.end for s in segments], dtype=np.float64),
            modalities=[s.modalities for s in segments],
            tags={key: [file_tags.get(s.file_id, {}).get(key) for s in segments] for key in TAG_KEYS},
            vectors=np.ascontiguousarray(vectors, dtype=np.float32),
        )


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as e:
        raise MissingDependencyError("exporting parquet needs pyarrow: pip install 'resound[export]' "
                                     "(or write --format npz)") from e
    return pyarrow


def _write_parquet(path: Path, blocks: Iterator[_Block], dim: int, meta: dict[str, Any]) -> int:
    pa = _pyarrow()
    import pyarrow.parquet as pq

    schema = pa.schema(
        [("segment_id", pa.int64()), ("file_id", pa.int64()), ("path", pa.string()), ("start", pa.float64()),
         ("end", pa.float64()), ("modalities", pa.string())]
        + [(key, pa.string()) for key in TAG_KEYS]
        + [("vector", pa.list_(pa.float32(), dim)), ("path_bytes", pa.binary())],
        metadata={b"resound": json.dumps(meta, default=str).encode()},
    )
    rows = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for block in blocks:
            vector = pa.FixedSizeListArray.from_arrays(pa.array(block.vectors.reshape(-1), pa.float32()), dim)
            # Parquet strings are UTF-8; a file name that is not (kept with surrogate escapes) is written
            # with its odd bytes as \xNN in `path`, and exactly, as bytes, in `path_bytes`.
            paths = [catalog_text(p) for p in block.path]
            columns = [block.segment_id, block.file_id, paths, block.start, block.end, block.modalities,
                       *(block.tags[key] for key in TAG_KEYS)]
            arrays = [pa.array(c, type=schema.field(i).type) for i, c in enumerate(columns)] + [vector]
            arrays.append(pa.array([os.fsencode(p) for p in block.path], pa.binary()))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            rows += len(block.segment_id)
    return rows


def _write_npz(path: Path, blocks: Iterator[_Block], dim: int, meta: dict[str, Any]) -> int:
    parts = list(blocks)  # npz cannot be appended to: the columns are gathered, then written once

    def joined(name: str, dtype: Any) -> np.ndarray:
        values = [getattr(b, name) for b in parts]
        return np.concatenate(values).astype(dtype) if values else np.zeros(0, dtype=dtype)

    def text(values: list[str | None]) -> np.ndarray:
        return np.array([v or "" for v in values], dtype=str)

    arrays = {
        "segment_id": joined("segment_id", np.int64),
        "file_id": joined("file_id", np.int64),
        # As in parquet: `path` UTF-8 text (odd bytes as \xNN), `path_bytes` the exact bytes (a file name
        # holds no NUL, so numpy's fixed-width bytes, which drop trailing NULs, keep every name whole).
        "path": text([catalog_text(p) for b in parts for p in b.path]),
        "path_bytes": np.array([os.fsencode(p) for b in parts for p in b.path], dtype=bytes),
        "start": joined("start", np.float64),
        "end": joined("end", np.float64),
        "modalities": text([m for b in parts for m in b.modalities]),
        **{key: text([v for b in parts for v in b.tags[key]]) for key in TAG_KEYS},
        "vectors": np.concatenate([b.vectors for b in parts]) if parts else np.zeros((0, dim), dtype=np.float32),
        "provenance": np.array(json.dumps(meta, default=str)),
    }
    with open(path, "wb") as f:  # a file object: numpy would add ".npz" to a name without it
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    return len(arrays["segment_id"])
