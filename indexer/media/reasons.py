"""Why a file could not be decoded, in words a person can act on.

Decoders report failures in their own terms ("Error opening b'x.wav': Format not recognised.",
"[Errno 1094995529] Invalid data found when processing input"). `plain_reason` turns those, and what the
file itself shows (missing, unreadable, empty, its first bytes), into a short reason such as "not an audio
file" or "truncated FLAC". The decoders' own messages stay available as the technical detail.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Sequence
from pathlib import Path

# Leading bytes of the containers resound reads -> the name a person knows them by.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"fLaC", "FLAC"),
    (0, b"OggS", "Ogg"),
    (0, b"ID3", "MP3"),
    (4, b"ftyp", "MP4/M4A"),
    (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
    (0, b"FORM", "AIFF"),
    (0, b"caff", "CAF"),
)
_RIFF_WAVE = (b"RIFF", b"RF64", b"BW64")

# Decoder phrases that mean "the data stops or breaks off" once the container itself was recognised.
_BROKEN = ("lost sync", "end of file", "unexpected end", "truncat", "invalid data", "premature", "short read",
           "after ")
_NO_CODEC = ("codec", "unsupported", "has no attribute 'channels'", "not supported")


def container_of(head: bytes) -> str | None:
    """The container named by a file's first bytes, or None when they name none resound knows."""
    if head[:4] in _RIFF_WAVE and head[8:12] == b"WAVE":
        return "WAV"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "MP3"  # an MPEG audio frame sync without an ID3 tag (0xFFF? is also ADTS AAC: close enough)
    for offset, magic, name in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    return None


def _wav_format_tag(head: bytes) -> int | None:
    """The WAVE format tag of a canonical header (fmt chunk first, of a plausible size), e.g. 1 for PCM."""
    if head[12:16] == b"fmt " and len(head) >= 22 and 16 <= struct.unpack("<I", head[16:20])[0] <= 64:
        return struct.unpack("<H", head[20:22])[0]
    return None


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def plain_reason(path: str | Path, reasons: Sequence[str]) -> str:
    """A short reason why no decoder could read `path`, from the file itself and the decoders' `reasons`."""
    text = " ".join(reasons).lower()
    # Our own reasons ("no audio samples", "samples contain NaN or infinity") are plain already.
    given = reasons[0] if len(reasons) == 1 and ":" not in reasons[0] else None
    path = Path(path)
    # A reason the reading itself gave in plain words (a FIFO or device where a file was, a file rewritten
    # while read, one longer than the limit) says more than what the path shows now.
    if given is None and len(reasons) == 1 and reasons[0].startswith(("cannot read file (", "longer than ")):
        given = reasons[0]
    try:
        info = os.stat(path)
        size = info.st_size
    except FileNotFoundError:
        return given or "file not found"
    except PermissionError:
        return "permission denied"
    except OSError as e:
        return f"cannot read file ({e.strerror or type(e).__name__})".lower()
    if "permission denied" in text or "[errno 13]" in text or not os.access(path, os.R_OK):
        return "permission denied"
    if path.is_dir():
        return "a directory, not a file"
    if not stat.S_ISREG(info.st_mode):  # never opened here: opening a FIFO waits for a writer
        from indexer.media.source import NotRegularFileError

        return f"cannot read file ({NotRegularFileError(path, info.st_mode)})"
    if size == 0:
        return "empty file"
    if given:
        return given
    if "input/output error" in text or "[errno 5]" in text:
        return "input/output error while reading (disk or network)"
    if "no audio stream" in text:
        return "no audio track"
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return "cannot read file"
    container = container_of(head)
    if container is None:
        return "not an audio file (it holds text)" if _looks_like_text(head) else "not an audio file"
    if container == "WAV":
        tag = _wav_format_tag(head)
        if tag is not None and tag not in (1, 3, 6, 7, 0xFFFE, 2, 0x11, 0x55):
            return f"unknown codec (WAV format tag 0x{tag:04x})"
    if "malformed" in text:
        return f"damaged {container} header"
    if any(phrase in text for phrase in _NO_CODEC) and not any(phrase in text for phrase in _BROKEN):
        return f"unknown codec in {container}"
    if any(phrase in text for phrase in _BROKEN):
        return f"truncated {container}"
    return f"damaged {container}"
