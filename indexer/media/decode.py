"""Decode audio (and the audio track of video containers) to mono float32 at a target rate.

Backends are tried in order, libsndfile first (exact and fast for wav/flac/ogg/mp3), PyAV second (opus,
m4a/aac and every container FFmpeg knows). When all fail, one AudioDecodeError carries each backend's
reason. Channels are averaged to mono and the result resampled with soxr at "HQ" quality, which is what
librosa.load (laion_clap's own file path) does.

`decode_audio` decodes a file whole. `AudioStream` decodes it in chunks (libsndfile blocks, PyAV frames),
downmixing and resampling each with `soxr.ResampleStream` at the same quality, so that an hours-long file
never sits in memory: its samples equal `decode_audio`'s (soxr's stream and one-shot resamplers give the
same values; tests/test_streaming.py checks the two paths against each other).

Both take `DecodeLimits`: decoding stops as soon as the samples decoded pass a limit in seconds or in
samples, raising MediaTooLongError, whatever the container's header claimed. Both read through
`media.source.open_media`: a path opened without blocking (regular files only), or a snapshot's bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.errors import AudioDecodeError, MediaTooLongError
from indexer.media.source import FileChangedError, MediaSource, media_path, open_media

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".m4a", ".aac", ".aiff", ".aif", ".wma"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v"})
MEDIA_EXTENSIONS = AUDIO_EXTENSIONS | VIDEO_EXTENSIONS


@dataclass(frozen=True)
class DecodedAudio:
    """Mono float32 samples at `sample_rate`, with what the source file was."""

    samples: np.ndarray
    sample_rate: int
    source_rate: int
    source_channels: int
    backend: str

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


MAX_SAMPLES_PER_SECOND = 192_000 * 2  # see DecodeLimits.for_seconds


@dataclass(frozen=True)
class DecodeLimits:
    """How much audio decoding may produce; counted on what is decoded, never on what a header claims."""

    max_seconds: float | None = None  # seconds of audio at the source rate
    max_samples: int | None = None  # source samples (frames x channels): bounds memory whatever the rate

    @classmethod
    def for_seconds(cls, seconds: float | None) -> DecodeLimits:
        """Limits of `seconds` of audio, and the samples of that much 192 kHz stereo (a bound on what a file
        of absurd rate or channel count costs before its duration is reached); None: no limits."""
        if seconds is None:
            return cls()
        # A limit past what any machine decodes (`--max-seconds 1e308`) is no limit on samples; int() of its
        # product would overflow (bench/hostile_cli.py found it).
        samples = float(seconds) * MAX_SAMPLES_PER_SECOND
        return cls(max_seconds=float(seconds), max_samples=int(samples) if samples < 2.0**62 else None)

    def check(self, path: Path, frames: int, channels: int, rate: int) -> None:
        """Raise MediaTooLongError when `frames` decoded so far already pass a limit."""
        if self.max_seconds is not None and rate > 0 and frames > self.max_seconds * rate:
            raise MediaTooLongError(str(path), f"longer than the {self.max_seconds:g} s limit")
        if self.max_samples is not None and frames * max(channels, 1) > self.max_samples:
            raise MediaTooLongError(str(path), f"more than the limit of {self.max_samples:,} samples", "samples")


NO_LIMITS = DecodeLimits()


def _read_soundfile(source: MediaSource, limits: DecodeLimits = NO_LIMITS) -> tuple[np.ndarray, int]:
    # A file object opened without blocking, regular files only (see media/source.py): any name's bytes.
    with open_media(source) as f, _sndfile(f) as sound:
        # libsndfile reads no more frames than its header gives: the header bounds what is decoded.
        limits.check(media_path(source), sound.frames, sound.channels, sound.samplerate)
        if sound.seekable():
            sound.seek(0)  # as soundfile.read does: libsndfile's Opus reader drops the pre-skip on a seek
        data = sound.read(dtype="float32", always_2d=True)
        return data, int(sound.samplerate)


def _sndfile(f):  # type: ignore[no-untyped-def]
    """soundfile.SoundFile(f), its error saying what is wrong rather than naming a file object."""
    import soundfile

    try:
        return soundfile.SoundFile(f)
    except soundfile.LibsndfileError as e:
        raise ValueError(e.error_string.rstrip(".")) from e


def _read_pyav(source: MediaSource, limits: DecodeLimits = NO_LIMITS) -> tuple[np.ndarray, int]:
    import av

    with open_media(source) as f, av.open(f, metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        # Resample to packed float32 at the stream's own rate and layout; rate conversion is done once, by soxr.
        channels = stream.codec_context.channels or 1
        resampler = None
        chunks: list[np.ndarray] = []
        rate = stream.codec_context.sample_rate or stream.rate
        frames = 0
        for frame in container.decode(stream):
            if resampler is None:
                rate = frame.sample_rate
                channels = len(frame.layout.channels)
                resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=frame.sample_rate)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1, channels))
                frames += len(chunks[-1])
            limits.check(media_path(source), frames, channels, rate)  # stop as soon as a limit is passed
        if resampler is not None:
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1, channels))
    if not chunks:
        raise ValueError("audio stream holds no samples")
    return np.concatenate(chunks, axis=0), int(rate)


# Tried in order; each raises on failure (MediaTooLongError ends the search: the audio is there, too much of it).
BACKENDS: dict[str, Callable[[MediaSource, DecodeLimits], tuple[np.ndarray, int]]] = {
    "soundfile": _read_soundfile,
    "pyav": _read_pyav,
}


def downmix(data: np.ndarray) -> np.ndarray:
    """Mono float32 of (frames, channels) samples: the channels' mean, summed column by column.

    Equal to `data.mean(axis=1)` for float32 (numpy sums the two channels of a row in float32 too, and
    halving is exact), at a tenth of its cost: numpy's mean over a short axis walks the rows one by one.
    """
    channels = data.shape[1]
    if channels == 1:
        return data[:, 0]
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and infinity are caught by `all_finite`
        if channels == 2:
            return (data[:, 0] + data[:, 1]) * np.float32(0.5)
        return data.mean(axis=1, dtype=np.float32)


def all_finite(mono: np.ndarray) -> bool:
    """Whether a mix holds no NaN or infinity: checked on the mono mix, not on every channel, since a NaN or
    infinity in any channel carries into the mix (as does a sum past float32's range, ~3e38: no audio)."""
    return bool(np.isfinite(mono).all())


SOXR_QUALITY = "HQ"  # librosa's res_type="soxr_hq", the one-shot and the streaming paths alike


def resampled_length(n_samples: int, source_rate: int, target_rate: int) -> int:
    """How many samples librosa.resample returns for `n_samples`: ceil(n * target / source)."""
    if source_rate == target_rate:
        return n_samples
    # librosa's exact float expression: n * (target / source) can round up past an integer (one sample more).
    return int(np.ceil(n_samples * (float(target_rate) / source_rate)))


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Mono float32 resampled as librosa.resample(res_type='soxr_hq') does it, length included.

    librosa fixes the length to ceil(n * target / source) (soxr may return one sample less); matching
    it keeps resound's vectors equal to laion_clap's file path, where repeat-padding sees every sample.
    """
    if source_rate == target_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    import soxr

    out = soxr.resample(samples.astype(np.float32), source_rate, target_rate, quality=SOXR_QUALITY).astype(np.float32)
    length = resampled_length(len(samples), source_rate, target_rate)
    if len(out) < length:
        out = np.pad(out, (0, length - len(out)))
    return out[:length]


def decode_audio(source: MediaSource, sample_rate: int, limits: DecodeLimits = NO_LIMITS) -> DecodedAudio:
    """Decode a file (a path or a snapshot) to mono float32 at `sample_rate`, stopping at `limits`.

    Raises AudioDecodeError naming the file and reasons; MediaTooLongError past a limit.
    """
    path = media_path(source)
    reasons: list[str] = []
    for name, read in BACKENDS.items():
        if name == "soundfile" and path.suffix.lower() in VIDEO_EXTENSIONS:
            continue  # libsndfile reads no video container; skip its misleading error
        try:
            data, rate = read(source, limits)
        except (MediaTooLongError, FileChangedError):  # not a backend's failure: too much audio, or a new file
            raise
        except Exception as e:  # each backend has its own error types; all are reported together
            reasons.append(f"{name}: {_first_line(e)}")
            continue
        if data.size == 0 or rate <= 0:
            reasons.append(f"{name}: no audio samples")
            continue
        mono = downmix(data)
        if not all_finite(mono):
            raise AudioDecodeError(path, "samples contain NaN or infinity")
        return DecodedAudio(
            samples=resample(mono, rate, sample_rate),
            sample_rate=sample_rate,
            source_rate=rate,
            source_channels=int(data.shape[1]),
            backend=name,
        )
    raise AudioDecodeError(path, reasons)


# -- probing and streaming -------------------------------------------------------------------------
# Source frames read (libsndfile) or gathered (PyAV) per chunk: ~1.4 s at 48 kHz, 512 KiB of stereo float32.
CHUNK_FRAMES = 1 << 16


@dataclass(frozen=True)
class AudioProbe:
    """What a file's header says about its audio, without decoding it."""

    source_rate: int
    channels: int
    frames: int | None  # per channel; None when the container does not say
    backend: str

    @property
    def decoded_bytes(self) -> int | None:
        """Size of the whole file decoded to float32 at its own rate and channels (None: unknown)."""
        return None if self.frames is None else self.frames * self.channels * 4


def probe_audio(source: MediaSource) -> AudioProbe:
    """Rate, channels and length of a file's audio from its header. Raises AudioDecodeError."""
    path = media_path(source)
    reasons: list[str] = []
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        try:
            with open_media(source) as f, _sndfile(f) as info:
                return AudioProbe(int(info.samplerate), int(info.channels), int(info.frames), "soundfile")
        except Exception as e:  # noqa: BLE001 - libsndfile's errors have several types; reported below
            reasons.append(f"soundfile: {_first_line(e)}")
    try:
        import av

        with open_media(source) as f, av.open(f, metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise ValueError("no audio stream")
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate or stream.rate or 0)
            seconds = None
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / av.time_base
            frames = math.ceil(seconds * rate) if seconds is not None and rate > 0 else None
            return AudioProbe(rate, int(stream.codec_context.channels or 1), frames, "pyav")
    except Exception as e:  # noqa: BLE001 - PyAV/FFmpeg errors have many types; reported below
        reasons.append(f"pyav: {_first_line(e)}")
    raise AudioDecodeError(path, reasons)


# A backend's stream: (source rate, block of shape (frames, channels) float32) per chunk, never an empty block.
Blocks = Iterator[tuple[int, np.ndarray]]


def _blocks_soundfile(source: MediaSource, chunk_frames: int) -> Blocks:
    with open_media(source) as raw, _sndfile(raw) as f:
        if f.subtype == "OPUS":
            # libsndfile 1.2's Opus reader skips the pre-skip samples only on a whole-file read: a partial
            # first read comes 312 samples late and loses as many. PyAV decodes Opus exactly.
            raise ValueError("Opus is streamed through PyAV")
        rate = int(f.samplerate)
        while True:
            block = f.read(chunk_frames, dtype="float32", always_2d=True)
            if not len(block):
                return
            yield rate, block


def _blocks_pyav(source: MediaSource, chunk_frames: int) -> Blocks:
    import av

    with open_media(source) as f, av.open(f, metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        # As _read_pyav: packed float32 at the first frame's rate and layout, whatever later frames say.
        resampler, rate, channels = None, 0, 1
        gathered: list[np.ndarray] = []
        size = 0
        for frame in _frames_then_flush(container, stream):
            if frame is not None and resampler is None:
                rate, channels = frame.sample_rate, len(frame.layout.channels)
                resampler = av.AudioResampler(format="flt", layout=frame.layout, rate=frame.sample_rate)
            if resampler is None:
                continue
            for out in resampler.resample(frame):
                block = out.to_ndarray().reshape(-1, channels)
                if len(block):
                    gathered.append(block)
                    size += len(block)
            if size >= chunk_frames:
                yield rate, np.concatenate(gathered)
                gathered, size = [], 0
        if gathered:
            yield rate, np.concatenate(gathered)


def _frames_then_flush(container, stream):  # type: ignore[no-untyped-def]
    """The stream's decoded frames, then None (which flushes PyAV's resampler)."""
    yield from container.decode(stream)
    yield None


STREAM_BACKENDS: dict[str, Callable[[MediaSource, int], Blocks]] = {
    "soundfile": _blocks_soundfile,
    "pyav": _blocks_pyav,
}


class AudioStream:
    """A file's audio as mono float32 chunks at `sample_rate`, decoded and resampled chunk by chunk.

    Iterate it once. The chunks concatenated are `decode_audio(path, sample_rate).samples`: the same
    backend order, the same mean downmix, soxr at the same quality and librosa's output length. Memory
    holds one chunk, whatever the file's length. A backend that fails before its first chunk hands over
    to the next, as in `decode_audio`; one that fails later raises AudioDecodeError (its samples so far
    have been used). `source_rate`, `source_channels` and `backend` are set with the first chunk;
    `n_samples` counts the samples yielded (the file's length once the stream is exhausted). Past
    `limits` it raises MediaTooLongError, having decoded at most a chunk more than the limit.
    """

    def __init__(self, path: MediaSource, sample_rate: int, chunk_frames: int | None = None,
                 limits: DecodeLimits = NO_LIMITS):
        self.source = path
        self.path = media_path(path)
        self.limits = limits
        self.sample_rate = int(sample_rate)
        self.chunk_frames = int(chunk_frames or CHUNK_FRAMES)
        self.source_rate = 0
        self.source_channels = 0
        self.backend: str | None = None
        self.n_samples = 0

    @property
    def duration(self) -> float:
        """Seconds yielded so far (the file's duration once the stream is exhausted)."""
        return self.n_samples / self.sample_rate

    def __iter__(self) -> Iterator[np.ndarray]:
        reasons: list[str] = []
        for name, open_blocks in STREAM_BACKENDS.items():
            if name == "soundfile" and self.path.suffix.lower() in VIDEO_EXTENSIONS:
                continue  # libsndfile reads no video container; skip its misleading error
            blocks = open_blocks(self.source, self.chunk_frames)
            try:
                first = next(blocks, None)
            except FileChangedError:
                raise
            except Exception as e:  # noqa: BLE001 - each backend has its own error types; all are reported
                reasons.append(f"{name}: {_first_line(e)}")
                continue
            if first is None or first[0] <= 0:
                reasons.append(f"{name}: no audio samples")
                blocks.close()
                continue
            self.backend, self.source_rate, self.source_channels = name, first[0], int(first[1].shape[1])
            yield from self._resampled(name, first, blocks)
            return
        raise AudioDecodeError(self.path, reasons)

    def _resampled(self, name: str, first: tuple[int, np.ndarray], blocks: Blocks) -> Iterator[np.ndarray]:
        import soxr

        rate, target = self.source_rate, self.sample_rate
        resampler = None if rate == target else soxr.ResampleStream(rate, target, 1, dtype="float32",
                                                                     quality=SOXR_QUALITY)
        n_in = 0
        held = np.zeros(0, dtype=np.float32)  # resampled, not yet yielded
        block: np.ndarray | None = first[1]
        try:
            while block is not None:
                mono = np.ascontiguousarray(downmix(block), dtype=np.float32)
                if not all_finite(mono):
                    raise AudioDecodeError(self.path, "samples contain NaN or infinity")
                n_in += len(mono)
                self.limits.check(self.path, n_in, self.source_channels, rate)
                out = resampler.resample_chunk(mono) if resampler is not None else mono
                held = np.concatenate([held, out]) if len(held) else out
                # librosa's length is only known at the end; yield no further than the length the file
                # has at least, so a final truncation never takes back a sample already yielded.
                ready = min(len(held), resampled_length(n_in, rate, target) - self.n_samples)
                if ready > 0:
                    chunk, held = held[:ready], held[ready:]
                    self.n_samples += ready
                    yield chunk
                step = next(blocks, None)
                block = None if step is None else step[1]
        except AudioDecodeError:  # MediaTooLongError included
            raise
        except Exception as e:  # a backend failing mid-file: its earlier samples are already used
            raise AudioDecodeError(self.path, f"{name}: {_first_line(e)} (after {n_in / rate:.1f} s)") from e
        if resampler is not None:
            held = np.concatenate([held, resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)])
        remaining = resampled_length(n_in, rate, target) - self.n_samples
        tail = held[:remaining]
        if len(tail) < remaining:  # soxr may return a sample less than librosa's length: zero-pad, as resample()
            tail = np.pad(tail, (0, remaining - len(tail)))
        if len(tail):
            self.n_samples += len(tail)
            yield tail.astype(np.float32, copy=False)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0][:160] if text else type(e).__name__) or type(e).__name__
