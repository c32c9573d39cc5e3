"""`indexer import`: add precomputed vectors (what `indexer export` writes) to an index, with their files,
windows, tags and provenance.

sources (parquet / npz files, or folders of them) -> provenance check (the same model, or a new index
made with the sources' provenance) -> rows grouped by file (paths rewritten by --map-prefix) -> catalog
rows + vectors, committed as generations (indexer/segments.py: each checkpoint writes only its new file).

The media need not be reachable from this machine: an imported file keeps its vectors until a build of
a corpus that holds it, and that it can read, finds it gone (indexer/build.py removes only what a scan of
a readable corpus no longer sees). Its content hash is unknown (""), so such a build embeds it afresh.
A file imported again replaces its earlier rows and vectors.

Optional file columns (a distributed build's shards carry them, indexer/distributed/shards.py):
content_hash, size, mtime, duration, source_rate, channels. Where a source has them, the catalog row keeps
them as a build would have written it, so a later build of a corpus holding the file skips it when its
content hash is unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from db.catalog import CatalogWriter, NewFile
from db.filters import TAG_KEYS
from indexer.corpus import catalog_text
from indexer.errors import IndexLockedError, IndexMismatchError, ResoundError
from indexer.index import Index, Provenance
from indexer.segments import IndexDirectory, SegmentedStore

SOURCE_SUFFIXES = (".parquet", ".npz")
# Rows read from a source at a time (parquet: one batch each), and committed per generation at most.
BLOCK_ROWS = 50_000
CHECKPOINT_ROWS = 1_000_000
_PROVENANCE_FIELDS = tuple(Provenance.__dataclass_fields__)


class ImportSourceError(ResoundError):
    """A source that cannot be imported (not found, not an export, unreadable)."""


@dataclass(frozen=True)
class ImportOptions:
    """How to import: path rewriting, and the index type and recall of the segment store."""

    map_prefix: Sequence[tuple[str, str]] = ()  # (old, new) pairs: the first whose old prefixes a path applies
    index_type: str = "auto"  # "auto" (by size and memory budget, store.choose_index) or a FAISS factory string
    target_recall: float = 0.95
    db_url: str | None = None
    max_memory: int | None = None  # bytes the searched index may take (auto's budget); None: a quarter of RAM
    # The corpus root the files belong to (as `indexer build` records them: paths relative to it, one corpus
    # row), instead of each file's own folder. Every imported path must lie under it. `indexer build --ray`
    # merges its shards this way.
    corpus: str | None = None


@dataclass
class ImportReport:
    index: Path
    sources: list[Path] = field(default_factory=list)
    files: int = 0
    replaced: int = 0  # files imported before, whose rows and vectors this import replaced
    segments_replaced: int = 0  # the windows of those earlier versions
    windows: int = 0
    created: bool = False  # the index was created from the sources' provenance
    seconds: float = 0.0


def parse_map_prefix(values: Sequence[str]) -> list[tuple[str, str]]:
    """`OLD=NEW` strings as pairs; raises ImportSourceError naming a malformed one."""
    pairs = []
    for value in values:
        old, sep, new = value.partition("=")
        if not sep or not old:
            raise ImportSourceError(f"--map-prefix {value!r}: expected OLD=NEW")
        pairs.append((old, new))
    return pairs


def source_files(sources: Sequence[str | Path]) -> list[Path]:
    """The export files named by `sources` (files, or folders searched recursively), in a stable order."""
    found: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found.extend(sorted(p for p in source.rglob("*") if p.suffix.lower() in SOURCE_SUFFIXES and p.is_file()))
        elif source.is_file():
            if source.suffix.lower() not in SOURCE_SUFFIXES:
                raise ImportSourceError(f"{source}: not a parquet or npz export (expected {', '.join(SOURCE_SUFFIXES)})")
            found.append(source)
        else:
            raise ImportSourceError(f"{source}: no such file or folder")
    if not found:
        raise ImportSourceError(f"{', '.join(map(str, sources))}: no parquet or npz exports found")
    return found


def read_provenance(path: Path) -> Provenance:
    """The provenance an export carries. Raises ImportSourceError for a file that is not a resound export."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            raw = (pq.read_schema(str(path)).metadata or {}).get(b"resound")
        else:
            with np.load(path, allow_pickle=False) as data:
                raw = str(data["provenance"]) if "provenance" in data.files else None
    except ImportError as e:
        raise ImportSourceError(f"{path}: reading parquet needs pyarrow: pip install 'resound[export]'") from e
    except (OSError, ValueError) as e:
        raise ImportSourceError(f"{path}: unreadable ({str(e).splitlines()[0][:160]})") from e
    if raw is None:
        raise ImportSourceError(f"{path}: no resound provenance in it (not written by `indexer export`)")
    meta = json.loads(raw)
    try:
        return Provenance(**{name: meta[name] for name in _PROVENANCE_FIELDS if name in meta})
    except TypeError as e:
        raise ImportSourceError(f"{path}: incomplete provenance ({e})") from e


