"""From one media file to what an encoder embeds: windows of samples, and frames for audio-visual models.

A file is decoded whole (`segment_inputs`) unless decoding it whole would take more than
`STREAM_ABOVE_BYTES`; such a long file is streamed (`StreamedInputs`): decoded chunk by chunk and handed
over a few windows at a time, so memory holds a few windows whatever its length. `file_inputs` chooses.
Both give the same windows: the same spans, and samples equal to float rounding (see media/decode.py).

`snapshot_inputs` is what a build decodes: the file read once (media/source.py), so the content hash it
carries is the hash of the bytes its windows come from; a file that changes while being read is read again.
The plan's `limits` stop decoding past a duration or sample count whatever the header says, and a file
whose header understates its length is streamed rather than decoded whole.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.encoders.base import Encoder, l2_normalize
from indexer.encoders.precision import autocast, unit_rows
from indexer.errors import AudioDecodeError, MediaTooLongError, UnreadableFileError
from indexer.media import VIDEO_EXTENSIONS, decode_audio
from indexer.media.decode import NO_LIMITS, AudioStream, DecodeLimits, probe_audio
from indexer.media.source import FileChangedError, MediaSnapshot, MediaSource, media_path, read_snapshot
from indexer.media.video import frames_at, has_video_stream, video_duration
from indexer.windows import AudioWindow, cut_windows, stream_windows, window_starts

# Files that would decode (at their own rate and channels, as float32) to more than this are streamed.
# 64 MiB: about 3 minutes of 48 kHz stereo, 17 minutes of 16 kHz mono.
STREAM_ABOVE_BYTES = 64 * 2**20
# Windows handed over per part of a streamed file; an audio-visual model's frames are read per part.
STREAM_PART_WINDOWS = 8
# RGB frames (shrunk to 256 px) a silent video's windows hold, counted against STREAM_ABOVE_BYTES.
_FRAME_BYTES = 256 * 256 * 3


def modalities_of(audio: bool, visual: bool) -> str:
    """What a segment row records a file holds: "audio", "visual" or "audio+visual"."""
    return "audio+visual" if audio and visual else "visual" if visual else "audio"


@dataclass
class SegmentInputs:
    """A file cut into windows: each window's samples (None without sound) and frames (None without picture)."""

    spans: list[tuple[float, float]]
    samples: list[np.ndarray | None]
    frames: list[list[np.ndarray] | None]
    duration: float
    source_rate: int
    channels: int
    content_hash: str | None = None  # SHA-256 of the bytes decoded, when read as a snapshot
    # The encoder's front-end features of each window (`FrontEnd`), when computed where the file was decoded.
    prepared: list | None = None
    tags: dict[str, str] | None = None  # the file's container tags (media/tags.py), when read where it was decoded

    @property
    def modalities(self) -> str:
        return modalities_of(any(s is not None for s in self.samples), any(f is not None for f in self.frames))

    def parts(self) -> Iterator[SegmentInputs]:
        """The file's windows part by part, as StreamedInputs gives them: a file decoded whole is one part."""
        yield self


@dataclass(frozen=True)
class WindowPlan:
    """How to cut a file for an encoder: all a decoding worker process needs to know (picklable)."""

    sample_rate: int
    window_samples: int
    hop_samples: int
    frames_per_window: int = 0  # 0: the encoder takes no frames
    stream_above_bytes: int = STREAM_ABOVE_BYTES  # longer files are streamed (see file_inputs)
    limits: DecodeLimits = NO_LIMITS  # decoding stops past these (MediaTooLongError)

    @classmethod
    def of(cls, encoder: Encoder, hop_seconds: float | None = None, limits: DecodeLimits = NO_LIMITS) -> "WindowPlan":
        info = encoder.info
        hop = max(1, int(round((hop_seconds or info.window_seconds) * info.sample_rate)))
        frames = int(getattr(encoder, "frames_per_window", 0)) if hasattr(encoder, "embed_segments") else 0
        return cls(info.sample_rate, info.window_samples, hop, frames, STREAM_ABOVE_BYTES, limits)

    def frame_times(self, start: float, end: float) -> list[float]:
        """Where to sample a window's frames: its middle, or k evenly spaced points."""
        k = self.frames_per_window
        return [start + (i + 0.5) * (end - start) / k for i in range(k)]


