"""resound's indexing side: how media becomes vectors (decoding, windows, encoders, index writing)."""

from indexer.build import BuildOptions, BuildReport, FailedFile, build_index
from indexer.index import Index, Provenance

__all__ = ["BuildOptions", "BuildReport", "FailedFile", "Index", "Provenance", "build_index"]
