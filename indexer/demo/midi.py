"""A minimal Standard MIDI File writer: one track of notes and program changes.

Writing the few bytes ourselves avoids a dependency for what the synthesisers need: a tempo,
program changes, note on/off and all-sound-off events. Time is in whole milliseconds: the file's
tempo makes one tick exactly one millisecond.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

DRUM_CHANNEL = 9  # General MIDI percussion is channel 10, numbered 9 on the wire

TICKS_PER_QUARTER = 480
# 480 ticks per quarter at 480,000 microseconds per quarter: one tick is one millisecond.
MICROSECONDS_PER_QUARTER = 480_000


@dataclass(frozen=True)
class Note:
    """One note: MIDI key, velocity (1-127), start and length in milliseconds, and its channel."""

    key: int
    velocity: int
    start_ms: int
    length_ms: int
    channel: int = 0


@dataclass(frozen=True)
class ProgramChange:
    """Select General MIDI `program` on `channel` from `time_ms` on."""

    time_ms: int
    channel: int
    program: int


def _variable_length(value: int) -> bytes:
    """Encode a non-negative integer as a MIDI variable-length quantity."""
    groups = [value & 0x7F]
    value >>= 7
    while value:
        groups.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(groups))


ALL_SOUND_OFF = 120  # controller that silences every voice at once, release tails included


def midi_file_bytes(
    notes: Sequence[Note],
    program_changes: Sequence[ProgramChange] = (),
    sound_off_at_ms: Sequence[int] = (),
    end_ms: int | None = None,
) -> bytes:
    """Return a format-0 SMF that plays `notes` after the given program changes.

    At each time in `sound_off_at_ms` every sounding voice on every channel used is cut, so that
    clips rendered one after another in a single file do not bleed into each other. The track
    ends at `end_ms` (default: the last event).
    """
    for note in notes:
        if not (
            0 <= note.key <= 127
            and 1 <= note.velocity <= 127
            and note.length_ms > 0
            and note.start_ms >= 0
            and 0 <= note.channel <= 15
        ):
            raise ValueError(f"invalid MIDI note {note}")
    # (time, order, bytes). At equal times: sound-off and note-offs (0) first, so a repeated key
    # is released before it is struck again, then program changes (1), then note-ons (2).
    events: list[tuple[int, int, bytes]] = []
    for note in notes:
        events.append((note.start_ms, 2, bytes([0x90 | note.channel, note.key, note.velocity])))
        events.append((note.start_ms + note.length_ms, 0, bytes([0x80 | note.channel, note.key, 0])))
    for change in program_changes:
        events.append((change.time_ms, 1, bytes([0xC0 | change.channel, change.program])))
    channels = sorted({note.channel for note in notes} | {change.channel for change in program_changes})
    for time_ms in sound_off_at_ms:
        events.extend((time_ms, 0, bytes([0xB0 | channel, ALL_SOUND_OFF, 0])) for channel in channels)
    events.sort(key=lambda event: (event[0], event[1]))
    last_ms = events[-1][0] if events else 0
    if end_ms is None:
        end_ms = last_ms
    if end_ms < last_ms:
        raise ValueError(f"end_ms {end_ms} is before the last event at {last_ms} ms")

    track = bytearray()
    track += b"\x00\xff\x51\x03" + MICROSECONDS_PER_QUARTER.to_bytes(3, "big")
    now = 0
    for time_ms, _, message in events:
        track += _variable_length(time_ms - now) + message
        now = time_ms
    track += _variable_length(end_ms - now) + b"\xff\x2f\x00"  # end of track

    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_QUARTER)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)
