"""The sound classes of the demo corpus and the attributes a clip of each can take, as data.

Instrument classes are General MIDI programs played by a sample set; the other kinds come from
espeak-ng (speech), the freedesktop sound theme (event sounds) or are synthesised (noises).
"""

from __future__ import annotations

from dataclasses import dataclass

from indexer.demo.errors import UnknownSoundClassError

KINDS = ("instrument", "drums", "speech", "event", "noise")

# Absolute pitch bands (MIDI keys, inclusive) that give a register its name.
REGISTER_BANDS: dict[str, tuple[int, int]] = {
    "deep": (24, 42),
    "low": (43, 54),
    "mid": (55, 71),
    "high": (72, 100),
}
# An instrument offers a register when at least this many of its keys fall in the band.
MIN_KEYS_IN_REGISTER = 6

DYNAMICS = ("soft", "loud")
VELOCITY_RANGES: dict[str, tuple[int, int]] = {"soft": (35, 60), "loud": (95, 120)}

# What "articulation" means depends on the kind of sound.
ARTICULATIONS: dict[str, tuple[str, ...]] = {
    "instrument": ("staccato", "sustained", "melody", "chord"),
    "drums": ("hits", "groove", "roll"),
    "speech": ("slow", "fast"),
    "event": ("single", "repeated"),
    "noise": ("steady", "swelling"),
}


@dataclass(frozen=True)
class SoundClass:
    """A labelled class of sounds and how to produce one."""

    label: str
    kind: str  # one of KINDS
    program: int | None = None  # General MIDI program (instruments)
    lowest_key: int = 0  # playable MIDI key range (instruments)
    highest_key: int = 127
    polyphonic: bool = False  # can play chords
    event_files: tuple[str, ...] = ()  # freedesktop sound-theme file stems (events)

    @property
    def slug(self) -> str:
        """The label as a directory and file-name component."""
        return self.label.replace(" ", "_")

    @property
    def registers(self) -> tuple[str, ...]:
        """The registers a clip of this class can be in."""
        if self.kind != "instrument":
            return tuple(REGISTER_BANDS)
        return tuple(
            name
            for name, (low, high) in REGISTER_BANDS.items()
            if min(high, self.highest_key) - max(low, self.lowest_key) + 1 >= MIN_KEYS_IN_REGISTER
        )

    @property
    def articulations(self) -> tuple[str, ...]:
        """The articulations a clip of this class can have (no chords on a monophonic instrument)."""
        choices = ARTICULATIONS[self.kind]
        if self.kind == "instrument" and not self.polyphonic:
            return tuple(a for a in choices if a != "chord")
        return choices

    def key_range(self, register: str) -> tuple[int, int]:
        """The MIDI keys (inclusive) this instrument plays in `register`."""
        low, high = REGISTER_BANDS[register]
        return max(low, self.lowest_key), min(high, self.highest_key)


def _instrument(label: str, program: int, lowest: int, highest: int, polyphonic: bool = False) -> SoundClass:
    return SoundClass(label, "instrument", program, lowest, highest, polyphonic)


SOUND_CLASSES: dict[str, SoundClass] = {
    c.label: c
    for c in (
        _instrument("piano", 0, 28, 100, polyphonic=True),
        _instrument("harpsichord", 6, 29, 89, polyphonic=True),
        _instrument("glockenspiel", 9, 67, 100),
        _instrument("marimba", 12, 45, 96),
        _instrument("xylophone", 13, 60, 100),
        _instrument("tubular bells", 14, 55, 79),
        _instrument("church organ", 19, 24, 96, polyphonic=True),
        _instrument("accordion", 21, 41, 89, polyphonic=True),
        _instrument("harmonica", 22, 60, 84),
        _instrument("acoustic guitar", 24, 40, 83, polyphonic=True),
        _instrument("electric guitar", 27, 40, 86, polyphonic=True),
        _instrument("bass guitar", 33, 28, 60),
        _instrument("violin", 40, 55, 100),
        _instrument("cello", 42, 36, 76),
        _instrument("harp", 46, 24, 100, polyphonic=True),
        _instrument("timpani", 47, 36, 60),
        _instrument("string section", 48, 28, 96, polyphonic=True),
        _instrument("choir", 53, 40, 81, polyphonic=True),
        _instrument("trumpet", 56, 54, 84),
        _instrument("trombone", 57, 34, 72),
        _instrument("tuba", 58, 26, 58),
        _instrument("french horn", 60, 34, 77),
        _instrument("saxophone", 65, 49, 81),
        _instrument("oboe", 68, 58, 91),
        _instrument("bassoon", 70, 34, 75),
        _instrument("clarinet", 71, 50, 91),
        _instrument("flute", 73, 60, 96),
        _instrument("pan flute", 75, 60, 90),
        _instrument("sitar", 104, 48, 77),
        _instrument("banjo", 105, 48, 84, polyphonic=True),
        _instrument("bagpipes", 109, 55, 79),
        _instrument("steel drums", 114, 52, 84),
        SoundClass("drum kit", "drums"),
        SoundClass("speech", "speech"),
        SoundClass("alarm clock", "event", event_files=("alarm-clock-elapsed",)),
        SoundClass(
            "telephone ringing", "event", event_files=("phone-incoming-call", "phone-outgoing-calling")
        ),
        SoundClass(
            "notification chime",
            "event",
            event_files=(
                "message-new-instant",
                "complete",
                "message",
                "service-login",
                "service-logout",
                "window-attention",
                "dialog-warning",
                "suspend-error",
                "bell",
            ),
        ),
        SoundClass("camera shutter", "event", event_files=("camera-shutter",)),
        SoundClass("noise", "noise"),
        SoundClass("rain", "noise"),
    )
}


def get_sound_class(label: str) -> SoundClass:
    """Return the class labelled `label`, or raise UnknownSoundClassError."""
    try:
        return SOUND_CLASSES[label]
    except KeyError:
        raise UnknownSoundClassError(
            f"unknown sound class {label!r}; known: {', '.join(SOUND_CLASSES)}"
        ) from None
