"""Opening an index directory: manifest, catalog, provenance checks, FAISS stores, the writer lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from db.migrate import head_revision_of_files
from db.records import SegmentRecord
from db.session import sqlite_url, url_without_password
from db.sqlite_reader import SqliteReader, reader_for
from indexer.encoders.base import EncoderInfo
from indexer.errors import CatalogError, IndexLockedError, IndexMismatchError, IndexNotFoundError
from indexer.segments import IndexDirectory
from indexer.store import DEFAULT_FACTORY

if TYPE_CHECKING:
    import numpy as np

    from db import Catalog, IndexInfoRow
    from db.records import VectorFile
    from indexer.segments import SegmentedStore

MANIFEST_FORMAT = "resound-index"
MANIFEST_VERSION = 1
_VERSIONED_PACKAGES = ("resound", "torch", "numpy", "faiss-cpu", "faiss-gpu-cu12", "laion-clap", "transformers",
                       "open_clip_torch", "sqlalchemy")


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide what the vectors are."""
    from importlib import metadata  # only builds need it: a search does not pay for its import

    versions = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


@dataclass(frozen=True)
class Provenance:
    """What made an index's vectors; stored in the catalog and mirrored in manifest.json."""

    model_id: str
    family: str
    checkpoint: str
    checkpoint_sha256: str
    dim: int
    metric: str
    sample_rate: int
    window_seconds: float
    hop_seconds: float
    preprocessing: dict[str, Any]
    faiss_factory: str
    versions: dict[str, str]
    search_params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, info: EncoderInfo, checkpoint: str, hop_seconds: float, factory: str = DEFAULT_FACTORY,
           precision: str | None = None) -> "Provenance":
        """`precision`: the inference precision the vectors are computed in (fp32, bf16, fp16), recorded
        with the package versions, since the two together decide the vectors' last digits."""
        versions = package_versions()
        if precision is not None:
            versions["precision"] = precision
        return cls(
            model_id=info.model_id,
            family=info.family,
            checkpoint=checkpoint,
            checkpoint_sha256=info.checkpoint_sha256,
            dim=info.dim,
            metric=info.metric,
            sample_rate=info.sample_rate,
            window_seconds=info.window_seconds,
            hop_seconds=hop_seconds,
            preprocessing=dict(info.preprocessing),
            faiss_factory=factory,
            versions=versions,
        )

    @classmethod
    def from_row(cls, row: IndexInfoRow) -> "Provenance":
        values = {name: getattr(row, name) for name in cls.__dataclass_fields__}
        values["search_params"] = values["search_params"] or {}
        return cls(**values)


def check_model(index_path: Path, stored: Provenance, model_id: str, checkpoint_sha256: str) -> None:
    """Refuse a model other than the one that built the index."""
    if model_id != stored.model_id or checkpoint_sha256 != stored.checkpoint_sha256:
        raise IndexMismatchError(
            f"{index_path}: index was built with model {stored.model_id} "
            f"(sha256 {stored.checkpoint_sha256[:12]}), not {model_id} (sha256 {checkpoint_sha256[:12]}); "
            f"search it with --model {stored.model_id} or rebuild it"
        )


def check_model_name(index_path: Path, stored: Provenance, name: str) -> None:
    """Refuse a registered model name other than the index's own, from the provenance alone: before any
    checkpoint is resolved, so a mismatch costs no download (nor the hub's retries offline)."""
    from indexer.encoders import MODELS

    if name in MODELS and stored.family != "audio_visual" and name != stored.model_id:
        raise IndexMismatchError(f"{index_path}: index was built with model {stored.model_id}, not {name}; "
                                 f"search it with --model {stored.model_id} or rebuild it")


def check_encoder(index_path: Path, stored: Provenance, info: EncoderInfo) -> None:
    """Refuse an encoder whose vectors would not be comparable with the index's."""
    check_model(index_path, stored, info.model_id, info.checkpoint_sha256)
    for name in ("dim", "metric", "sample_rate", "window_seconds", "preprocessing"):
        if getattr(info, name) != getattr(stored, name):
            raise IndexMismatchError(
                f"{index_path}: {name} of model {info.model_id} is {getattr(info, name)!r}, "
                f"the index has {getattr(stored, name)!r}"
            )


@contextlib.contextmanager
def catalog_errors(url: str) -> Iterator[None]:
    """Turns the database layer's errors on opening the catalog at `url` into one-line CatalogErrors."""
    import sqlite3

    try:
        yield
    except (CatalogError, IndexNotFoundError):
        raise
    except (sqlite3.Error, OSError, ValueError, ImportError) as e:
        raise CatalogError(f"{_shown_url(url)}: {_first_line(e)}") from e
    except Exception as e:
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

        if isinstance(e, (NoSuchModuleError, ArgumentError)):
            kind = url.partition(":")[0]
            raise CatalogError(f"{_shown_url(url)}: not a database URL resound can open (unknown kind {kind!r}; "
                               f"use sqlite:///PATH or postgresql://USER@HOST/DB)") from e
        if not isinstance(e, SQLAlchemyError):
            raise
        cause = getattr(e, "orig", None) or e
        raise CatalogError(f"{_shown_url(url)}: {_first_line(cause)}") from e


def _shown_url(url: str) -> str:
    from db.session import redact_url

    return redact_url(url)


