"""The recorded sample sets that render General MIDI instruments, as a registry of data.

Each set names the synthesiser that plays it, the file it is read from and the Debian package that
installs it. What a set can render is read from the set itself (a SoundFont's preset headers, a
TiMidity configuration's patch list), never assumed: freepats in particular lacks many programs.
"""

from __future__ import annotations

import functools
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from indexer.demo.errors import SampleSetNotInstalledError, UnknownSampleSetError

PERCUSSION_BANK = 128  # SoundFont bank of General MIDI drum kits
# Chunks a SoundFont holds after its sample data: used to tell padded from unpadded odd-sized chunks.
SOUNDFONT_CHUNK_IDS = (
    b"LIST",
    b"phdr",
    b"pbag",
    b"pmod",
    b"pgen",
    b"inst",
    b"ibag",
    b"imod",
    b"igen",
    b"shdr",
)


@dataclass(frozen=True)
class SampleSet:
    """One recorded sample set: which synthesiser plays it, from which file, installed by which package."""

    name: str
    synthesizer: str  # "fluidsynth" (SoundFont .sf2/.sf3) or "timidity" (GUS patches via a .cfg)
    path: Path  # the SoundFont, or the TiMidity configuration that lists the patches
    package: str  # Debian package that installs `path`
    description: str


@dataclass(frozen=True)
class SampleSetContents:
    """The General MIDI programs (bank 0) and drum keys (kit 0) a sample set holds real samples for."""

    programs: frozenset[int]
    drum_keys: frozenset[int]


SYNTHESIZER_PACKAGES = {"fluidsynth": "fluidsynth", "timidity": "timidity"}

SAMPLE_SETS: dict[str, SampleSet] = {
    s.name: s
    for s in (
        SampleSet(
            "fluidr3",
            "fluidsynth",
            Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
            "fluid-soundfont-gm",
            "Fluid R3 General MIDI SoundFont",
        ),
        SampleSet(
            "timgm6mb",
            "fluidsynth",
            Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
            "timgm6mb-soundfont",
            "TimGM6mb, a small General MIDI SoundFont",
        ),
        SampleSet(
            "musescore",
            "fluidsynth",
            Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"),
            "musescore-general-soundfont-small",
            "MuseScore General Lite (derived from Fluid R3)",
        ),
        # Csound's small General MIDI bank: samples of its own, independent of Fluid R3.
        SampleSet(
            "csound",
            "fluidsynth",
            Path("/usr/share/sounds/sf2/sf_GMbank.sf2"),
            "csound-soundfont",
            "Csound's General MIDI SoundFont bank",
        ),
        # Not recordings: FM synthesis imitating an OPL3 chip. Training on it as well teaches the model
        # what an instrument does (envelope, register, articulation) apart from one set's samples.
        SampleSet(
            "opl3",
            "fluidsynth",
            Path("/usr/share/sounds/sf2/OPL-3_FM_128M.sf2"),
            "opl3-soundfont",
            "OPL3 FM synthesis as a SoundFont",
        ),
        # Recorded independently of Fluid R3: the held-out set.
        SampleSet(
            "freepats",
            "timidity",
            Path("/etc/timidity/freepats.cfg"),
            "freepats",
            "FreePats GUS patches played by TiMidity++",
        ),
    )
}


def get_sample_set(name: str) -> SampleSet:
    """Return the registered sample set `name`, or raise UnknownSampleSetError."""
    try:
        return SAMPLE_SETS[name]
    except KeyError:
        raise UnknownSampleSetError(
            f"unknown sample set {name!r}; known: {', '.join(sorted(SAMPLE_SETS))}"
        ) from None


def require_installed(sample_set: SampleSet) -> None:
    """Raise SampleSetNotInstalledError naming the Debian package if the set or its synthesiser is missing."""
    if not sample_set.path.is_file():
        raise SampleSetNotInstalledError(
            f"sample set {sample_set.name!r} is not installed: {sample_set.path} is missing "
            f"(apt-get install {sample_set.package})"
        )
    if shutil.which(sample_set.synthesizer) is None:
        raise SampleSetNotInstalledError(
            f"sample set {sample_set.name!r} needs the {sample_set.synthesizer} program "
            f"(apt-get install {SYNTHESIZER_PACKAGES[sample_set.synthesizer]})"
        )


