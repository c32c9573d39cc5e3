"""resound's indexing side: how media becomes vectors (decoding, windows, encoders, index writing).

Names are imported on first use: `import indexer.device` (as a search does) must not import the build
pipeline and SQLAlchemy with it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BuildOptions": "indexer.build",
    "BuildReport": "indexer.build",
    "FailedFile": "indexer.build",
    "build_index": "indexer.build",
    "Index": "indexer.index",
    "Provenance": "indexer.index",
}

__all__ = ["BuildOptions", "BuildReport", "FailedFile", "Index", "Provenance", "build_index"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'indexer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