def check_same_model(source: Path, theirs: Provenance, ours: Provenance, index_path: Path) -> None:
    """Refuse vectors of another model (or window layout) than the index's, in one line."""
    for name in ("model_id", "checkpoint_sha256", "dim", "metric", "window_seconds", "hop_seconds"):
        if getattr(theirs, name) != getattr(ours, name):
            raise IndexMismatchError(
                f"{source}: vectors of model {theirs.model_id} (sha256 {theirs.checkpoint_sha256[:12]}, {name} "
                f"{getattr(theirs, name)!r}); the index {index_path} holds model {ours.model_id} (sha256 "
                f"{ours.checkpoint_sha256[:12]}, {name} {getattr(ours, name)!r}): import them into an index of their own")


@dataclass
class _File:
    path: str
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    modalities: str = "audio"
    tags: dict[str, str] = field(default_factory=dict)
    vectors: list[np.ndarray] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # the optional file columns (FILE_COLUMNS) a source has


# Optional columns of a file's catalog row (the same value on each of its rows), with the value when absent.
FILE_COLUMNS: dict[str, Any] = {"content_hash": "", "size": 0, "mtime": 0.0, "duration": None, "source_rate": 0,
                                "channels": 0}


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    """Blocks of an export's columns: path, start, end, modalities, tags, vectors ((n, dim) float32)."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(str(path))
        for batch in parquet.iter_batches(batch_size=BLOCK_ROWS):
            vector = batch.column("vector")
            dim = vector.type.list_size
            vectors = np.asarray(vector.values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
            names = batch.schema.names
            yield {
                "path": _exact_paths(batch.column("path").to_pylist(),
                                     batch.column("path_bytes").to_pylist() if "path_bytes" in names else None),
                "start": batch.column("start").to_numpy(),
                "end": batch.column("end").to_numpy(),
                "modalities": batch.column("modalities").to_pylist(),
                "tags": {key: batch.column(key).to_pylist() for key in TAG_KEYS if key in names},
                "vectors": vectors,
                "facts": {key: batch.column(key).to_pylist() for key in FILE_COLUMNS if key in names},
            }
        return
    with np.load(path, allow_pickle=False) as data:
        n = len(data["path"])
        for start in range(0, n, BLOCK_ROWS):
            block = slice(start, start + BLOCK_ROWS)
            yield {
                "path": _exact_paths(data["path"][block].tolist(),
                                     data["path_bytes"][block].tolist() if "path_bytes" in data.files else None),
                "start": data["start"][block],
                "end": data["end"][block],
                "modalities": data["modalities"][block].tolist(),
                "tags": {key: [v or None for v in data[key][block].tolist()] for key in TAG_KEYS if key in data.files},
                "vectors": np.asarray(data["vectors"][block], dtype=np.float32),
                "facts": {key: data[key][block].tolist() for key in FILE_COLUMNS if key in data.files},
            }


def _exact_paths(text: list[str], exact: list[bytes | None] | None) -> list[str]:
    """The file names as the file system has them (bytes that are not UTF-8 as surrogates, as os.walk gives
    them): from an export's `path_bytes` where it has them, else its `path` text."""
    if exact is None:
        return text
    return [os.fsdecode(raw) if raw else path for path, raw in zip(text, exact)]


