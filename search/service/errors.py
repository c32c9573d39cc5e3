"""The service's own errors, and which HTTP status each of the library's domain errors becomes.

The library raises domain exceptions (indexer.errors); only this layer knows about HTTP.
"""

from __future__ import annotations

from indexer.errors import (
    AudioDecodeError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    MediaTooLongError,
    QueryError,
    ResoundError,
    SilentMediaError,
)
from search.prompts import PromptError


class ServiceError(ResoundError):
    """An error that already knows its HTTP status (a request the service refuses)."""

    status_code = 400

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code


class UploadTooLargeError(ServiceError):
    """A request body or clip beyond the service's limits."""

    status_code = 413


class NotFoundError(ServiceError):
    """An id the catalog does not hold, or a file no longer on disk."""

    status_code = 404


class ForbiddenMediaError(ServiceError):
    """A catalogued file that resolves outside its corpus (a symlink pointing elsewhere)."""

    status_code = 403


class RangeNotSatisfiableError(ServiceError):
    """A byte range that starts beyond the end of the file."""

    status_code = 416

    def __init__(self, message: str, size: int):
        super().__init__(message)
        self.size = size


# Most specific first. A query the library cannot answer as given is the client's error (400); an index
# that cannot be read is the server's (503: the service may come back once the index is rebuilt).
_STATUS: tuple[tuple[type[ResoundError], int], ...] = (
    (QueryError, 400),
    (PromptError, 400),
    (MediaTooLongError, 413),  # a clip whose audio goes on past the limit, whatever its header said
    (AudioDecodeError, 400),
    (SilentMediaError, 400),  # a silent clip has nothing to label
    (IndexNotFoundError, 503),
    (IndexCorruptError, 503),
    (IndexMismatchError, 503),
)


def status_for(error: ResoundError) -> int:
    """The HTTP status a domain error answers with (500 for one nobody expected)."""
    if isinstance(error, ServiceError):
        return error.status_code
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500
