"""Plan a demo corpus: which class, scene and attributes each clip has, and its captions.

Clip i draws everything from `SeedSequence(seed, spawn_key=(i, stream))`, one stream each for its
attributes, its sound, its scene and its captions, so clip i does not depend on how many clips are
generated after it. Classes take turns (clip i is of class i mod n) and each class cycles through
the scenes, so every class meets every scene in a corpus of n x scenes clips. The attributes and
the notes do not depend on the scene or the sample set: the same seed renders the same music in
every scene and with every sample set, which pairs the held-out set with the training sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexer.demo.captions import clip_captions
from indexer.demo.classes import DYNAMICS, SoundClass, get_sound_class
from indexer.demo.sources import NOISE_COLOURS, speech_voice

# Independent random streams of a clip.
ATTRIBUTES, SOUND, SCENE, CAPTIONS = range(4)

# What a clip's sound came from, for the kinds that do not use the sample set.
SOURCE_OF_KIND = {"speech": "espeak-ng", "event": "freedesktop", "noise": "synthetic"}


@dataclass(frozen=True)
class DemoClip:
    """One generated clip: where its WAV is, what it is and how it is described."""

    clip_id: str
    path: str  # relative to the corpus directory, with "/" separators
    label: str
    kind: str  # instrument, drums, speech, event or noise
    scene: str
    register: str  # deep, low, mid or high
    dynamics: str  # soft or loud
    articulation: str
    sample_set: str  # the sample set that played it, or espeak-ng / freedesktop / synthetic
    variant: str  # kind-specific source detail: speech voice, event sound file, noise colour
    caption: str  # the plain label
    captions: tuple[str, ...]  # descriptive captions


def clip_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """The random generator of stream `stream` (ATTRIBUTES, SOUND, SCENE, CAPTIONS) of clip `index`."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, stream)))


def _plan_clip(index: int, sound_class: SoundClass, scene: str, sample_set: str, seed: int) -> DemoClip:
    """Draw clip `index`'s attributes and captions; nothing is rendered yet."""
    rng = clip_rng(seed, index, ATTRIBUTES)
    register = str(rng.choice(sound_class.registers))
    dynamics = str(rng.choice(DYNAMICS))
    articulation = str(rng.choice(sound_class.articulations))
    variant = ""
    details: dict[str, str] = {}
    if sound_class.kind == "speech":
        voice, espeak_variant = speech_voice(register, rng)
        variant = f"{voice.voice}+{espeak_variant}"
        details = {
            "language": voice.language,
            "voice": "male voice" if espeak_variant.startswith("m") else "female voice",
        }
    elif sound_class.kind == "event":
        variant = str(rng.choice(sound_class.event_files))
    elif sound_class.label == "noise":
        variant = NOISE_COLOURS[register][0]
        details = {"colour": variant}
    captions = clip_captions(
        sound_class.label, scene, register, dynamics, articulation, clip_rng(seed, index, CAPTIONS), details
    )
    clip_id = f"{sound_class.slug}_{index:05d}"
    return DemoClip(
        clip_id=clip_id,
        path=f"{sound_class.slug}/{clip_id}.wav",
        label=sound_class.label,
        kind=sound_class.kind,
        scene=scene,
        register=register,
        dynamics=dynamics,
        articulation=articulation,
        sample_set=SOURCE_OF_KIND.get(sound_class.kind, sample_set),
        variant=variant,
        caption=sound_class.label,
        captions=tuple(captions),
    )


def plan_demo_corpus(
    size: int, seed: int, sample_set: str, classes: Sequence[str], scenes: Sequence[str]
) -> list[DemoClip]:
    """Return the clips a corpus would hold, with attributes and captions, without rendering them."""
    sound_classes = [get_sound_class(label) for label in classes]
    plans = []
    for index in range(size):
        class_index, turn = index % len(classes), index // len(classes)
        scene = scenes[(class_index + turn) % len(scenes)]
        plans.append(_plan_clip(index, sound_classes[class_index], scene, sample_set, seed))
    return plans
