"""Numeric precision of inference: reduced precision (autocast) on CUDA, fp32 on CPU, unless asked otherwise.

Autocast runs matrix products and convolutions in bf16 (fp16 on GPUs without bf16). Vectors then differ
from fp32 ones by about 1e-2 in cosine, which moves search results little; the CPU default stays fp32
(exact parity with the reference models, tests/test_laion_clap_parity.py). A normalisation computed in
reduced precision leaves vectors up to ~3e-3 off unit length, so callers renormalise (`unit_rows`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def encoder_device(encoder: Any) -> str:
    """The torch device an encoder runs on ("cpu" for encoders that do not say)."""
    device = getattr(encoder, "device", None)
    return "cpu" if device is None else str(device)


def autocast_dtype(device: str, precision: str = "auto") -> Any:
    """The torch dtype to autocast to on `device`, or None for fp32.

    "auto": bf16 on a CUDA device that supports it, fp16 on an older one, fp32 on CPU.
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
    """Run the enclosed inference of `encoder` at `precision` (see autocast_dtype); fp32 adds nothing.

    Yields the reduced dtype, or None for fp32.
    """
    device = encoder_device(encoder)
    dtype = autocast_dtype(device, precision)
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
