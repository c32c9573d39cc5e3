"""Domain exceptions of resound.

The library raises these; only the command-line layer turns them into click errors. Each message is
one line that names the file or thing at fault and the reason.
"""

from __future__ import annotations

# The hierarchy's root and the query errors sit in the bottom layer (db raises FilterError); every caller
# keeps importing them from here.
from db.errors import FilterError, QueryError, ResoundError  # noqa: F401 (re-exported)


class UnknownModelError(ResoundError):
    """A model name that is neither registered nor a path to a checkpoint."""


class CheckpointNotFoundError(ResoundError):
    """A checkpoint or tokenizer that is not on disk and cannot be downloaded."""


class CheckpointError(ResoundError):
    """A checkpoint that exists but cannot be loaded (corrupt, unsafe, wrong architecture)."""


class MissingDependencyError(ResoundError):
    """An optional dependency is not installed; the message names the extra to install."""


class AudioDecodeError(ResoundError):
    """A media file that no decoder could read.

    The message names the file and a plain reason ("not an audio file", "truncated FLAC": see
    indexer/media/reasons.py); `reasons` keeps each decoder's own message and `detail` joins them.
    """

    def __init__(self, path: str, reasons: list[str] | str):
        from indexer.media.reasons import plain_reason

        self.path = str(path)
        self.reasons = [reasons] if isinstance(reasons, str) else list(reasons)
        self.reason = plain_reason(path, self.reasons)
        super().__init__(f"{self.path}: {self.reason}")

    @property
    def detail(self) -> str:
        """The decoders' own messages (for --verbose and `indexer info --failed`)."""
        return "; ".join(self.reasons)


class UnreadableFileError(AudioDecodeError):
    """A media file that cannot be opened or read as it is now (permissions, not a regular file, rewritten
    while read); unlike undecodable content, a build tries it again next time."""


class TextFileError(ResoundError):
    """A file that should hold UTF-8 text (a CSV, a split, a label list) and does not: unreadable, binary,
    or in another encoding."""


class EmptyCorpusError(ResoundError):
    """A corpus directory that holds no media file resound can index."""


class IndexNotFoundError(ResoundError):
    """An index directory that does not exist or holds no index."""


class IndexMismatchError(ResoundError):
    """An index built with another model, dimension or metric than the one asked for."""


class IndexCorruptError(ResoundError):
    """An index whose files or database rows are unreadable or inconsistent."""


class CatalogError(ResoundError):
    """A catalog database that cannot be opened or read: a bad URL, an unknown database kind, a server
    that does not answer, a file that is not a database, or none where one must already be."""


class IndexLockedError(ResoundError):
    """Another process is writing the index."""


class RepairRefusedError(ResoundError):
    """A repair that would drop files it cannot embed again (their media is out of reach here)."""


class DeviceError(ResoundError):
    """A device that was asked for and is not there (no CUDA GPU), or a device name resound does not know."""


class ParameterError(QueryError):
    """A parameter value the command line and the API both refuse (search/validation.py): the command line
    answers it as a usage error (exit status 2), the API with 400."""


class SilentMediaError(ResoundError):
    """A media file whose audio is silence throughout: a model's labels for it would mean nothing."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class MediaTooLongError(AudioDecodeError):
    """Audio that goes on past a decoding limit (seconds or samples), whatever its header claimed.

    Decoding stops at the limit: a container that says 7 s and holds 3 hours costs the limit, not 3 hours.
    """

    def __init__(self, path: str, reason: str, limit: str = "seconds"):
        super().__init__(path, reason)
        self.limit = limit  # which limit was passed: "seconds" or "samples"
        self.args = (f"{self.path}: {reason}",)
