"""Captions of demo clips, written from phrase tables held as data (caption_phrases.json).

A clip gets its plain label as caption and a few ReCLAP-style descriptive captions that say what the
sound is like and where it is heard ("deep, resonant pipe organ tones echoing through a vast stone
cathedral"). The same tables give the zero-shot prompt bank its descriptions of each label.
"""

from __future__ import annotations

import functools
import json
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from indexer.demo.classes import get_sound_class
from indexer.demo.errors import UnknownSceneError

PHRASES_PATH = Path(__file__).with_name("caption_phrases.json")
# Descriptive captions per clip: the "{description} {scene}" template plus this many others.
OTHER_TEMPLATES_PER_CLIP = 4


@functools.lru_cache(maxsize=1)
def caption_phrases() -> dict[str, Any]:
    """The phrase tables: labels, scenes, registers, dynamics, articulations and templates."""
    return json.loads(PHRASES_PATH.read_text(encoding="utf-8"))


def describe_label(label: str) -> list[str]:
    """Descriptions of what a sound of class `label` is like, without any scene."""
    get_sound_class(label)
    return list(caption_phrases()["labels"][label]["descriptions"])


def scene_phrases(scene: str) -> list[str]:
    """Phrases that place a sound in `scene` ("echoing through a vast stone cathedral")."""
    scenes = caption_phrases()["scenes"]
    if scene not in scenes:
        raise UnknownSceneError(f"unknown scene {scene!r}; known: {', '.join(scenes)}")
    return list(scenes[scene])


def _table_for(table: Mapping[str, Any], label: str, kind: str) -> Any:
    """The most specific entry of a phrase table: for the label, else its kind, else the default."""
    return table.get(label) or table.get(kind) or table["default"]


def clip_captions(
    label: str,
    scene: str,
    register: str,
    dynamics: str,
    articulation: str,
    rng: np.random.Generator,
    details: Mapping[str, str] | None = None,
) -> list[str]:
    """Return the descriptive captions of one clip, chosen with `rng`.

    The first caption is always a description of the sound followed by a scene phrase; the others
    combine register, dynamics and articulation. `details` fills the kind-specific fields of the
    templates (a speech clip's language and voice, a noise's colour).
    """
    sound_class = get_sound_class(label)
    phrases = caption_phrases()
    kind = sound_class.kind
    templates = _table_for(phrases["templates"], label, kind)
    registers = _table_for(phrases["registers"], label, kind)[register]
    dynamics_words = _table_for(phrases["dynamics"], label, kind)[dynamics]
    chosen = [templates[0]] + [
        templates[i] for i in 1 + rng.permutation(len(templates) - 1)[:OTHER_TEMPLATES_PER_CLIP]
    ]

    def pick(options: list[str]) -> str:
        return str(options[int(rng.integers(len(options)))])

    captions = []
    for template in chosen:
        # Only the fields a template uses are drawn, each from the clip's own generator.
        fields: dict[str, str] = {}
        for _, name, _, _ in string.Formatter().parse(template):
            if name is None or name in fields:
                continue
            if name == "description":
                fields[name] = pick(describe_label(label))
            elif name == "scene":
                fields[name] = pick(scene_phrases(scene))
            elif name == "register":
                fields[name] = pick(registers)
            elif name == "dynamics":
                fields[name] = pick(dynamics_words)
            elif name == "articulation":
                fields[name] = pick(phrases["articulations"][articulation])
            elif name == "source":
                fields[name] = phrases["labels"][label]["source"]
            elif name == "label":
                fields[name] = label
            elif details and name in details:
                fields[name] = details[name]
            else:
                raise KeyError(
                    f"caption template {template!r} of {label!r} needs {name!r}, which is not given"
                )
        captions.append(template.format(**fields))
    return captions
