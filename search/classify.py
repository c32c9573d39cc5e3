"""Zero-shot classification: the label whose prompt embedding is nearest to the audio.

Probabilities are a softmax over cosine similarity times the model's logit scale (its learned
temperature), as CLAP computes them. Long audio also gets a label per window (a timeline).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from indexer.embed import embed_file
from indexer.encoders.base import Encoder, l2_normalize
from indexer.errors import AudioDecodeError, ResoundError, SilentMediaError
from indexer.media.decode import NO_LIMITS, DecodeLimits
from search.prompts import DEFAULT_PROMPTS_PER_LABEL, LabelSet, PromptBank, label_embeddings, label_prompts

T = TypeVar("T")

# A file none of whose samples rises above this level is silence (digital or a muted take): every model
# still gives its windows a confident label ("a door closing" 0.99 for ten minutes of zeros, issue 28's
# trial), so classify refuses it instead. -70 dBFS is under the noise floor of any recorded room tone.
SILENCE_DBFS = -70
SILENCE_PEAK = 10 ** (SILENCE_DBFS / 20)

# CLIP/CLAP initialise their temperature at 1/0.07; used for encoders that do not expose a learned one.
DEFAULT_LOGIT_SCALE = 1 / 0.07


@dataclass(frozen=True)
class LabelScore:
    label: str
    probability: float
    similarity: float


@dataclass(frozen=True)
class WindowLabels:
    start: float
    end: float
    top: list[LabelScore]


@dataclass(frozen=True)
class FileLabels:
    """Top labels of a whole file (its mean vector) and, for multi-window files, of each window."""

    path: str
    top: list[LabelScore]
    timeline: list[WindowLabels]

    def to_json(self) -> dict[str, object]:
        def scores(top: list[LabelScore]) -> list[dict[str, object]]:
            return [{"label": s.label, "probability": s.probability, "similarity": s.similarity} for s in top]

        return {
            "path": self.path,
            "labels": scores(self.top),
            "timeline": [{"start": w.start, "end": w.end, "labels": scores(w.top)} for w in self.timeline],
        }


@dataclass(frozen=True)
class FileFailure:
    """A file a command over many files could not use, and the one-line reason."""

    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "error": self.reason}


def per_file(files: Iterable[Path], work: Callable[[Path], T]) -> tuple[list[T], list[FileFailure]]:
    """`work(file)` for each file, going on past the ones it cannot read: (results in order, failures).

    What a file can do wrong (undecodable, empty, too long, vanished, unreadable) is a ResoundError or an
    OSError; anything else is a bug and propagates.
    """
    results: list[T] = []
    failures: list[FileFailure] = []
    for f in files:
        try:
            results.append(work(f))
        except ResoundError as e:
            reason = e.reason if isinstance(e, AudioDecodeError) else str(e).removeprefix(f"{f}: ")
            failures.append(FileFailure(str(f), reason))
        except OSError as e:
            failures.append(FileFailure(str(f), e.strerror or str(e)))
    return results, failures


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


class ZeroShotClassifier:
    """Labels audio with the nearest label prompt embedding of one label set."""

    def __init__(
        self,
        encoder: Encoder,
        label_set: LabelSet,
        strategy: str = "reclap",
        bank: PromptBank | None = None,
        n_prompts: int = DEFAULT_PROMPTS_PER_LABEL,
        seed: int = 0,
        modality: str = "av",
    ):
        self.encoder = encoder
        # Labels read from sound alone (an audio model, or an audio-visual one restricted to audio): a file
        # silent throughout is refused, not labelled. A picture can still be labelled under silence.
        self.hears_only = modality == "audio" or not hasattr(encoder, "restrict")
        self.label_set = label_set
        self.labels = list(label_set.labels)
        self.prompts = label_prompts(label_set, strategy, bank, n_prompts, seed)
        # For audio-visual encoders a label is [CLAP text, CLIP text] (ClipClap's label embedding);
        # restricting it to one half scores that modality alone.
        self.label_vectors = label_embeddings(encoder, self.prompts)
        if hasattr(encoder, "restrict"):
            self.label_vectors = l2_normalize(encoder.restrict(self.label_vectors, modality))  # type: ignore[attr-defined]
        elif modality not in ("audio", "av"):
            raise ValueError(f"modality {modality!r} needs an audio-visual model (give a vision model)")
        scale = getattr(encoder, "logit_scale", None)
        self.logit_scale = float(scale()) if callable(scale) else DEFAULT_LOGIT_SCALE

    def similarities(self, audio_vectors: np.ndarray) -> np.ndarray:
        """(n, n_labels) cosine similarities."""
        return np.atleast_2d(audio_vectors) @ self.label_vectors.T

    def probabilities(self, audio_vectors: np.ndarray) -> np.ndarray:
        """(n, n_labels) softmax over similarity x logit scale."""
        return softmax(self.similarities(audio_vectors) * self.logit_scale)

    def predict(self, audio_vectors: np.ndarray) -> np.ndarray:
        """Index of the best label for each vector."""
        return np.argmax(self.similarities(audio_vectors), axis=1)

    def top(self, audio_vector: np.ndarray, k: int = 5) -> list[LabelScore]:
        sims = self.similarities(audio_vector)[0]
        probs = softmax(sims * self.logit_scale)
        order = np.argsort(-sims, kind="stable")[:k]
        return [LabelScore(self.labels[i], float(probs[i]), float(sims[i])) for i in order]

    def classify_file(self, path: str | Path, k: int = 5, hop_seconds: float | None = None,
                      limits: DecodeLimits = NO_LIMITS) -> FileLabels:
        """Top-k labels of a file, with a per-window timeline when it spans several windows. Decoding stops
        at `limits` (MediaTooLongError), whatever the file's header claims."""
        embedding = embed_file(self.encoder, path, hop_seconds, limits=limits)
        if self.hears_only and embedding.silent(SILENCE_PEAK):
            raise SilentMediaError(str(path), f"silent (no sample above {SILENCE_DBFS} dBFS): nothing to label")
        timeline = []
        if len(embedding.spans) > 1:
            timeline = [
                WindowLabels(round(a, 3), round(b, 3), self.top(v, k)) for (a, b), v in zip(embedding.spans, embedding.vectors)
            ]
        return FileLabels(str(path), self.top(embedding.file_vector, k), timeline)
