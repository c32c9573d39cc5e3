"""`indexer verify`: does every vector map to exactly one catalog row and back, and does the index
agree with its own provenance? `repair` removes what does not map and re-indexes the files affected.

Leftovers that do not make an index inconsistent are reported too, and cleared by `repair`: temporary
files of a writer that was killed (`.segments.N.faiss.PID.tmp`), FAISS files of other generations, and
failure rows of files that no longer exist.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select

from db.catalog import Catalog, CatalogWriter, FailureRecord
from db.fulltext import inconsistent_files, repair_terms
from db.schema import CorpusRow, FileRow
from indexer.errors import IndexCorruptError, RepairRefusedError
from indexer.index import Index
from indexer.segments import ExactCopy, SegmentedStore
from indexer.store import DEFAULT_FACTORY, STORE_NAMES, VectorStore, needs_rerank


@dataclass
class VerifyReport:
    """Problems found; an empty `problems` list means the index is consistent."""

    index: Path
    generation: int
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # What repair would act on.
    orphan_vectors: dict[str, list[int]] = field(default_factory=dict)
    files_missing_vectors: list[int] = field(default_factory=list)
    duplicate_ids: dict[str, list[int]] = field(default_factory=dict)
    stale_files: list[str] = field(default_factory=list)
    unreadable_files: list[str] = field(default_factory=list)  # listed vector files that are missing or corrupt
    # Indexed media this machine cannot reach (imported from elsewhere, an unmounted disk): kept, searchable.
    unreachable_media: list[str] = field(default_factory=list)
    temporary_files: list[str] = field(default_factory=list)  # left by a writer that is gone
    vanished_failures: list[FailureRecord] = field(default_factory=list)  # failure rows of files that are gone
    keyword_files: list[int] = field(default_factory=list)  # files whose stored words are not their own
    segment_count_off: bool = False  # the stored segment count (`indexer info`) is not the rows'

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def leftovers(self) -> bool:
        """Whether there is something repair would clear although the index is consistent."""
        return bool(self.stale_files or self.temporary_files or self.vanished_failures)


def verify_index(index_path: str | Path, db_url: str | None = None) -> VerifyReport:
    """Check ids both ways (segments <-> segment vectors, files <-> file vectors), counts and provenance."""
    index = Index(index_path, db_url=db_url)
    try:
        return _verify(index)
    finally:
        index.close()


def _verify(index: Index) -> VerifyReport:
    report = VerifyReport(index.path, index.generation())
    provenance = index.provenance()
    if provenance is None:
        report.problems.append("the catalog holds no provenance (no build ever finished)")
        return report
    stores, unreadable = readable_stores(index)
    for name, reason in unreadable.items():
        report.unreadable_files.append(name)
        report.problems.append(f"{name}: {reason}; its vectors are re-embedded by `indexer verify --repair`")
    checks = catalog_checks(index.catalog)
    rows = {"segments": checks.segment_ids, "files": checks.file_ids}
    for name in STORE_NAMES:
        store = stores[name]
        # Sorted int64 arrays on both sides: at 10M windows, Python sets and Counters of ids cost gigabytes.
        ids = np.asarray(store.ids(), dtype=np.int64)
        report.counts[f"{name}_rows"] = len(rows[name])
        report.counts[f"{name}_vectors"] = len(ids)
        if store.dim != provenance.dim:
            report.problems.append(f"{name}: FAISS dimension {store.dim}, provenance says {provenance.dim}")
        unique, times = np.unique(ids, return_counts=True)
        duplicates = unique[times > 1].tolist()
        if duplicates:
            report.duplicate_ids[name] = duplicates
            report.problems.append(f"{name}: {len(duplicates)} ids with several vectors (e.g. {duplicates[:5]})")
        orphans = np.setdiff1d(unique, rows[name], assume_unique=True).tolist()
        if orphans:
            report.orphan_vectors[name] = orphans
            report.problems.append(f"{name}: {len(orphans)} vectors without a catalog row (e.g. {orphans[:5]})")
        missing = np.setdiff1d(rows[name], unique, assume_unique=True).tolist()
        if missing:
            report.problems.append(f"{name}: {len(missing)} catalog rows without a vector (e.g. {missing[:5]})")
            if name == "files":
                report.files_missing_vectors.extend(missing)
            else:
                report.files_missing_vectors.extend(index.catalog.file_ids_of_segments(missing).tolist())
        if len(ids) and not np.all(np.isfinite(store.reconstruct(ids[:1000]))):
            report.problems.append(f"{name}: non-finite vector values")
    files_without_segments = checks.files_without_segments.tolist()
    if files_without_segments:
        report.problems.append(f"{len(files_without_segments)} files without segments (e.g. {files_without_segments[:5]})")
        report.files_missing_vectors.extend(files_without_segments)
    report.files_missing_vectors = sorted(set(report.files_missing_vectors))
    report.keyword_files = checks.keyword_files
    if checks.stored_segments is not None and checks.stored_segments != len(checks.segment_ids):
        report.segment_count_off = True
        report.problems.append(f"catalog: stored segment count {checks.stored_segments}, "
                               f"{len(checks.segment_ids)} segment rows (recounted by --repair)")
    if report.keyword_files:
        report.problems.append(f"keyword index: {len(report.keyword_files)} files whose stored words differ from "
                               f"their names and tags (e.g. {report.keyword_files[:5]})")
    if index.directory.manifest_path.is_file():
        manifest = json.loads(index.directory.manifest_path.read_text())
        stored = manifest.get("provenance") or {}
        for key in ("model_id", "checkpoint_sha256", "dim", "metric", "faiss_factory"):
            if stored.get(key) != getattr(provenance, key):
                report.problems.append(f"manifest.json {key} is {stored.get(key)!r}, the catalog says {getattr(provenance, key)!r}")
    else:
        report.problems.append("manifest.json is missing")
    current = {f.name for f in index.vector_files()[1]}
    report.stale_files = sorted(p.name for p in index.path.glob("*.faiss") if p.name not in current)
    report.temporary_files = leftover_temporary_files(index.path)
    report.vanished_failures = [f for f in index.catalog.failures() if _vanished(f)]
    report.unreachable_media = _unreachable_media(index)
    return report


@dataclass(frozen=True)
class CatalogChecks:
    """What `indexer verify` reads from the catalog alone (the FAISS side is compared with it in _verify)."""

    segment_ids: np.ndarray  # sorted int64
    file_ids: np.ndarray  # sorted int64
    files_without_segments: np.ndarray  # sorted int64
    keyword_files: list[int]  # files whose stored words differ from their names and tags
    stored_segments: int | None = None  # the segment count the last commit stored (`indexer info` shows it)

    def summary(self) -> str:
        return (f"{len(self.segment_ids):,} segments (stored count {self.stored_segments}), {len(self.file_ids):,} "
                f"files, {len(self.files_without_segments)} without segments, {len(self.keyword_files)} keyword "
                f"mismatches")


def catalog_checks(catalog: Catalog) -> CatalogChecks:
    """The catalog side of `indexer verify`: every segment and file id (read as arrays, not row objects),
    files that hold no segment (one probe per file of the segments' file_id index) and keyword consistency."""
    return CatalogChecks(
        segment_ids=catalog.ids("SELECT id FROM segments ORDER BY id"),
        file_ids=catalog.ids("SELECT id FROM files ORDER BY id"),
        files_without_segments=catalog.ids("SELECT f.id FROM files f WHERE NOT EXISTS "
                                           "(SELECT 1 FROM segments s WHERE s.file_id = f.id) ORDER BY f.id"),
        keyword_files=_keyword_files(catalog),
        stored_segments=catalog.stored_segment_count(),
    )


def _keyword_files(catalog: Catalog) -> list[int]:
    with catalog.session() as session:
        return inconsistent_files(session)


def _out_of_reach(index: Index, file_ids: list[int]) -> list[str]:
    """Absolute paths of the files `file_ids` whose media does not exist here, sorted."""
    missing = []
    with index.catalog.session() as s:
        for start in range(0, len(file_ids), 500):
            for root, path, raw in s.execute(select(CorpusRow.root, FileRow.path, FileRow.path_bytes)
                                             .join(CorpusRow, FileRow.corpus_id == CorpusRow.id)
                                             .where(FileRow.id.in_(list(file_ids[start : start + 500])))):
                name = os.path.join(os.fsencode(root), raw if raw else _path_bytes(path))
                if not os.path.lexists(name):
                    missing.append(os.fsdecode(name))
    return sorted(missing)


def _unreachable_media(index: Index) -> list[str]:
    """Absolute paths of indexed files that do not exist here, sorted (their vectors are never removed for it)."""
    missing = []
    with index.catalog.session() as s:
        for root, path, raw in s.execute(select(CorpusRow.root, FileRow.path, FileRow.path_bytes)
                                         .join(CorpusRow, FileRow.corpus_id == CorpusRow.id)):
            name = os.path.join(os.fsencode(root), raw if raw else _path_bytes(path))
            if not os.path.lexists(name):
                missing.append(os.fsdecode(name))
    return sorted(missing)


def readable_stores(index: Index) -> tuple[dict[str, SegmentedStore], dict[str, str]]:
    """The current generation's stores without the listed vector files that cannot be read, and why each
    could not (by file name)."""
    provenance = index.provenance()
    generation, files, deletions = index.vector_files()
    unreadable: dict[str, str] = {}
    for f in files:
        factory = provenance.faiss_factory if f.store == "segments" else DEFAULT_FACTORY
        try:
            loaded = VectorStore.load(index.path / f.name, factory, mmap=True)
            if needs_rerank(factory):
                ExactCopy.open(index.path / f.name, provenance.dim, loaded.ntotal)
        except (IndexCorruptError, OSError) as e:
            unreadable[f.name] = "missing" if not (index.path / f.name).exists() else _first_words(e)
    stores = index.directory.load_stores(generation, provenance.dim, provenance.faiss_factory,
                                         [f for f in files if f.name not in unreadable], deletions)
    stores["segments"].set_search_params({k: v for k, v in provenance.search_params.items()
                                          if k in ("nprobe", "efSearch")})
    return stores, unreadable


def _first_words(error: BaseException) -> str:
    """An error's message without the path it starts with, cut short (FAISS's name C++ templates)."""
    text = str(error).split(": ", 1)[-1].strip().splitlines()
    return (text[0][:100] + ("...)" if len(text[0]) > 100 else "")) if text else type(error).__name__


# A writer's temporary files: `.NAME.PID.tmp` (store.VectorStore.save, Index.write_manifest).
_TEMPORARY = re.compile(r"^\..+\.(?P<pid>\d+)\.tmp$")


def leftover_temporary_files(directory: Path) -> list[str]:
    """Temporary files in an index directory whose writing process is gone (a live one may be writing)."""
    leftovers = []
    for path in directory.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and not _alive(int(match["pid"])):
            leftovers.append(path.name)
    return sorted(leftovers)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process writes nothing while it verifies
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _vanished(failure: FailureRecord) -> bool:
    """Whether a failed file (or unreadable directory) is gone from a corpus that is itself still there
    (a missing corpus root may be an unmounted disk: its failures are kept)."""
    root = Path(failure.corpus_root)
    if not root.is_dir():
        return False
    return not os.path.lexists(os.path.join(os.fsencode(root), _path_bytes(failure.path)))


def _path_bytes(catalog_path: str) -> bytes:
    """The file-name bytes of a catalog path (corpus.catalog_text writes undecodable bytes as \\xNN)."""
    return re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m[1], 16)]), catalog_path.encode("utf-8"))


