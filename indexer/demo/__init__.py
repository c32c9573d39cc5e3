"""Deterministic demo corpus of labelled sound clips rendered from real recorded samples.

Instruments are General MIDI programs played by a recorded sample set (Fluid R3, TimGM6mb,
MuseScore General, or FreePats as the independent held-out set); speech, event sounds and noises
complete the demo. Each clip is placed in an acoustic scene and described by captions built from
phrase tables, so the corpus serves both as resound's demo and as CLAP-style training data.
"""

from indexer.demo.availability import classes_available
from indexer.demo.captions import clip_captions, describe_label, scene_phrases
from indexer.demo.classes import SOUND_CLASSES, SoundClass
from indexer.demo.errors import (
    DemoCorpusError,
    RenderError,
    SampleSetNotInstalledError,
    SoundClassUnavailableError,
    UnknownSampleSetError,
    UnknownSceneError,
    UnknownSoundClassError,
)
from indexer.demo.generate import DEMO_SEED, SAMPLE_RATE, generate_demo_corpus
from indexer.demo.metadata import read_demo_corpus
from indexer.demo.plan import DemoClip, plan_demo_corpus
from indexer.demo.sample_sets import SAMPLE_SETS, SampleSet
from indexer.demo.scenes import SCENES, apply_scene

__all__ = [
    "DEMO_SEED",
    "SAMPLE_RATE",
    "SAMPLE_SETS",
    "SCENES",
    "SOUND_CLASSES",
    "DemoClip",
    "DemoCorpusError",
    "RenderError",
    "SampleSet",
    "SampleSetNotInstalledError",
    "SoundClass",
    "SoundClassUnavailableError",
    "UnknownSampleSetError",
    "UnknownSceneError",
    "UnknownSoundClassError",
    "apply_scene",
    "classes_available",
    "clip_captions",
    "describe_label",
    "generate_demo_corpus",
    "plan_demo_corpus",
    "read_demo_corpus",
    "scene_phrases",
]
