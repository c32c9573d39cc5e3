"""`indexer build`: bring an index up to date with a corpus directory.

scan -> plan (content hash: unchanged / new / changed / deleted) -> decode -> windows -> batched encode
-> rows + vectors, committed together at checkpoints (see indexer/store.py). A file that cannot be read
is recorded as failed with its reason and the run goes on; it is retried once its content changes.
A long file is streamed: its windows are embedded in batches as they are decoded, and its rows and
vectors stored once the last one is in (a file is committed whole or not at all).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from db.catalog import CatalogWriter, FileRecord
from indexer.corpus import CorpusFile, catalog_text, content_hash, scan_corpus
from indexer.device import resolve_device
from indexer.embed import WindowPlan, embed_inputs, modalities_of
from indexer.prefetch import prefetch_inputs
from indexer.encoders import DEFAULT_MODEL, Encoder, EncoderSpec, l2_normalize, resolve_model
from indexer.errors import AudioDecodeError, EmptyCorpusError, IndexMismatchError, ResoundError
from indexer.index import Index, Provenance, check_encoder, check_model
from indexer.media import MEDIA_EXTENSIONS
from indexer.store import DEFAULT_FACTORY, VectorStore, choose_factory, faiss_gpu


@dataclass(frozen=True)
class BuildOptions:
    """How to build: which model, how to cut windows, how often to checkpoint."""

    model: str = DEFAULT_MODEL
    vision_model: str | None = None  # a CLIP model (ARCH/TAG or ARCH:/path): audio-visual vectors
    audio_weight: float = 1.0
    visual_weight: float = 1.0
    frames_per_window: int = 1  # 1: the middle frame; k: k frames, embeddings averaged
    batch_size: int = 16  # windows per forward pass
    decode_workers: int | None = None  # processes decoding ahead of the model; None: CPUs - 1 (max 4; 0 on 2 CPUs), 0: inline
    hop_seconds: float | None = None  # None: the model's window length (no overlap)
    device: str = "auto"  # cpu, cuda, cuda:N or auto: the model's torch device and FAISS's (indexer/device.py)
    precision: str = "auto"  # auto (bf16/fp16 autocast on CUDA, fp32 on CPU), fp32, bf16 or fp16
    db_url: str | None = None  # None: catalog.sqlite inside the index directory
    checkpoint_seconds: float = 300.0  # commit finished files at least this often
    index_type: str = "auto"  # "auto" (by corpus size, see store.choose_factory) or a FAISS factory string
    target_recall: float = 0.95  # recall@10 against exact search that nprobe/efSearch are tuned to

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


@dataclass(frozen=True)
class FailedFile:
    path: str
    reason: str


@dataclass
class BuildReport:
    """What a build changed."""

    index: Path
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[FailedFile] = field(default_factory=list)
    still_failed: int = 0  # failed before, unchanged since: not retried
    segments_added: int = 0
    segments_removed: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # one line each: what ran elsewhere than asked (GPU fallbacks)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.failed)


@dataclass
class _FileJob:
    """A file being embedded: its windows' vectors arrive batch by batch."""

    file: CorpusFile
    content_hash: str
    previous: FileRecord | None
    duration: float = 0.0
    source_rate: int = 0
    channels: int = 0
    modalities: str = "audio"
    spans: list[tuple[float, float]] = field(default_factory=list)
    vectors: list[np.ndarray | None] = field(default_factory=list)
    decoded: bool = True  # False while a streamed file's windows are still arriving

    def complete(self) -> bool:
        return self.decoded and all(v is not None for v in self.vectors)


ProgressCallback = Callable[[int, int], None]
# Decode -> windows -> encode for the planned files: yields each job once all its windows have vectors
# (None for a file that failed, recorded with `record_decode_failure`), in the order given. The local stage
# is `_embedded_jobs`; indexer/distributed runs the same steps on a Ray cluster. Arguments: jobs, encoder,
# hop seconds, batch size, writer, corpus id, report.
EmbedStage = Callable[[list[_FileJob], Encoder, float, int, CatalogWriter, int, "BuildReport"],
                      Iterator[_FileJob | None]]


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
    corpus = Path(corpus).expanduser().resolve()
    if not corpus.is_dir():
        raise EmptyCorpusError(f"{corpus}: corpus directory not found")
    files = scan_corpus(corpus)
    if not files:
        # Also for an existing index: an empty (or unmounted) corpus must not wipe it.
        raise EmptyCorpusError(
            f"{corpus}: no audio or video files to index (looked for {', '.join(sorted(MEDIA_EXTENSIONS))})"
        )

    index = Index(index_path, db_url=options.db_url, create=True)
    try:
        with index.writer_lock():
            return _build_locked(index, corpus, files, options, progress, started, embed_stage)
    finally:
        index.close()