def segment_inputs(encoder: Encoder | WindowPlan, source: MediaSource, hop_seconds: float | None = None) -> SegmentInputs:
    """Decode a file (a path or a snapshot) and cut it into the encoder's windows; audio-visual encoders
    also get frames.

    Raises AudioDecodeError (VideoDecodeError for frames) naming the file and the reason, MediaTooLongError
    past the plan's limits.
    """
    path = media_path(source)
    plan = encoder if isinstance(encoder, WindowPlan) else WindowPlan.of(encoder, hop_seconds)
    window, hop, sr = plan.window_samples, plan.hop_samples, plan.sample_rate
    wants_frames = plan.frames_per_window > 0 and path.suffix.lower() in VIDEO_EXTENSIONS
    video = wants_frames and has_video_stream(source)
    try:
        decoded = decode_audio(source, sr, plan.limits)
    except MediaTooLongError:
        raise
    except AudioDecodeError:
        if not video:
            raise
        decoded = None  # a silent video: indexed by its pictures alone
    if decoded is not None:
        windows = cut_windows(decoded.samples, window, hop)
        spans = [w.seconds(sr) for w in windows]
        samples: list[np.ndarray | None] = [w.samples for w in windows]
        duration, rate, channels = decoded.duration, decoded.source_rate, decoded.source_channels
    else:
        duration = video_duration(source)
        n = int(duration * sr)
        spans = [(s / sr, min(s + window, n) / sr) for s in window_starts(n, window, hop)]
        samples, rate, channels = [None] * len(spans), 0, 0
    if not spans:
        raise AudioDecodeError(path, "no audio samples")
    frames: list[list[np.ndarray] | None] = [None] * len(spans)
    if video:
        times = [plan.frame_times(a, b) for a, b in spans]
        flat = frames_at(source, [t for ts in times for t in ts])
        frames, start = [], 0
        for ts in times:
            frames.append(flat[start : start + len(ts)])
            start += len(ts)
    return SegmentInputs(spans, samples, frames, duration, rate, channels)


def decoded_size(plan: WindowPlan, source: MediaSource) -> int | None:
    """Bytes that decoding a file whole would take (its audio as float32 at its own rate and channels, or a
    silent video's frames), as its header says; None when it does not. Raises AudioDecodeError when unreadable."""
    path = media_path(source)
    try:
        return probe_audio(source).decoded_bytes
    except AudioDecodeError:
        if not (plan.frames_per_window > 0 and path.suffix.lower() in VIDEO_EXTENSIONS and has_video_stream(source)):
            raise
    windows = len(window_starts(int(video_duration(source) * plan.sample_rate), plan.window_samples, plan.hop_samples))
    return windows * plan.frames_per_window * _FRAME_BYTES


def file_inputs(plan: WindowPlan, source: MediaSource) -> SegmentInputs | StreamedInputs:
    """A file's windows: decoded whole when that takes at most `plan.stream_above_bytes`, else streamed.

    A file whose size the header does not give is streamed, and so is one whose header understates it:
    decoding whole stops at the streaming threshold (counted on decoded samples) and the file is streamed
    instead. Unreadable files come back as SegmentInputs would: `segment_inputs` raises AudioDecodeError with
    every decoder's reason (MediaTooLongError past the plan's limits). A snapshot read from disk is checked
    unchanged after a whole decode (FileChangedError); a streamed one after its last part.
    """
    try:
        size: int | None = decoded_size(plan, source)
    except AudioDecodeError:
        size = 0  # no header to go by: decoding says why it fails (every backend's reason), or streams past the threshold
    if size is None or size > plan.stream_above_bytes:
        return StreamedInputs(plan, source)
    budget = plan.stream_above_bytes // 4  # float32 samples
    own = plan.limits.max_samples
    whole = dataclasses.replace(plan, limits=dataclasses.replace(plan.limits, max_samples=min(own or budget, budget)))
    try:
        inputs = segment_inputs(whole, source)
    except MediaTooLongError as e:
        if e.limit != "samples" or (own is not None and own <= budget):
            raise  # the caller's own limit, not the streaming threshold
        # The header said the file was short, and decoding found more: stream it, within the plan's limits.
        return StreamedInputs(plan, source)
    if isinstance(source, MediaSnapshot):
        source.check_unchanged()
        inputs.content_hash = source.content_hash
    return inputs


