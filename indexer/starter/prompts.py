"""Zero-shot prompts for a sound label, in the three styles the starter model is measured with.

- "label": the bare label ("cello"), which is also the plain caption the model trains on;
- "template": CLIP's sentence template ("This is a sound of cello.");
- "descriptive": ReCLAP-style descriptions of the sound placed in every scene ("the rich, bowed tones
  of a cello echoing through a vast stone cathedral"), from the demo corpus's phrase tables. Their
  embeddings are averaged (each normalised) and the mean renormalised. A label of real recordings that
  the demo corpus does not render ("dog barking") uses its recordings' caption texts instead
  (indexer/starter/recording_captions.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from indexer.encoders.base import l2_normalize

PROMPT_STYLES = ("label", "template", "descriptive")
TEMPLATE = "This is a sound of {label}."


def label_prompts(label: str, style: str) -> list[str]:
    """The prompts of `label` in `style` (one of PROMPT_STYLES)."""
    if style == "label":
        return [label]
    if style == "template":
        return [TEMPLATE.format(label=label)]
    if style == "descriptive":
        from indexer.demo import SCENES, SOUND_CLASSES, describe_label, scene_phrases

        if label not in SOUND_CLASSES:
            return recorded_label_captions(label)
        return [
            f"{description} {phrase}"
            for description in describe_label(label)
            for scene in SCENES
            for phrase in scene_phrases(scene)
        ]
    raise ValueError(f"unknown prompt style {style!r}; use one of {', '.join(PROMPT_STYLES)}")


def recorded_label_captions(label: str) -> list[str]:
    """Caption texts of a label of real recordings (recording_captions.LABEL_CAPTIONS); ValueError if none."""
    from indexer.starter.recording_captions import LABEL_CAPTIONS

    captions = list(LABEL_CAPTIONS.get(label, ()))
    if not captions:
        raise ValueError(f"no descriptive prompts for {label!r}: neither a demo class nor a label of real recordings")
    return captions


def label_in_scene_prompts(label: str, scene: str) -> list[str]:
    """Descriptive prompts of `label` heard in `scene` ("deep, resonant pipe organ tones filling a vast
    stone cathedral"): every description with every phrase of that scene."""
    from indexer.demo import describe_label, scene_phrases

    return [f"{description} {phrase}" for description in describe_label(label) for phrase in scene_phrases(scene)]


def label_embeddings(
    labels: Sequence[str], style: str, embed_text: Callable[[Sequence[str]], np.ndarray]
) -> np.ndarray:
    """(len(labels), dim) unit vectors: each label's prompt embeddings averaged, then renormalised."""
    return mean_prompt_embeddings([label_prompts(label, style) for label in labels], embed_text)


def mean_prompt_embeddings(
    prompts: Sequence[Sequence[str]], embed_text: Callable[[Sequence[str]], np.ndarray]
) -> np.ndarray:
    """(len(prompts), dim) unit vectors: each group's prompt embeddings averaged, then renormalised."""
    flat = [p for group in prompts for p in group]
    vectors = l2_normalize(embed_text(flat))
    rows, start = [], 0
    for group in prompts:
        rows.append(vectors[start : start + len(group)].mean(axis=0))
        start += len(group)
    return l2_normalize(np.stack(rows))