def _catalog_place(path: str) -> tuple[str, str, bytes | None]:
    """Where `path` goes in the catalog, as a build would store it: (corpus root: its folder, or the nearest
    folder above whose name is UTF-8, as a database holds text only; the path below it as UTF-8 text,
    odd bytes as \\xNN; its exact bytes when they differ from that text, else None)."""
    root, relative = os.path.split(path)
    while catalog_text(root) != root:
        root, parent = os.path.split(root)
        relative = f"{parent}/{relative}"
    text = catalog_text(relative)
    return root or "/", text, (os.fsencode(relative) if text != relative else None)


def _mapped(path: str, map_prefix: Sequence[tuple[str, str]]) -> str:
    for old, new in map_prefix:
        if path == old or path.startswith(old.rstrip("/") + "/"):
            return new.rstrip("/") + path[len(old.rstrip("/")):]
    return path


def count_rows(path: Path) -> int:
    """Windows in an export, from its metadata (parquet) or its path column (npz)."""
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(str(path)).metadata.num_rows)
    with np.load(path, allow_pickle=False) as data:
        return len(data["path"])


# Training samples are drawn from at most this many row groups (parquet) or files (npz), spread over the
# sources by a seeded shuffle: reading every group would read the whole import once more.
SAMPLE_GROUPS = 16


