"""resound's search side: how vectors answer questions (query, similar, classify, evaluation)."""

from __future__ import annotations

from typing import Any

__all__ = ["Engine", "Hit", "SearchFilter"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `search.cli --help` and the service's modules load only what they use.
    if name == "SearchFilter":
        from db.filters import SearchFilter

        return SearchFilter
    if name in __all__:
        from search import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'search' has no attribute {name!r}")