def repair_index(index_path: str | Path, db_url: str | None = None, reembed: bool = True,
                 drop_unreachable: bool = False) -> VerifyReport:
    """Make the index consistent: drop orphan and duplicate vectors and the catalog rows of files whose
    vectors are missing, then (with `reembed`) build again from each corpus root that still exists, which
    embeds exactly the dropped files. Returns the report of the problems found before repair.

    Files whose vectors are lost and whose media is out of reach here cannot be embedded again: the repair
    refuses (RepairRefusedError, nothing changed) unless `drop_unreachable` says to drop them."""
    report = _drop_inconsistent(index_path, db_url, check_reachable=reembed and not drop_unreachable)
    if reembed and report.files_missing_vectors:
        from indexer.build import BuildOptions, build_index

        index = Index(index_path, db_url=db_url)
        try:
            options = BuildOptions.from_provenance(index.provenance(), db_url)
            roots = [Path(r) for r in index.catalog.corpus_roots()]
        finally:
            index.close()
        for root in roots:
            if root.is_dir():
                build_index(root, index_path, options)
    return report


def _drop_inconsistent(index_path: str | Path, db_url: str | None, check_reachable: bool = True) -> VerifyReport:
    index = Index(index_path, db_url=db_url)
    try:
        with index.writer_lock():
            report = _verify(index)
            if report.ok and not report.leftovers:
                return report
            if check_reachable and report.files_missing_vectors:
                lost = _out_of_reach(index, report.files_missing_vectors)
                if lost:
                    raise RepairRefusedError(
                        f"{index.path}: {len(lost)} of the {len(report.files_missing_vectors)} files whose vectors "
                        f"are missing cannot be embedded again here: their media is out of reach (e.g. {lost[0]}); "
                        "nothing was changed. Make the media reachable, or import their vectors again "
                        "(`indexer import`), then repair; `--drop-unreachable` drops them from the index instead")
            for name in report.temporary_files:  # no writer is at work: this process holds the lock
                (index.path / name).unlink(missing_ok=True)
            if report.ok and not report.stale_files:
                with index.catalog.writer() as writer:
                    _clear_failures(writer, report.vanished_failures)
                    writer.commit(index.generation())
                return report
            stores, _ = readable_stores(index)  # a corrupt file is left out: its files' rows go, then come back
            with index.catalog.writer() as writer:
                if not stores["segments"].is_trained:
                    # Every file holding the trained quantizer was dropped: start again from exact search,
                    # which the re-embedding build fills and converts to the type its size calls for.
                    stores["segments"] = SegmentedStore.open("segments", index.path, [], {}, stores["segments"].dim,
                                                             DEFAULT_FACTORY, index.generation())
                    writer.update_info(faiss_factory=DEFAULT_FACTORY, search_params={})
                for name, ids in report.orphan_vectors.items():
                    stores[name].remove(ids)
                for name, ids in report.duplicate_ids.items():
                    _dedupe(stores[name], ids)
                for file_id in report.files_missing_vectors:
                    segment_ids = writer.remove_file(file_id)
                    stores["segments"].remove(segment_ids)
                    stores["files"].remove([file_id])
                _clear_failures(writer, report.vanished_failures)
                repair_terms(writer.session, report.keyword_files)  # rewritten from the paths and tags
                if report.segment_count_off:
                    writer.recount()
                index.commit_generation(stores, writer)
            return report
    finally:
        index.close()


def _clear_failures(writer: CatalogWriter, failures: list[FailureRecord]) -> None:
    """Stage the removal of failure rows."""
    for failure in failures:
        corpus_id = writer.session.execute(select(CorpusRow.id).where(CorpusRow.root == failure.corpus_root)).scalar_one()
        writer.clear_failure(corpus_id, failure.path)


def _dedupe(store: VectorStore, ids: list[int]) -> None:
    """Keep one vector per duplicated id (the first stored)."""
    for i in ids:
        vector = store.reconstruct([i])
        store.remove([i])
        store.add([i], vector)


__all__ = ["VerifyReport", "repair_index", "verify_index"]
