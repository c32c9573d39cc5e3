"""Landmark fingerprints (Wang 2003, as audfprint and Panako use them): what tells one recording from
another recording of the same kind, at any offset, after re-encoding, from clips of 2 s up.

audio at 8 kHz -> log spectrogram (64 ms frames, 16 ms hop) -> spectral peaks (local maxima over about
0.11 s x 140 Hz, at most PEAKS_PER_FRAME a frame) -> landmarks: each peak paired with the next
FAN_OUT peaks within 0.5 s and +-750 Hz, hashed as (anchor frequency, frequency step, time step) with the
anchor's time.

Two files match when many landmarks hashed alike also agree on one time offset: a copy (re-encoded,
resampled, louder, trimmed) keeps a share of its peaks where they were; another take of one instrument, of
one voice or of one drum kit plays other notes, words or hits, so its landmarks that hash alike fall at
scattered offsets. The match is the share of landmarks in the files' overlap that line up, so a cut copy
of half a clip scores as a whole copy does; the offset comes with it (to 16 ms).

Chromaprint (libchromaprint, in Debian) needs about 3 s of audio and tells a recording's chroma, not the
timing of its peaks; it is not used here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.media.decode import decode_audio

RATE = 8000
FRAME = 512
HOP = 128  # 16 ms
PEAKS_PER_FRAME = 3
PEAK_TIME = 7  # frames (about 0.11 s) a peak must dominate, either side together
PEAK_FREQ = 9  # bins (about 140 Hz)
FAN_OUT = 8
MAX_DT = 96  # frames (1.5 s)
MAX_DF = 96  # bins (1.5 kHz either way)
# What confirms a pair (bench/duplicates.py): landmarks at one offset, as distinct moments and as a share
# of the landmarks that fall in the overlap of the two files.
MIN_MOMENTS = 3
# Against a group's reference, the likeliest original (search/duplicates.py), the short clips' copies of
# bench/duplicates.py share 25% or more (28% or more with three moments or more); two renders that strike
# one low piano note at one moment shared 23% (a false pair at 20%). Copies that lossy coding left below this are confirmed with the spectral envelope (WEAK_SHARE).
MIN_SHARE = 0.25
MIN_RATE = 1.0  # lined-up moments per second of overlap: two loops of one drum kit share a few hits only
MIN_OVERLAP = 0.5  # of the longer file: a cut copy keeps at least half of the clip
# Weaker evidence that confirms a pair only with the spectral envelope's (search/fingerprint.py): heavy
# lossy codecs keep few peaks where they were, and the envelope alone takes one instrument's other notes.
WEAK_SHARE = 0.05
WEAK_MOMENTS = 2


@dataclass(frozen=True)
class Landmarks:
    """A file's landmark hashes with their anchors' frames, sorted by hash; `frames` the file's length."""

    hashes: np.ndarray  # int64
    times: np.ndarray  # int32 anchor frame of each hash
    frames: int

    @property
    def seconds_per_frame(self) -> float:
        return HOP / RATE


@dataclass(frozen=True)
class LandmarkMatch:
    """How well two files' landmarks line up: content at t in `a` is at t + `offset` seconds in `b`."""

    aligned: int  # landmarks hashed alike at the best offset
    share: float  # aligned / landmarks of the file with fewer of them within the overlap
    offset: float
    moments: int = 0  # distinct times (48 ms apart) of `a` whose landmarks line up
    overlap: float = 0.0  # seconds the two files share at `offset`

    @property
    def confirmed(self) -> bool:
        """Landmarks alone confirm the pair."""
        return (self.moments >= MIN_MOMENTS and self.share >= MIN_SHARE
                and self.moments >= MIN_RATE * self.overlap)

    @property
    def consistent(self) -> bool:
        """Landmarks agree with a pair that other evidence (the spectral envelope) confirms."""
        return self.moments >= WEAK_MOMENTS and self.share >= WEAK_SHARE


