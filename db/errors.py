"""The root of resound's domain exceptions, in the bottom layer so that every layer can raise them.

`db` is imported by `indexer` and `search` and imports neither (tests/test_import_layers.py keeps it so);
the catalog raises `FilterError` for a filter it cannot turn into conditions, and the command line and the
service map every `ResoundError` to one message (a `QueryError` to HTTP 400). The other exceptions live
with the layer that raises them (indexer/errors.py, which also re-exports these three).
"""

from __future__ import annotations


class ResoundError(Exception):
    """Base class of every error resound raises on purpose."""


class QueryError(ResoundError):
    """A query that cannot be answered as given (empty text, unreadable clip, ...)."""


class FilterError(QueryError):
    """A search filter condition that cannot be understood (a bad date, tag, modality or range)."""
