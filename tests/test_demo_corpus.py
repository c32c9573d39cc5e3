"""The demo-corpus generator: determinism, files and metadata, scene acoustics, captions, sample sets."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from indexer.demo import (
    SCENES,
    SOUND_CLASSES,
    RenderError,
    SampleSetNotInstalledError,
    SoundClassUnavailableError,
    UnknownSampleSetError,
    apply_scene,
    classes_available,
    clip_captions,
    describe_label,
    generate,
    generate_demo_corpus,
    read_demo_corpus,
    sample_sets,
    scene_phrases,
)
from indexer.demo.generate import finish_clip
from indexer.demo.loudness import PEAK_CEILING_DBFS, TARGET_DBFS, gated_rms
from indexer.demo.midi import Note, ProgramChange, midi_file_bytes
from indexer.demo.scenes import ROOMS, SCENE_LEVEL_DB, room_impulse_response
from indexer.demo.synth import MidiClip, render_clips

SAMPLE_RATE = 32000
FLUIDR3 = sample_sets.SAMPLE_SETS["fluidr3"]
FREEPATS = sample_sets.SAMPLE_SETS["freepats"]

# One class of every kind, so each code path renders.
MIXED_CLASSES = ["church organ", "violin", "drum kit", "speech", "telephone ringing", "rain", "noise"]
TINY = {"size": 10, "seed": 0, "classes": MIXED_CLASSES, "duration_s": 2.0, "workers": 1}


def _wav_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.wav"))}


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    out_dir = tmp_path_factory.mktemp("demo") / "corpus"
    return out_dir, generate_demo_corpus(out_dir, **TINY)


# --- determinism -----------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files_and_captions(tiny_corpus, tmp_path: Path) -> None:
    first_dir, first = tiny_corpus
    progress: list[tuple[int, int]] = []
    second = generate_demo_corpus(
        tmp_path / "again", progress=lambda done, total: progress.append((done, total)), **TINY
    )
    assert second == first
    assert progress == [(10, 10)]  # one group of clips, reported when written
    assert _wav_bytes(tmp_path / "again") == _wav_bytes(first_dir)
    for name in ("metadata.csv", "captions.jsonl"):
        assert (tmp_path / "again" / name).read_bytes() == (first_dir / name).read_bytes()


def test_different_seed_changes_every_clip(tiny_corpus, tmp_path: Path) -> None:
    first_dir, first = tiny_corpus
    other = generate_demo_corpus(tmp_path / "other", **{**TINY, "seed": 1})
    other_wavs, first_wavs = _wav_bytes(tmp_path / "other"), _wav_bytes(first_dir)
    assert other_wavs.keys() == first_wavs.keys()  # same classes in the same turns
    assert all(other_wavs[path] != first_wavs[path] for path in first_wavs)
    assert [c.captions for c in other] != [c.captions for c in first]


def test_a_clip_does_not_depend_on_the_corpus_size(tmp_path: Path) -> None:
    settings = {"seed": 5, "classes": ["piano", "cello", "noise"], "duration_s": 2.0, "workers": 1}
    small = generate_demo_corpus(tmp_path / "small", size=3, **settings)
    large = generate_demo_corpus(tmp_path / "large", size=7, **settings)
    assert large[:3] == small
    large_wavs = _wav_bytes(tmp_path / "large")
    assert {path: large_wavs[path] for path in _wav_bytes(tmp_path / "small")} == _wav_bytes(
        tmp_path / "small"
    )


def test_parallel_workers_write_the_same_bytes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(generate, "CLIPS_PER_GROUP", 3)  # three groups for two workers
    settings = {"size": 8, "seed": 9, "classes": ["harp", "tuba", "rain"], "duration_s": 1.5}
    progress: list[tuple[int, int]] = []
    parallel = generate_demo_corpus(
        tmp_path / "parallel",
        workers=2,
        progress=lambda done, total: progress.append((done, total)),
        **settings,
    )
    serial = generate_demo_corpus(tmp_path / "serial", workers=1, **settings)
    assert parallel == serial
    assert _wav_bytes(tmp_path / "parallel") == _wav_bytes(tmp_path / "serial")
    assert [total for _, total in progress] == [8, 8, 8] and progress[-1] == (8, 8)


# --- files and metadata ----------------------------------------------------------------------------


def test_metadata_rows_match_the_files_on_disk(tiny_corpus) -> None:
    out_dir, clips = tiny_corpus
    assert {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.wav")} == {c.path for c in clips}
    assert read_demo_corpus(out_dir) == clips
    with open(out_dir / "metadata.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["path"] for row in rows] == [c.path for c in clips]
    assert {
        "path",
        "label",
        "scene",
        "register",
        "dynamics",
        "articulation",
        "sample_set",
        "caption",
    } <= rows[0].keys()
    records = [json.loads(line) for line in (out_dir / "captions.jsonl").read_text().splitlines()]
    assert [(r["path"], r["label"], r["caption"], tuple(r["captions"])) for r in records] == [
        (c.path, c.label, c.label, c.captions) for c in clips
    ]
    for clip in clips:
        info = sf.info(out_dir / clip.path)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (
            SAMPLE_RATE,
            1,
            2 * SAMPLE_RATE,
            "PCM_16",
        )
        assert clip.path == f"{clip.label.replace(' ', '_')}/{clip.clip_id}.wav"


def test_classes_take_turns_and_cycle_through_scenes(tiny_corpus) -> None:
    _, clips = tiny_corpus
    assert [c.label for c in clips] == (MIXED_CLASSES * 2)[:10]
    n = len(MIXED_CLASSES)
    assert [c.scene for c in clips] == [SCENES[(i % n + i // n) % len(SCENES)] for i in range(10)]
    assert [c.sample_set for c in clips[:7]] == [
        "fluidr3",
        "fluidr3",
        "fluidr3",
        "espeak-ng",
        "freedesktop",
        "synthetic",
        "synthetic",
    ]
    for clip in clips:
        sound_class = SOUND_CLASSES[clip.label]
        assert clip.register in sound_class.registers
        assert clip.articulation in sound_class.articulations
        assert clip.dynamics in ("soft", "loud")


def test_levels_are_normalised_without_clipping(tiny_corpus) -> None:
    out_dir, clips = tiny_corpus
    ceiling = 10 ** (PEAK_CEILING_DBFS / 20)
    for clip in clips:
        audio, _ = sf.read(out_dir / clip.path)
        level_db = 20 * np.log10(gated_rms(audio, SAMPLE_RATE))
        target_db = TARGET_DBFS[clip.dynamics] + SCENE_LEVEL_DB.get(clip.scene, 0.0)
        peak = np.abs(audio).max()
        assert peak <= ceiling + 1 / 32767
        # At the target level, unless the peak ceiling held it lower.
        assert level_db == pytest.approx(target_db, abs=0.05) or (
            level_db < target_db and peak > ceiling - 2e-4
        )


# --- scenes ----------------------------------------------------------------------------------------


def _band_fractions(audio: np.ndarray) -> tuple[float, float]:
    """Fractions of the power below 200 Hz and above 4 kHz."""
    frequencies, power = signal.welch(audio, SAMPLE_RATE, nperseg=2048)
    return power[frequencies < 200].sum() / power.sum(), power[frequencies > 4000].sum() / power.sum()


def test_telephone_keeps_only_the_voice_band(tmp_path: Path) -> None:
    settings = {
        "size": 6,
        "seed": 7,
        "classes": ["church organ", "noise", "piano"],
        "duration_s": 2.0,
        "workers": 1,
    }
    dry = generate_demo_corpus(tmp_path / "dry", scenes=["dry"], **settings)
    phone = generate_demo_corpus(tmp_path / "phone", scenes=["telephone"], **settings)
    # Same seed: the same music, only the scene differs.
    assert [(c.label, c.register, c.articulation) for c in phone] == [
        (c.label, c.register, c.articulation) for c in dry
    ]
    dry_fractions = np.array([_band_fractions(sf.read(tmp_path / "dry" / c.path)[0]) for c in dry])
    phone_fractions = np.array([_band_fractions(sf.read(tmp_path / "phone" / c.path)[0]) for c in phone])
    assert phone_fractions.max() < 2e-4
    assert np.all(phone_fractions[:, 1] * 100 < dry_fractions[:, 1])
    assert phone_fractions[:, 0].mean() * 100 < dry_fractions[:, 0].mean()


def test_cathedral_leaves_a_long_tail_after_the_note() -> None:
    # One short xylophone note at 100-200 ms: measure what is left 0.8-1.3 s after its release.
    dry = render_clips(FLUIDR3, [MidiClip(13, [Note(60, 110, 100, 100)])], 3000, SAMPLE_RATE)[0]
    tail_db = {}
    for scene in ("dry", "small room", "cathedral"):
        audio = finish_clip(dry, scene, "loud", np.random.default_rng(0)).astype(np.float64)
        frames = np.mean(audio[: len(audio) // 3200 * 3200].reshape(-1, 3200) ** 2, axis=1)
        tail_db[scene] = 10 * np.log10(np.mean(audio[32000:48000] ** 2) / frames.max() + 1e-20)
    assert tail_db["cathedral"] > -20.0
    assert tail_db["dry"] < -50.0 and tail_db["small room"] < -50.0
    assert tail_db["cathedral"] - max(tail_db["dry"], tail_db["small room"]) > 30.0


def _rt60_s(response: np.ndarray, band_hz: tuple[float, float]) -> float:
    """Decay time from the Schroeder integral between -5 and -25 dB, extrapolated to 60 dB."""
    sos = signal.butter(4, band_hz, btype="bandpass", fs=SAMPLE_RATE, output="sos")
    energy = np.cumsum(signal.sosfilt(sos, response)[::-1] ** 2)[::-1]
    decay_db = 10 * np.log10(energy / energy[0])
    start, stop = np.argmax(decay_db <= -5), np.argmax(decay_db <= -25)
    return 60 * (stop - start) / SAMPLE_RATE / 20


@pytest.mark.parametrize(
    ("scene", "rt60_s"), [("cathedral", 5.0), ("concert hall", 2.0), ("small room", 0.4)]
)
def test_room_impulse_responses_decay_at_their_rt60(scene: str, rt60_s: float) -> None:
    response = room_impulse_response(ROOMS[scene], SAMPLE_RATE, np.random.default_rng(3))
    assert _rt60_s(response, (500.0, 2000.0)) == pytest.approx(rt60_s, rel=0.12)
    # Stone and air absorb the highs first: the top band dies out sooner, as the room's table says.
    top_band_rt60_s = rt60_s * ROOMS[scene].band_rt60_scale[-1]
    assert top_band_rt60_s < 0.75 * rt60_s
    assert _rt60_s(response, (6000.0, 12000.0)) == pytest.approx(top_band_rt60_s, rel=0.15)


def test_scenes_keep_length_and_dry_is_untouched() -> None:
    audio = np.random.default_rng(0).standard_normal(SAMPLE_RATE)
    for scene in SCENES:
        assert len(apply_scene(audio, scene, SAMPLE_RATE, np.random.default_rng(1))) == SAMPLE_RATE
    assert np.array_equal(apply_scene(audio, "dry", SAMPLE_RATE, np.random.default_rng(1)), audio)
    low, high = _band_fractions(apply_scene(audio, "radio", SAMPLE_RATE, np.random.default_rng(1)))
    assert low < 0.005 and high < 0.25  # white noise has 1.25% below 200 Hz and 75% above 4 kHz


# --- captions --------------------------------------------------------------------------------------


def test_captions_describe_the_sound_and_place_it_in_the_scene(tiny_corpus) -> None:
    _, clips = tiny_corpus
    for clip in clips:
        descriptions, places = describe_label(clip.label), scene_phrases(clip.scene)
        assert clip.caption == clip.label
        assert len(clip.captions) >= 4 and len(set(clip.captions)) == len(clip.captions)
        assert clip.captions[0] in {f"{d} {p}" for d in descriptions for p in places}
        assert all(any(p in caption for p in places) for caption in clip.captions)


def test_caption_templates_fill_for_every_class_and_attribute() -> None:
    details = {"language": "French", "voice": "female voice", "colour": "pink"}
    for label, sound_class in SOUND_CLASSES.items():
        assert len(describe_label(label)) >= 3
        for register in sound_class.registers:
            for articulation in sound_class.articulations:
                captions = clip_captions(
                    label, "cathedral", register, "soft", articulation, np.random.default_rng(0), details
                )
                assert len(captions) == 5
                assert not any(c in caption for caption in captions for c in "{}")


def test_captions_are_chosen_by_the_generator() -> None:
    def make(seed: int) -> list[str]:
        return clip_captions(
            "church organ", "cathedral", "deep", "loud", "chord", np.random.default_rng(seed)
        )

    assert make(4) == make(4)
    assert {tuple(make(seed)) for seed in range(10)} != {tuple(make(0))}
    assert scene_phrases("cathedral")[0] == "echoing through a vast stone cathedral"
    assert describe_label("church organ")[0] == "deep, resonant pipe organ tones"


# --- sample sets -----------------------------------------------------------------------------------


def test_missing_sample_set_names_the_debian_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = dataclasses.replace(FLUIDR3, path=tmp_path / "FluidR3_GM.sf2")
    monkeypatch.setitem(sample_sets.SAMPLE_SETS, "fluidr3", missing)
    with pytest.raises(SampleSetNotInstalledError, match=r"apt-get install fluid-soundfont-gm"):
        generate_demo_corpus(tmp_path / "out", size=2)
    with pytest.raises(SampleSetNotInstalledError, match=r"apt-get install fluid-soundfont-gm"):
        classes_available("fluidr3")
    assert not (tmp_path / "out").exists()


def test_unknown_sample_set_lists_the_known_ones(tmp_path: Path) -> None:
    known = r"unknown sample set 'fluidr4'; known: csound, fluidr3, freepats, musescore, opl3, timgm6mb"
    with pytest.raises(UnknownSampleSetError, match=known):
        generate_demo_corpus(tmp_path, size=1, sample_set="fluidr4")


def test_soundfont_presets_cover_every_instrument_class() -> None:
    midi_classes = [label for label, c in SOUND_CLASSES.items() if c.kind in ("instrument", "drums")]
    assert set(midi_classes) <= set(classes_available("fluidr3"))
    contents = sample_sets.sample_set_contents("fluidr3")
    assert contents.programs == frozenset(range(128))


def test_freepats_is_incomplete_and_says_so() -> None:
    available = classes_available("freepats")
    instruments = [label for label in available if SOUND_CLASSES[label].kind == "instrument"]
    assert len(instruments) >= 12
    assert {"marimba", "harmonica", "banjo", "bagpipes"}.isdisjoint(available)
    assert {"church organ", "piano", "violin", "flute", "trumpet", "drum kit"} <= set(available)
    with pytest.raises(SoundClassUnavailableError, match=r"'freepats' has no samples for 'marimba'"):
        generate_demo_corpus(Path("/nonexistent"), size=1, sample_set="freepats", classes=["marimba"])


def _timidity_falls_back_on_a_soundfont() -> bool:
    config = Path("/etc/timidity/timidity.cfg")
    return config.is_file() and any(
        line.split()[:1] == ["source"] and "freepats" not in line for line in config.read_text().splitlines()
    )


def test_timidity_substituting_another_sets_instrument_is_an_error() -> None:
    # Debian's timidity.cfg sources Fluid R3 (installed by the set-up command): the trap is real here.
    assert _timidity_falls_back_on_a_soundfont()
    # Marimba (program 12) is not in freepats; the system config would quietly play Fluid R3's.
    with pytest.raises(RenderError, match=r"lacks an instrument.*Marimba"):
        render_clips(FREEPATS, [MidiClip(12, [Note(60, 100, 0, 500)])], 1000, SAMPLE_RATE)


def test_freepats_renders_the_held_out_clips(tmp_path: Path) -> None:
    classes = ["church organ", "violin", "flute", "drum kit"]
    clips = generate_demo_corpus(
        tmp_path,
        size=4,
        seed=2,
        sample_set="freepats",
        classes=classes,
        scenes=["dry"],
        duration_s=2.0,
        workers=1,
    )
    assert [(c.label, c.sample_set) for c in clips] == [(label, "freepats") for label in classes]
    for clip in clips:
        audio, _ = sf.read(tmp_path / clip.path)
        assert 20 * np.log10(gated_rms(audio, SAMPLE_RATE)) > -40


# --- MIDI ------------------------------------------------------------------------------------------


def test_midi_file_bytes_are_exact() -> None:
    data = midi_file_bytes(
        [Note(60, 100, 0, 500)], [ProgramChange(0, 0, 19)], sound_off_at_ms=[600], end_ms=1000
    )
    assert data == (
        b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0"
        b"MTrk\x00\x00\x00\x1c"
        b"\x00\xff\x51\x03\x07\x53\x00"  # tempo 480,000 us per quarter: one tick per millisecond
        b"\x00\xc0\x13"  # program 19
        b"\x00\x90\x3c\x64"  # note on at 0 ms
        b"\x83\x74\x80\x3c\x00"  # note off at 500 ms
        b"\x64\xb0\x78\x00"  # all sound off at 600 ms
        b"\x83\x10\xff\x2f\x00"  # end of track at 1000 ms
    )


# --- the command and its default seed --------------------------------------------------------------


def test_the_default_seed_renders_clips_the_starter_never_trained_on() -> None:
    from indexer.demo import DEMO_SEED
    from indexer.training.train import TrainConfig

    config = TrainConfig(out_path=Path("unused.safetensors"))
    training_seeds = {config.seed + i for i in range(len(config.train_sample_sets))}  # set i: seed + i
    assert DEMO_SEED not in training_seeds | {config.validation_seed}


def test_demo_corpus_command_uses_the_default_seed(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from indexer.cli import main
    from indexer.demo import DEMO_SEED

    result = CliRunner().invoke(main, ["demo-corpus", str(tmp_path / "c"), "--size", "2", "--quiet",
                                       "--class", "church organ", "--class", "violin"])
    assert result.exit_code == 0, result.output
    assert f"2 clips of 2 classes (fluidr3, seed {DEMO_SEED})" in result.output
    assert json.loads((tmp_path / "c" / "corpus.json").read_text())["seed"] == DEMO_SEED
