"""One IVF index file written from the inverted lists of several IVF indexes that share a quantizer, list by
list, so the result is never held in memory.

faiss's `contrib/ondisk.merge_ondisk` merges IVF shards into `OnDiskInvertedLists` (a separate data file
the index points at); this writes the plain single-file layout instead (faiss's `ArrayInvertedLists`
section, "ilar"), the one `faiss.read_index(path, IO_FLAG_MMAP)` maps, so a merged file is a sealed file
like any other. The header and the quantizer come from faiss's own serialisation of the empty trained
index; only the lists section, which faiss writes last, is written here.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import IndexCorruptError

# faiss's serialisation of an IVF index with no vectors ends with an empty ArrayInvertedLists: the fourcc
# 'ilar', nlist and code_size (size_t), the layout 'sprs' and a vector of no sizes.
_EMPTY_LISTS = struct.Struct("<4sQQ4sQ")
# What this module writes instead: 'ilar', nlist, code_size, the layout 'full' and nlist sizes to follow.
_FULL_LISTS = struct.Struct("<4sQQ4sQ")
# Every index header starts with its fourcc, the dimension (int32) and ntotal (int64).
_NTOTAL_AT = 8


def write_merged_ivf(path: Path, template: Any, sources: Sequence[tuple[Any, np.ndarray]]) -> int:
    """Write to `path` (atomically) one IVF index of `template`'s type and quantizer holding every entry of
    `sources`, each (inverted lists, sorted ids to leave out), list by list; returns the entries written.

    `template` is an empty trained IVF index (no direct map) of the sources' type: codes are copied as
    they are, never decoded or assigned again, so the cost is the bytes moved and the memory one list's."""
    import faiss

    ivf = faiss.extract_index_ivf(template)
    nlist, code_size = int(ivf.nlist), int(ivf.code_size)
    header = faiss.serialize_index(template).tobytes()
    empty = _EMPTY_LISTS.unpack_from(header, len(header) - _EMPTY_LISTS.size)
    if template.ntotal or empty != (b"ilar", nlist, code_size, b"sprs", 0):
        raise ValueError("the template must be an empty IVF index whose lists faiss writes last")
    # The project's temporary name (a killed writer's leftover is removed by the next commit or `verify`).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        total = _write(tmp, header[: len(header) - _EMPTY_LISTS.size], nlist, code_size, sources)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return total


def _write(tmp: Path, header: bytes, nlist: int, code_size: int, sources: Sequence[tuple[Any, np.ndarray]]) -> int:
    total = 0
    with open(tmp, "wb") as out:
        out.write(header)
        out.write(_FULL_LISTS.pack(b"ilar", nlist, code_size, b"full", nlist))
        sizes_at = out.tell()
        sizes = np.zeros(nlist, dtype=np.uint64)
        out.write(sizes.tobytes())
        for number in range(nlist):
            codes, ids = list_entries(number, code_size, sources)
            out.write(codes.tobytes())
            out.write(ids.tobytes())
            sizes[number] = len(ids)
            total += len(ids)
        out.seek(sizes_at)
        out.write(sizes.tobytes())
        out.seek(_NTOTAL_AT)
        out.write(struct.pack("<q", total))
        out.flush()
        os.fsync(out.fileno())
    _check(tmp, nlist, sizes)
    return total


def list_entries(number: int, code_size: int, sources: Sequence[tuple[Any, np.ndarray]]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(codes, ids) of list `number` over all sources ((inverted lists, sorted ids to leave out)), the
    left-out ids dropped, both contiguous."""
    import faiss

    codes_parts, ids_parts = [], []
    for invlists, deleted in sources:
        n = invlists.list_size(number)
        if not n:
            continue
        ids_ptr, codes_ptr = invlists.get_ids(number), invlists.get_codes(number)
        ids = faiss.rev_swig_ptr(ids_ptr, n).copy()
        codes = faiss.rev_swig_ptr(codes_ptr, n * code_size).copy().reshape(n, code_size)
        invlists.release_ids(number, ids_ptr)
        invlists.release_codes(number, codes_ptr)
        if len(deleted):
            at = np.minimum(np.searchsorted(deleted, ids), len(deleted) - 1)
            keep = deleted[at] != ids
            ids, codes = ids[keep], codes[keep]
        codes_parts.append(codes)
        ids_parts.append(ids)
    if not ids_parts:
        return np.zeros((0, code_size), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    return np.concatenate(codes_parts), np.concatenate(ids_parts).astype(np.int64, copy=False)


def _check(path: Path, nlist: int, sizes: np.ndarray) -> None:
    """Read the written file back (mapped: no data is read) and compare its list sizes with what was written."""
    import faiss

    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)  # referenced: `written` points into it
        written = faiss.extract_index_ivf(index)
        read = np.array([written.invlists.list_size(i) for i in range(nlist)], dtype=np.uint64)
    except RuntimeError as e:
        raise IndexCorruptError(f"{path}: the merged IVF file does not read back ({e})") from e
    if written.ntotal != int(sizes.sum()) or not np.array_equal(read, sizes):
        raise IndexCorruptError(f"{path}: the merged IVF file reads back with other list sizes")
