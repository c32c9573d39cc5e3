"""Tags of a media file, read at build time into the catalog: the names (title, artist, album, genre)
and the words sound libraries carry (description, comment, originator, notes).

FFmpeg (through PyAV) reads ID3, RIFF INFO, Vorbis comments, MP4 atoms and Matroska tags and names them
alike; Ogg and Opus keep their comments on the stream, not the container, so both are read. libsndfile
(soundfile) is the fallback for files PyAV cannot open. What libraries write for their descriptions is read
by the library that knows each format (indexer/media/library_tags.py: mutagen for ID3, Vorbis comments and
MP4 atoms; the BWF `bext` and iXML chunks of WAV files directly). Tags are best effort: a file whose tags
cannot be read is indexed without them (its audio decides whether it is indexed at all).
"""

from __future__ import annotations

from pathlib import Path

from db.filters import TAG_KEYS
from indexer.corpus import catalog_text

NAME_KEYS = TAG_KEYS[:4]  # title, artist, album, genre: what every container names alike
MAX_TAG_CHARS = 1000  # a tag is a name, not a payload: longer values are cut


def read_tags(path: str | Path) -> dict[str, str]:
    """The tags among TAG_KEYS that the file carries, by key (values stripped; empty ones left out)."""
    from indexer.media.library_tags import library_tags

    path = Path(path)
    try:
        raw = _pyav_tags(path)
    except Exception:  # noqa: BLE001 - any container PyAV cannot parse: try libsndfile
        try:
            raw = _soundfile_tags(path)
        except Exception:  # noqa: BLE001 - tags are optional: the file is indexed without them
            raw = {}
    # The format's own reader knows the library fields (a bext description, every ID3 comment) better
    # than FFmpeg's generic names do.
    # FFmpeg names a bext description "comment": the names come from it, the library's words from the
    # format's own reader.
    raw = {key: value for key, value in raw.items() if key in NAME_KEYS} | library_tags(path)
    tags = {}
    for key in TAG_KEYS:
        value = raw.get(key)
        if isinstance(value, str) and value.strip():
            tags[key] = catalog_text(value.strip()[:MAX_TAG_CHARS])
    return tags


def _pyav_tags(path: Path) -> dict[str, str]:
    import av

    with open(path, "rb") as f, av.open(f, metadata_errors="ignore") as container:
        merged: dict[str, str] = {}
        for stream in container.streams.audio[:1]:
            merged.update({k.lower(): v for k, v in stream.metadata.items()})
        merged.update({k.lower(): v for k, v in container.metadata.items()})  # the container's win
    return merged


def _soundfile_tags(path: Path) -> dict[str, str]:
    import soundfile

    with soundfile.SoundFile(str(path)) as f:
        return {k.lower(): v for k, v in f.copy_metadata().items()}
