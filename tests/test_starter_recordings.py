"""Real recordings for the starter model: labelling rules, held-out split, reserved packages, captions."""

from __future__ import annotations

import gzip
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from indexer.training.c4group import C4GroupError, read_c4group
from indexer.training.qt_resources import QtResourceError, read_rcc
from indexer.training.recordings import (
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


def shipped_source(package: str, directory_part: str = "") -> RecordingSource:
    return next(s for s in RECORDING_SOURCES if s.package == package and directory_part in s.directory)


def test_shipped_training_sources_label_only_names_that_say_the_sound() -> None:
    ufoai = shipped_source("ufoai-sound")
    assert label_for(ufoai, "footsteps/gravel3.ogg") == "footsteps"
    assert label_for(ufoai, "footsteps/splash2.ogg") == "water splashing"
    assert label_for(ufoai, "ambience/arcticwind.ogg") == "wind"
    assert label_for(ufoai, "weapons/bullet-pistol.ogg") == "gunshot"
    assert label_for(ufoai, "weapons/bullet-smg-15x.ogg") == "a machine gun"
    assert label_for(ufoai, "soldiers/femaledeath03.ogg") == "screaming"
    # Alien creatures, interface sounds and names that say nothing get no label.
    assert label_for(ufoai, "aliens/ortnok/die1.ogg") is None
    assert label_for(ufoai, "footsteps/crouch.ogg") is None
    assert label_for(ufoai, "ambience/water.ogg") is None
    minetest = shipped_source("minetest-data")
    assert label_for(minetest, "default/sounds/default_snow_footstep.4.ogg") == "footsteps"
    assert label_for(minetest, "default/sounds/default_water_footstep.1.ogg") is None
    assert label_for(minetest, "doors/sounds/doors_steel_door_open.ogg") == "a door"
    farm = shipped_source("gcompris-qt-data", "explore_farm_animals")
    assert label_for(farm, "horse.ogg") == "a horse neighing"
    scratch = shipped_source("scratch")
    assert label_for(scratch, "Animal/Horse.wav") == "a horse neighing"
    assert label_for(scratch, "Animal/HorseGallop.wav") == "a horse galloping"
    assert label_for(scratch, "Human/Cough-female.wav") == "coughing"
    assert label_for(scratch, "Effects/Typing.mp3") is None  # a typewriter or a keyboard: the name does not say
    clonk = shipped_source("openclonk-data")
    assert label_for(clonk, "Clonk.ocg/Movement.ocg/StepSoft3.ogg") == "footsteps"
    assert label_for(clonk, "Environment.ocg/WindLoop.ogg") == "wind"
    assert label_for(clonk, "Clonk.ocg/Skin.ocg/Farmer.ocg/Hurt1.ogg") is None


def qt_resource_archive(files: dict[str, bytes], compressed: tuple[str, ...] = ()) -> bytes:
    """A version-2 Qt resource archive (what `rcc` writes) holding `files` by "/"-separated path."""
    tree: dict = {}
    for path, body in files.items():
        *folders, name = path.split("/")
        node = tree
        for folder in folders:
            node = node.setdefault(folder, {})
        node[name] = (path, body)
    names, data, nodes = bytearray(), bytearray(), [b""]

    def name_offset(name: str) -> int:
        offset = len(names)
        names.extend(struct.pack(">HI", len(name), 0) + name.encode("utf-16-be"))
        return offset

    order = [(0, "", tree)]  # breadth first: each folder's children are consecutive nodes
    for index, name, node in order:
        if isinstance(node, dict):
            first = len(nodes)
            for child_name, child in node.items():
                nodes.append(b"")
                order.append((len(nodes) - 1, child_name, child))
            nodes[index] = struct.pack(">IHII", name_offset(name) if index else 0, 2, len(node), first) + bytes(8)
        else:
            path, body = node
            stored = struct.pack(">I", len(body)) + zlib.compress(body) if path in compressed else body
            nodes[index] = struct.pack(">IHHHI", name_offset(name), int(path in compressed), 0, 0, len(data))
            nodes[index] += bytes(8)
            data.extend(struct.pack(">I", len(stored)) + stored)
    tree_bytes = b"".join(nodes)
    header_size = 20
    return (
        b"qres" + struct.pack(">IIII", 2, header_size, header_size + len(tree_bytes),
                              header_size + len(tree_bytes) + len(data))
        + tree_bytes + bytes(data) + bytes(names)
    )


def test_qt_resource_archives_are_read_by_path(tmp_path: Path) -> None:
    archive = tmp_path / "farm.rcc"
    archive.write_bytes(qt_resource_archive(
        {"sounds/animals/cow.ogg": b"moo", "sounds/animals/dog.ogg": b"woof" * 50, "sounds/intro.txt": b"hi"},
        compressed=("sounds/animals/dog.ogg",),
    ))
    assert read_rcc(archive) == {
        "sounds/animals/cow.ogg": b"moo", "sounds/animals/dog.ogg": b"woof" * 50, "sounds/intro.txt": b"hi",
    }
    source = farm_source(tmp_path)
    source = RecordingSource(source.package, f"{archive}!sounds/", source.licence, "train", source.rules)
    clips = source_clips(source, tmp_path / "extracted")
    assert [(c.label, c.path.read_bytes()) for c in clips] == [("a cow mooing", b"moo"), ("a dog barking", b"woof" * 50)]
    (tmp_path / "fake.rcc").write_bytes(b"RIFF....")
    with pytest.raises(QtResourceError, match=r"fake\.rcc: not a Qt resource archive"):
        read_rcc(tmp_path / "fake.rcc")


def c4group(entries: dict, top: bool = True) -> bytes:
    """An OpenClonk group holding `entries` (name -> bytes, or name -> dict for a child group)."""
    table, bodies, offset = bytearray(), bytearray(), 0
    for name, content in entries.items():
        body = c4group(content, top=False) if isinstance(content, dict) else content
        table += name.encode().ljust(260, b"\0") + struct.pack("<5i", 0, isinstance(content, dict), len(body), 0, offset)
        table += bytes(316 - 280)
        bodies += body
        offset += len(body)
    header = bytearray(b"RedWolf Design GrpFolder".ljust(28, b"\0") + struct.pack("<3i", 1, 2, len(entries)))
    header += bytes(204 - len(header))
    for i in range(0, len(header) - 2, 3):  # scrambled as OpenClonk writes it: bytes swapped, then XOR 237
        header[i], header[i + 2] = header[i + 2], header[i]
    group = bytes(b ^ 237 for b in header) + bytes(table) + bytes(bodies)
    return b"\x1e\x8c" + gzip.compress(group)[2:] if top else group


def test_openclonk_groups_are_read_by_path_through_child_groups(tmp_path: Path) -> None:
    archive = tmp_path / "Sound.ocg"
    archive.write_bytes(c4group({"Animals.ocg": {"Cow.ogg": b"moo", "Dog.ocg": {"Bark1.wav": b"woof"}}, "Info.txt": b"x"}))
    assert read_c4group(archive) == {
        "Animals.ocg/Cow.ogg": b"moo", "Animals.ocg/Dog.ocg/Bark1.wav": b"woof", "Info.txt": b"x",
    }
    (tmp_path / "fake.ocg").write_bytes(b"\x1f\x8bnot a group")
    with pytest.raises(C4GroupError, match=r"fake\.ocg: not an OpenClonk group"):
        read_c4group(tmp_path / "fake.ocg")


def test_model_card_lists_every_recordings_package_with_its_licence_and_install_line() -> None:
    card = (Path(__file__).parents[1] / "indexer" / "starter" / "weights" / "MODEL_CARD.md").read_text()
    table = card.split("## Training recordings", 1)[1].split("\n## ", 1)[0]
    install = " ".join(table.split("apt-get install -y", 1)[1].split("```", 1)[0].replace("\\", " ").split())
    assert install.split() == list(TRAINING_PACKAGES + EVALUATION_PACKAGES)
    for package in TRAINING_PACKAGES + EVALUATION_PACKAGES:
        assert f"\n| {package} | " in table, package