def _first_line(error: BaseException) -> str:
    """The first line of `error`'s message, without SQLAlchemy's "(Background on this error ...)"."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.split(" (Background on this error")[0][:300]


class Index:
    """An index directory with its catalog; FAISS stores are loaded on demand."""

    def __init__(self, path: str | Path, db_url: str | None = None, create: bool = False):
        self.directory = IndexDirectory(path)
        self.path = self.directory.root
        if not create and not self.directory.exists():
            raise IndexNotFoundError(f"{self.path}: no resound index here (run `indexer build CORPUS --index {self.path}`)")
        manifest = self._read_manifest() if self.directory.exists() else {}
        url = db_url or manifest.get("catalog_url") or sqlite_url(self.directory.catalog_path)
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.reader: SqliteReader | None = None
        with catalog_errors(url):
            # Reads of a SQLite catalog that is at the newest schema revision skip SQLAlchemy (a cold search
            # saves about half a second); anything else opens the SQLAlchemy catalog now, migrating it.
            reader = reader_for(url)
            if reader is not None and not create and not reader.path.is_file():
                # A search never creates a catalog: a mistyped --db would otherwise become an empty one.
                raise CatalogError(f"{reader.path}: no catalog database there (check --db, or build the index)")
            if reader is not None and not create and reader.revision() == head_revision_of_files():
                self.reader = reader
            else:
                self.catalog  # noqa: B018 (opens and migrates)

    @cached_property
    def catalog(self) -> Catalog:
        """The SQLAlchemy catalog (opened on first use when reads go through the SQLite reader)."""
        from db.catalog import Catalog

        return Catalog(self.url)

    def _read_manifest(self) -> dict[str, Any]:
        try:
            data = json.loads(self.directory.manifest_path.read_text())
        except (OSError, ValueError) as e:
            raise IndexNotFoundError(f"{self.directory.manifest_path}: unreadable manifest ({e})") from e
        if data.get("format") != MANIFEST_FORMAT:
            raise IndexNotFoundError(f"{self.directory.manifest_path}: not a resound index manifest")
        return data

    def _info(self) -> Any:
        return self.reader.info() if self.reader is not None else self.catalog.info()

    def provenance(self) -> Provenance | None:
        row = self._info()
        return Provenance.from_row(row) if row is not None else None

    def generation(self) -> int:
        row = self._info()
        return row.generation if row is not None else 0

    def segments(self, ids: list[int]) -> dict[int, SegmentRecord]:
        """Segments by id with absolute file paths (Catalog.segments); unknown ids are left out."""
        return self.reader.segments(ids) if self.reader is not None else self.catalog.segments(ids)

    def file_tags(self, file_ids: list[int]) -> dict[int, dict[str, str]]:
        """Tags of files by file id (Catalog.file_tags); files without tags are left out."""
        if self.reader is not None:
            from db.sqlite_reader import file_tags_of

            return file_tags_of(self.reader, file_ids)
        return self.catalog.file_tags(file_ids)

    def vector_files(self) -> tuple[int, list[VectorFile], dict[str, np.ndarray]]:
        """(current generation, the sealed vector files it lists, the ids deleted from each), read together."""
        return (self.reader or self.catalog).vector_files()

    def load_stores(self, mmap: bool = True) -> dict[str, SegmentedStore]:
        """The FAISS stores of the current generation, with the tuned search parameters set. Sealed files are
        always memory-mapped (they never change); `mmap` is kept for callers that name it."""
        prov = self.provenance()
        if prov is None:
            raise IndexNotFoundError(f"{self.path}: the index holds no provenance yet (interrupted first build?)")
        generation, files, deletions = self.vector_files()
        stores = self.directory.load_stores(generation, prov.dim, prov.faiss_factory, files, deletions)
        stores["segments"].set_search_params({k: v for k, v in prov.search_params.items() if k in ("nprobe", "efSearch")})
        return stores

    def write_manifest(self) -> None:
        """Mirror provenance and the catalog location in manifest.json (atomically; never a password)."""
        prov = self.provenance()
        catalog_url = self.catalog.url
        if catalog_url == sqlite_url(self.directory.catalog_path):
            catalog_url = None  # the default: found next to the manifest, wherever the directory moves
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            # Without its password: supply it again with --db, or through ~/.pgpass.
            "catalog_url": url_without_password(catalog_url) if catalog_url else None,
            "generation": self.generation(),
            "provenance": asdict(prov) if prov else None,
        }
        tmp = self.directory.manifest_path.with_name(f".manifest.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        os.replace(tmp, self.directory.manifest_path)

    def commit_generation(self, stores: dict[str, SegmentedStore], writer: "CatalogWriter") -> int:  # noqa: F821
        """Seal what is new in `stores` as the next generation, then commit the writer's rows naming it and
        its files; returns it.

        The order is what makes a crash at any point safe: new files first (atomically each; the sealed
        ones never change), then the one transaction that lists them and makes them current, then the
        manifest mirror and the removal of the files no longer listed.
        """
        generation = self.generation() + 1
        listed: list[VectorFile] = []
        deletions: dict[str, np.ndarray] = {}
        for store in stores.values():
            store.generation = generation
            files, deleted = store.flush()
            listed.extend(files)
            deletions.update(deleted)
        writer.commit(generation, listed, deletions)
        for store in stores.values():
            store.committed()
        self.write_manifest()
        self.directory.remove_unlisted(f.name for f in listed)
        return generation

    def remove_unlisted_files(self) -> list[str]:
        """Delete FAISS files the current generation does not list (a crashed writer's), and stale
        temporary files; returns their names."""
        _, files, _ = self.vector_files()
        return self.directory.remove_unlisted(f.name for f in files)

    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Hold the index's single-writer lock, or raise IndexLockedError at once."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.directory.lock_path, "a+") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise IndexLockedError(f"{self.path}: index is being written by {holder}; try again when it ends") from e
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()}")
            f.flush()
            try:
                yield
            finally:
                f.seek(0)
                f.truncate()
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def close(self) -> None:
        if "catalog" in self.__dict__:
            self.catalog.close()
