"""`indexer build`: bring an index up to date with a corpus directory.

scan -> plan (content hash: unchanged / new / changed / deleted) -> decode -> windows -> batched encode
-> rows + vectors, committed together at checkpoints (see indexer/store.py). A file that cannot be read
is recorded as failed with its reason and the run goes on; it is retried once its content changes.
A long file is streamed: its windows are embedded in batches as they are decoded, and its rows and
vectors stored once the last one is in (a file is committed whole or not at all).

Hostile corpora: a file is decoded from the bytes its content hash was computed from (embed.snapshot_inputs);
decoding stops at `max_file_seconds` whatever the header claims; a FIFO or device is refused, never waited
on; a directory that cannot be listed keeps what was indexed from it (reported as failed), since a build
removes only files that are truly gone.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from db.catalog import CatalogWriter, FileRecord, NewFile
from indexer.corpus import CorpusFile, CorpusScan, catalog_text, content_hash, corpus_file, walk_corpus
from indexer.device import resolve_device
from indexer.embed import FrontEnd, WindowPlan, embed_inputs, modalities_of
from indexer import prefetch
from indexer.prefetch import prefetch_inputs
from indexer.encoders import AUTO_MODEL, DEFAULT_MODEL, Encoder, EncoderSpec, l2_normalize, resolve_model
from indexer.encoders.auto import ModelChoice, choose_model
from indexer.encoders.precision import resolve_precision
from indexer.encoders.registry import default_batch_size
from indexer.errors import (
    AudioDecodeError,
    EmptyCorpusError,
    IndexMismatchError,
    IndexNotFoundError,
    MediaTooLongError,
    ResoundError,
    UnreadableFileError,
)
from indexer.limits import DEFAULT_MAX_FILE_SECONDS
from indexer.media.reasons import plain_reason
from indexer.index import Index, Provenance, check_encoder, check_model
from indexer.media import MEDIA_EXTENSIONS
from indexer.media.decode import NO_LIMITS, DecodeLimits
from indexer.media.source import open_regular
from indexer.media.tags import read_tags
from indexer.segments import SegmentedStore
from indexer.store import DEFAULT_FACTORY, IndexTypeError, VectorStore, choose_index, faiss_gpu



@dataclass(frozen=True)
class BuildOptions:
    """How to build: which model, how to cut windows, how often to checkpoint."""

    model: str = DEFAULT_MODEL
    vision_model: str | None = None  # a CLIP model (ARCH/TAG or ARCH:/path): audio-visual vectors
    audio_weight: float = 1.0
    visual_weight: float = 1.0
    frames_per_window: int = 1  # 1: the middle frame; k: k frames, embeddings averaged
    batch_size: int | None = None  # windows per forward pass; None: the model's measured default (registry)
    # Decoding ahead of the model. None: one thread on 2 CPUs, CPUs - 1 processes (max 4) on more, inline on
    # 1 (see indexer/prefetch.py); 0: inline, unless decode_thread; N: N processes.
    decode_workers: int | None = None
    decode_thread: bool | None = None  # decode in one thread ahead of the model; None: on 2 CPUs by default
    # The model's front end (the starter's log-mel) run in the decoding thread; None: whenever one decodes.
    front_end_on_decode: bool | None = None
    # torch threads for the model during the build; None: the CPUs the decoding thread leaves, else torch's own.
    model_threads: int | None = None
    hop_seconds: float | None = None  # None: the model's window length (no overlap)
    device: str = "auto"  # cpu, cuda, cuda:N or auto: the model's torch device and FAISS's (indexer/device.py)
    precision: str = "auto"  # auto (see encoders/precision.py: bf16 where fast and measured safe), fp32, bf16, fp16
    db_url: str | None = None  # None: catalog.sqlite inside the index directory
    checkpoint_seconds: float = 300.0  # commit finished files at least this often
    index_type: str = "auto"  # "auto" (by corpus size, see store.choose_factory) or a FAISS factory string
    target_recall: float = 0.95  # recall@10 against exact search that nprobe/efSearch are tuned to
    max_memory: int | None = None  # bytes the searched index may take (auto's budget); None: store.default_max_memory
    max_file_seconds: float | None = DEFAULT_MAX_FILE_SECONDS  # longer files fail as too long (None: no limit)

    @classmethod
    def from_provenance(cls, provenance: Provenance, db_url: str | None = None) -> "BuildOptions":
        """Options that rebuild an index with its own model, windows and mixing."""
        spec = EncoderSpec.from_provenance(provenance.family, provenance.model_id, provenance.checkpoint,
                                           provenance.preprocessing)
        return cls(model=spec.model, vision_model=spec.vision_model, audio_weight=spec.audio_weight,
                   visual_weight=spec.visual_weight, frames_per_window=spec.frames_per_window,
                   hop_seconds=provenance.hop_seconds, db_url=db_url)

    def encoder_spec(self) -> EncoderSpec:
        return EncoderSpec(self.model, self.vision_model, self.audio_weight, self.visual_weight, self.frames_per_window)


def choose_build_model(index_path: str | Path, model: str = AUTO_MODEL, db_url: str | None = None) -> ModelChoice:
    """The model a build of `index_path` with `model` embeds with. `auto` keeps an existing index's own
    model (a rebuild never switches models) and otherwise takes `choose_model`'s choice, hint included."""
    if model != AUTO_MODEL:
        return ModelChoice(model)
    try:
        index = Index(index_path, db_url=db_url)
    except IndexNotFoundError:
        return choose_model(model)
    try:
        stored = index.provenance()
    finally:
        index.close()
    return ModelChoice(BuildOptions.from_provenance(stored).model) if stored is not None else choose_model(model)


