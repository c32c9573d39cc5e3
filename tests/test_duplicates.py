"""Near-duplicate groups: the window-aligned algorithm on seeded vectors, then through a real build (decode,
windows, the transparent ToneEncoder) from Engine, the CLI and the HTTP API."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from indexer import BuildOptions, build_index
from search.duplicates import FileWindows, duplicate_pairs, find_duplicates
from search.engine import Engine
from tests import helpers
from tests.service_support import RATE, running_service, steps

HOP = 2.0


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _windows(file_id: int, vectors: np.ndarray, first_start: float = 0.0) -> FileWindows:
    starts = first_start + HOP * np.arange(len(vectors))
    return FileWindows(file_id, f"/corpus/{file_id}.wav", float(starts[-1] + HOP), starts, vectors)


@pytest.fixture
def recording() -> np.ndarray:
    return _unit(np.random.default_rng(0).standard_normal((12, 16)))


def test_trimmed_noisy_copy_pairs_with_its_original_at_the_trimmed_offset(recording: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    original = _windows(1, recording)
    copy = _windows(2, _unit(recording[3:10] + 0.1 * rng.standard_normal((7, 16))))  # 6 s cut at the start
    pairs = duplicate_pairs([original, copy], HOP, threshold=0.9)
    assert [(p.a, p.b, p.offset, p.windows) for p in pairs] == [(1, 2, -6.0, 7)]
    expected = float(np.mean(np.sum(recording[3:10] * copy.vectors, axis=1)))
    assert pairs[0].similarity == pytest.approx(expected, abs=1e-5)


def test_a_distinct_recording_of_the_same_kind_is_not_a_duplicate(recording: np.ndarray) -> None:
    # Another take: each window near the original's (cosine about 0.7), none the same.
    rng = np.random.default_rng(2)
    take = _unit(recording + 1.0 * _unit(rng.standard_normal((12, 16))))
    pairs = duplicate_pairs([_windows(1, recording), _windows(2, take)], HOP, threshold=0.9)
    assert pairs == []
    loose = duplicate_pairs([_windows(1, recording), _windows(2, take)], HOP, threshold=0.5)
    assert [(p.a, p.b, p.offset) for p in loose] == [(1, 2, 0.0)]


def test_a_shared_intro_is_not_a_copy(recording: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    other = np.concatenate([recording[:2], _unit(rng.standard_normal((10, 16)))])
    assert duplicate_pairs([_windows(1, recording), _windows(2, other)], HOP, threshold=0.9) == []


def test_group_lists_the_longest_first_with_offsets_through_other_members(recording: np.ndarray) -> None:
    original = _windows(1, recording)
    head_cut = _windows(2, recording[2:])  # starts 4 s into the original
    both_cut = _windows(3, recording[3:8])  # 6 s in; also pairs with head_cut directly
    unrelated = _windows(4, _unit(np.random.default_rng(4).standard_normal((5, 16))))
    groups = find_duplicates([both_cut, unrelated, head_cut, original], HOP)
    assert len(groups) == 1
    members = [(m.file_id, round(m.similarity, 4), m.offset) for m in groups[0].members]
    assert members == [(1, 1.0, 0.0), (2, 1.0, 4.0), (3, 1.0, 6.0)]


def test_windows_off_the_hop_grid_align_to_the_nearest_start(recording: np.ndarray) -> None:
    # The end-aligned last window of a file starts off the grid; it still lines up with its match.
    original = _windows(1, recording)
    starts = np.append(HOP * np.arange(5), 9.3)
    copy = FileWindows(2, "/corpus/2.wav", 13.3, starts, recording[2:8])
    (pair,) = duplicate_pairs([original, copy], HOP, threshold=0.9)
    assert (pair.offset, pair.windows) == (-4.0, 6)


# -- through a build -----------------------------------------------------------------------------------
MELODY = (220, 330, 440, 660, 880, 220, 440)  # 14 s, one pitch per 2 s window


def _write(path: Path, samples: np.ndarray) -> None:
    helpers.write_audio(path, samples, rate=RATE)


@pytest.fixture
def duplicate_index(tmp_path: Path, tone_model: Path) -> Path:
    corpus = tmp_path / "corpus"
    melody = steps(*MELODY)
    _write(corpus / "melody.wav", melody)
    _write(corpus / "copies" / "cut_start_quieter.mp3", 0.5 * melody[4 * RATE :])  # 4 s cut, -6 dB, mp3
    _write(corpus / "copies" / "cut_end.flac", melody[: -2 * RATE])
    stereo = np.stack([melody[2 * RATE :], melody[2 * RATE :]], axis=1)  # 2 s cut, stereo, 8 kHz
    soundfile.write(corpus / "copies" / "stereo_8k.wav", stereo[::2], RATE // 2)
    _write(corpus / "other_melody.wav", steps(880, 660, 440, 330, 220, 880, 330))  # same pitches, other order
    _write(corpus / "a440.wav", steps(440))
    index = tmp_path / "index"
    build_index(corpus, index, BuildOptions(model=str(tone_model), decode_workers=0))
    return index


EXPECTED = [("melody.wav", 1.0, 0.0), ("copies/cut_end.flac", 1.0, 0.0), ("copies/cut_start_quieter.mp3", 1.0, 4.0),
            ("copies/stereo_8k.wav", 1.0, 2.0)]


def _relative(groups: list[list[tuple[str, float, float]]], corpus: Path) -> list[list[tuple[str, float, float]]]:
    return [[(str(Path(p).relative_to(corpus.resolve())), s, o) for p, s, o in g] for g in groups]


def test_engine_groups_the_copies_of_a_recording_and_nothing_else(duplicate_index: Path) -> None:
    engine = Engine(duplicate_index)
    try:
        groups = engine.duplicates()
    finally:
        engine.close()
    found = [[(m.path, round(m.similarity, 3), m.offset) for m in g.members] for g in groups]
    corpus = duplicate_index.parent / "corpus"
    assert _relative(found, corpus) == [EXPECTED]


def test_cli_prints_groups_as_json(duplicate_index: Path) -> None:
    from search.cli import main

    result = CliRunner().invoke(main, ["duplicates", "--index", str(duplicate_index), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    found = [[(m["path"], m["similarity"], m["offset"]) for m in g["members"]] for g in data]
    assert _relative(found, duplicate_index.parent / "corpus") == [EXPECTED]
    # At a threshold every pair of these one-hot windows clears, the other melody joins too.
    loose = CliRunner().invoke(main, ["duplicates", "--index", str(duplicate_index), "--threshold", "0.2"])
    assert loose.exit_code == 0, loose.output
    assert "other_melody.wav" in loose.output


def test_http_api_and_page_list_the_groups(duplicate_index: Path) -> None:
    with running_service(duplicate_index) as url, httpx.Client(base_url=url) as client:
        body = client.get("/api/duplicates").json()
        assert body["threshold"] == 0.9 and body["generation"] == 1
        members = body["groups"][0]["members"]
        assert [(m["name"], m["offset"]) for m in members] == [
            ("melody.wav", 0.0), ("cut_end.flac", 0.0), ("cut_start_quieter.mp3", 4.0), ("stereo_8k.wav", 2.0)]
        assert client.get(members[2]["audio_url"]).status_code == 200
        assert client.get("/api/duplicates", params={"threshold": 1.5}).status_code == 422
        page = client.get("/duplicates")
        assert page.status_code == 200 and "/static/duplicates.js" in page.text
        assert client.get("/static/duplicates.js").status_code == 200
