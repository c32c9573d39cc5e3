"""Small, seeded, offline test data: sounds, a RoBERTa tokenizer, a random-weight LAION-CLAP checkpoint."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import soundfile


def byte_level_vocab() -> dict[str, int]:
    """RoBERTa's special tokens followed by its 256 byte symbols (GPT-2's byte-to-unicode table)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for c in chars:
        vocab[chr(c)] = len(vocab)
    vocab["<mask>"] = len(vocab)
    return vocab


def write_roberta_tokenizer(directory: Path, merges: list[str] = ()) -> Path:
    """A tiny byte-level BPE tokenizer in RoBERTa's file format (vocab.json, merges.txt)."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = byte_level_vocab()
    for merge in merges:
        vocab["".join(merge.split())] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges))
    return directory


def write_random_clap_checkpoint(path: Path, seed: int = 0, fusion: bool = False) -> Path:
    """A LAION-CLAP checkpoint with random weights, in the layout of the released ones."""
    import torch

    from indexer.encoders.laion_clap import build_clap_model

    torch.manual_seed(seed)
    model, _ = build_clap_model("HTSAT-tiny", fusion=fusion)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    # Released checkpoints were saved by DDP with transformers < 4.31, which still kept this buffer.
    state["module.text_branch.embeddings.position_ids"] = torch.arange(514).expand((1, -1))
    torch.save({"epoch": 1, "state_dict": state}, path)
    return path


def tone(freq: float, seconds: float, rate: int = 48000, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirp(f0: float, f1: float, seconds: float, rate: int = 48000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (0.5 * np.sin(phase)).astype(np.float32)


def noise(seconds: float, seed: int, rate: int = 48000, color: str = "white") -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(int(seconds * rate))
    if color == "brown":
        x = np.cumsum(x)
        x -= np.linspace(x[0], x[-1], len(x))
    return (0.4 * x / np.max(np.abs(x))).astype(np.float32)


def clicks(rate_hz: float, seconds: float, rate: int = 48000) -> np.ndarray:
    x = np.zeros(int(seconds * rate), dtype=np.float32)
    x[:: int(rate / rate_hz)] = 0.9
    return x


def write_audio(path: Path, samples: np.ndarray, rate: int = 48000) -> Path:
    """Write mono audio in the format the suffix names (wav/flac/ogg via libsndfile, others via PyAV)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in {".wav", ".flac", ".ogg"}:
        with open(path, "wb") as f:  # a file object: the name may not be UTF-8
            soundfile.write(f, samples, rate, format=suffix[1:].upper())
    else:
        encode_with_pyav(path, samples, rate)
    return path


def encode_with_pyav(path: Path, samples: np.ndarray, rate: int) -> None:
    import av

    codec = {".mp3": "libmp3lame", ".opus": "libopus", ".m4a": "aac", ".mp4": "aac"}[path.suffix.lower()]
    out_rate = 48000 if codec == "libopus" else rate
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=out_rate)
        stream.layout = "mono"
        mux_audio(container, stream, samples, rate)


def mux_audio(container, stream, samples: np.ndarray, rate: int) -> None:  # type: ignore[no-untyped-def]
    """Encode mono float samples at `rate` into an open PyAV audio stream, flushing the encoder."""
    import av

    frame = av.AudioFrame.from_ndarray(samples[None, :].astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=stream.rate)
    for out in resampler.resample(frame):
        for packet in stream.encode(out):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def espeak(path: Path, text: str, voice: str = "en") -> Path:
    """Speech from espeak-ng (a real synthesiser) as a wav file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return path


class ToneEncoder:
    """A transparent test encoder: audio -> one-hot of the nearest reference pitch, text -> the pitch it names.

    It makes zero-shot classification and retrieval outcomes predictable, so tests can assert exact
    accuracies and ranks through the real pipeline (decode, windows, prompts, metrics).
    """

    PITCHES = (220.0, 330.0, 440.0, 660.0, 880.0)

    def __init__(self, model_id: str = "test:tones", checkpoint: Path | None = None) -> None:
        from indexer.encoders.base import EncoderInfo
        from indexer.encoders.checkpoints import file_sha256

        sha = file_sha256(checkpoint) if checkpoint is not None else "0" * 64
        self.info = EncoderInfo(model_id=model_id, family="test", dim=len(self.PITCHES) + 1, sample_rate=16000,
                                window_seconds=2.0, checkpoint_sha256=sha)

    def _one_hot(self, i: int | None) -> np.ndarray:
        v = np.zeros(self.info.dim, dtype=np.float32)
        v[len(self.PITCHES) if i is None else i] = 1.0
        return v

    def embed_audio(self, windows) -> np.ndarray:
        out = []
        for w in windows:
            spectrum = np.abs(np.fft.rfft(w))
            peak = np.argmax(spectrum) * self.info.sample_rate / len(w)
            out.append(self._one_hot(int(np.argmin([abs(peak - p) for p in self.PITCHES]))))
        return np.stack(out)

    def embed_text(self, texts) -> np.ndarray:
        import re

        out = []
        for text in texts:
            numbers = [float(n) for n in re.findall(r"\d+", text)]
            match = next((self.PITCHES.index(n) for n in numbers if n in self.PITCHES), None)
            out.append(self._one_hot(match))
        return np.stack(out)

    def logit_scale(self) -> float:
        return 10.0


def write_video(path: Path, colours: list[tuple[float, tuple[int, int, int]]], seconds: float, fps: int = 10,
                audio: np.ndarray | None = None, rate: int = 48000, size: int = 64) -> Path:
    """A video whose frames are a flat colour that changes at the given times: [(from_second, rgb), ...].

    mp4 gets h264 (+ aac audio), webm vp9 (+ opus audio); `audio=None` makes a silent video.
    """
    import av

    video_codec, audio_codec = {".mp4": ("libx264", "aac"), ".webm": ("libvpx-vp9", "libopus"),
                                ".mkv": ("libx264", "aac"), ".mov": ("libx264", "aac")}[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream(video_codec, rate=fps)
        video.width, video.height, video.pix_fmt = size, size, "yuv420p"
        sound = None
        if audio is not None:
            sound = container.add_stream(audio_codec, rate=rate)
            sound.layout = "mono"
        for i in range(int(seconds * fps)):
            t = i / fps
            rgb = [c for start, c in colours if start <= t][-1]
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), rgb, dtype=np.uint8), format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if sound is not None:
            mux_audio(container, sound, audio, rate)
    return path


def write_tiny_clip_checkpoint(path: Path, seed: int = 0) -> str:
    """Random weights of the tiny CLIP config in tests/data; returns the vision model spec for it."""
    import torch
    from safetensors.torch import save_file

    from indexer.encoders.imports import import_open_clip

    open_clip = import_open_clip()
    open_clip.add_model_config(Path(__file__).with_name("data") / "tiny-clip.json")
    torch.manual_seed(seed)
    model = open_clip.create_model("tiny-clip")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return f"tiny-clip:{path}"


def starter_index(root: Path) -> tuple[Path, Path]:
    """(corpus, index) of three short tones and a noise, built with the default model (starter-aisfx): the
    fuzz and edge-case tests that use it run on what a user gets."""
    from indexer import BuildOptions, build_index

    corpus = root / "corpus"
    write_audio(corpus / "a440.wav", tone(440, 2.0))
    write_audio(corpus / "sweep.flac", chirp(100, 8000, 4.0))
    write_audio(corpus / "noise.ogg", noise(2.0, seed=1))
    build_index(corpus, root / "index", BuildOptions())
    return corpus, root / "index"
