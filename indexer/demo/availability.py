"""Which sound classes can be rendered, with which sample set, on this machine."""

from __future__ import annotations

import shutil

from indexer.demo.classes import REGISTER_BANDS, SOUND_CLASSES, SoundClass
from indexer.demo.sample_sets import SampleSetContents, sample_set_contents
from indexer.demo.score import DRUMS_BY_REGISTER
from indexer.demo.sources import EVENT_SOUND_DIR


def _renders(sound_class: SoundClass, contents: SampleSetContents) -> bool:
    if sound_class.kind == "instrument":
        return sound_class.program in contents.programs
    if sound_class.kind == "drums":
        # Every register needs at least one of its drums.
        return all(any(key in contents.drum_keys for key in DRUMS_BY_REGISTER[r]) for r in REGISTER_BANDS)
    if sound_class.kind == "speech":
        return shutil.which("espeak-ng") is not None
    if sound_class.kind == "event":
        return all((EVENT_SOUND_DIR / f"{stem}.oga").is_file() for stem in sound_class.event_files)
    return True  # synthesised noises


def classes_available(sample_set: str) -> tuple[str, ...]:
    """Labels of the classes `sample_set` renders with its own samples, in table order.

    Instruments and the drum kit count only where the set holds real samples for them (a missing
    program is never replaced by another set's). Speech, event sounds and noises do not come
    from the sample set and are listed whenever their own sources are installed.
    Raises SampleSetNotInstalledError (naming the Debian package) if the set is missing.
    """
    contents = sample_set_contents(sample_set)
    return tuple(label for label, sound_class in SOUND_CLASSES.items() if _renders(sound_class, contents))