def landmarks_of_samples(samples: np.ndarray) -> Landmarks:
    """The landmarks of mono float audio at RATE."""
    from scipy.ndimage import maximum_filter

    samples = np.asarray(samples, dtype=np.float32)
    if len(samples) < FRAME:
        samples = np.pad(samples, (0, FRAME - len(samples)))
    n = 1 + (len(samples) - FRAME) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(samples, FRAME)[::HOP][:n]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(FRAME).astype(np.float32), axis=1)).T  # (bins, frames)
    log = np.log(np.maximum(spectrum, float(spectrum.max()) * 1e-5 + 1e-10))
    log -= log.mean()  # gain-invariant
    local = maximum_filter(log, size=(PEAK_FREQ, PEAK_TIME), mode="constant", cval=-np.inf)
    # A peak stands out of its frame: 20 dB over the frame's median, within 30 dB of its loudest bin (codec
    # noise around a pure tone is neither); the PEAKS_PER_FRAME strongest of a frame are kept, a choice each
    # frame makes alone, so that a cut copy keeps the same peaks where it overlaps.
    median = np.median(log, axis=0, keepdims=True)
    loudest = log.max(axis=0, keepdims=True)
    candidate = (log == local) & (log > np.maximum(median + 2.3, loudest - 3.5))
    ranked = np.where(candidate, log, -np.inf)
    top = np.argsort(-ranked, axis=0)[:PEAKS_PER_FRAME]  # (PEAKS_PER_FRAME, frames) bin indices
    strongest = np.take_along_axis(ranked, top, axis=0)
    keep = np.isfinite(strongest)
    bins, times = top[keep], np.broadcast_to(np.arange(n), top.shape)[keep]
    order = np.lexsort((bins, times))
    bins, times = bins[order].astype(np.int64), times[order].astype(np.int64)
    hashes, anchors = [], []
    for i in range(len(times)):
        j = i + 1
        paired = 0
        while j < len(times) and times[j] - times[i] <= MAX_DT and paired < FAN_OUT:
            dt, df = times[j] - times[i], bins[j] - bins[i]
            if (dt > 0 or df != 0) and abs(df) <= MAX_DF:  # partials of one onset pair too
                hashes.append((bins[i] << 16) | ((df + MAX_DF) << 8) | dt)
                anchors.append(times[i])
                paired += 1
            j += 1
    h = np.array(hashes, dtype=np.int64)
    t = np.array(anchors, dtype=np.int32)
    order = np.argsort(h, kind="stable")
    return Landmarks(h[order], t[order], n)


def landmarks(path: str | Path) -> Landmarks:
    """The landmarks of a media file; raises AudioDecodeError as decoding does."""
    return landmarks_of_samples(decode_audio(path, RATE).samples)


def match(a: Landmarks, b: Landmarks) -> LandmarkMatch:
    """The offset at which most of `a`'s and `b`'s landmarks agree, and how many and what share do."""
    if not len(a.hashes) or not len(b.hashes):
        return LandmarkMatch(0, 0.0, 0.0, 0)
    common = np.intersect1d(a.hashes, b.hashes)
    if not len(common):
        return LandmarkMatch(0, 0.0, 0.0, 0)
    a_lo, a_hi = np.searchsorted(a.hashes, common, "left"), np.searchsorted(a.hashes, common, "right")
    b_lo, b_hi = np.searchsorted(b.hashes, common, "left"), np.searchsorted(b.hashes, common, "right")
    offsets, a_index, b_index = [], [], []
    for i0, i1, j0, j1 in zip(a_lo, a_hi, b_lo, b_hi):
        offsets.append((b.times[j0:j1][None, :] - a.times[i0:i1][:, None]).ravel())
        a_index.append(np.repeat(np.arange(i0, i1), j1 - j0))
        b_index.append(np.tile(np.arange(j0, j1), i1 - i0))
    lags = np.concatenate(offsets).astype(np.int64)
    a_of, b_of = np.concatenate(a_index), np.concatenate(b_index)
    shift = lags.min()
    counts = np.bincount(lags - shift)
    # A landmark's time is its peak's frame: a resampled or re-encoded copy may move it by one.
    smoothed = counts + np.concatenate([[0], counts[:-1]]) + np.concatenate([counts[1:], [0]])
    # Only lags at which the files overlap by MIN_OVERLAP of the longer one: a copy cut to half a clip
    # still covers half of it; an excerpt (one note of a melody) is not a copy of the whole.
    candidates = np.arange(len(smoothed)) + int(shift)
    overlap = np.minimum(a.frames, b.frames - candidates) - np.maximum(0, -candidates)
    smoothed = np.where(overlap >= MIN_OVERLAP * max(a.frames, b.frames) - 1, smoothed, 0)
    best = int(np.argmax(smoothed))
    lag = best + int(shift)
    near = np.abs(lags - lag) <= 1
    # Landmarks of either file that line up (a hash repeated in both counts once per landmark).
    aligned = min(len(np.unique(a_of[near])), len(np.unique(b_of[near])))
    # Distinct moments that line up (peaks of one onset count once): one shared note is not a copy.
    moments = len(np.unique(a.times[a_of[near]] // 3)) if aligned else 0
    # Landmarks of each file inside the overlap at that lag: a's frames [max(0, -lag), min(a, b - lag)).
    lo, hi = max(0, -lag), min(a.frames, b.frames - lag)
    in_a = int(np.count_nonzero((a.times >= lo) & (a.times < hi)))
    in_b = int(np.count_nonzero((b.times >= lo + lag) & (b.times < hi + lag)))
    share = aligned / max(min(in_a, in_b), 1)
    # The lags of the lined-up landmarks spread over two frames when the copy was cut between frames: their
    # mean places it to a fraction of a frame.
    offset = float(lags[near].mean()) if aligned else float(lag)
    return LandmarkMatch(aligned, min(share, 1.0), offset * a.seconds_per_frame, moments,
                         max(hi - lo, 0) * a.seconds_per_frame)
