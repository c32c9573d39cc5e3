"""Streaming long files: chunked decoding equals whole-file decoding, windows are the same, a build's memory
stays bounded whatever the file's length, and a file that breaks off midway fails whole.

Tolerance of the streamed path against the one-shot path (decode_audio + cut_windows): the same window
spans and count, always; samples within 1e-4 (measured: 0 for PCM, FLAC, Vorbis, AAC and video tracks,
whose decoders and soxr's stream resampler give the one-shot values bit for bit; below 1e-6 for MP3 and
Opus, whose decoders round differently when read in pieces).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer import BuildOptions, Index, build_index
from indexer.embed import StreamedInputs, WindowPlan, embed_file, file_inputs, segment_inputs
from indexer.errors import AudioDecodeError
from indexer.media import decode as decode_module
from indexer.media import decode_audio
from indexer.media.decode import AudioStream, resampled_length
from indexer.media.source import media_path
from indexer.prefetch import read_ahead
from indexer.verify import verify_index
from indexer.windows import cut_windows, stream_windows, window_starts
from tests import helpers

TOLERANCE = 1e-4


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 400), window=st.integers(1, 60), hop=st.integers(1, 80), data=st.data())
def test_stream_windows_equal_cut_windows_for_any_chunking(n: int, window: int, hop: int, data: st.DataObject) -> None:
    samples = np.arange(n, dtype=np.float32)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=12)))
    expected = cut_windows(samples, window, hop)
    streamed = list(stream_windows(np.split(samples, cuts), window, hop))
    assert [(w.start, w.end) for w in streamed] == [(w.start, w.end) for w in expected]
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(streamed, expected))


def _signal(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    columns = [0.4 * np.sin(2 * np.pi * (200 + 150 * c) * t * (1 + t / seconds)) + 0.05 * rng.standard_normal(len(t))
               for c in range(channels)]
    return np.stack(columns, axis=1).astype(np.float32)


@pytest.mark.parametrize(("name", "rate", "channels"), [
    ("stereo.wav", 44100, 2), ("six.flac", 48000, 6), ("a.ogg", 22050, 1), ("a.mp3", 44100, 1),
    ("a.opus", 48000, 1), ("a.m4a", 44100, 1), ("clip.mp4", 48000, 1),
])
@pytest.mark.parametrize("target", [16000, 48000])
def test_streamed_decode_equals_one_shot(tmp_path: Path, name: str, rate: int, channels: int, target: int) -> None:
    signal = _signal(12.0, rate, channels)
    path = tmp_path / name
    if name.endswith(".mp4"):
        helpers.write_video(path, [(0.0, (10, 200, 10))], seconds=12.0, audio=signal[:, 0], rate=rate)
    elif channels > 1:
        soundfile.write(path, signal, rate)
    else:
        helpers.write_audio(path, signal[:, 0], rate=rate)
    one_shot = decode_audio(path, target)
    stream = AudioStream(path, target, chunk_frames=7919)  # a prime: chunks never line up with codec frames
    chunks = list(stream)
    streamed = np.concatenate(chunks)
    assert len(chunks) > 5 and stream.n_samples == len(streamed) == len(one_shot.samples)
    assert (stream.source_rate, stream.source_channels) == (one_shot.source_rate, one_shot.source_channels)
    assert np.max(np.abs(streamed - one_shot.samples)) < TOLERANCE


def test_streamed_inputs_equal_whole_file_inputs_with_overlap_and_frames(tmp_path: Path) -> None:
    """Spans, samples, frames and metadata of a streamed video equal those of the one-shot path."""
    path = helpers.write_video(tmp_path / "v.mp4", [(0.0, (220, 20, 20)), (7.0, (20, 220, 20)), (15.0, (20, 20, 220))],
                               seconds=21.3, audio=_signal(21.3, 48000)[:, 0])
    # 16 kHz, 3 s windows every 2 s, two frames each; parts of 3 windows, so frames are read part by part.
    plan = WindowPlan(16000, 48000, 32000, frames_per_window=2, stream_above_bytes=0)
    whole = segment_inputs(plan, path)
    parts = list(StreamedInputs(plan, path, part_windows=3).parts())
    assert len(parts) > 3 and all(len(p.spans) <= 3 for p in parts)
    assert [s for p in parts for s in p.spans] == whole.spans
    assert (parts[-1].duration, parts[-1].source_rate, parts[-1].channels) == (whole.duration, whole.source_rate,
                                                                               whole.channels)
    samples = [s for p in parts for s in p.samples]
    assert max(np.max(np.abs(a - b)) for a, b in zip(samples, whole.samples)) < TOLERANCE
    frames = [f for p in parts for f in p.frames]
    assert all(np.array_equal(a, b) for fa, fb in zip(frames, whole.frames) for a, b in zip(fa, fb))


def test_only_files_above_the_limit_are_streamed(tmp_path: Path) -> None:
    path = helpers.write_audio(tmp_path / "a.flac", helpers.tone(440, 3.0, rate=16000), rate=16000)
    plan = WindowPlan(16000, 16000, 16000)
    assert type(file_inputs(plan, path)).__name__ == "SegmentInputs"
    assert isinstance(file_inputs(WindowPlan(16000, 16000, 16000, stream_above_bytes=3 * 16000 * 4 - 1), path),
                      StreamedInputs)
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"fLaC" + b"\0" * 64)
    with pytest.raises(AudioDecodeError, match="truncated FLAC") as err:
        file_inputs(plan, broken)
    assert [r.split(":")[0] for r in err.value.reasons] == ["soundfile", "pyav"]  # every backend's, as before


def test_embed_file_streams_long_query_files_to_the_same_vectors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pitches = helpers.ToneEncoder.PITCHES
    audio = np.concatenate([helpers.tone(pitches[i % 5], 2.0, rate=44100) for i in range(9)] + [helpers.tone(880, 0.7, rate=44100)])
    path = helpers.write_audio(tmp_path / "q.wav", audio, rate=44100)
    encoder = helpers.ToneEncoder()
    whole = embed_file(encoder, path, batch_size=4)
    monkeypatch.setattr("indexer.embed.STREAM_ABOVE_BYTES", 0)
    assert isinstance(file_inputs(WindowPlan.of(encoder), path), StreamedInputs)
    streamed = embed_file(encoder, path, batch_size=4)
    assert streamed.spans == whole.spans and len(whole.spans) == 10  # 9 hop windows, 1 aligned to the end
    np.testing.assert_array_equal(streamed.vectors, whole.vectors)
    assert streamed.duration == whole.duration


def _segments(index_path: Path) -> dict[tuple[str, float, float], np.ndarray]:
    index = Index(index_path)
    store = index.load_stores()["segments"]
    ids = store.ids().tolist()
    segments = index.catalog.segments(ids)
    out = {(Path(segments[i].path).name, segments[i].start, segments[i].end): v for i, v in zip(ids, store.reconstruct(ids))}
    index.close()
    return out


@pytest.mark.parametrize("decode_workers", [0, 1])
def test_a_streamed_build_equals_a_whole_file_build(tmp_path: Path, tone_model: Path, monkeypatch: pytest.MonkeyPatch,
                                                    decode_workers: int) -> None:
    """Every file streamed (read ahead by a thread with a worker, inline without) gives the same index."""
    model = tone_model
    corpus = tmp_path / "corpus"
    pitches = helpers.ToneEncoder.PITCHES
    for i in range(4):
        audio = np.concatenate([helpers.tone(pitches[(i + j) % 5], 2.0, rate=22050) for j in range(7 + i)])
        helpers.write_audio(corpus / f"f{i}.flac", audio[: len(audio) - 3000 * i], rate=22050)
    helpers.write_audio(corpus / "short.wav", helpers.tone(440, 0.5, rate=16000), rate=16000)
    options = BuildOptions(model=str(model), batch_size=5, decode_workers=decode_workers, device="cpu")
    build_index(corpus, tmp_path / "whole", options)
    monkeypatch.setattr("indexer.embed.STREAM_ABOVE_BYTES", 0)
    report = build_index(corpus, tmp_path / "streamed", options)
    assert report.added == 5 and not report.failed
    whole, streamed = _segments(tmp_path / "whole"), _segments(tmp_path / "streamed")
    # f1 to f3 stop short of a hop: each ends with a window aligned to the end
    assert sorted(streamed) == sorted(whole) and len(whole) == 7 + 8 + 9 + 10 + 1
    assert all(np.array_equal(streamed[key], whole[key]) for key in whole)


def test_a_file_that_breaks_off_midway_fails_whole(tmp_path: Path, tone_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tone_model
    corpus = tmp_path / "corpus"
    for name in ("a.wav", "b.wav", "c.wav"):
        helpers.write_audio(corpus / name, helpers.tone(440, 30.0, rate=16000), rate=16000)
    real = decode_module.STREAM_BACKENDS["soundfile"]

    def breaks_in_b(source, chunk_frames: int):  # type: ignore[no-untyped-def]
        for i, block in enumerate(real(source, chunk_frames)):
            if media_path(source).name == "b.wav" and i == 4:  # after 4 chunks (16 s): windows of b were embedded already
                raise OSError("Input/output error")
            yield block

    monkeypatch.setitem(decode_module.STREAM_BACKENDS, "soundfile", breaks_in_b)
    monkeypatch.setattr("indexer.embed.STREAM_ABOVE_BYTES", 0)
    monkeypatch.setattr(decode_module, "CHUNK_FRAMES", 4 * 16000)
    report = build_index(corpus, tmp_path / "index", BuildOptions(model=str(model), batch_size=3, decode_workers=0,
                                                                  device="cpu"))
    assert report.added == 2 and report.segments_added == 30
    assert [(Path(f.path).name, f.reason, f.detail) for f in report.failed] == [
        ("b.wav", "input/output error while reading (disk or network)", "soundfile: Input/output error (after 16.0 s)")]
    assert {name for name, _, _ in _segments(tmp_path / "index")} == {"a.wav", "c.wav"}
    assert verify_index(tmp_path / "index").ok


def test_read_ahead_keeps_order_and_raises_where_the_producer_failed() -> None:
    def items():  # type: ignore[no-untyped-def]
        yield from range(5)
        raise AudioDecodeError("x.wav", "broke")

    seen = []
    with pytest.raises(AudioDecodeError, match="broke"):
        for item in read_ahead(items(), depth=2):
            seen.append(item)  # noqa: PERF402 - list() would lose the items before the error
    assert seen == [0, 1, 2, 3, 4]
    produced = []

    def endless():  # type: ignore[no-untyped-def]
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    ahead = read_ahead(endless(), depth=2)
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    ahead.close()  # stops the producer: it made at most depth + 2 items beyond what was taken
    assert len(produced) <= 3 + 2 + 2


_MEMORY_PROBE = """
import json, resource, sys
from pathlib import Path
from indexer import BuildOptions, build_index
warm, corpus, index, model = map(Path, sys.argv[1:5])
options = BuildOptions(model=str(model), batch_size=16, device="cpu")
build_index(warm, index.with_name("warm-index"), options)  # imports and first-use allocations
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = build_index(corpus, index, options)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kib": after - before, "segments": report.segments_added, "failed": len(report.failed)}))
"""


def test_a_long_stereo_file_is_indexed_in_bounded_memory(tmp_path: Path, tone_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """20 minutes of 48 kHz stereo (440 MiB decoded as float32) grow the build's peak RSS by a few MiB."""
    model = tone_model
    pitches = helpers.ToneEncoder.PITCHES
    rate, block_seconds, blocks = 48000, 10, 120
    tail = int(0.7 * rate)  # 20 min 0.7 s: the last window is aligned to the end, as cut_windows does
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    t = np.arange(block_seconds * rate) / rate
    with soundfile.SoundFile(str(corpus / "long.wav"), "w", rate, 2, subtype="PCM_16") as f:
        for b in range(blocks):  # written in blocks: the test itself stays small in memory
            tone = 0.3 * np.sin(2 * np.pi * pitches[b % 5] * t)
            f.write(np.stack([tone, 0.5 * tone], axis=1))
        f.write(np.stack([0.3 * np.sin(2 * np.pi * 880 * t[:tail])] * 2, axis=1))
    frames = blocks * block_seconds * rate + tail
    decoded_kib = frames * 2 * 4 // 1024
    warm = tmp_path / "warm"
    helpers.write_audio(warm / "w.wav", helpers.tone(440, 3.0, rate=rate), rate=rate)

    result = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(warm), str(corpus), str(tmp_path / "index"),
                             str(model)], capture_output=True, text=True, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["failed"] == 0
    assert figures["growth_kib"] < decoded_kib / 16, figures  # measured: 7 MiB; the one-shot path: 950 MiB

    # The windows are those of the one-shot path: its spans, and each window's tone where it was written.
    n = resampled_length(frames, rate, 16000)
    expected_spans = [(s / 16000, (s + 32000) / 16000) for s in window_starts(n, 32000, 32000)]
    segments = _segments(tmp_path / "index")
    assert sorted((start, end) for _, start, end in segments) == expected_spans and len(expected_spans) == 601
    for (_, start, _), vector in segments.items():
        pitch = 880.0 if start >= blocks * block_seconds - 1 else pitches[int(start // block_seconds) % 5]
        assert int(np.argmax(vector)) == pitches.index(pitch), start
