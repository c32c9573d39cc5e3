"""Numeric precision of inference: reduced precision (autocast) where it is fast and safe, fp32 elsewhere.

Autocast runs matrix products and convolutions in bf16 (fp16 on GPUs without bf16). A normalisation
computed in reduced precision leaves vectors up to ~3e-3 off unit length, so callers renormalise
(`unit_rows`).

`precision="auto"` (`resolve_precision`):
- on CUDA: bf16, or fp16 on a GPU without bf16;
- on a CPU with native bf16 (AVX512-BF16 or AMX): bf16, but only for a model whose vectors in bf16 keep a
  cosine of at least `BF16_MIN_COSINE` to its fp32 vectors on `agreement_windows` (deterministic test
  signals). The agreement is measured once per checkpoint (it depends on the weights, and on the torch
  build whose kernels compute it) and cached on disk by checkpoint sha256 and torch version, since a
  checkpoint given as a path is in no registry that could carry a figure. Measured here (torch 2.13, a
  AMD EPYC with AVX512-BF16): the starter 0.99997, a random-weight HTSAT-tiny 0.99940;
- elsewhere fp32: without native bf16 the CPU emulates it, slower than fp32.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# bf16 is chosen by `auto` on CPU only for a model whose bf16 vectors keep at least this cosine to fp32.
BF16_MIN_COSINE = 0.999
AGREEMENT_WINDOWS = 8

_LOCK = threading.Lock()
_AGREEMENT: dict[tuple[str, str], float] = {}


def encoder_device(encoder: Any) -> str:
    """The torch device an encoder runs on ("cpu" for encoders that do not say)."""
    device = getattr(encoder, "device", None)
    return "cpu" if device is None else str(device)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    import torch

    cpu = getattr(torch, "cpu", None)
    with contextlib.suppress(AttributeError, RuntimeError):
        if cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported():
            return True
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def agreement_windows(sample_rate: int, window_samples: int, count: int = AGREEMENT_WINDOWS) -> list[np.ndarray]:
    """Deterministic test windows covering what a corpus holds: tones, a chirp, harmonics, noise, clicks,
    a quiet passage and a short window (repeat-padded by the encoder)."""
    rng = np.random.default_rng(20240617)
    t = np.arange(window_samples) / sample_rate
    nyquist = sample_rate / 2
    signals = [
        0.5 * np.sin(2 * np.pi * 440.0 * t),
        0.4 * np.sin(2 * np.pi * (100.0 * t + (0.4 * nyquist - 100.0) * t**2 / (2 * t[-1]))),
        sum(0.3 / k * np.sin(2 * np.pi * 220.0 * k * t) for k in range(1, 8)),
        0.2 * rng.standard_normal(window_samples),
        np.where(np.arange(window_samples) % (sample_rate // 4) < 40, 0.8, 0.0) * rng.standard_normal(window_samples),
        0.01 * rng.standard_normal(window_samples),
        0.3 * np.sin(2 * np.pi * 3000.0 * t) * (1 + np.sin(2 * np.pi * 3.0 * t)) / 2,
        (0.5 * np.sin(2 * np.pi * 660.0 * t))[: max(1, window_samples // 3)],
    ]
    return [np.clip(s, -1.0, 1.0).astype(np.float32) for s in (signals * (count // len(signals) + 1))[:count]]


def _cache_path() -> Path:
    root = os.environ.get("RESOUND_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "resound")
    return Path(root) / "precision.json"


def _read_cache() -> dict[str, float]:
    try:
        data = json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))} if isinstance(data, dict) else {}


def _write_cache(key: str, cosine: float) -> None:
    path = _cache_path()
    with contextlib.suppress(OSError):  # a read-only home only costs a measurement next run
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache()
        data[key] = cosine
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)


def bf16_agreement(encoder: Any) -> float:
    """Minimum cosine between the encoder's bf16-autocast and fp32 vectors of `agreement_windows`.

    Measured once per checkpoint sha256 and torch version, then read from the cache (memory, then disk).
    """
    import torch

    info = encoder.info
    key = (info.checkpoint_sha256, torch.__version__)
    with _LOCK:
        if key in _AGREEMENT:
            return _AGREEMENT[key]
        disk_key = f"{info.family}:{key[0]}:torch-{key[1]}:bf16"
        cached = _read_cache().get(disk_key)
        if cached is None:
            windows = agreement_windows(info.sample_rate, info.window_samples)
            reference = unit_vectors(encoder.embed_audio(windows))
            with torch.autocast(device_type=encoder_device(encoder).split(":")[0], dtype=torch.bfloat16):
                reduced = unit_vectors(encoder.embed_audio(windows))
            cached = float(np.min(np.sum(reference * reduced, axis=1)))
            _write_cache(disk_key, cached)
        _AGREEMENT[key] = cached
        return cached


def unit_vectors(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def resolve_precision(encoder: Any, precision: str = "auto") -> str:
    """The precision `precision` stands for with `encoder` on its device: "fp32", "bf16" or "fp16".

    "auto" is explained in the module docstring. Audio-visual encoders (two towers, one of them a CLIP
    model measured by no test windows here) and encoders without a torch `device` stay in fp32 on CPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return precision
    device = encoder_device(encoder)
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if getattr(encoder, "device", None) is None or hasattr(encoder, "embed_segments") or not cpu_has_native_bf16():
        return "fp32"  # an encoder that names no torch device runs no torch model autocast could speed up
    return "bf16" if bf16_agreement(encoder) >= BF16_MIN_COSINE else "fp32"


def autocast_dtype(device: str, precision: str = "auto") -> Any:
    """The torch dtype to autocast to on `device` for a resolved precision, or None for fp32.

    "auto" here knows no model: bf16 on a CUDA device that supports it, fp16 on an older one, fp32 on CPU
    (`resolve_precision` decides "auto" for a given encoder).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    cuda = device.startswith("cuda")
    if precision == "fp32" or (precision == "auto" and not cuda):
        return None
    import torch

    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@contextlib.contextmanager
def autocast(encoder: Any, precision: str = "auto") -> Iterator[Any]:
    """Run the enclosed inference of `encoder` at `precision` (resolved for it, see resolve_precision);
    fp32 adds nothing. Yields the reduced dtype, or None for fp32.
    """
    device = encoder_device(encoder)
    dtype = autocast_dtype(device, resolve_precision(encoder, precision))
    if dtype is None:
        yield None
        return
    import torch

    with torch.autocast(device_type=device.split(":")[0], dtype=dtype):
        yield dtype


def unit_rows(encoder: Any, vectors: np.ndarray, reduced: Any) -> np.ndarray:
    """`vectors` of a plain encoder renormalised after reduced-precision inference (unchanged in fp32).

    Audio-visual vectors are two weighted halves, not unit rows: their towers' halves are left as they are.
    """
    if reduced is None or hasattr(encoder, "restrict"):
        return vectors
    from indexer.encoders.base import l2_normalize

    return l2_normalize(vectors)