def _build_locked(
    index: Index,
    corpus: Path,
    files: list[CorpusFile],
    options: BuildOptions,
    progress: ProgressCallback | None,
    started: float,
    embed_stage: EmbedStage | None = None,
) -> BuildReport:
    stored = index.provenance()
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
    encoder = spec.load(device=placement.torch_device)
    if stored is not None:
        check_encoder(index.path, stored, encoder.info)
        hop_seconds = stored.hop_seconds
    else:
        hop_seconds = options.hop_seconds or encoder.info.window_seconds
        if hop_seconds <= 0:
            raise ValueError("hop must be positive")

    report = BuildReport(index=index.path, notes=list(placement.notes))
    writer = index.catalog.writer()
    try:
        checkpoint = str(resolve_model(options.model).checkpoint)
        writer.ensure_info(**vars(Provenance.of(encoder.info, checkpoint, hop_seconds)))
        corpus_id = writer.corpus_id(str(corpus))
        generation = index.generation()
        factory = stored.faiss_factory if stored is not None else DEFAULT_FACTORY
        stores = index.directory.load_stores(generation, encoder.info.dim, factory)
        if placement.faiss_gpu is not None:
            stores["segments"].to_gpu(faiss_gpu(placement.faiss_gpu))  # trains, converts and tunes there

        jobs = _plan(index, writer, corpus_id, files, report)
        for record in _deleted(index, corpus_id, files):
            _remove_file(writer, stores, record, report)

        last_checkpoint = time.monotonic()
        done = 0
        stage = embed_stage or partial(_embedded_jobs, decode_workers=options.decode_workers,
                                       precision=options.precision)
        for job in stage(jobs, encoder, hop_seconds, options.batch_size, writer, corpus_id, report):
            if job is not None:
                _store_file(writer, stores, corpus_id, job, report)
            done += 1
            if progress:
                progress(done, len(jobs))
            if time.monotonic() - last_checkpoint >= options.checkpoint_seconds and done < len(jobs):
                generation = index.commit_generation(stores, writer)
                last_checkpoint = time.monotonic()
        if report.changed or index.generation() == 0:
            stores["segments"] = _apply_index_type(stores["segments"], options, writer)
            if stores["segments"].gpu_note:
                report.notes.append(stores["segments"].gpu_note)
            generation = index.commit_generation(stores, writer)
        else:
            writer.commit(generation)  # failures of unchanged files may have been cleared
    except BaseException:
        writer.rollback()
        raise
    finally:
        writer.close()
    index.directory.remove_other_generations(index.generation())
    _ensure_hubness_correction(index, encoder, report)
    report.seconds = time.monotonic() - started
    return report


def _ensure_hubness_correction(index: Index, encoder: Encoder, report: BuildReport) -> None:
    """Store the text-query hubness correction (indexer/hubness.py) beside the index, once per model."""
    from indexer.hubness import ensure_correction

    try:
        ensure_correction(index.path, encoder)
    except Exception as e:  # noqa: BLE001 - optional: a model whose text side cannot load offline still indexes
        report.notes.append(f"no hubness correction: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}")


def _plan(
    index: Index, writer: CatalogWriter, corpus_id: int, files: list[CorpusFile], report: BuildReport
) -> list[_FileJob]:
    """Files to embed: new ones, changed ones, and failed ones whose content changed since."""
    existing = index.catalog.corpus_files(corpus_id)
    failures = index.catalog.corpus_failures(corpus_id)
    jobs = []
    for f in files:
        try:
            digest = content_hash(f.absolute)
        except OSError as e:
            reason = f"cannot read file ({e.strerror or e})"
            writer.record_failure(corpus_id, f.catalog_path, "", reason)
            report.failed.append(FailedFile(str(f.root / f.catalog_path), reason))
            continue
        previous = existing.get(f.catalog_path)
        if previous is not None and previous.content_hash == digest:
            report.unchanged += 1
        elif f.catalog_path in failures and failures[f.catalog_path].content_hash == digest:
            report.still_failed += 1
        else:
            jobs.append(_FileJob(f, digest, previous))
    return jobs


