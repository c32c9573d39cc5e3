"""Audio-visual vectors: the CLAP audio embedding and the CLIP frame embedding of a window, concatenated.

A window's vector is [w_a * audio, w_v * visual] (each part unit length, then weighted); a window without
frames (an audio file) has a zero visual part, one without sound a zero audio part. A text query is
[CLAP text, CLIP text], so one inner-product search scores w_a * cos(audio) + w_v * cos(visual); zeroing
one half of the query (`modality="audio"` or `"visual"`) scores one modality alone. This is the feature
construction of ClipClap-GZSL (Kurzendörfer et al. 2024).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from indexer.encoders.base import Encoder, EncoderInfo, l2_normalize
from indexer.encoders.open_clip import OpenClipEncoder

MODALITIES = ("audio", "visual", "av")


class AudioVisualEncoder:
    """An audio encoder (CLAP or the starter model) and a CLIP model side by side."""

    def __init__(self, audio: Encoder, vision: OpenClipEncoder, audio_model: str, vision_model: str,
                 audio_weight: float = 1.0, visual_weight: float = 1.0, frames_per_window: int = 1):
        self.audio = audio
        self.vision = vision
        self.weights = (float(audio_weight), float(visual_weight))
        self.frames_per_window = int(frames_per_window)
        self.device = getattr(audio, "device", None)  # both towers were loaded on one device
        a, v = audio.info, vision.info
        self.info = EncoderInfo(
            model_id=f"{a.model_id}+{v.model_id}",
            family="audio_visual",
            dim=a.dim + v.dim,
            sample_rate=a.sample_rate,
            window_seconds=a.window_seconds,
            checkpoint_sha256=hashlib.sha256(f"{a.checkpoint_sha256}:{v.checkpoint_sha256}".encode()).hexdigest(),
            preprocessing={
                "audio_model": audio_model,
                "vision_model": vision_model,
                "audio": dict(a.preprocessing),
                "vision": dict(v.preprocessing),
                "audio_dim": a.dim,
                "weights": list(self.weights),
                "frames": "middle" if self.frames_per_window == 1 else f"{self.frames_per_window} averaged",
            },
            modalities=("audio", "visual", "text"),
        )

    def embed_audio(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Audio-only windows: [w_a * audio, 0]."""
        return self.embed_segments(windows, [None] * len(windows))

    def embed_segments(
        self, windows: Sequence[np.ndarray | None], frames: Sequence[Sequence[np.ndarray] | None]
    ) -> np.ndarray:
        """One vector per window from its samples (None: no sound) and its frames (None: no picture)."""
        a_dim, v_dim = self.audio.info.dim, self.vision.info.dim
        out = np.zeros((len(windows), a_dim + v_dim), dtype=np.float32)
        with_audio = [i for i, w in enumerate(windows) if w is not None]
        if with_audio:
            out[with_audio, :a_dim] = self.weights[0] * self.audio.embed_audio([windows[i] for i in with_audio])
        with_frames = [i for i, f in enumerate(frames) if f]
        if with_frames:
            flat = [frame for i in with_frames for frame in frames[i]]
            vectors = self.vision.embed_images(flat)
            start = 0
            for i in with_frames:
                n = len(frames[i])
                out[i, a_dim:] = self.weights[1] * l2_normalize(vectors[start : start + n].mean(axis=0))
                start += n
        return out

    def embed_text(self, texts: Sequence[str], modality: str = "av") -> np.ndarray:
        """[CLAP text, CLIP text] for `av`; the other half zeroed for `audio` or `visual`."""
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, not {modality!r}")
        a_dim = self.audio.info.dim
        out = np.zeros((len(texts), self.info.dim), dtype=np.float32)
        if modality in ("audio", "av"):
            out[:, :a_dim] = self.audio.embed_text(texts)
        if modality in ("visual", "av"):
            out[:, a_dim:] = self.vision.embed_text(texts)
        return out

    def restrict(self, vectors: np.ndarray, modality: str) -> np.ndarray:
        """Query vectors with the other modality's half zeroed (for audio or visual-only scoring)."""
        vectors = np.array(vectors, dtype=np.float32, copy=True)
        a_dim = self.audio.info.dim
        if modality == "audio":
            vectors[..., a_dim:] = 0
        elif modality == "visual":
            vectors[..., :a_dim] = 0
        return vectors

    def logit_scale(self) -> float:
        scale = getattr(self.audio, "logit_scale", None)
        return float(scale()) if callable(scale) else 1 / 0.07
