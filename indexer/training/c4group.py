"""Read the files inside an OpenClonk group file (`.ocg`, `.ocd`, `.ocf`), as OpenClonk ships its sounds.

The format (OpenClonk's C4Group): the file is gzip with its two magic bytes changed (0x1e 0x8c for
0x1f 0x8b). Inside, a 204-byte header, scrambled (every byte XOR 237, then each run of three bytes
reversed), says "RedWolf Design GrpFolder" and how many entries follow; then one 316-byte entry per file
(its name, whether it is a child group, its size and its offset after the entry table); then the data.
A child group (a folder) is stored as a group of its own, without the gzip layer. Only what reading
needs is parsed: nothing here writes groups.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

from indexer.errors import ResoundError

_MAGIC = b"\x1e\x8c"
_HEADER = 204
_ENTRY = 316
_ID = b"RedWolf Design GrpFolder"


class C4GroupError(ResoundError):
    """A file is not an OpenClonk group this reader understands."""


def _unscrambled(header: bytes) -> bytes:
    swapped = bytearray(header)
    for i in range(0, len(swapped) - 2, 3):
        swapped[i], swapped[i + 2] = swapped[i + 2], swapped[i]
    return bytes(byte ^ 237 for byte in swapped)


def _entries(data: bytes, prefix: str, files: dict[str, bytes]) -> None:
    header = _unscrambled(data[:_HEADER])
    if not header.startswith(_ID):
        raise ValueError(f"group {prefix or '/'} has no C4Group header")
    (count,) = struct.unpack_from("<i", header, 36)
    start = _HEADER + count * _ENTRY
    for index in range(count):
        entry = data[_HEADER + index * _ENTRY : _HEADER + (index + 1) * _ENTRY]
        name = entry[:260].split(b"\0", 1)[0].decode("latin-1")
        _packed, child, size, _reserved, offset = struct.unpack_from("<5i", entry, 260)
        body = data[start + offset : start + offset + size]
        if child:
            _entries(body, f"{prefix}{name}/", files)
        else:
            files[prefix + name] = body


def read_c4group(path: Path) -> dict[str, bytes]:
    """Every file of the OpenClonk group at `path`, by its "/"-separated path inside the group (folder
    names keep their .ocg/.ocd suffix)."""
    raw = Path(path).read_bytes()
    if raw[:2] != _MAGIC:
        raise C4GroupError(f"{path}: not an OpenClonk group (no 0x1e 0x8c magic)")
    files: dict[str, bytes] = {}
    try:
        _entries(gzip.decompress(b"\x1f\x8b" + raw[2:]), "", files)
    except (OSError, EOFError, zlib.error, struct.error, ValueError) as error:
        raise C4GroupError(f"{path}: damaged OpenClonk group ({error})") from None
    return files
