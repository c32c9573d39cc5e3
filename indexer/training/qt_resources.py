"""Read the files inside a compiled Qt resource archive (`.rcc`), as GCompris ships its sounds.

The format (Qt's rcc, versions 1-3): a "qres" header giving the offsets of three tables; the tree table
holds one node per file or folder (name offset, flags, then a folder's children or a file's data
offset); the names table holds each name as UTF-16BE; the data table holds each file as a 4-byte length
and its bytes, zlib-compressed (after a 4-byte plain length) when flag 1 is set. Only what reading
needs is parsed: nothing here writes archives.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from indexer.errors import ResoundError

_COMPRESSED = 0x01
_DIRECTORY = 0x02
_ZSTD = 0x04


class QtResourceError(ResoundError):
    """A file is not a Qt resource archive this reader understands."""


def read_rcc(path: Path) -> dict[str, bytes]:
    """Every file of the Qt resource archive at `path`, by its "/"-separated path inside the archive."""
    data = Path(path).read_bytes()
    if data[:4] != b"qres" or len(data) < 20:
        raise QtResourceError(f"{path}: not a Qt resource archive (no 'qres' header)")
    version, tree, payload, names = struct.unpack_from(">IIII", data, 4)
    if version not in (1, 2, 3):
        raise QtResourceError(f"{path}: Qt resource format version {version} is not supported")
    node_size = 14 if version == 1 else 22  # versions 2 and 3 add an 8-byte modification time
    files: dict[str, bytes] = {}

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", data, names + offset)
        start = names + offset + 6  # length, then a 4-byte hash, then the name
        return data[start : start + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> None:
        base = tree + index * node_size
        name_offset, flags = struct.unpack_from(">IH", data, base)
        name = name_at(name_offset) if index else ""
        if flags & _DIRECTORY:
            count, first = struct.unpack_from(">II", data, base + 6)
            for child in range(first, first + count):
                walk(child, f"{prefix}{name}/" if index else "")
            return
        (offset,) = struct.unpack_from(">I", data, base + 10)
        (size,) = struct.unpack_from(">I", data, payload + offset)
        body = data[payload + offset + 4 : payload + offset + 4 + size]
        if flags & _ZSTD:
            raise QtResourceError(f"{path}: {prefix}{name} is zstd-compressed, which this reader does not read")
        files[prefix + name] = zlib.decompress(body[4:]) if flags & _COMPRESSED else body

    try:
        walk(0, "")
    except (struct.error, UnicodeDecodeError, zlib.error, RecursionError) as error:
        raise QtResourceError(f"{path}: damaged Qt resource archive ({error})") from None
    return files
