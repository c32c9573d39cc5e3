"""Real recordings for the starter model: labelling rules, held-out split, reserved packages, captions."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from indexer.starter.recordings import (
    EVALUATION_PACKAGES,
    LABEL_CAPTIONS,
    RECORDING_SOURCES,
    RESERVED_PACKAGES,
    TRAINING_PACKAGES,
    RecordedClip,
    RecordingsError,
    RecordingSource,
    evaluation_recordings,
    label_for,
    recording_captions,
    source_clips,
    training_recordings,
)


def touch(path: Path, content: bytes | None = None) -> Path:
    """A stand-in audio file; distinct content per path unless `content` is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(str(path).encode() if content is None else content)
    return path


def farm_source(directory: Path, use: str = "train", package: str = "farm-sounds") -> RecordingSource:
    return RecordingSource(
        package,
        str(directory),
        "GPL-2+",
        use,
        (
            (r"^animals/dog", "a dog barking"),
            (r"^animals/(cow|ox)", "a cow mooing"),
            (r"tree falling", "a tree falling"),
            (r"woodcutting", "chopping wood"),
        ),
        skip=(r"^music/",),
    )


def test_rules_label_by_folder_and_file_name_first_match_wins(tmp_path: Path) -> None:
    source = farm_source(tmp_path)
    assert label_for(source, "animals/Dog_01.ogg") == "a dog barking"
    assert label_for(source, "animals/ox-2.wav") == "a cow mooing"
    # "_" and "-" read as spaces, and the earlier rule wins over the later, broader one.
    assert label_for(source, "woodcutting/tree_falling_00.ogg") == "a tree falling"
    assert label_for(source, "woodcutting/woodcutting_01.ogg") == "chopping wood"
    # Names that say nothing, and skipped folders, get no label.
    assert label_for(source, "misc/sfx_07.ogg") is None
    assert label_for(source, "music/dog_song.ogg") is None


def test_source_clips_walks_the_directory_in_path_order(tmp_path: Path) -> None:
    touch(tmp_path / "animals" / "dog_2.ogg")
    touch(tmp_path / "animals" / "dog_1.wav")
    touch(tmp_path / "animals" / "cow.flac")
    touch(tmp_path / "animals" / "dog_notes.txt")  # not audio
    touch(tmp_path / "menu" / "click.ogg")  # no rule
    clips = source_clips(farm_source(tmp_path))
    assert clips == [
        RecordedClip(tmp_path / "animals" / "cow.flac", "a cow mooing", "farm-sounds", "GPL-2+"),
        RecordedClip(tmp_path / "animals" / "dog_1.wav", "a dog barking", "farm-sounds", "GPL-2+"),
        RecordedClip(tmp_path / "animals" / "dog_2.ogg", "a dog barking", "farm-sounds", "GPL-2+"),
    ]


def test_training_and_evaluation_take_only_their_own_sources(tmp_path: Path) -> None:
    touch(tmp_path / "train" / "animals" / "dog.ogg")
    for i in range(3):
        touch(tmp_path / "eval" / "animals" / f"cow_{i}.ogg")
    touch(tmp_path / "eval" / "animals" / "dog.ogg")  # a single clip: below the evaluation minimum
    sources = [farm_source(tmp_path / "train"), farm_source(tmp_path / "eval", "eval", "held-out-sounds")]
    assert [(c.label, c.source) for c in training_recordings(sources)] == [("a dog barking", "farm-sounds")]
    held_out = evaluation_recordings(sources, clips_per_label=2, min_clips=2)
    assert [(c.path.name, c.source) for c in held_out] == [
        ("cow_0.ogg", "held-out-sounds"),
        ("cow_1.ogg", "held-out-sounds"),
    ]


def test_repeated_files_are_kept_once_and_never_held_out(tmp_path: Path) -> None:
    touch(tmp_path / "train" / "animals" / "dog_1.ogg", b"bark")
    touch(tmp_path / "train" / "animals" / "dog_2.ogg", b"bark")  # the same sound shipped twice
    touch(tmp_path / "train" / "animals" / "dog_3.ogg", b"woof")
    touch(tmp_path / "eval" / "animals" / "dog_a.ogg", b"woof")  # a training file: not held out
    touch(tmp_path / "eval" / "animals" / "dog_b.ogg", b"yap")
    touch(tmp_path / "eval" / "animals" / "dog_c.ogg", b"arf")
    sources = [farm_source(tmp_path / "train"), farm_source(tmp_path / "eval", "eval", "held-out-sounds")]
    assert [c.path.name for c in training_recordings(sources)] == ["dog_1.ogg", "dog_3.ogg"]
    assert [c.path.name for c in evaluation_recordings(sources)] == ["dog_b.ogg", "dog_c.ogg"]


def test_evaluation_reads_audio_inside_a_zip_archive(tmp_path: Path) -> None:
    archive = tmp_path / "public.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("audio/animals/cow_1.ogg", b"one")
        bundle.writestr("audio/animals/cow_2.ogg", b"two")
        bundle.writestr("audio/music/cow_song.ogg", b"song")
        bundle.writestr("art/cow.png", b"png")
    source = farm_source(tmp_path, "eval")
    source = RecordingSource(source.package, f"{archive}!audio/", source.licence, "eval", source.rules, source.skip)
    clips = evaluation_recordings([source], extract_dir=tmp_path / "extracted")
    assert [c.label for c in clips] == ["a cow mooing", "a cow mooing"]
    assert [c.path.read_bytes() for c in clips] == [b"one", b"two"]
    assert all(c.path.is_relative_to(tmp_path / "extracted") for c in clips)


def test_missing_packages_are_named_in_the_error(tmp_path: Path) -> None:
    sources = [farm_source(tmp_path / "absent"), farm_source(tmp_path / "gone", package="other-sounds")]
    with pytest.raises(RecordingsError, match=r"apt-get install farm-sounds other-sounds$"):
        training_recordings(sources)


@pytest.mark.parametrize("package", RESERVED_PACKAGES)
def test_reserved_packages_can_never_be_a_source(tmp_path: Path, package: str) -> None:
    with pytest.raises(RecordingsError, match=f"{package} is reserved for independent evaluation"):
        farm_source(tmp_path, package=package)


def test_shipped_sources_keep_training_and_evaluation_apart() -> None:
    assert TRAINING_PACKAGES and EVALUATION_PACKAGES
    assert not set(TRAINING_PACKAGES) & set(EVALUATION_PACKAGES)
    assert not set(TRAINING_PACKAGES + EVALUATION_PACKAGES) & set(RESERVED_PACKAGES)
    assert all(source.licence for source in RECORDING_SOURCES)


def test_shipped_rules_only_give_labels_with_captions() -> None:
    with pytest.raises(RecordingsError, match="rules name labels without captions: a unicorn"):
        RecordingSource("x", "/nowhere", "GPL-2+", "train", ((r"unicorn", "a unicorn"),))
    for label, captions in LABEL_CAPTIONS.items():
        assert recording_captions(label)[0] == label
        assert len(set(captions)) == len(captions) >= 3
    with pytest.raises(RecordingsError, match="unknown recordings label 'a unicorn'"):
        recording_captions("a unicorn")
