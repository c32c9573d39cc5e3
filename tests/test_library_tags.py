"""The words sound libraries embed, read at build time: BWF bext and iXML chunks, ID3 comments and TXXX
descriptions, Vorbis/Opus DESCRIPTION and COMMENT, MP4 comments; shown on hits and usable in filters."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from indexer import BuildOptions, build_index
from indexer.media.library_tags import library_tags
from indexer.media.tags import read_tags
from tests import helpers

RATE = 16000


def _chunk(name: bytes, body: bytes) -> bytes:
    return name + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


def write_bwf(path: Path, samples: np.ndarray, description: str, originator: str, notes: list[str]) -> Path:
    """A Broadcast Wave file as a field recorder writes it: bext and iXML before the audio."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, RATE, RATE * 2, 2, 16)
    bext = (description.encode("latin-1").ljust(256, b"\x00") + originator.encode("latin-1").ljust(32, b"\x00")
            + b"\x00" * (602 - 288))  # reference, date, time, time reference, version, UMID, loudness, reserved
    ixml = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><BWFXML><IXML_VERSION>2.10</IXML_VERSION>"
            "<PROJECT>Doors</PROJECT><SCENE>12</SCENE><TAKE>3</TAKE>"
            + "".join(f"<NOTE>{n}</NOTE>" for n in notes[:1])
            + "<TRACK_LIST><TRACK><NAME>MS</NAME></TRACK></TRACK_LIST>"
            + "".join(f"<USER><NOTES>{n}</NOTES></USER>" for n in notes[1:]) + "</BWFXML>").encode()
    body = b"WAVE" + _chunk(b"fmt ", fmt) + _chunk(b"bext", bext) + _chunk(b"iXML", ixml) + _chunk(b"data", pcm)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def _tone(freq: float = 440.0) -> np.ndarray:
    return helpers.tone(freq, 2.0, rate=RATE)


def test_bext_and_ixml_are_read_from_a_broadcast_wave_file(tmp_path: Path) -> None:
    path = write_bwf(tmp_path / "DOOR_Wood_Creak_03.wav", _tone(), "Old oak door creaks open slowly",
                     "Sound Devices 788T", ["door handle rattles", "room tone after"])
    assert library_tags(path) == {"description": "Old oak door creaks open slowly", "originator": "Sound Devices 788T",
                                  "notes": "door handle rattles / room tone after"}
    tags = read_tags(path)
    assert tags["description"] == "Old oak door creaks open slowly" and tags["notes"].startswith("door handle")
    import soundfile

    assert soundfile.read(path)[0].shape == (2 * RATE,)  # still a WAV every reader plays


def test_id3_comments_and_txxx_descriptions(tmp_path: Path) -> None:
    from mutagen.id3 import COMM, ID3, TIT2, TXXX

    path = helpers.write_audio(tmp_path / "take.mp3", _tone(), RATE)
    id3 = ID3()
    id3.add(TIT2(encoding=3, text="Dog Bark"))
    id3.add(COMM(encoding=3, lang="eng", desc="", text="Large dog barks twice"))
    id3.add(COMM(encoding=3, lang="eng", desc="iTunNORM", text=" 000001 0002"))  # player data, not words
    id3.add(TXXX(encoding=3, desc="DESCRIPTION", text="A dog in a yard, distant traffic"))
    id3.add(TXXX(encoding=3, desc="ReplayGain_Track_Gain", text="-3 dB"))
    id3.save(path)
    assert library_tags(path) == {"comment": "Large dog barks twice", "description": "A dog in a yard, distant traffic"}
    assert read_tags(path) == {"title": "Dog Bark", "comment": "Large dog barks twice",
                               "description": "A dog in a yard, distant traffic"}


@pytest.mark.parametrize("suffix", [".flac", ".ogg", ".opus"])
def test_vorbis_and_opus_description_and_comment(tmp_path: Path, suffix: str) -> None:
    import mutagen

    path = helpers.write_audio(tmp_path / f"rain{suffix}", _tone(), RATE)
    media = mutagen.File(path)
    if media.tags is None:
        media.add_tags()
    media.tags["DESCRIPTION"] = ["Heavy rain on a tin roof"]
    media.tags["COMMENT"] = ["recorded in Lisbon"]
    media.save()
    assert read_tags(path) == {"description": "Heavy rain on a tin roof", "comment": "recorded in Lisbon"}


def test_mp4_comment_and_description(tmp_path: Path) -> None:
    from mutagen.mp4 import MP4

    path = helpers.write_audio(tmp_path / "wind.m4a", _tone(), RATE)
    media = MP4(path)
    media["\xa9cmt"] = ["gusts through pines"]
    media["desc"] = ["Wind in a forest"]
    media.save()
    assert library_tags(path) == {"comment": "gusts through pines", "description": "Wind in a forest"}


def test_a_malformed_chunk_gives_no_tags_and_no_error(tmp_path: Path) -> None:
    path = write_bwf(tmp_path / "bad.wav", _tone(), "x", "y", [])
    data = bytearray(path.read_bytes())
    at = data.index(b"iXML")
    data[at + 8:at + 20] = b"<not xml<<<<"
    path.write_bytes(bytes(data))
    assert library_tags(path) == {"description": "x", "originator": "y"}
    truncated = tmp_path / "cut.wav"
    truncated.write_bytes(path.read_bytes()[:60])
    assert library_tags(truncated) == {}


def test_hits_carry_the_tags_in_json_table_and_filters(tmp_path: Path, tone_model: Path) -> None:
    from search.cli import main

    corpus = tmp_path / "library"
    write_bwf(corpus / "DOOR_Wood_Creak_03.wav", _tone(440), "Old oak door creaks open slowly", "Jane Roe", ["take 3"])
    helpers.write_audio(corpus / "ZOOM0042.WAV", _tone(440), RATE)
    index = tmp_path / "index"
    build_index(corpus, index, BuildOptions(model=str(tone_model), decode_workers=0))
    runner = CliRunner()
    result = runner.invoke(main, ["query", "440", "--index", str(index), "--json"])
    assert result.exit_code == 0, result.output
    by_name = {Path(h["path"]).name: h["tags"] for h in json.loads(result.stdout)}
    assert by_name == {"DOOR_Wood_Creak_03.wav": {"description": "Old oak door creaks open slowly",
                                                  "originator": "Jane Roe", "notes": "take 3"},
                       "ZOOM0042.WAV": {}}
    result = runner.invoke(main, ["query", "440", "--index", str(index), "--show"])
    assert "      description: Old oak door creaks open slowly" in result.stdout.splitlines()
    result = runner.invoke(main, ["query", "440", "--index", str(index), "--json", "--tag", "originator=JANE ROE"])
    assert [Path(h["path"]).name for h in json.loads(result.stdout)] == ["DOOR_Wood_Creak_03.wav"]
