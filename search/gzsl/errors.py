"""Domain errors of the GZSL package; each message names the file, class or setting at fault."""

from __future__ import annotations

from indexer.errors import ResoundError


class GZSLSplitError(ResoundError):
    """A class split that is inconsistent: a class in two roles, an unknown class, an empty role."""


class GZSLDataError(ResoundError):
    """Features, labels or class embeddings that are unreadable or do not fit together."""


class GZSLConfigError(ResoundError):
    """A training configuration that cannot train (no loss enabled, impossible sizes)."""
