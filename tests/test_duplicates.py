"""Near-duplicate groups: the window-aligned algorithm on seeded vectors, then through a real build (decode,
windows, the transparent ToneEncoder) from Engine, the CLI and the HTTP API."""

from __future__ import annotations

import json
import re
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
from tests.service_support import RATE, running_service

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


def played(*freqs: float, seed: int = 0) -> np.ndarray:
    """2 s of each pitch in turn, struck at seeded irregular times with two weaker partials: a played
    instrument (landmark fingerprints need onsets; a steady sine has none), one pitch per window."""
    rng = np.random.default_rng(seed)
    t = np.arange(2 * RATE) / RATE
    notes = []
    for freq in freqs:
        strikes = np.sort(rng.uniform(0, 1.9, size=6))
        since = np.min(np.where(t[None, :] >= strikes[:, None], t[None, :] - strikes[:, None], 9.0), axis=0)
        envelope = np.where(since < 9.0, np.exp(-6 * since), 0.05)
        x = (np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t) + 0.2 * np.sin(6 * np.pi * freq * t))
        notes.append(0.3 * x * envelope)
    return np.concatenate(notes).astype(np.float32)


def _write(path: Path, samples: np.ndarray) -> None:
    helpers.write_audio(path, samples, rate=RATE)


@pytest.fixture
def duplicate_index(tmp_path: Path, tone_model: Path) -> Path:
    corpus = tmp_path / "corpus"
    melody = played(*MELODY)
    _write(corpus / "melody.wav", melody)
    _write(corpus / "copies" / "cut_start_quieter.mp3", 0.5 * melody[4 * RATE :])  # 4 s cut, -6 dB, mp3
    _write(corpus / "copies" / "cut_end.flac", melody[: -2 * RATE])
    _write(corpus / "copies" / "cut_off_grid.ogg", melody[int(1.3 * RATE) :])  # not a multiple of the hop
    stereo = np.stack([melody[2 * RATE :], melody[2 * RATE :]], axis=1)  # 2 s cut, stereo, 8 kHz
    soundfile.write(corpus / "copies" / "stereo_8k.wav", stereo[::2], RATE // 2)
    _write(corpus / "other_melody.wav", played(880, 660, 440, 330, 220, 880, 330, seed=1))  # same pitches, other order
    _write(corpus / "a440.wav", played(440))
    index = tmp_path / "index"
    build_index(corpus, index, BuildOptions(model=str(tone_model), decode_workers=0))
    return index


# The reference (the longest) first; each copy with where it starts in it, to 20 ms from the spectral check.
EXPECTED = {"copies/cut_end.flac": 0.0, "copies/cut_off_grid.ogg": 1.3, "copies/cut_start_quieter.mp3": 4.0,
            "copies/stereo_8k.wav": 2.0}


def _check_group(members: list[tuple[str, float, float | None, float]], corpus: Path) -> None:
    """(path, similarity, match, offset) of a group's members against EXPECTED."""
    names = [str(Path(m[0]).relative_to(corpus.resolve())) for m in members]
    assert names[0] == "melody.wav" and members[0][1:] == (1.0, 1.0, 0.0)
    assert {n: round(m[3], 2) for n, m in zip(names[1:], members[1:])} == EXPECTED
    matches = [m[2] for m in members[1:]]  # shares of lined-up landmarks: lossy copies keep fewer peaks
    assert all(m >= 0.5 for m in matches) and matches == sorted(matches, reverse=True)
    assert all(m[1] == pytest.approx(1.0) for m in members[1:])  # one-hot pitch windows line up exactly


def test_engine_groups_the_copies_of_a_recording_and_nothing_else(duplicate_index: Path) -> None:
    engine = Engine(duplicate_index)
    try:
        groups = engine.duplicates()
        unchecked = engine.duplicates(check=False)
    finally:
        engine.close()
    assert len(groups) == 1
    _check_group([(m.path, m.similarity, m.match, m.offset) for m in groups[0].members], duplicate_index.parent / "corpus")
    # Without the check, offsets stay on the 2 s hop grid and nothing is confirmed.
    assert [len(g.members) for g in unchecked] == [5]
    assert all(m.match is None and m.offset % 2.0 == 0 for m in unchecked[0].members)


def test_cli_prints_groups_as_json(duplicate_index: Path) -> None:
    from search.cli import main

    result = CliRunner().invoke(main, ["duplicates", "--index", str(duplicate_index), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data) == 1
    _check_group([(m["path"], m["similarity"], m["match"], m["offset"]) for m in data[0]["members"]],
                 duplicate_index.parent / "corpus")
    # Window vectors alone, at a threshold every pair of these one-hot windows clears: the other melody
    # (the same pitches in another order) joins; the spectral check keeps it out.
    loose = CliRunner().invoke(main, ["duplicates", "--index", str(duplicate_index), "--threshold", "0.1", "--no-check"])
    assert loose.exit_code == 0, loose.output
    assert "other_melody.wav" in loose.output
    checked = CliRunner().invoke(main, ["duplicates", "--index", str(duplicate_index), "--threshold", "0.1"])
    assert checked.exit_code == 0, checked.output
    assert "other_melody.wav" not in checked.output and "cut_off_grid.ogg" in checked.output


def test_http_api_and_page_list_the_groups(duplicate_index: Path) -> None:
    with running_service(duplicate_index) as url, httpx.Client(base_url=url) as client:
        body = client.get("/api/duplicates").json()
        assert (body["threshold"], body["min_match"], body["generation"]) == (0.8, 0.7, 1)
        members = body["groups"][0]["members"]
        _check_group([(m["path"], m["similarity"], m["match"], m["offset"]) for m in members],
                     duplicate_index.parent / "corpus")
        assert client.get(members[2]["audio_url"]).status_code == 200
        unchecked = client.get("/api/duplicates", params={"check": "false"}).json()
        assert unchecked["min_match"] is None and unchecked["groups"][0]["members"][1]["match"] is None
        assert client.get("/api/duplicates", params={"threshold": 1.5}).status_code == 422
        page = client.get("/duplicates")
        assert page.status_code == 200 and "/static/duplicates.js" in page.text
        assert client.get("/static/duplicates.js").status_code == 200


def test_spectral_match_finds_a_shifted_quieter_copy_and_not_another_take(tmp_path: Path) -> None:
    from search.fingerprint import aligned_match, spectral_print

    rng = np.random.default_rng(5)
    rate = 16000
    # Noise bursts of random lengths and pitches: what one take has, another take of the same kind lacks.
    def take(seed: int) -> np.ndarray:
        r = np.random.default_rng(seed)
        return np.concatenate([helpers.tone(float(r.uniform(200, 2000)), float(r.uniform(0.1, 0.5)), rate=rate)
                               for _ in range(40)])

    original = take(1)
    copy = 0.5 * original[int(2.34 * rate) :] + 0.01 * rng.standard_normal(len(original) - int(2.34 * rate))
    for name, samples in (("original.wav", original), ("copy.wav", copy), ("other.wav", take(2))):
        soundfile.write(tmp_path / name, samples.astype(np.float32), rate)
    a, b, c = (spectral_print(tmp_path / n) for n in ("original.wav", "copy.wav", "other.wav"))
    match, offset = aligned_match(a, b, 0.0, 20.0, min_overlap_seconds=5.0)
    assert match > 0.95 and offset == pytest.approx(-2.34, abs=0.02)
    assert aligned_match(a, c, 0.0, 20.0, min_overlap_seconds=5.0)[0] < 0.5


def test_duplicates_page_lists_the_group_in_a_browser(duplicate_index: Path, tmp_path: Path) -> None:
    from playwright import sync_api

    errors: list[str] = []
    with running_service(duplicate_index) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{url}/duplicates")
            page.wait_for_selector(".duplicate-group")
            rows = page.locator(".duplicate-member .name").all_text_contents()
            assert rows[0] == "melody.wav" and sorted(rows[1:]) == sorted(Path(p).name for p in EXPECTED)
            assert "starts at +4.00 s" in page.locator(".duplicate-members").inner_text()
            # A stricter envelope match than any copy reaches: the copies whose landmark fingerprints confirm
            # them alone stay (the envelope only decides where the landmarks are too few), and the page
            # says which rule it applied.
            page.fill("#min-match", "0.9999")
            page.click("button[type=submit]")
            sync_api.expect(page.locator("#status")).to_have_text(re.compile("^1 group .*match ≥ 0.9999"))
            page.screenshot(path=str(tmp_path / "duplicates.png"))
        finally:
            browser.close()
    assert errors == []


# -- short clips ------------------------------------------------------------------------------------------
def _hit(seed: int, seconds: float) -> np.ndarray:
    """A drum-like hit: seeded noise and a falling tone under a fast decay."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    body = np.sin(2 * np.pi * (180 + 60 * seed) * t * (1 - t)) + 0.5 * rng.standard_normal(len(t))
    return (0.5 * body * np.exp(-12 * t)).astype(np.float32)


@pytest.fixture
def short_index(tmp_path: Path, tone_model: Path) -> Path:
    import shutil

    corpus = tmp_path / "corpus"
    _write(corpus / "warning.wav", 0.3 * played(660, seed=3)[: RATE // 2])  # 0.5 s
    shutil.copy(corpus / "warning.wav", corpus / "attention.wav")  # byte-identical
    _write(corpus / "kick.wav", _hit(1, 0.2))
    shutil.copy(corpus / "kick.wav", corpus / "kick copy.wav")
    _write(corpus / "kick.flac", _hit(1, 0.2))  # decoded-identical, other bytes: the envelope confirms it
    _write(corpus / "snare.wav", _hit(4, 0.2))  # another hit: not a copy
    _write(corpus / "click.wav", _hit(2, 0.05))  # too short to check
    _write(corpus / "click.flac", _hit(2, 0.05))
    index = tmp_path / "index"
    build_index(corpus, index, BuildOptions(model=str(tone_model), decode_workers=0))
    return index


def test_byte_identical_and_decoded_identical_short_clips_are_grouped_by_default(short_index: Path) -> None:
    engine = Engine(short_index)
    try:
        groups = engine.duplicates()
        notes = engine.notes
    finally:
        engine.close()
    root = (short_index.parent / "corpus").resolve()
    found = sorted(sorted(str(Path(m.path).relative_to(root)) for m in g.members) for g in groups)
    assert found == [["attention.wav", "warning.wav"], ["kick copy.wav", "kick.flac", "kick.wav"]]
    for g in groups:
        assert all(m.offset == 0.0 and m.match is not None for m in g.members)
    identical = [m for g in groups for m in g.members if m.path.endswith(("attention.wav", "kick copy.wav"))]
    assert [m.match for m in identical] == [1.0, 1.0]
    # The 0.05 s clicks (other bytes) could not be checked, and the user is told.
    assert groups.too_short == 1
    assert any("1 candidate pair left unchecked" in n for n in notes)
    from search.cli import main

    printed = CliRunner().invoke(main, ["duplicates", "--index", str(short_index)])
    assert printed.exit_code == 0, printed.output
    assert "kick copy.wav" in printed.output and "+0.00 s" in printed.output and "-0.00" not in printed.output
    assert "note: 1 candidate pair left unchecked" in printed.stderr  # the CLI says what it could not check


def test_offsets_at_the_reference_start_print_as_plus_zero() -> None:
    from search.duplicates import DuplicateMember

    member = DuplicateMember(1, "/c/a.wav", 1.0, 1.0, -0.0, 1.0)
    assert f"{member.offset:+8.2f}" == "   +0.00" and member.to_json()["offset"] == 0.0
    assert f"{DuplicateMember(1, '/c/a.wav', 1.0, 1.0, -0.0004).offset:+.2f}" == "+0.00"
    assert DuplicateMember(1, "/c/a.wav", 1.0, 1.0, -1.25).offset == -1.25
