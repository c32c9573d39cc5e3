"""Where a run computes: the torch device the encoders run on, and the GPU FAISS builds and searches on.

`--device cpu` keeps everything on CPU. `--device cuda` (or `cuda:N`) runs the encoders on that GPU and
fails at once when torch sees none; FAISS follows onto it when faiss has GPU support. `--device auto` takes
a GPU where there is one and CPU otherwise; a half fallback (model on GPU, FAISS on CPU, or the reverse)
comes with a one-line note.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import DeviceError

DEVICES = ("auto", "cpu", "cuda")
_CUDA_NAME = re.compile(r"^cuda(?::(\d+))?$")


@dataclass(frozen=True)
class Placement:
    """A resolved device: the encoders' torch device, FAISS's GPU (None: CPU), and notes on any fallback."""

    torch_device: str  # "cpu" or "cuda:N"
    faiss_gpu: int | None = None
    notes: tuple[str, ...] = ()

    @property
    def uses_gpu(self) -> bool:
        return self.torch_device != "cpu" or self.faiss_gpu is not None


def _nvidia_driver_present() -> bool:
    """False when this Linux machine certainly has no NVIDIA driver (torch could find no GPU either)."""
    if not sys.platform.startswith("linux"):
        return True  # no cheap test: ask torch
    return any(Path(p).exists() for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/dxg"))


def cuda_device_count() -> int:
    """CUDA GPUs torch can use; 0 without a CUDA build of torch, a driver or a device."""
    if "torch" not in sys.modules and not _nvidia_driver_present():
        return 0  # spares a CPU-only run the second it takes to import torch
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def faiss_gpu_count() -> int:
    """GPUs the installed faiss can use; 0 for faiss-cpu."""
    if "faiss" not in sys.modules and not _nvidia_driver_present():
        return 0  # no NVIDIA driver, so no GPU for faiss either: a CPU-only run imports faiss only to use it
    import faiss

    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    return int(faiss.get_num_gpus())


def _no_cuda_reason() -> str:
    if "torch" in sys.modules or _nvidia_driver_present():
        import torch

        if torch.version.cuda is None:
            return f"this torch ({torch.__version__}) is built without CUDA"
        return "torch finds no CUDA device (driver, CUDA_VISIBLE_DEVICES?)"
    return "no NVIDIA driver on this machine"


_FAISS_CPU_NOTE = "FAISS runs on CPU: the installed faiss has no GPU support (pip install 'resound[gpu]')"


def resolve_device(device: str = "auto") -> Placement:
    """The placement `device` ("cpu", "cuda", "cuda:N" or "auto") stands for on this machine.

    Raises DeviceError for an unknown name, or for CUDA asked for where torch sees no such GPU.
    """
    name = device.strip().lower()
    if name == "cpu":
        return Placement("cpu")
    if name == "auto":
        gpus, faiss_gpus = cuda_device_count(), faiss_gpu_count()
        if not gpus and not faiss_gpus:
            # CPU is what `auto` means on a machine without GPUs: no note, or every command would carry one.
            return Placement("cpu")
        notes = []
        if not gpus:
            notes.append(f"device auto: the model runs on CPU ({_no_cuda_reason()}), FAISS on GPU 0")
        if not faiss_gpus:
            notes.append(_FAISS_CPU_NOTE)
        return Placement("cuda:0" if gpus else "cpu", 0 if faiss_gpus else None, tuple(notes))
    match = _CUDA_NAME.match(name)
    if match is None:
        raise DeviceError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto")
    number = int(match[1] or 0)
    gpus = cuda_device_count()
    if gpus == 0:
        raise DeviceError(f"device {device!r} asked for, but {_no_cuda_reason()}; use device cpu or auto")
    if number >= gpus:
        raise DeviceError(f"device {device!r} asked for, but torch sees {gpus} CUDA GPU(s) (cuda:0 to cuda:{gpus - 1})")
    faiss_gpus = faiss_gpu_count()
    if number < faiss_gpus:
        return Placement(f"cuda:{number}", number)
    return Placement(f"cuda:{number}", None, (_FAISS_CPU_NOTE,))