@dataclass(frozen=True)
class FailedFile:
    path: str
    reason: str  # plain words: "not an audio file", "truncated FLAC", "permission denied"
    detail: str = ""  # the decoders' own messages (`indexer build --verbose`, `indexer info --failed`)


@dataclass
class BuildReport:
    """What a build changed."""

    index: Path
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    moved: int = 0  # renamed or moved files: their rows took the new path, their vectors were kept
    failed: list[FailedFile] = field(default_factory=list)
    still_failed: int = 0  # failed before, unchanged since: not retried
    segments_added: int = 0
    segments_removed: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # one line each: what ran elsewhere than asked (GPU fallbacks)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.moved or self.failed)


@dataclass
class _FileJob:
    """A file being embedded: its windows' vectors arrive batch by batch."""

    file: CorpusFile
    digest: str | None  # None until needed: see content_hash
    previous: FileRecord | None
    duration: float = 0.0
    source_rate: int = 0
    channels: int = 0
    modalities: str = "audio"
    spans: list[tuple[float, float]] = field(default_factory=list)
    vectors: list[np.ndarray | None] = field(default_factory=list)
    decoded: bool = True  # False while a streamed file's windows are still arriving
    tags: dict[str, str] | None = None  # container tags, when read where the file was decoded

    def complete(self) -> bool:
        return self.decoded and all(v is not None for v in self.vectors)

    @property
    def content_hash(self) -> str:
        """SHA-256 of the file: of the bytes decoded once decoded, else read now (OSError if unreadable)."""
        if self.digest is None:
            self.digest = content_hash(self.file.absolute)
        return self.digest

    @content_hash.setter
    def content_hash(self, value: str) -> None:
        self.digest = value


ProgressCallback = Callable[[int, int], None]
# Decode -> windows -> encode for the planned files: yields each job once all its windows have vectors
# (None for a file that failed, recorded with `record_decode_failure`), in the order given. The local stage
# is `_embedded_jobs`; indexer/distributed runs the same steps on a Ray cluster. Arguments: jobs, encoder,
# hop seconds, batch size, writer, corpus id, report.
EmbedStage = Callable[[list[_FileJob], Encoder, float, int, CatalogWriter, int, "BuildReport"],
                      Iterator[_FileJob | None]]


