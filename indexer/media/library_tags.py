"""The words sound libraries embed in their files, read by the reader that knows each format.

- WAV (RIFF, RF64, BW64): the Broadcast Wave `bext` chunk (EBU Tech 3285: Description, 256 bytes;
  Originator, 32 bytes), the RIFF INFO comment (ICMT) and the `iXML` chunk (the NOTE elements a field recorder or a library writes, at
  any depth), read here chunk by chunk without reading the audio.
- ID3 (MP3, and ID3 chunks in WAV/AIFF), Vorbis comments (FLAC, Ogg Vorbis, Opus), MP4 atoms: mutagen.
  COMM frames are comments, TXXX frames named DESCRIPTION, COMMENT, NOTES or ORIGINATOR fill those keys;
  Vorbis DESCRIPTION and COMMENT; MP4 `©cmt` (comment) and `desc` (description).

Returns keys of db.filters.TAG_KEYS; a value met more than once is joined with " / ". Best effort: a
malformed chunk or tag gives nothing, never an error (the file's audio decides whether it is indexed).
"""

from __future__ import annotations

import struct
from pathlib import Path
from xml.etree import ElementTree

MAX_IXML_BYTES = 1 << 20  # an iXML chunk is a page of XML; a larger one is not read
_RIFF_FORMS = (b"RIFF", b"RF64", b"BW64")
# TXXX descriptions (case-insensitive) and the keys they fill.
_TXXX_KEYS = {"description": "description", "desc": "description", "comment": "comment", "comments": "comment",
              "notes": "notes", "note": "notes", "originator": "originator"}
_VORBIS_KEYS = {"description": "description", "comment": "comment", "originator": "originator", "notes": "notes"}
_MP4_KEYS = {"\xa9cmt": "comment", "desc": "description", "ldes": "description"}


def library_tags(path: str | Path) -> dict[str, str]:
    """Description, comment, originator and notes that `path` carries (absent keys left out)."""
    found: dict[str, list[str]] = {}
    for reader in (_riff_tags, _mutagen_tags):
        try:
            for key, value in reader(Path(path)):
                value = " ".join(value.replace("\x00", " ").split())
                if value and value not in found.setdefault(key, []):
                    found[key].append(value)
        except Exception:  # noqa: BLE001, S112 - a malformed tag: the file is indexed without it
            continue
    return {key: " / ".join(values) for key, values in found.items() if values}


# -- WAV chunks ------------------------------------------------------------------------------------
def riff_chunks(path: Path, wanted: frozenset[bytes]) -> dict[bytes, bytes]:
    """The bodies of the top-level chunks named in `wanted` of a RIFF/RF64/BW64 file (first of each),
    seeking past the others (the audio is never read). Empty for any other file."""
    out: dict[bytes, bytes] = {}
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] not in _RIFF_FORMS or header[8:12] != b"WAVE":
            return out
        size = path.stat().st_size
        while len(out) < len(wanted):
            head = f.read(8)
            if len(head) < 8:
                break
            name, length = head[:4], struct.unpack("<I", head[4:])[0]
            if name in wanted and name not in out:
                if length > MAX_IXML_BYTES:
                    break
                out[name] = f.read(length)
            elif name == b"data" and length == 0xFFFFFFFF:  # RF64: the real size is in ds64; data is last anyway
                break
            else:
                if f.tell() + length > size:
                    break
                f.seek(length, 1)
            if length % 2:
                f.seek(1, 1)  # chunks are word-aligned
    return out


def _riff_tags(path: Path) -> list[tuple[str, str]]:
    chunks = riff_chunks(path, frozenset({b"bext", b"iXML", b"LIST"}))
    tags: list[tuple[str, str]] = []
    info = chunks.get(b"LIST", b"")
    if info[:4] == b"INFO":  # RIFF INFO: ICMT is the comment (the names are read by FFmpeg)
        at = 4
        while at + 8 <= len(info):
            name, length = info[at:at + 4], struct.unpack("<I", info[at + 4:at + 8])[0]
            if name == b"ICMT":
                tags.append(("comment", info[at + 8:at + 8 + length].split(b"\x00")[0].decode("utf-8", "replace")))
            at += 8 + length + (length % 2)
    bext = chunks.get(b"bext")
    if bext is not None and len(bext) >= 288:
        # EBU Tech 3285: ASCII fields, NUL-padded; Latin-1 decodes whatever a writer put there.
        tags.append(("description", bext[:256].split(b"\x00")[0].decode("latin-1")))
        tags.append(("originator", bext[256:288].split(b"\x00")[0].decode("latin-1")))
    ixml = chunks.get(b"iXML")
    if ixml:
        try:
            root = ElementTree.fromstring(ixml.rstrip(b"\x00 \r\n\t"))
        except ElementTree.ParseError:
            return tags  # a malformed iXML chunk: the bext fields still count
        tags.extend(("notes", element.text) for element in root.iter()
                    if element.tag.upper() in ("NOTE", "NOTES") and element.text)
    return tags


# -- mutagen: ID3, Vorbis comments, MP4 -----------------------------------------------------------
def _mutagen_tags(path: Path) -> list[tuple[str, str]]:
    import mutagen
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags

    media = mutagen.File(path)
    tags = getattr(media, "tags", None)
    if tags is None:
        return []
    found: list[tuple[str, str]] = []
    if isinstance(tags, ID3):
        for frame in tags.getall("COMM"):
            if not frame.desc.lower().startswith("itun"):  # iTunes keeps gapless and loudness data in COMM
                found.extend(("comment", str(text)) for text in frame.text)
        for frame in tags.getall("TXXX"):
            key = _TXXX_KEYS.get(frame.desc.strip().lower())
            if key:
                found.extend((key, str(text)) for text in frame.text)
    elif isinstance(tags, MP4Tags):
        for atom, key in _MP4_KEYS.items():
            found.extend((key, str(text)) for text in tags.get(atom, ()))
    elif hasattr(tags, "keys"):  # Vorbis comments (FLAC, Ogg Vorbis, Opus, Speex)
        for name in tags.keys():  # noqa: SIM118 - VComment's keys() lists each name once
            key = _VORBIS_KEYS.get(name.lower())
            if key:
                found.extend((key, str(text)) for text in tags[name])
    return found
