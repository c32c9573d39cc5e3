"""The notes a clip plays: register, dynamics and articulation turned into MIDI notes.

Notes end well before the clip does, so that every clip holds the sound's release and the scene's
reverberation tail. Times are whole milliseconds counted from the start of the clip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from indexer.demo.classes import VELOCITY_RANGES, SoundClass
from indexer.demo.midi import Note

# Part of the clip the notes may occupy; the rest is left to release and reverberation.
PLAYED_FRACTION = 0.75

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}

# General MIDI percussion keys grouped by how low or high they sound.
DRUMS_BY_REGISTER: dict[str, tuple[int, ...]] = {
    "deep": (35, 36, 41, 43),  # kicks, floor toms
    "low": (36, 41, 43, 45, 47),  # kick and toms
    "mid": (38, 40, 37, 39, 48, 50),  # snares, rim, clap, high toms
    "high": (42, 44, 46, 49, 51, 54, 57, 59, 81),  # hi-hats, cymbals, tambourine, triangle
}
KICK, SNARE, CLOSED_HAT = 36, 38, 42


def _velocity(rng: np.random.Generator, dynamics: str) -> int:
    low, high = VELOCITY_RANGES[dynamics]
    return int(rng.integers(low, high + 1))


def _scale_keys(rng: np.random.Generator, low: int, high: int) -> list[int]:
    """The keys between `low` and `high` of a random major or minor scale."""
    tonic = int(rng.integers(0, 12))
    steps = SCALES["major" if rng.random() < 0.5 else "minor"]
    return [key for key in range(low, high + 1) if (key - tonic) % 12 in steps]


def instrument_notes(
    sound_class: SoundClass,
    register: str,
    dynamics: str,
    articulation: str,
    duration_ms: int,
    rng: np.random.Generator,
) -> list[Note]:
    """Return the notes of one instrument clip."""
    low, high = sound_class.key_range(register)
    keys = _scale_keys(rng, low, high)
    end_ms = int(duration_ms * PLAYED_FRACTION)
    time_ms = int(rng.integers(40, 150))
    notes: list[Note] = []
    if articulation == "staccato":
        interval_ms = int(rng.integers(180, 420))
        while time_ms + 120 <= end_ms:
            notes.append(
                Note(int(rng.choice(keys)), _velocity(rng, dynamics), time_ms, int(rng.integers(60, 120)))
            )
            time_ms += interval_ms
    elif articulation == "sustained":
        count = 1 if rng.random() < 0.5 else 2
        length_ms = (end_ms - time_ms) // count
        for _ in range(count):
            notes.append(Note(int(rng.choice(keys)), _velocity(rng, dynamics), time_ms, length_ms - 20))
            time_ms += length_ms
    elif articulation == "melody":
        beat_ms = int(rng.integers(220, 380))
        index = int(rng.integers(0, len(keys)))
        while time_ms + beat_ms <= end_ms:
            length_ms = beat_ms * int(rng.choice([1, 1, 2]))
            length_ms = min(length_ms, end_ms - time_ms)
            notes.append(Note(keys[index], _velocity(rng, dynamics), time_ms, max(length_ms - 15, 30)))
            time_ms += length_ms
            # A melody moves by small steps, turning back at the edges of the register.
            index = int(np.clip(index + rng.choice([-2, -1, -1, 1, 1, 2]), 0, len(keys) - 1))
    elif articulation == "chord":
        count = 1 if rng.random() < 0.5 else 2
        length_ms = (end_ms - time_ms) // count
        for _ in range(count):
            root = int(rng.choice([k for k in keys if k <= max(low, high - 7)] or keys))
            # Root, third and fifth on the scale, plus the octave when the register has room.
            position = keys.index(root)
            chord = [keys[i] for i in (position, position + 2, position + 4, position + 7) if i < len(keys)]
            velocity = _velocity(rng, dynamics)
            notes.extend(Note(key, velocity, time_ms, length_ms - 30) for key in chord)
            time_ms += length_ms
    else:
        raise ValueError(f"unknown instrument articulation {articulation!r}")
    return notes


def drum_notes(
    register: str,
    dynamics: str,
    articulation: str,
    duration_ms: int,
    rng: np.random.Generator,
    available_keys: Sequence[int],
) -> list[Note]:
    """Return the percussion notes of one drum-kit clip, using only keys the sample set has."""
    pool = [key for key in DRUMS_BY_REGISTER[register] if key in available_keys]
    if not pool:
        raise ValueError(f"the sample set has no drum for register {register!r}")
    end_ms = int(duration_ms * PLAYED_FRACTION)
    time_ms = int(rng.integers(40, 150))
    hit_ms = 80  # note length is irrelevant to most drums; the sample decays on its own
    notes: list[Note] = []
    if articulation == "hits":
        while time_ms + 100 <= end_ms:
            notes.append(Note(int(rng.choice(pool)), _velocity(rng, dynamics), time_ms, hit_ms))
            time_ms += int(rng.integers(350, 700))
    elif articulation == "groove":
        eighth_ms = int(60_000 / rng.integers(90, 140) / 2)
        step = 0
        while time_ms + eighth_ms <= end_ms:
            beat_keys = [int(rng.choice(pool))] if step % 2 == 0 else []
            if register in ("mid", "high"):
                beat_keys += [k for k in (CLOSED_HAT,) if k in available_keys]
            if register != "high" and step % 4 == 0 and KICK in available_keys:
                beat_keys.append(KICK)
            if register == "mid" and step % 4 == 2 and SNARE in available_keys:
                beat_keys.append(SNARE)
            velocity = _velocity(rng, dynamics)
            notes.extend(Note(key, velocity, time_ms, hit_ms) for key in sorted(set(beat_keys)))
            time_ms += eighth_ms
            step += 1
    elif articulation == "roll":
        stroke_ms = int(rng.integers(45, 80))
        roll_start_ms = time_ms
        roll_end_ms = time_ms + int((end_ms - time_ms) * rng.uniform(0.5, 0.9))
        keys = [int(k) for k in rng.choice(pool, size=min(2, len(pool)), replace=False)]
        low, high = VELOCITY_RANGES[dynamics]
        stroke = 0
        while time_ms + stroke_ms <= roll_end_ms:
            # A roll swells from the soft to the loud end of its dynamic range.
            progress = (time_ms - roll_start_ms) / (roll_end_ms - roll_start_ms)
            velocity = int(low + (high - low) * progress)
            notes.append(Note(keys[stroke % len(keys)], velocity, time_ms, hit_ms))
            time_ms += stroke_ms
            stroke += 1
    else:
        raise ValueError(f"unknown drum articulation {articulation!r}")
    return notes