def sample_set_contents(name: str) -> SampleSetContents:
    """Return what sample set `name` holds real samples for; raises if the set is not installed."""
    sample_set = get_sample_set(name)
    require_installed(sample_set)
    return _contents_of(sample_set.synthesizer, sample_set.path)


@functools.cache
def _contents_of(synthesizer: str, path: Path) -> SampleSetContents:
    if synthesizer == "fluidsynth":
        return soundfont_contents(path)
    return timidity_config_contents(path)


def _riff_chunks(file: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int, bytes]]:
    """Yield (id, data offset, size, list type) of the RIFF chunks between `start` and `end`."""
    position = start
    while position + 8 <= end:
        file.seek(position)
        header = file.read(12)
        chunk_id, size = header[:4], struct.unpack("<I", header[4:8])[0]
        yield chunk_id, position + 8, size, header[8:12]
        following = position + 8 + size
        # RIFF pads odd chunks to even length, but some .sf3 writers do not: trust whichever
        # offset holds a chunk header.
        if size % 2:
            file.seek(following + 1)
            if file.read(4) in SOUNDFONT_CHUNK_IDS:
                following += 1
        position = following


def soundfont_contents(path: Path) -> SampleSetContents:
    """Read a SoundFont's preset headers (phdr): bank 0 programs and whether drum kit 0 exists.

    Drum kit 0 in a General MIDI SoundFont covers the GM percussion keys; which keys have samples is
    not read here (that needs the instrument zones), so every GM percussion key (35-81) is assumed.
    """
    programs: set[int] = set()
    has_drums = False
    with open(path, "rb") as file:
        header = file.read(12)
        if header[:4] != b"RIFF" or header[8:12] != b"sfbk":
            raise SampleSetNotInstalledError(f"{path} is not a SoundFont")
        end = 8 + struct.unpack("<I", header[4:8])[0]
        for chunk_id, offset, size, list_type in _riff_chunks(file, 12, end):
            if chunk_id != b"LIST" or list_type != b"pdta":
                continue
            for sub_id, sub_offset, sub_size, _ in _riff_chunks(file, offset + 4, offset + size):
                if sub_id != b"phdr":
                    continue
                file.seek(sub_offset)
                records = file.read(sub_size)
                # 38-byte records; the last one is the terminal "EOP" record.
                for index in range(sub_size // 38 - 1):
                    program, bank = struct.unpack("<HH", records[38 * index + 20 : 38 * index + 24])
                    if bank == 0:
                        programs.add(program)
                    elif bank == PERCUSSION_BANK and program == 0:
                        has_drums = True
    drum_keys = frozenset(range(35, 82)) if has_drums else frozenset()
    return SampleSetContents(frozenset(programs), drum_keys)


def timidity_config_contents(path: Path) -> SampleSetContents:
    """Read a TiMidity configuration's `bank 0` programs and `drumset 0` keys whose patch file exists.

    Programs a configuration leaves out are not silent: TiMidity falls back on the system default
    configuration (on Debian, Fluid R3), so only the listed ones count as this set's own samples.
    """
    directories: list[Path] = []
    programs: set[int] = set()
    drum_keys: set[int] = set()
    section: str | None = None
    for raw_line in path.read_text(encoding="latin-1").splitlines():
        words = raw_line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "dir" and len(words) > 1:
            directories.append(Path(words[1]))
        elif words[0] in ("bank", "drumset") and len(words) > 1:
            section = f"{words[0]} {words[1]}"
        elif words[0].isdigit() and len(words) > 1 and section in ("bank 0", "drumset 0"):
            patch = words[1]
            if (
                not any((directory / patch).is_file() for directory in directories)
                and not Path(patch).is_file()
            ):
                continue
            (programs if section == "bank 0" else drum_keys).add(int(words[0]))
    return SampleSetContents(frozenset(programs), frozenset(drum_keys))