def check_index_type(index_type: str, dim: int | None) -> None:
    """Refuse an index type FAISS cannot build for `dim`-d vectors (IndexTypeError), before any embedding.

    `dim` None (a model whose dimension is known only once loaded) checks the factory string's grammar
    with a dimension every product quantizer divides; the build checks again with the model's own."""
    if index_type == "auto":
        return
    import faiss

    if not index_type.isascii() or not index_type.isprintable():
        raise IndexTypeError(f"index type {index_type!r}: not a FAISS factory string (ASCII, e.g. IDMap2,Flat)")
    try:
        faiss.index_factory(dim or 2**10 * 3 * 5 * 7, index_type, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        # FAISS prefixes the C++ location ("Error in ... at file.cpp:64: "); keep its own words.
        reason = str(e).strip().splitlines()[-1].rsplit(": ", 1)[-1].strip()
        if "could not parse" in reason:
            reason = "not a FAISS factory string (e.g. IDMap2,Flat, IVF4096,Flat, IDMap2,HNSW32,Flat)"
        elif "multiple of the number of subquantizers" in reason:
            reason = f"the model's {dim}-d vectors do not split into its product-quantizer's sub-vectors"
        raise IndexTypeError(f"index type {index_type!r}: {reason}") from e


def build_index(
    corpus: str | Path,
    index_path: str | Path,
    options: BuildOptions = BuildOptions(),
    progress: ProgressCallback | None = None,
    embed_stage: EmbedStage | None = None,
) -> BuildReport:
    """Index every media file under `corpus` into `index_path`, skipping unchanged files.

    Returns a BuildReport; raises EmptyCorpusError, IndexMismatchError, IndexLockedError and model
    loading errors. Per-file decode errors are reported in `BuildReport.failed`, not raised.
    `embed_stage` replaces the local decoding and embedding (see EmbedStage); None runs them here.
    """
    started = time.monotonic()
    check_index_type(options.index_type, _registered_dim(options.model))
    corpus = Path(corpus).expanduser().resolve()
    if corpus.exists() and not corpus.is_dir():
        raise EmptyCorpusError(f"{corpus}: a file, not a corpus directory (give the folder that holds it)")
    if not corpus.is_dir():
        raise EmptyCorpusError(f"{corpus}: corpus directory not found")
    try:
        scan = walk_corpus(corpus)
    except OSError as e:  # the root itself cannot be listed: nothing is known, so nothing may be removed
        raise EmptyCorpusError(f"{corpus}: cannot read the corpus directory ({e.strerror or e})") from e
    files = scan.files
    if not files:
        # Also for an existing index: an empty (or unmounted) corpus must not wipe it.
        raise EmptyCorpusError(
            f"{corpus}: no audio or video files to index (looked for {', '.join(sorted(MEDIA_EXTENSIONS))})"
        )

    index = Index(index_path, db_url=options.db_url, create=True)
    try:
        with index.writer_lock():
            return _build_locked(index, corpus, scan, options, progress, started, embed_stage)
    finally:
        index.close()


def _build_locked(
    index: Index,
    corpus: Path,
    scan: CorpusScan,
    options: BuildOptions,
    progress: ProgressCallback | None,
    started: float,
    embed_stage: EmbedStage | None = None,
    only: set[str] | None = None,
    encoder: Encoder | None = None,
) -> BuildReport:
    """The build, with the index's writer lock held. `only`: catalog paths that may have changed (`scan`
    holds those of them that exist); every other indexed file is left as it is. `encoder`: one already
    loaded (with the options' model), as `indexer watch` keeps between generations."""
    stored = index.provenance()
    if options.model == AUTO_MODEL:
        model = BuildOptions.from_provenance(stored).model if stored is not None else choose_model(options.model).model
        options = replace(options, model=model)
    spec = options.encoder_spec()
    model_id, checkpoint_sha256 = spec.identity()
    if stored is not None:
        # Cheap check before the model is loaded: the checkpoint hash alone tells a different model.
        check_model(index.path, stored, model_id, checkpoint_sha256)
        if options.hop_seconds is not None and options.hop_seconds != stored.hop_seconds:
            raise IndexMismatchError(
                f"{index.path}: index uses a hop of {stored.hop_seconds} s, not {options.hop_seconds} s"
            )
    placement = resolve_device(options.device)
    encoder = encoder or spec.load(device=placement.torch_device)
    check_index_type(options.index_type, encoder.info.dim)  # the model's own dimension, before any embedding
    if stored is not None:
        check_encoder(index.path, stored, encoder.info)
        hop_seconds = stored.hop_seconds
    else:
        hop_seconds = options.hop_seconds or encoder.info.window_seconds
        if hop_seconds <= 0:
            raise ValueError("hop must be positive")

    precision = resolve_precision(encoder, options.precision)
    batch_size = options.batch_size or default_batch_size(encoder)
    report = BuildReport(index=index.path, notes=list(placement.notes))
    # The objects that exist now (torch, the model, every module imported) live through the build: frozen,
    # the garbage collector's full passes skip them. Each such pass walks ~280k objects otherwise, 0.15 s
    # of the model's thread in one build of 100 files in three (bench/stage_profile.py).
    gc.freeze()
    try:
        with index.catalog.writer() as writer:
            checkpoint = str(resolve_model(options.model).checkpoint)
            writer.ensure_info(**vars(Provenance.of(encoder.info, checkpoint, hop_seconds, precision=precision)))
            corpus_id = writer.corpus_id(str(corpus))
            generation, files, deletions = index.vector_files()
            factory = stored.faiss_factory if stored is not None else DEFAULT_FACTORY
            stores = index.directory.load_stores(generation, encoder.info.dim, factory, files, deletions)
            if stored is not None:
                stores["segments"].set_search_params({k: v for k, v in stored.search_params.items()
                                                      if k in ("nprobe", "efSearch")})
            if placement.faiss_gpu is not None:
                stores["segments"].to_gpu(faiss_gpu(placement.faiss_gpu))  # trains, converts and tunes there

            limits = DecodeLimits.for_seconds(options.max_file_seconds)
            jobs = _plan(index, writer, corpus_id, scan.files, report, limits)
            _keep_unreadable(index, writer, corpus_id, scan, report, only)
            deleted = _deleted(index, corpus_id, scan, only)
            jobs, deleted = _moved(writer, jobs, deleted, report)
            for record in deleted:
                _remove_file(writer, stores, record, report)

            last_checkpoint = time.monotonic()
            done = 0
            stage = embed_stage or partial(_embedded_jobs, decode_workers=options.decode_workers, precision=precision,
                                           limits=limits, decode_thread=options.decode_thread,
                                           model_threads=options.model_threads,
                                           front_end_on_decode=options.front_end_on_decode)
            batch = _StoreBatch(corpus_id)
            for job in stage(jobs, encoder, hop_seconds, batch_size, writer, corpus_id, report):
                if job is not None:
                    batch.stage(writer, stores, job, report)
                done += 1
                if progress:
                    progress(done, len(jobs))
                if time.monotonic() - last_checkpoint >= options.checkpoint_seconds and done < len(jobs):
                    batch.write(writer, stores, report)
                    generation = index.commit_generation(stores, writer)
                    last_checkpoint = time.monotonic()
                elif batch.windows >= STORE_BATCH_WINDOWS:
                    batch.write(writer, stores, report)
            batch.write(writer, stores, report)
            if report.segments_added:
                _record_precision(writer, precision)
            if report.changed or index.generation() == 0:
                stores["segments"] = _apply_index_type(stores["segments"], options, writer)
                if stores["segments"].gpu_note:
                    report.notes.append(stores["segments"].gpu_note)
                generation = index.commit_generation(stores, writer)
            else:
                writer.commit(generation)  # failures of unchanged files may have been cleared
    finally:
        gc.unfreeze()
    index.remove_unlisted_files()
    _ensure_hubness_correction(index, encoder, report)
    report.seconds = time.monotonic() - started
    return report


def apply_changes(
    index: Index,
    corpus: Path,
    paths: set[str],
    options: BuildOptions,
    encoder: Encoder | None = None,
) -> BuildReport:
    """Bring `index` up to date for `paths` (relative to `corpus`) alone, as one generation: new and changed
    files are embedded, vanished ones removed, unchanged ones (by content hash) skipped. The caller holds
    `index.writer_lock()`; an empty corpus is no error here (every file may have been deleted)."""
    started = time.monotonic()
    corpus = Path(corpus).expanduser().resolve()
    files = [f for f in (corpus_file(corpus, p) for p in sorted(paths)) if f is not None]
    return _build_locked(index, corpus, CorpusScan(corpus, files), options, None, started, only={catalog_text(p) for p in paths},
                         encoder=encoder)


def _ensure_hubness_correction(index: Index, encoder: Encoder, report: BuildReport) -> None:
    """Store the text-query hubness correction (indexer/hubness.py) beside the index, once per model."""
    from indexer.hubness import ensure_correction

    try:
        ensure_correction(index.path, encoder)
    except Exception as e:  # noqa: BLE001 - optional: a model whose text side cannot load offline still indexes
        report.notes.append(f"no hubness correction: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}")


def _plan(
    index: Index, writer: CatalogWriter, corpus_id: int, files: list[CorpusFile], report: BuildReport,
    limits: DecodeLimits = NO_LIMITS,
) -> list[_FileJob]:
    """Files to embed: new ones, changed ones, and failed ones whose content (or the limit they failed
    under, for files too long) changed since."""
    existing = index.catalog.corpus_files(corpus_id)
    failures = index.catalog.corpus_failures(corpus_id)
    jobs = []
    for f in files:
        try:
            if f.catalog_path not in existing and f.catalog_path not in failures:
                # A new file: nothing to compare its hash with. Its decoding hashes the bytes it reads (one
                # read instead of two, on the decoding thread); opened here so that an unreadable file
                # fails as it always has. _FileJob.content_hash hashes it on demand (moves, failures).
                with open_regular(f.absolute):
                    jobs.append(_FileJob(f, None, None))
                continue
            digest = content_hash(f.absolute)
        except OSError as e:
            reason = "permission denied" if isinstance(e, PermissionError) else f"cannot read file ({e.strerror or e})"
            writer.record_failure(corpus_id, f.catalog_path, "", reason)
            report.failed.append(FailedFile(str(f.root / f.catalog_path), reason))
            continue
        previous = existing.get(f.catalog_path)
        if previous is not None and previous.content_hash == digest:
            report.unchanged += 1
        elif f.catalog_path in failures and failures[f.catalog_path].content_hash in (digest, too_long_key(digest, limits)):
            report.still_failed += 1
        else:
            jobs.append(_FileJob(f, digest, previous))
    return jobs


def too_long_key(digest: str, limits: DecodeLimits) -> str:
    """What a failure row of a file too long records instead of its content hash: the hash of both, so that
    the file is not retried while neither changes, and is once the limit does."""
    seconds = None if limits.max_seconds is None else float(limits.max_seconds)  # 60 and 60.0 are one limit
    return hashlib.sha256(f"{digest}:{seconds}:{limits.max_samples}".encode()).hexdigest()


def _keep_unreadable(index: Index, writer: CatalogWriter, corpus_id: int, scan: CorpusScan, report: BuildReport,
                     only: set[str] | None = None) -> None:
    """Report each directory the scan could not list as failed; its indexed files stay (see _deleted).

    Failure rows of paths that are gone (neither in the scan nor hidden in an unreadable directory) are
    cleared: a directory readable again, a broken file deleted. `only`: the catalog paths this build looked
    at (indexer watch); failure rows of other paths are left alone.
    """
    indexed = index.catalog.corpus_files(corpus_id)
    for directory in scan.unreadable:
        kept = sum(1 for path in indexed if directory.holds(path))
        reason = directory.reason + (f"; its {kept} indexed files are kept" if kept else "")
        writer.record_failure(corpus_id, catalog_text(directory.path + "/"), "", reason)
        report.failed.append(FailedFile(str(scan.root / directory.path), reason))
    present = {f.catalog_path for f in scan.files} | {catalog_text(d.path + "/") for d in scan.unreadable}
    for path in index.catalog.corpus_failures(corpus_id):
        if path not in present and scan.hidden(path) is None and (only is None or path in only):
            writer.clear_failure(corpus_id, path)


def _deleted(index: Index, corpus_id: int, scan: CorpusScan, only: set[str] | None = None) -> list[FileRecord]:
    """Indexed files that are gone: not found by the scan, and not inside a directory it could not read
    (`only`: among these catalog paths)."""
    present = {f.catalog_path for f in scan.files}
    return [r for path, r in index.catalog.corpus_files(corpus_id).items()
            if path not in present and scan.hidden(path) is None and (only is None or path in only)]


def _moved(writer: CatalogWriter, jobs: list[_FileJob], deleted: list[FileRecord],
           report: BuildReport) -> tuple[list[_FileJob], list[FileRecord]]:
    """A new file with the content of one that disappeared was moved: its catalog row takes the new path
    and keeps its id, segments and vectors (nothing is decoded or embedded). Returns the jobs and
    deletions left."""
    gone: dict[str, list[FileRecord]] = {}
    for record in deleted:
        gone.setdefault(record.content_hash, []).append(record)
    left = []
    for job in jobs:
        candidates = gone.get(job.content_hash) if job.previous is None and gone else None
        if candidates:
            record = candidates.pop()
            writer.move_file(record.id, job.file.catalog_path, job.file.size, job.file.mtime, job.file.path_bytes)
            report.moved += 1
        else:
            left.append(job)
    return left, [r for records in gone.values() for r in records]


def _embedded_jobs(
    jobs: list[_FileJob],
    encoder: Encoder,
    hop_seconds: float,
    batch_size: int,
    writer: CatalogWriter,
    corpus_id: int,
    report: BuildReport,
    decode_workers: int | None = None,
    precision: str = "auto",
    limits: DecodeLimits = NO_LIMITS,
    decode_thread: bool | None = None,
    model_threads: int | None = None,
    front_end_on_decode: bool | None = None,
) -> Iterator[_FileJob | None]:
    """Decode and window each job's file and embed windows in batches across files (see _embed_files),
    decoding in a thread ahead of the model on 2 CPUs (see indexer/prefetch.py) with the model's torch
    threads on the other core (`model_threads`; None: that core, and every core while the decoder is
    idle, see _ModelThreads)."""
    threaded = prefetch.decode_thread(decode_workers) if decode_thread is None else decode_thread
    threads = None
    if model_threads is None and threaded and decode_workers in (None, 0):
        cpus = os.cpu_count() or 1
        model_threads = max(1, cpus - 1)  # the decoding thread has a core of its own
        threads = _ModelThreads(model_threads, cpus) if cpus > model_threads else None
    front_end = FrontEnd.of(encoder, precision) if threaded and front_end_on_decode in (None, True) else None
    with _torch_threads(model_threads):
        yield from _embed_files(jobs, encoder, hop_seconds, batch_size, writer, corpus_id, report, decode_workers,
                                precision, limits, threaded, front_end, threads)


def _embed_files(
    jobs: list[_FileJob],
    encoder: Encoder,
    hop_seconds: float,
    batch_size: int,
    writer: CatalogWriter,
    corpus_id: int,
    report: BuildReport,
    decode_workers: int | None = None,
    precision: str = "auto",
    limits: DecodeLimits = NO_LIMITS,
    decode_thread: bool | None = None,
    front_end: FrontEnd | None = None,
    threads: _ModelThreads | None = None,
) -> Iterator[_FileJob | None]:
    """Decode and window each job's file and embed windows in batches across files.

    Yields each job once all its windows have vectors (None for a file that failed), in corpus order.
    A long file arrives part by part (embed.StreamedInputs): its windows join the batches as they are
    decoded, and a file that breaks off midway fails whole, its vectors so far dropped. Each file is read
    once (embed.snapshot_inputs): the job takes the content hash of the bytes its windows come from.
    `front_end`: run in the decoding thread (a decoding thread only), its features embedded here.
    `threads`: the model's torch threads batch by batch (a decoding thread only).
    """
    pending: list[tuple[_FileJob, int, np.ndarray | None, list[np.ndarray] | None, object]] = []
    open_jobs: list[_FileJob] = []

    def finished() -> Iterator[_FileJob]:
        while open_jobs and open_jobs[0].complete():
            yield open_jobs.pop(0)

    def flush() -> Iterator[_FileJob]:
        n = threads.choose(backlog) if threads is not None else None
        started = time.perf_counter()
        with _torch_threads(n):
            if front_end is not None and all(p[2] is not None for p in pending):
                vectors = front_end.embed([p[2] for p in pending], [p[4] for p in pending])
            else:
                vectors = embed_inputs(encoder, [p[2] for p in pending], [p[3] for p in pending], precision)
        if threads is not None:
            threads.record(n, (time.perf_counter() - started) / len(pending))
        for (job, slot, _, _, _), vector in zip(pending, vectors):
            job.vectors[slot] = vector
        pending.clear()
        yield from finished()

    plan = WindowPlan.of(encoder, hop_seconds, limits)
    paths = [job.file.absolute for job in jobs]
    backlog = prefetch.Backlog()
    for job, inputs in zip(jobs, prefetch_inputs(paths, plan, decode_workers, decode_thread, front_end, backlog)):
        if isinstance(inputs, AudioDecodeError):
            record_decode_failure(writer, corpus_id, job, inputs.reasons, report, _failure_key(job, inputs, limits))
            yield None
            continue
        job.digest = inputs.content_hash or job.digest  # what was decoded, if it changed since planned
        job.tags = getattr(inputs, "tags", None)
        job.spans, job.vectors, job.decoded = [], [], False
        open_jobs.append(job)
        audio = visual = False
        try:
            for part in inputs.parts():
                job.duration, job.source_rate, job.channels = part.duration, part.source_rate, part.channels
                audio = audio or any(s is not None for s in part.samples)
                visual = visual or any(f is not None for f in part.frames)
                job.spans.extend(part.spans)
                prepared = part.prepared or [None] * len(part.samples)
                for samples, frames, features in zip(part.samples, part.frames, prepared):
                    pending.append((job, len(job.vectors), samples, frames, features))
                    job.vectors.append(None)
                    if len(pending) >= batch_size:
                        yield from flush()
        except AudioDecodeError as e:  # a streamed file broke off midway
            pending[:] = [p for p in pending if p[0] is not job]
            open_jobs.remove(job)
            record_decode_failure(writer, corpus_id, job, e.reasons, report, _failure_key(job, e, limits))
            yield None
            yield from finished()
            continue
        job.modalities = modalities_of(audio, visual)
        job.decoded = True
        yield from finished()
    if pending:
        yield from flush()


def _failure_key(job: _FileJob, error: AudioDecodeError, limits: DecodeLimits) -> str:
    """What a failure row records as the file's hash: a file that could not be read is tried again every
    build (no hash), one too long again when the limit changes (too_long_key)."""
    if isinstance(error, UnreadableFileError):
        return ""
    try:
        digest = job.content_hash
    except OSError:  # gone since it was decoded: retried next build, as a file that could not be read
        return ""
    if isinstance(error, MediaTooLongError):
        return too_long_key(digest, limits)
    return digest


# Seconds before the wide thread count is tried again after it measured slower; doubled after each miss.
WIDE_RETRY_SECONDS = 2.0
# The decoder counts as idle when it waited on a full queue this share of the time since the last batch.
DECODER_IDLE_SHARE = 0.5


@dataclass
class _ModelThreads:
    """The model's torch threads batch by batch on a machine with a decoding thread: `narrow` (the cores the
    decoder leaves) while it decodes, `wide` (every core) while it mostly waits on a full queue, or is done.

    A model much slower than decoding (HTSAT: ~99% of a build's time) leaves the decoder idle nearly always
    and so runs on every core; the starter, whose decoding costs as much as its model, mostly stays on one.
    Wide is given up while it measures slower per window than narrow: two torch threads wait for each other
    at every operator, and when another process holds a core that costs 20-50x (measured on this shared
    machine); it is tried again after WIDE_RETRY_SECONDS, then twice as long, and so on. The first batch on
    a thread count is not counted: it pays one-off costs (the thread pool, oneDNN's kernels for that count).
    """

    narrow: int
    wide: int
    clock: Callable[[], float] = time.monotonic
    seconds: dict[int, float] = field(default_factory=dict)  # per window, moving average per thread count
    warm: set[int] = field(default_factory=set)  # thread counts that have run a batch
    retry_at: float | None = None  # when wide is tried again, while given up
    retry_after: float = WIDE_RETRY_SECONDS
    last: tuple[float, float] = (0.0, 0.0)  # (clock, decoder's seconds waited) at the last choice

    def choose(self, backlog: prefetch.Backlog) -> int:
        """Threads for the next batch: wide once every file is decoded, or when the decoder spent at least
        DECODER_IDLE_SHARE of the time since the last batch waiting on a full queue."""
        now, waited = self.clock(), backlog.waited
        since, before = self.last
        self.last = (now, waited)
        idle = backlog.finished or (now > since and (waited - before) / (now - since) >= DECODER_IDLE_SHARE)
        if not idle:
            return self.narrow
        if self.retry_at is not None:
            if self.clock() < self.retry_at:
                return self.narrow
            self.retry_at = None  # measured afresh from this batch on: the load may have changed
            self.seconds.pop(self.wide, None)
        wide, narrow = self.seconds.get(self.wide), self.seconds.get(self.narrow)
        if wide is not None and narrow is not None and wide > narrow:
            self.retry_at = self.clock() + self.retry_after
            self.retry_after *= 2
            return self.narrow
        return self.wide

    def record(self, threads: int, seconds_per_window: float) -> None:
        """What the batch just embedded on `threads` cost."""
        if threads not in self.warm:  # one-off costs: HTSAT's first batch on 2 threads took 4.6x a later one
            self.warm.add(threads)
            return
        before = self.seconds.get(threads)
        self.seconds[threads] = seconds_per_window if before is None else 0.5 * (before + seconds_per_window)


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `n` (None: unchanged) while the build embeds, restored after.

    Three busy threads on 2 cores (the model's two and the decoder) leave the model's threads waiting
    for each other at every operator; bench/indexing_throughput.py measures the model on 1 and 2 threads.
    """
    torch = sys.modules.get("torch")  # an encoder without torch leaves it unimported
    if n is None or torch is None or torch.get_num_threads() == n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def record_decode_failure(writer: CatalogWriter, corpus_id: int, job: _FileJob, reasons: list[str],
                          report: BuildReport, content_hash: str | None = None) -> None:
    """Record a file no decoder could read: a plain reason, and every decoder's own in the catalog
    (`content_hash`: see _failure_key)."""
    reason = plain_reason(job.file.absolute, reasons)
    detail = catalog_text("; ".join(reasons))  # decoder messages may quote undecodable names
    recorded = reason if detail == reason else f"{reason} ({detail})"
    writer.record_failure(corpus_id, job.file.catalog_path,
                          job.content_hash if content_hash is None else content_hash, recorded)
    report.failed.append(FailedFile(str(job.file.root / job.file.catalog_path), reason, detail))


def _remove_file(writer: CatalogWriter, stores: dict[str, VectorStore], record: FileRecord, report: BuildReport) -> None:
    segment_ids = writer.remove_file(record.id)
    stores["segments"].remove(segment_ids)
    stores["files"].remove([record.id])
    report.removed += 1
    report.segments_removed += len(segment_ids)


# Finished files wait in a _StoreBatch until this many of their windows do (or a checkpoint comes): their
# catalog rows are then written in three statements and their vectors added to FAISS in one call, instead of
# two flushes, a DELETE and two FAISS adds per file. Bounds the vectors held: 4096 x 512 floats is 8 MiB.
STORE_BATCH_WINDOWS = 4096


@dataclass
class _StoreBatch:
    """Embedded files whose rows and vectors are written together (before every commit, see build_index)."""

    corpus_id: int
    jobs: list[_FileJob] = field(default_factory=list)
    windows: int = 0

    def stage(self, writer: CatalogWriter, stores: dict[str, VectorStore], job: _FileJob, report: BuildReport) -> None:
        """Queue `job`; the rows and vectors of the file version it replaces are removed at once."""
        if job.previous is not None:
            segment_ids = writer.remove_file(job.previous.id)
            stores["segments"].remove(segment_ids)
            stores["files"].remove([job.previous.id])
            report.segments_removed += len(segment_ids)
            report.updated += 1
        else:
            report.added += 1
        self.jobs.append(job)
        self.windows += len(job.vectors)

    def write(self, writer: CatalogWriter, stores: dict[str, VectorStore], report: BuildReport) -> None:
        """Stage the queued files' catalog rows and add their vectors (segments and file means)."""
        if not self.jobs:
            return
        ids = writer.add_files([
            NewFile(self.corpus_id, job.file.catalog_path, job.content_hash, job.file.size, job.file.mtime, job.duration, job.source_rate, job.channels,
                    job.spans, job.modalities, job.file.path_bytes,
                    tags=job.tags if job.tags is not None else read_tags(job.file.absolute))  # for filters and exports
            for job in self.jobs
        ])
        vectors = [np.stack(job.vectors).astype(np.float32) for job in self.jobs]
        segment_ids = [i for _, segments in ids for i in segments]
        stores["segments"].add(segment_ids, np.concatenate(vectors))
        stores["files"].add([file_id for file_id, _ in ids],
                            l2_normalize(np.stack([v.mean(axis=0) for v in vectors])))
        report.segments_added += len(segment_ids)
        self.jobs.clear()
        self.windows = 0


def _record_precision(writer: CatalogWriter, precision: str) -> None:
    """Note `precision` in the provenance's versions: an index updated at another precision than it was
    built at lists both (e.g. "bf16+fp32"), since its vectors then come from both."""
    row = writer.ensure_info()
    versions = dict(row.versions or {})
    # An index built before precisions were recorded: its earlier vectors' precision is not known.
    used = set(str(versions.get("precision", "unrecorded")).split("+"))
    if precision not in used:
        versions["precision"] = "+".join(sorted(used | {precision}))
        writer.update_info(versions=versions)


def _registered_dim(model: str) -> int | None:
    """The vector dimension of a registered model, known without loading it (None otherwise)."""
    from indexer.encoders import MODELS

    entry = MODELS.get(model)
    return entry.dim if entry is not None and entry.family != "audio_visual" else None


def _apply_index_type(store: SegmentedStore, options: BuildOptions, writer: CatalogWriter) -> SegmentedStore:
    """Move the segment vectors to the index type asked for (or the one their number calls for), train it
    on a sample, and tune its search parameters to the target recall; records both in the provenance.

    Tuning reads every vector, so a store that keeps its type is tuned again only once its size has moved
    by RETUNE_GROWTH since it last was (a watch batch must not cost a read of the whole index).
    """
    from indexer.tuning import tune_search_params

    chosen: dict[str, Any] = {}
    previous = dict(writer.ensure_info().search_params or {})
    # The budget an index was given stays its budget until another is given (a later build, watch batch or
    # compact without --max-memory must not pick a type 10x larger than the user allowed).
    budget = options.max_memory if options.max_memory is not None else previous.get("max_memory")
    if budget is not None:
        chosen["max_memory"] = int(budget)
    if options.index_type == "auto":
        choice = choose_index(store.ntotal, store.dim, budget)
        target = choice.factory
        if target == DEFAULT_FACTORY and store.factory != DEFAULT_FACTORY:
            target = store.factory  # an index that shrank keeps its trained type; `indexer compact` changes it
        elif _same_family(target, store.factory):
            target = store.factory  # nlist follows sqrt(n) loosely: a retrain for a doubled list count is not worth it
        if target == choice.factory:
            chosen["chosen_because"] = choice.reason
    else:
        target = options.index_type
        chosen["chosen_because"] = f"given as --index-type {target}"
    tuned_at = previous.get("vectors")
    if target != store.factory:
        store = store.converted(target)
    elif (tuned_at and abs(store.ntotal - tuned_at) <= RETUNE_GROWTH * tuned_at
          and previous.get("target_recall") == options.target_recall):
        return store
    tuning = tune_search_params(store, options.target_recall)
    if "chosen_because" not in chosen and "chosen_because" in previous and target == store.factory:
        chosen["chosen_because"] = previous["chosen_because"]
    writer.update_info(
        faiss_factory=store.factory,
        search_params={**tuning.params, "recall_at_10": round(tuning.recall_at_10, 4),
                       "target_recall": options.target_recall, "vectors": store.ntotal, **chosen},
    )
    return store


def _same_family(a: str, b: str) -> bool:
    """Whether two IVF factory strings differ only in their list count within a factor of 2 (same codes)."""
    pattern = re.compile(r"^IVF(\d+),(.+)$")
    ma, mb = pattern.match(a), pattern.match(b)
    if not ma or not mb or ma.group(2) != mb.group(2):
        return False
    return 0.5 <= int(ma.group(1)) / int(mb.group(1)) <= 2


# A store is tuned again once its number of vectors moved by this share since its last tuning.
RETUNE_GROWTH = 0.25


__all__ = ["BuildOptions", "BuildReport", "FailedFile", "apply_changes", "build_index", "ResoundError"]
