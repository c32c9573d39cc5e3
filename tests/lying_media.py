"""Containers whose headers lie about their length: Matroska and MP4 files that say they last a few seconds
and hold hours. Made with PyAV (silence compresses to almost nothing), then the duration fields patched."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

# What the container is written with: FLAC in Matroska, AAC in MP4 (both a few MB for hours of silence).
CODECS = {".mkv": "flac", ".mp4": "aac"}


def write_silence(path: Path, seconds: float, rate: int = 8000, tone_seconds: float = 0.0) -> Path:
    """`seconds` of mono audio in the container `path`'s suffix names: a 440 Hz tone for the first
    `tone_seconds`, then digital silence."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(CODECS[path.suffix.lower()], rate=rate)
        stream.layout = "mono"
        fmt = stream.codec_context.format.name
        block_frames = 16384
        t = np.arange(block_frames) / rate
        pts, total = 0, int(seconds * rate)
        while pts < total:
            samples = np.where(pts + np.arange(block_frames) < tone_seconds * rate,
                               0.3 * np.sin(2 * np.pi * 440 * (t + pts / rate)), 0.0)
            samples = samples[: total - pts]
            data = (samples * 32767).astype(np.int16) if fmt.startswith("s16") else samples.astype(np.float32)
            frame = av.AudioFrame.from_ndarray(data[None, :], format=fmt, layout="mono")
            frame.sample_rate, frame.pts = rate, pts
            for packet in stream.encode(frame):
                container.mux(packet)
            pts += block_frames
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def claim_duration(path: Path, seconds: float) -> Path:
    """Rewrite the header of a Matroska or MP4 file written by `write_silence` to say it lasts `seconds`."""
    data = bytearray(path.read_bytes())
    if path.suffix.lower() == ".mkv":
        # Segment Info's Duration element (ID 0x4489, an 8-byte float in TimecodeScale units: ms).
        at = data.index(b"\x44\x89\x88")
        data[at + 3 : at + 11] = struct.pack(">d", seconds * 1000.0)
    else:
        # Version-0 movie and media headers: duration in their own timescale; the track header's in the movie's.
        movie_scale = struct.unpack(">I", data[data.index(b"mvhd") + 16 : data.index(b"mvhd") + 20])[0]
        for box, scale_at, duration_at in ((b"mvhd", 16, 20), (b"mdhd", 16, 20), (b"tkhd", None, 24)):
            at = data.index(box)
            scale = movie_scale if scale_at is None else struct.unpack(">I", data[at + scale_at : at + scale_at + 4])[0]
            data[at + duration_at : at + duration_at + 4] = struct.pack(">I", int(seconds * scale))
    path.write_bytes(bytes(data))
    return path


def write_lying(path: Path, claimed_seconds: float, real_seconds: float, rate: int = 8000,
                tone_seconds: float = 0.0) -> Path:
    """A container that says it lasts `claimed_seconds` and holds `real_seconds`."""
    return claim_duration(write_silence(path, real_seconds, rate, tone_seconds), claimed_seconds)