def _deleted(index: Index, corpus_id: int, files: list[CorpusFile]) -> list[FileRecord]:
    present = {f.catalog_path for f in files}
    return [r for path, r in index.catalog.corpus_files(corpus_id).items() if path not in present]


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
) -> Iterator[_FileJob | None]:
    """Decode and window each job's file and embed windows in batches across files.

    Yields each job once all its windows have vectors (None for a file that failed), in corpus order.
    A long file arrives part by part (embed.StreamedInputs): its windows join the batches as they are
    decoded, and a file that breaks off midway fails whole, its vectors so far dropped.
    """
    pending: list[tuple[_FileJob, int, np.ndarray | None, list[np.ndarray] | None]] = []
    open_jobs: list[_FileJob] = []

    def finished() -> Iterator[_FileJob]:
        while open_jobs and open_jobs[0].complete():
            yield open_jobs.pop(0)

    def flush() -> Iterator[_FileJob]:
        vectors = embed_inputs(encoder, [p[2] for p in pending], [p[3] for p in pending], precision)
        for (job, slot, _, _), vector in zip(pending, vectors):
            job.vectors[slot] = vector
        pending.clear()
        yield from finished()

    plan = WindowPlan.of(encoder, hop_seconds)
    for job, inputs in zip(jobs, prefetch_inputs([job.file.absolute for job in jobs], plan, decode_workers)):
        if isinstance(inputs, AudioDecodeError):
            record_decode_failure(writer, corpus_id, job, inputs.reasons, report)
            yield None
            continue
        job.spans, job.vectors, job.decoded = [], [], False
        open_jobs.append(job)
        audio = visual = False
        try:
            for part in inputs.parts():
                job.duration, job.source_rate, job.channels = part.duration, part.source_rate, part.channels
                audio = audio or any(s is not None for s in part.samples)
                visual = visual or any(f is not None for f in part.frames)
                job.spans.extend(part.spans)
                for samples, frames in zip(part.samples, part.frames):
                    pending.append((job, len(job.vectors), samples, frames))
                    job.vectors.append(None)
                    if len(pending) >= batch_size:
                        yield from flush()
        except AudioDecodeError as e:  # a streamed file broke off midway
            pending[:] = [p for p in pending if p[0] is not job]
            open_jobs.remove(job)
            record_decode_failure(writer, corpus_id, job, e.reasons, report)
            yield None
            yield from finished()
            continue
        job.modalities = modalities_of(audio, visual)
        job.decoded = True
        yield from finished()
    if pending:
        yield from flush()


def record_decode_failure(writer: CatalogWriter, corpus_id: int, job: _FileJob, reasons: list[str],
                          report: BuildReport) -> None:
    """Record a file no decoder could read, with every decoder's reason."""
    reason = catalog_text("; ".join(reasons))  # decoder messages may quote undecodable names
    writer.record_failure(corpus_id, job.file.catalog_path, job.content_hash, reason)
    report.failed.append(FailedFile(str(job.file.root / job.file.catalog_path), reason))


def _remove_file(writer: CatalogWriter, stores: dict[str, VectorStore], record: FileRecord, report: BuildReport) -> None:
    segment_ids = writer.remove_file(record.id)
    stores["segments"].remove(segment_ids)
    stores["files"].remove([record.id])
    report.removed += 1
    report.segments_removed += len(segment_ids)


def _store_file(
    writer: CatalogWriter, stores: dict[str, VectorStore], corpus_id: int, job: _FileJob, report: BuildReport
) -> None:
    if job.previous is not None:
        segment_ids = writer.remove_file(job.previous.id)
        stores["segments"].remove(segment_ids)
        stores["files"].remove([job.previous.id])
        report.segments_removed += len(segment_ids)
        report.updated += 1
    else:
        report.added += 1
    file_id, segment_ids = writer.add_file(
        corpus_id,
        job.file.catalog_path,
        job.content_hash,
        job.file.size,
        job.file.mtime,
        job.duration,
        job.source_rate,
        job.channels,
        job.spans,
        job.modalities,
        path_bytes=job.file.path_bytes,
    )
    vectors = np.stack(job.vectors).astype(np.float32)
    stores["segments"].add(segment_ids, vectors)
    stores["files"].add([file_id], l2_normalize(vectors.mean(axis=0, keepdims=True)))
    report.segments_added += len(segment_ids)


def _apply_index_type(store: VectorStore, options: BuildOptions, writer: CatalogWriter) -> VectorStore:
    """Move the segment vectors to the index type asked for (or the one their number calls for), train it
    on a sample, and tune its search parameters to the target recall; records both in the provenance."""
    from indexer.tuning import tune_search_params

    if options.index_type == "auto":
        target = choose_factory(store.ntotal)
        if target == DEFAULT_FACTORY and store.factory != DEFAULT_FACTORY:
            target = store.factory  # an index that shrank keeps its trained type; `indexer compact` changes it
    else:
        target = options.index_type
    if target != store.factory:
        store = store.converted(target)
    tuning = tune_search_params(store, options.target_recall)
    writer.update_info(
        faiss_factory=store.factory,
        search_params={**tuning.params, "recall_at_10": round(tuning.recall_at_10, 4), "target_recall": options.target_recall},
    )
    return store


__all__ = ["BuildOptions", "BuildReport", "FailedFile", "build_index", "ResoundError"]
