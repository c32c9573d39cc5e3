"""Render MIDI notes with a recorded sample set by running fluidsynth or TiMidity++.

Loading a sample set costs far more than playing a clip (MuseScore's compressed .sf3 takes seconds
of CPU), so many clips, of any instruments, are laid end to end in one MIDI file, rendered in one
run and cut apart. Each clip has its own slot and program change, every voice is cut when its slot
ends, and the synthesisers' own reverb and chorus are off: a clip's room comes only from the scene.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from indexer.demo.errors import RenderError
from indexer.demo.midi import DRUM_CHANNEL, Note, ProgramChange, midi_file_bytes
from indexer.demo.sample_sets import SampleSet, require_installed

# Silence between two slots, after every voice of the first has been cut.
GUARD_MS = 200
RENDER_TIMEOUT_S = 600
# TiMidity's log line for an instrument it took from a SoundFont instead of the set's own patches.
SOUNDFONT_FALLBACK = re.compile(r"\bSF (Tonebank|Drumset)\b.*")


@dataclass(frozen=True)
class MidiClip:
    """The notes of one clip (times from the clip's start) and the program that plays them."""

    program: int | None  # General MIDI program, or None for the drum kit
    notes: Sequence[Note]


def render_clips(
    sample_set: SampleSet, clips: Sequence[MidiClip], clip_ms: int, sample_rate: int
) -> list[np.ndarray]:
    """Render each clip with `sample_set` in one synthesiser run; returns one float32 mono array per clip.

    Each array holds exactly clip_ms of audio; notes that ring past the end of their clip are cut there.
    """
    require_installed(sample_set)
    slot_ms = clip_ms + GUARD_MS
    notes: list[Note] = []
    program_changes: list[ProgramChange] = []
    for index, clip in enumerate(clips):
        start_ms = index * slot_ms
        channel = DRUM_CHANNEL if clip.program is None else 0
        if clip.program is not None:
            program_changes.append(ProgramChange(start_ms, channel, clip.program))
        for note in clip.notes:
            if note.start_ms + note.length_ms > clip_ms:
                raise ValueError(f"a note ends after the end of its {clip_ms} ms clip: {note}")
            notes.append(Note(note.key, note.velocity, start_ms + note.start_ms, note.length_ms, channel))
    midi = midi_file_bytes(
        notes,
        program_changes,
        sound_off_at_ms=[index * slot_ms + clip_ms for index in range(len(clips))],
        end_ms=len(clips) * slot_ms,
    )
    with tempfile.TemporaryDirectory(prefix="resound-demo-") as work_dir:
        midi_path = Path(work_dir) / "clips.mid"
        midi_path.write_bytes(midi)
        if sample_set.synthesizer == "fluidsynth":
            audio = _run_fluidsynth(sample_set, midi_path, Path(work_dir) / "clips.raw", sample_rate)
        else:
            audio = _run_timidity(sample_set, midi_path, Path(work_dir) / "clips.wav", sample_rate)

    clip_samples = clip_ms * sample_rate // 1000
    total_samples = len(clips) * slot_ms * sample_rate // 1000
    if len(audio) < total_samples:
        audio = np.pad(audio, (0, total_samples - len(audio)))
    return [
        audio[start : start + clip_samples].copy()
        for start in (index * slot_ms * sample_rate // 1000 for index in range(len(clips)))
    ]


def _run(command: list[str], sample_set: SampleSet) -> str:
    try:
        completed = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RenderError(
            f"{command[0]} failed to render with sample set {sample_set.name!r}: {error}"
        ) from error
    if completed.returncode != 0:
        raise RenderError(
            f"{command[0]} failed to render with sample set {sample_set.name!r} "
            f"(exit {completed.returncode}): {completed.stderr.strip()[-500:]}"
        )
    return completed.stdout


def _run_fluidsynth(sample_set: SampleSet, midi_path: Path, raw_path: Path, sample_rate: int) -> np.ndarray:
    _run(
        [
            "fluidsynth",
            "-n",
            "-i",
            "-q",
            "-R",
            "0",
            "-C",
            "0",  # no reverb, no chorus: the scene makes the room
            "-g",
            "0.5",
            "-r",
            str(sample_rate),
            "-O",
            "float",
            "-T",
            "raw",  # float output: no dither, no clipping
            "-F",
            str(raw_path),
            str(sample_set.path),
            str(midi_path),
        ],
        sample_set,
    )
    stereo = np.fromfile(raw_path, dtype="<f4")
    return stereo.reshape(-1, 2).mean(axis=1, dtype=np.float32)


def _run_timidity(sample_set: SampleSet, midi_path: Path, wav_path: Path, sample_rate: int) -> np.ndarray:
    log = _run(
        [
            "timidity",
            "-c",
            str(sample_set.path),
            "-idv",  # log every instrument loaded, to catch fallbacks below
            "-s",
            str(sample_rate),
            "-OwM",
            "--output-24bit",
            "--preserve-silence",
            "--reverb=d",
            "--chorus=d",
            "-o",
            str(wav_path),
            str(midi_path),
        ],
        sample_set,
    )
    # TiMidity also reads the system configuration (on Debian, Fluid R3) and silently takes any
    # instrument the set lacks from there: that would leak other samples into a held-out set.
    fallback = SOUNDFONT_FALLBACK.search(log)
    if fallback:
        raise RenderError(
            f"sample set {sample_set.name!r} lacks an instrument and TiMidity substituted "
            f"another set's: {fallback.group(0).strip()}"
        )
    audio, _ = sf.read(wav_path, dtype="float32")
    return audio
