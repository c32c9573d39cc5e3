"""Imports of heavy third-party model code, without their side effects.

- PyPI's torchvision wheels are CUDA builds; on CPU-only torch their import fails with
  "operator torchvision::nms does not exist" because the compiled ops did not register. resound uses no
  torchvision op, only modules that import it (laion_clap's transforms, open_clip), so we declare the two
  operator schemas its Python code registers fake kernels for, and only when they are missing.
- `import laion_clap` runs `laion_clap/training/data.py`, which fetches three tokenizers from the hub at
  import time and, offline, silently yields vocabulary-less tokenizers. The model code lives in the
  top-level package `clap_module` (laion_clap puts its own folder on sys.path for it), so we import that
  the same way and never execute `laion_clap/__init__.py`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

from indexer.errors import MissingDependencyError

_TORCHVISION_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_torchvision_library = None  # kept alive: a torch.library.Library unregisters its schemas when collected


def ensure_torchvision_importable() -> None:
    """Declare torchvision's nms/qnms schemas when the installed wheel did not register them."""
    global _torchvision_library
    if "torchvision" in sys.modules or _torchvision_library is not None:
        return
    import torch

    missing = [name for name in _TORCHVISION_SCHEMAS if not _op_exists(torch, name)]
    if not missing:
        return
    _torchvision_library = torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        _torchvision_library.define(_TORCHVISION_SCHEMAS[name])


def _op_exists(torch_module: ModuleType, name: str) -> bool:
    try:
        torch_module._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
        return True
    except RuntimeError:
        return False


def import_clap_module() -> ModuleType:
    """Return laion_clap's `clap_module` package without running `laion_clap/__init__.py`."""
    if "clap_module" in sys.modules:
        return sys.modules["clap_module"]
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "LAION-CLAP models need the 'laion-clap' package: pip install laion-clap (it is a core "
            "dependency of resound; reinstall resound)"
        )
    package_dir = list(spec.submodule_search_locations)[0]
    if package_dir not in sys.path:
        sys.path.append(package_dir)  # what laion_clap/__init__.py does, minus its imports
    ensure_torchvision_importable()
    return importlib.import_module("clap_module")


def import_open_clip() -> ModuleType:
    """Return the `open_clip` package, or say which extra installs it."""
    ensure_torchvision_importable()
    try:
        return importlib.import_module("open_clip")
    except ImportError as e:
        raise MissingDependencyError(
            "CLIP models need open_clip_torch: pip install 'resound[video]'"
        ) from e