def snapshot_inputs(plan: WindowPlan, path: str | Path, attempts: int = 3) -> SegmentInputs | StreamedInputs:
    """`file_inputs` of the file at `path` read once (media/source.py): the result's `content_hash` is the
    hash of the bytes decoded. A file that changes while being read is read again, up to `attempts` times.

    Raises UnreadableFileError, "cannot read file (...)", for a file that cannot be opened, is not a regular
    file (a FIFO is refused, never waited on) or kept changing; AudioDecodeError as file_inputs does.
    """
    path = Path(path)
    for attempt in range(attempts):
        try:
            return file_inputs(plan, read_snapshot(path))
        except FileChangedError as e:
            if attempt == attempts - 1:
                raise UnreadableFileError(path, f"cannot read file ({e.strerror})") from e
        except OSError as e:
            raise UnreadableFileError(path, f"cannot read file ({e.strerror or e})") from e
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class StreamedInputs:
    """A long file whose windows are decoded as they are consumed, a part of `part_windows` windows at a time.

    Nothing is open until `parts()` runs, so a decoding worker can hand it back to the main process.
    """

    plan: WindowPlan
    path: MediaSource
    part_windows: int = STREAM_PART_WINDOWS

    @property
    def content_hash(self) -> str | None:
        """SHA-256 of the bytes decoded, when streamed from a snapshot."""
        return self.path.content_hash if isinstance(self.path, MediaSnapshot) else None

    def parts(self) -> Iterator[SegmentInputs]:
        """Consecutive parts of the file's windows (the last may be short or empty). A part's duration, rate
        and channels are those known so far; the last part's are the file's. Raises AudioDecodeError
        (VideoDecodeError for frames; MediaTooLongError past the plan's limits), also after some parts when
        the file breaks off, or when a snapshot's file changed while it was streamed."""
        plan, source = self.plan, self.path
        path = media_path(source)
        wants_frames = plan.frames_per_window > 0 and path.suffix.lower() in VIDEO_EXTENSIONS
        video = wants_frames and has_video_stream(source)
        audio = AudioStream(source, plan.sample_rate, limits=plan.limits)
        windows = stream_windows(audio, plan.window_samples, plan.hop_samples)
        try:
            first = next(windows, None)
        except AudioDecodeError:
            if not video or audio.backend is not None:
                raise
            yield from self._silent_video_parts()  # no decodable sound: indexed by its pictures alone
            return
        if first is None:
            raise AudioDecodeError(path, "no audio samples")
        group: list[AudioWindow] = [first]
        for window in windows:
            if len(group) == self.part_windows:
                yield self._part(group, audio, video)
                group = []
            group.append(window)
        if isinstance(source, MediaSnapshot):
            try:
                source.check_unchanged()
            except FileChangedError as e:
                raise UnreadableFileError(path, f"cannot read file ({e.strerror})") from e
        yield self._part(group, audio, video)

    def _part(self, windows: list[AudioWindow], audio: AudioStream, video: bool) -> SegmentInputs:
        sr = self.plan.sample_rate
        spans = [w.seconds(sr) for w in windows]
        samples: list[np.ndarray | None] = [w.samples for w in windows]
        frames = self._frames(spans) if video else [None] * len(spans)
        return SegmentInputs(spans, samples, frames, audio.duration, audio.source_rate, audio.source_channels)

    def _silent_video_parts(self) -> Iterator[SegmentInputs]:
        plan = self.plan
        sr = plan.sample_rate
        duration = video_duration(self.path)
        n = int(duration * sr)
        spans = [(s / sr, min(s + plan.window_samples, n) / sr) for s in window_starts(n, plan.window_samples, plan.hop_samples)]
        if not spans:
            raise AudioDecodeError(media_path(self.path), "no audio samples")
        for start in range(0, len(spans), self.part_windows):
            part = spans[start : start + self.part_windows]
            yield SegmentInputs(part, [None] * len(part), self._frames(part), duration, 0, 0)

    def _frames(self, spans: Sequence[tuple[float, float]]) -> list[list[np.ndarray] | None]:
        times = [self.plan.frame_times(a, b) for a, b in spans]
        flat = frames_at(self.path, [t for ts in times for t in ts], seek=True)
        frames: list[list[np.ndarray] | None] = []
        start = 0
        for ts in times:
            frames.append(flat[start : start + len(ts)])
            start += len(ts)
        return frames


def embed_inputs(encoder: Encoder, samples: list, frames: list, precision: str = "auto") -> np.ndarray:
    """Vectors of windows (and frames, for audio-visual encoders).

    `precision`: "auto" runs a model on a CUDA device under autocast (bf16, fp16 where the GPU lacks bf16)
    and on CPU in fp32; "fp32", "bf16" or "fp16" choose (see encoders/precision.py).
    """
    with autocast(encoder, precision) as reduced:
        if hasattr(encoder, "embed_segments"):
            vectors = encoder.embed_segments(samples, frames)  # type: ignore[attr-defined]
        else:
            vectors = encoder.embed_audio(samples)
    return unit_rows(encoder, vectors, reduced)