def sample_vectors(paths: Sequence[Path], n: int, seed: int = 0) -> np.ndarray:
    """About `n` vectors drawn at random (seeded) from row groups spread over the exports: what an IVF or PQ
    index of an import is trained on before the vectors stream in (an export is ordered by file and
    folder, so its first rows would be a biased sample)."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    groups: list[tuple[Path, int, int]] = []  # (file, row group or -1 for npz, rows)
    for path in paths:
        if path.suffix.lower() == ".parquet":
            meta = pq.ParquetFile(str(path)).metadata
            groups += [(path, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
        else:
            groups.append((path, -1, count_rows(path)))
    chosen = [groups[i] for i in np.sort(rng.permutation(len(groups))[:SAMPLE_GROUPS])]
    total = sum(rows for _, _, rows in chosen)
    parts = []
    for path, group, rows in chosen:
        take = min(rows, max(1, round(n * rows / max(total, 1))))
        if group >= 0:
            column = pq.ParquetFile(str(path)).read_row_group(group, columns=["vector"]).column("vector")
            dim = column.type.list_size
            vectors = np.asarray(column.combine_chunks().values.to_numpy(zero_copy_only=False),
                                 dtype=np.float32).reshape(-1, dim)
        else:
            with np.load(path, allow_pickle=False) as data:
                vectors = np.asarray(data["vectors"], dtype=np.float32)
        parts.append(vectors[np.sort(rng.choice(len(vectors), size=min(take, len(vectors)), replace=False))])
        del vectors
    return np.concatenate(parts)


def _files(source: Path, map_prefix: Sequence[tuple[str, str]], dim: int | None = None) -> Iterator[_File]:
    """The source's files, each with all its windows (an export lists a file's windows together). Vectors
    of another width than `dim` (the source's provenance) or holding NaN or infinite values are refused."""
    current: _File | None = None
    for block in _rows(source):
        _check_vectors(source, block, dim)
        for i, raw in enumerate(block["path"]):
            path = _mapped(raw, map_prefix)
            if current is None or current.path != path:
                if current is not None:
                    yield current
                current = _File(path, modalities=block["modalities"][i],
                                tags={k: v[i] for k, v in block["tags"].items() if v[i]},
                                facts={k: v[i] for k, v in block["facts"].items() if v[i] is not None})
            current.starts.append(float(block["start"][i]))
            current.ends.append(float(block["end"][i]))
            current.vectors.append(block["vectors"][i])
    if current is not None:
        yield current


def _check_vectors(source: Path, block: dict[str, Any], dim: int | None) -> None:
    vectors = block["vectors"]
    if dim is not None and vectors.shape[1] != dim:
        raise ImportSourceError(f"{source}: its vectors have {vectors.shape[1]} values, its provenance says {dim}")
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ImportSourceError(
            f"{source}: {int((~finite).sum())} vectors hold NaN or infinite values (the first: the window of "
            f"{block['path'][row]} at {float(block['start'][row]):.2f} s); vectors must be finite")


def import_vectors(sources: Sequence[str | Path], index_path: str | Path,
                   options: ImportOptions = ImportOptions()) -> ImportReport:
    """Add the vectors of `sources` (exports, or folders of them) to the index at `index_path`, creating it
    from their provenance when there is none. Raises ImportSourceError, IndexMismatchError (another
    model's vectors), IndexLockedError.

    An import that fails before its first checkpoint into a folder that held no index leaves that folder
    as it found it (absent, or without the catalog and files the import made), not a half-made index."""
    started = time.monotonic()
    paths = source_files(sources)
    provenances = [(p, read_provenance(p)) for p in paths]
    directory = IndexDirectory(index_path)
    new_index = not directory.exists()
    before = _entries(directory.root)
    try:
        report = _import(paths, provenances, index_path, options)
    except IndexLockedError:
        raise  # another writer's index: not this run's to tidy
    except BaseException:
        if new_index and not directory.exists():  # no checkpoint written: nothing of the import to keep
            _remove_new(directory.root, before)
        raise
    report.seconds = time.monotonic() - started
    return report


def _entries(folder: Path) -> set[str] | None:
    """The names in `folder`, or None when there is no such folder."""
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return None


def _remove_new(folder: Path, before: set[str] | None) -> None:
    """Remove what a failed import made in `folder`: the folder itself when it made it (`before` None),
    else the entries not in `before`."""
    if before is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for name in _entries(folder) or set():
        if name not in before:
            entry = folder / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _import(paths: list[Path], provenances: list[tuple[Path, Provenance]], index_path: str | Path,
            options: ImportOptions) -> ImportReport:
    from indexer.build import BuildOptions, _apply_index_type

    index = Index(index_path, db_url=options.db_url, create=True)
    report = ImportReport(index.path, sources=paths)
    try:
        with index.writer_lock():
            stored = index.provenance()
            first = provenances[0][1]
            for path, theirs in provenances:
                check_same_model(path, theirs, stored or first, index.path)
            with index.catalog.writer() as writer:
                if stored is None:
                    fields = {name: getattr(first, name) for name in _PROVENANCE_FIELDS if name != "search_params"}
                    writer.ensure_info(**{**fields, "faiss_factory": "IDMap2,Flat", "search_params": {}})
                    report.created = True
                generation, files, deletions = index.vector_files()
                stores = index.directory.load_stores(generation, first.dim, (stored or first).faiss_factory
                                                     if stored is not None else "IDMap2,Flat", files, deletions)
                if stored is not None:
                    stores["segments"].set_search_params({k: v for k, v in stored.search_params.items()
                                                          if k in ("nprobe", "efSearch")})
                if stores["segments"].ntotal == 0:
                    stores["segments"] = _trained_for(paths, stores["segments"], options, writer)
                since_checkpoint = 0
                # Without --corpus, a file under a corpus the index already has joins it (so an export
                # imported back replaces the rows of its files, not doubles them): the longest root first.
                roots = [] if options.corpus else sorted(index.catalog.corpus_roots(), key=len, reverse=True)
                seen: set[str] = set()  # paths imported by this run: a file's windows come from one source
                for source in paths:
                    batch: list[_File] = []
                    for f in _files(source, options.map_prefix, dict(provenances)[source].dim):
                        if f.path in seen:
                            raise ImportSourceError(f"{source}: windows of {f.path} continue from an earlier "
                                                    "source or row; an export holds each file's windows together")
                        seen.add(f.path)
                        batch.append(f)
                        if sum(len(b.vectors) for b in batch) >= BLOCK_ROWS:
                            since_checkpoint += _add(writer, stores, batch, report, options.corpus, roots)
                            batch = []
                        if since_checkpoint >= CHECKPOINT_ROWS:
                            index.commit_generation(stores, writer)
                            since_checkpoint = 0
                    since_checkpoint += _add(writer, stores, batch, report, options.corpus, roots)
                build_options = BuildOptions(index_type=options.index_type, target_recall=options.target_recall,
                                             max_memory=options.max_memory)
                stores["segments"] = _apply_index_type(stores["segments"], build_options, writer)
                index.commit_generation(stores, writer)
    finally:
        index.close()
    return report


def _trained_for(paths: list[Path], store: SegmentedStore, options: ImportOptions,
                 writer: CatalogWriter) -> SegmentedStore:
    """An empty segment store of the type the whole import calls for (`--index-type`, or auto from the rows the
    sources hold and the memory budget), trained on a seeded sample of them, so vectors stream straight into
    their final files: no exact copy of everything is written and converted afterwards."""
    from indexer.segments import training_minimum
    from indexer.store import VectorStore, choose_index

    rows = sum(count_rows(p) for p in paths)
    if options.index_type == "auto":
        factory = choose_index(rows, store.dim, options.max_memory).factory
    else:
        factory = options.index_type
    if factory == store.factory:
        return store
    template = VectorStore.create(store.dim, factory)
    if not template.is_trained:
        if rows < training_minimum(template):
            return store  # too few to train: the end of the import picks (or refuses in one line) as a build does
        template.train(sample_vectors(paths, TRAIN_SAMPLE))
    writer.update_info(faiss_factory=factory)
    fresh = SegmentedStore(store.name, store.dim, factory, store.root, [], template, store.generation)
    return fresh.to_gpu(store.gpu)


# Vectors an import's index is trained on (the conversions of a build use as many: segments.converted).
TRAIN_SAMPLE = 200_000


def _corpus_place(path: str, corpus: str) -> tuple[str, str, bytes | None]:
    """_catalog_place for a file of `corpus`: the corpus root, the path below it as catalog text, and its
    exact bytes when they differ from that text (as indexer.corpus.CorpusFile has them)."""
    prefix = corpus.rstrip("/") + "/"
    if not path.startswith(prefix):
        raise ImportSourceError(f"{path}: not under the corpus {corpus} the import was given")
    relative = path[len(prefix):]
    text = catalog_text(relative)
    return corpus, text, (os.fsencode(relative) if text != relative else None)


def _add(writer: CatalogWriter, stores: dict[str, Any], batch: list[_File], report: ImportReport,
         corpus: str | None = None, roots: Sequence[str] = ()) -> int:
    """Stage `batch`'s files (replacing earlier rows of the same paths) and add their vectors; `corpus`:
    see ImportOptions.corpus; without it, a file under one of `roots` (longest first) is placed in it."""
    from indexer.encoders import l2_normalize

    if not batch:
        return 0
    by_root: dict[str, list[tuple[_File, str, bytes | None]]] = {}
    for f in batch:
        home = corpus or next((r for r in roots if f.path.startswith(r.rstrip("/") + "/")), None)
        root, relative, raw = _catalog_place(f.path) if home is None else _corpus_place(f.path, home)
        by_root.setdefault(root, []).append((f, relative, raw))
    new: list[NewFile] = []
    for root, files in by_root.items():
        corpus_id = writer.corpus_id(root)
        existing = writer.file_ids(corpus_id, [relative for _, relative, _ in files])
        for f, relative, raw in files:
            previous = existing.get(relative)
            if previous is not None:
                segment_ids = writer.remove_file(previous)
                stores["segments"].remove(segment_ids)
                stores["files"].remove([previous])
                report.replaced += 1
                report.segments_replaced += len(segment_ids)
            facts = {**FILE_COLUMNS, **f.facts}
            duration = max(f.ends) if facts["duration"] is None else float(facts["duration"])
            new.append(NewFile(corpus_id, relative, str(facts["content_hash"]), int(facts["size"]),
                               float(facts["mtime"]), duration, int(facts["source_rate"]), int(facts["channels"]),
                               list(zip(f.starts, f.ends)), f.modalities, path_bytes=raw, tags=f.tags))
    ids = writer.add_files(new)
    vectors = [np.stack(f.vectors) for files in by_root.values() for f, _, _ in files]
    stores["segments"].add([i for _, segments in ids for i in segments], np.concatenate(vectors))
    stores["files"].add([file_id for file_id, _ in ids], l2_normalize(np.stack([v.mean(axis=0) for v in vectors])))
    windows = sum(len(v) for v in vectors)
    report.files += len(batch)
    report.windows += windows
    return windows


__all__ = ["ImportOptions", "ImportReport", "ImportSourceError", "import_vectors", "parse_map_prefix"]