@dataclass(frozen=True)
class FrontEnd:
    """An encoder's front end (`prepare_audio`: windows -> features, e.g. log-mels) run as a step of decoding,
    at the precision the model runs at, so that the model's thread runs only the network (`embed_prepared`).

    The decoding thread runs it when it would otherwise wait on a full queue (prefetch.STEP_WHEN_AHEAD), the
    model's thread otherwise (`embed` computes what is missing): the starter's log-mel is ~16% of its model
    time, and decoding 44.1 kHz FLAC costs about as much as the model (bench/stage_profile.py) where a 16 kHz
    WAV costs next to nothing, so which thread has time to spare depends on the corpus. The vectors equal
    embed_inputs' (the front end treats each window on its own).
    """

    encoder: Encoder
    precision: str = "auto"

    @classmethod
    def of(cls, encoder: Encoder, precision: str = "auto") -> FrontEnd | None:
        """The encoder's front end, or None for an encoder without one apart (or with frames)."""
        if not hasattr(encoder, "prepare_audio") or hasattr(encoder, "embed_segments"):
            return None
        return cls(encoder, precision)

    def __call__(self, part: SegmentInputs) -> SegmentInputs:
        """`part` with `prepared` set (left unset for a part with a window without sound)."""
        if part.prepared is None and part.samples and all(s is not None for s in part.samples):
            with autocast(self.encoder, self.precision):
                part.prepared = self.encoder.prepare_audio(part.samples)  # type: ignore[attr-defined]
        return part

    def embed(self, samples: list, features: list) -> np.ndarray:
        """Unit vectors of windows from their prepared features, computing those missing (None) from
        `samples`: the same vectors whichever thread ran the front end (it treats each window on its own)."""
        missing = [i for i, f in enumerate(features) if f is None]
        with autocast(self.encoder, self.precision) as reduced:
            if missing:
                features = list(features)
                computed = self.encoder.prepare_audio([samples[i] for i in missing])  # type: ignore[attr-defined]
                for i, f in zip(missing, computed):
                    features[i] = f
            vectors = self.encoder.embed_prepared(features)  # type: ignore[attr-defined]
        return unit_rows(self.encoder, vectors, reduced)


@dataclass(frozen=True)
class FileEmbedding:
    """A file's window vectors with their spans in seconds, and the file vector (their normalised mean)."""

    spans: list[tuple[float, float]]
    vectors: np.ndarray  # (n_windows, dim)
    file_vector: np.ndarray  # (dim,)
    duration: float
    # Each window's peak absolute sample (NaN for a window without audio: a video's frames only).
    peaks: np.ndarray | None = None

    def silent(self, peak: float) -> bool:
        """Whether every window has audio and none peaks above `peak` (linear, full scale 1)."""
        return self.peaks is not None and len(self.peaks) > 0 and bool(np.all(self.peaks < peak))


def embed_file(encoder: Encoder, path: str | Path, hop_seconds: float | None = None, batch_size: int = 16,
               precision: str = "auto", limits: DecodeLimits = NO_LIMITS) -> FileEmbedding:
    """Embed `path` window by window, `batch_size` windows a pass; a long file is streamed (see file_inputs).

    Raises AudioDecodeError for unreadable or empty media, MediaTooLongError past `limits` (decoding
    stops there, whatever the file's header claims).
    """
    inputs = file_inputs(WindowPlan.of(encoder, hop_seconds, limits), path)
    spans: list[tuple[float, float]] = []
    vectors: list[np.ndarray] = []
    samples: list = []
    frames: list = []
    peaks: list[float] = []
    duration = 0.0
    for part in inputs.parts():
        spans += part.spans
        samples += part.samples
        frames += part.frames
        peaks += [float(np.max(np.abs(w))) if w is not None and len(w) else float("nan") for w in part.samples]
        duration = part.duration
        while len(samples) >= batch_size:
            vectors.append(embed_inputs(encoder, samples[:batch_size], frames[:batch_size], precision))
            del samples[:batch_size], frames[:batch_size]
    if samples:
        vectors.append(embed_inputs(encoder, samples, frames, precision))
    if not spans:
        raise AudioDecodeError(Path(path), "no audio samples")
    window_vectors = np.concatenate(vectors)
    return FileEmbedding(spans, window_vectors, l2_normalize(window_vectors.mean(axis=0)), duration,
                         np.asarray(peaks, dtype=np.float64))
