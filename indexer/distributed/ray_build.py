"""`indexer build --ray`: the build's decode and embed steps on a Ray cluster, with Ray Data.

Two steps, each one committed transaction of the index's own code:

1. `build_index` with this module's embed stage: the driver plans as a local build does (scan, content
   hashes, unchanged / new / changed / deleted / moved files), removes what is gone and records failures.
   The stage cuts the files to embed into blocks; Ray Data streams them through decoding tasks (CPU) and a
   pool of encoder actors (GPU where the cluster has them); each actor writes its block as a shard to
   `<index>/shards/`: an `indexer export` parquet file with the catalog's file columns (see shards.py).
   The stage reads only the shards' footers (failures, windows): no vector reaches the driver here.
2. `import_vectors` (`indexer import`) merges the shards, in corpus order, into the index on disk: rows in
   blocks, vectors into the segment store, whose tail is sealed to a file every few hundred MiB. The catalog
   rows are those a local build writes, in the same order, hence the same ids; the index type is chosen
   and trained (once, on a seeded sample) as an import does it. The driver's memory is an import's: its
   peak is the segment store's merges, bounded by their size, not the corpus (bench/ray_driver_rss.py).

Crash safety: a block whose worker dies is retried by Ray (task retries, actor restarts) and rewrites the
same shard, so nothing is added twice. A driver killed at any point leaves the last committed generation
(step 2 commits every import checkpoint) and the finished shards; the next run plans again, takes each
finished shard whose files are exactly a run of the files still to add, and embeds only the others.
Shards are deleted once the import has committed.
"""

from __future__ import annotations

import inspect
import os
import pickle
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from db.catalog import CatalogWriter
from indexer.build import (
    BuildOptions,
    BuildReport,
    ProgressCallback,
    _apply_index_type,
    _record_precision,
    build_index,
    choose_build_model,
    record_decode_failure,
)
from indexer.distributed.shards import (
    SHARD_DIR,
    BlockFile,
    ShardDirectory,
    ShardEntry,
    ShardIdentity,
    ShardMeta,
    block_key,
    read_shard,
    write_shard,
)
from indexer.embed import SegmentInputs, StreamedInputs, WindowPlan, embed_inputs, file_inputs, modalities_of
from indexer.encoders import Encoder, EncoderSpec
from indexer.encoders.precision import resolve_precision
from indexer.errors import (
    AudioDecodeError,
    IndexLockedError,
    IndexMismatchError,
    IndexNotFoundError,
    MissingDependencyError,
    ResoundError,
)
from indexer.import_vectors import ImportOptions, import_vectors
from indexer.index import Index, Provenance
from indexer.media.decode import NO_LIMITS, DecodeLimits
from indexer.media.tags import read_tags
from indexer.prefetch import STREAM_READ_AHEAD_PARTS, read_ahead
from indexer.store import DEFAULT_FACTORY

# Ray Data retries a task whose worker died, and an actor's block, without end; a file that crashes its
# decoder or the model every time would then hang the build. Three retries, then the build fails (keeping
# the finished shards). Actors themselves restart without limit (Ray Data's default): nodes come and go.
BLOCK_RETRIES = 3
# Passed on to the cluster's workers, which do not inherit the driver's environment. Never the catalog
# URL ($RESOUND_DB): Ray shows runtime environments in its dashboard, and workers never touch the catalog.
FORWARDED_ENV = ("RESOUND_PLUGINS", "RESOUND_ROBERTA_TOKENIZER", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE")


class DistributedBuildError(ResoundError):
    """The Ray side of a build failed (a block failed past its retries, the cluster went away)."""


def import_ray() -> Any:
    """The `ray` module with Ray Data, or MissingDependencyError naming the extra to install."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise MissingDependencyError(
            f'indexer build --ray needs Ray Data ({e}): pip install "resound[ray]", on the driver and every worker'
        ) from e
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run: the cluster, the encoder actors and the blocks of files."""

    address: str | None = None  # None: a local Ray instance; "auto": the running cluster; or host:port, ray://...
    actors: int = 1  # encoder actors (each loads the model once)
    gpus_per_actor: float | None = None  # None: 1 where the cluster has GPUs, else 0 (CPU actors)
    cpus_per_actor: float = 1.0
    cpus_per_decode: float = 1.0  # per decoding task (one block of files)
    block_files: int = 16  # files per block (one shard each): a block's decoded audio is in memory at once
    keep_shards: bool = False  # keep the shards after the build has committed them (benchmarks)


@dataclass
class RayBuildReport(BuildReport):
    """A BuildReport with what ran on the cluster."""

    blocks_embedded: int = 0  # blocks decoded and embedded by this run
    files_reused: int = 0  # files taken from shards an earlier, interrupted run had finished
    windows_embedded: int = 0
    embed_seconds: float = 0.0  # from the start of the Ray job to its last shard
    shards_imported: list[Path] = field(default_factory=list)  # merged by `import_vectors`, in corpus order
    import_seconds: float = 0.0


def build_index_on_ray(
    corpus: str | Path,
    index_path: str | Path,
    options: BuildOptions | None = None,
    ray_options: RayOptions | None = None,
    progress: ProgressCallback | None = None,
) -> RayBuildReport:
    """`build_index` with decoding and embedding on a Ray cluster; the index is the one a local build makes.

    The corpus and the index directory must be on storage every Ray node sees at the same paths. Raises what
    build_index raises, MissingDependencyError without Ray, and DistributedBuildError when the cluster fails.
    """
    import_ray()
    started = time.monotonic()
    options = options or BuildOptions()
    ray_options = ray_options or RayOptions()
    if ray_options.actors < 1 or ray_options.block_files < 1:
        raise ValueError("actors and block_files must be at least 1")
    index_path = Path(index_path).expanduser().resolve()
    corpus = Path(corpus).expanduser().resolve()  # as build_index records it: the import places files under it
    if ray_options.gpus_per_actor is None and options.device == "cpu":
        ray_options = replace(ray_options, gpus_per_actor=0.0)  # --device cpu: CPU actors, even on GPU nodes
    # Every actor must embed with the same model: `auto` is decided here, once.
    options = replace(options, model=choose_build_model(index_path, options.model, options.db_url).model)
    stage = RayEmbedStage(index_path / SHARD_DIR, options.encoder_spec(), ray_options, options.precision,
                          DecodeLimits.for_seconds(options.max_file_seconds))
    # Step 1 adds no vectors, so it keeps the index type there is (a new index: the exact default, named, so
    # that no reason for choosing it is recorded); the type asked for is applied by step 2, once every vector
    # is in, as a local build applies it at its end. The driver loads the model only to read its identity
    # and windows: on the CPU, whatever the actors use.
    kept_type = _stored_factory(index_path, options.db_url) or DEFAULT_FACTORY
    report = build_index(corpus, index_path, replace(options, device="cpu", decode_workers=0, index_type=kept_type),
                         progress, embed_stage=stage)
    import_started = time.monotonic()
    if stage.sources:
        imported = import_vectors(stage.sources, index_path, ImportOptions(
            index_type=options.index_type, target_recall=options.target_recall, max_memory=options.max_memory,
            db_url=options.db_url, corpus=str(corpus)))
        report.added += imported.files - imported.replaced
        report.updated += imported.replaced
        report.segments_added += imported.windows
        report.segments_removed += imported.segments_replaced
    elif report.changed and options.index_type != kept_type:
        _apply_index_type_alone(index_path, options)  # removals only: the type asked for, as a local build
    import_seconds = time.monotonic() - import_started
    if not ray_options.keep_shards:
        _remove_shards(index_path, options.db_url, stage.shard_root)
    report.seconds = time.monotonic() - started
    return RayBuildReport(**vars(report), blocks_embedded=stage.blocks_embedded, files_reused=stage.files_reused,
                          windows_embedded=stage.windows_embedded, embed_seconds=stage.embed_seconds,
                          shards_imported=list(stage.sources), import_seconds=import_seconds)


def _stored_factory(index_path: Path, db_url: str | None) -> str | None:
    """The FAISS factory of the index at `index_path`, None where there is no index yet."""
    try:
        index = Index(index_path, db_url=db_url)
    except IndexNotFoundError:
        return None
    try:
        stored = index.provenance()
    finally:
        index.close()
    return stored.faiss_factory if stored is not None else None


def _apply_index_type_alone(index_path: Path, options: BuildOptions) -> None:
    """Give the index the type `options` asks for (a build that only removed files), as build_index does."""
    index = Index(index_path, db_url=options.db_url)
    try:
        with index.writer_lock():
            stored = index.provenance()
            if stored is None:
                return
            with index.catalog.writer() as writer:
                stores = index.load_stores()  # the current generation, its tuned search parameters set
                stores["segments"] = _apply_index_type(stores["segments"], options, writer)
                index.commit_generation(stores, writer)
    finally:
        index.close()


def _remove_shards(index_path: Path, db_url: str | None, shard_root: Path) -> None:
    """Delete the merged shards, under the writer lock: a build that started since owns the shards now."""
    index = Index(index_path, db_url=db_url)
    try:
        with index.writer_lock():
            ShardDirectory(shard_root).remove()
    except IndexLockedError:
        pass  # that build drops the shards it does not need
    finally:
        index.close()


@dataclass(frozen=True)
class _Run:
    """Consecutive jobs [start, stop) whose results are one shard: a finished one (key None) or a new block."""

    start: int
    stop: int
    path: Path
    key: str | None


class RayEmbedStage:
    """The build's embed stage (indexer.build.EmbedStage) on Ray: the cluster writes the shards; the stage
    records the failures they list and yields no job to store (None for each, in the order of the jobs).
    `sources` are then the shards with vectors, in job order, for `import_vectors`."""

    def __init__(self, shard_root: Path, spec: EncoderSpec, options: RayOptions, precision: str = "auto",
                 limits: DecodeLimits = NO_LIMITS):
        self.shard_root = shard_root
        self.spec = spec
        self.options = options
        self.precision = precision
        self.limits = limits  # the build's per-file decoding limits (BuildOptions.max_file_seconds)
        self.blocks_embedded = 0
        self.files_reused = 0
        self.windows_embedded = 0
        self.embed_seconds = 0.0
        self.sources: list[Path] = []

    def __call__(self, jobs: list, encoder: Encoder, hop_seconds: float, batch_size: int, writer: CatalogWriter,
                 corpus_id: int, report: BuildReport) -> Iterator[Any]:
        identity = ShardIdentity(encoder.info.model_id, encoder.info.checkpoint_sha256, float(hop_seconds))
        # What the shards carry for `indexer import` to check: the provenance this build has just recorded.
        provenance = asdict(Provenance.from_row(writer.ensure_info()))
        shards = ShardDirectory(self.shard_root)
        files = [BlockFile(str(job.file.absolute), job.file.catalog_path, job.content_hash, job.file.size,
                           job.file.mtime) for job in jobs]
        runs = plan_runs(files, shards.finished(identity), self.options.block_files, identity, shards)
        # Shards no run takes (merged by an interrupted run, another model, unreadable) only take space.
        shards.remove(keep={run.path for run in runs})
        self.files_reused = sum(run.stop - run.start for run in runs if run.key is None)
        ready = {run.path for run in runs if run.key is None}
        blocks = [(run.key, files[run.start : run.stop]) for run in runs if run.key is not None]
        self.sources = []

        results = self._run(blocks, WindowPlan.of(encoder, hop_seconds, self.limits), identity, provenance,
                            encoder.info.dim, batch_size, shards)
        try:
            for run in runs:
                while run.path not in ready:
                    key = next(results, None)
                    if key is None:
                        raise DistributedBuildError(f"{run.path}: the Ray job ended without writing this shard")
                    ready.add(shards.path(key))
                meta = _read_run(run, files)
                for job, f in zip(jobs[run.start : run.stop], meta.files):
                    if f.failure is not None:
                        record_decode_failure(writer, corpus_id, job, f.failure, report)
                    yield None  # embedded files enter the index through the import of `sources`
                if meta.windows:
                    self.sources.append(run.path)
        finally:
            results.close()  # stops the Ray job when the build stops early
        if self.sources:  # as build_index records it for the vectors it adds
            _record_precision(writer, resolve_precision(encoder, self.precision))

    def _run(self, blocks: Sequence[tuple[str | None, list[BlockFile]]], plan: WindowPlan, identity: ShardIdentity,
             provenance: dict[str, Any], dim: int, batch_size: int, shards: ShardDirectory) -> Iterator[str]:
        """Run the blocks on the cluster; yields each block's key once its shard is written (any order)."""
        if not blocks:
            return
        ray = import_ray()
        started_ray = not ray.is_initialized()
        if started_ray:
            address = self.options.address or "local"
            try:
                # "local" starts a private instance; None would join whatever cluster this host last ran.
                ray.init(address=address, log_to_driver=False, include_dashboard=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise DistributedBuildError(f"cannot start or reach Ray at {address!r}: {e}") from e
        started = time.monotonic()
        rows = None
        try:
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False  # the build reports progress per file
            gpus = self.options.gpus_per_actor
            if gpus is None:
                gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
            env = {"env_vars": {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}}
            items = [{"key": key, "files": pickle.dumps(files)} for key, files in blocks]
            dataset = ray.data.from_items(items, override_num_blocks=len(items))
            with warnings.catch_warnings():
                # Retry limits are only accepted as plain remote args, which Ray 2.60 flags as deprecated.
                warnings.simplefilter("ignore", DeprecationWarning)
                # Decoding: stateless CPU tasks, one block each; Ray retries a task whose worker dies.
                # flat_map, not map: Ray Data would fuse a 1:1 map into the actors, which would then
                # decode while their GPU waits.
                dataset = dataset.flat_map(
                    _decode_block, fn_kwargs={"plan": plan}, num_cpus=self.options.cpus_per_decode,
                    runtime_env=env, **_remote_args(dataset.flat_map, max_retries=BLOCK_RETRIES))
                # Embedding: a fixed pool of actors that load the model once; Ray Data restarts an actor
                # that dies and retries its block. Streaming execution keeps few decoded blocks in flight.
                dataset = dataset.map_batches(
                    _ShardWriter,
                    batch_size=1,
                    compute=ray.data.ActorPoolStrategy(size=self.options.actors),
                    fn_constructor_kwargs={"spec": self.spec, "device": "cuda" if gpus > 0 else "cpu",
                                           "identity": identity, "provenance": provenance,
                                           "shard_root": str(shards.root), "dim": dim,
                                           "batch_size": batch_size, "precision": self.precision},
                    num_cpus=self.options.cpus_per_actor,
                    num_gpus=gpus or None,
                    runtime_env=env,
                    **_remote_args(dataset.map_batches, max_restarts=-1, max_task_retries=BLOCK_RETRIES),
                )
            rows = dataset.iter_rows()
            try:
                for row in rows:
                    self.blocks_embedded += 1
                    self.windows_embedded += int(row["windows"])
                    self.embed_seconds = time.monotonic() - started
                    yield str(row["key"])
            except ray.exceptions.RayError as e:
                lines = str(e).strip().splitlines()
                raise DistributedBuildError(
                    f"the Ray job failed ({lines[-1][:300] if lines else type(e).__name__}); "
                    f"{self.blocks_embedded} of {len(blocks)} blocks were finished and their shards kept: "
                    f"the same command resumes from them"
                ) from e
        finally:
            if rows is not None and hasattr(rows, "close"):
                rows.close()
            if started_ray:
                ray.shutdown()


def _remote_args(method: Any, **args: Any) -> dict[str, Any]:
    """`args` where this Ray's `method` still takes plain remote args (else Ray Data's defaults apply)."""
    accepts = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(method).parameters.values())
    return args if accepts else {}


def _decode_block(row: dict[str, Any], plan: WindowPlan) -> list[dict[str, Any]]:
    """A decoding task: a block's files decoded and cut into windows, as one row.

    As in a local build (embed.file_inputs), a file that would decode to more than the plan's limit stays a
    StreamedInputs, which the actor streams: a block's row holds at most block_files x that limit of audio.
    Errors travel as data (path, reasons): exception pickling loses their fields.
    """
    files: list[BlockFile] = pickle.loads(row["files"])
    results: list[SegmentInputs | StreamedInputs | tuple[str, list[str]]] = []
    tags: list[dict[str, str]] = []
    for file in files:
        try:
            results.append(file_inputs(plan, file.path))
            tags.append(read_tags(file.path))  # read here, as the local build reads them on its side
        except AudioDecodeError as e:
            results.append((e.path, e.reasons))
            tags.append({})
    return [{"key": row["key"], "inputs": pickle.dumps((files, results, tags), protocol=5)}]


@dataclass
class _FileWindows:
    """A block file's windows as they are embedded (the actor's counterpart of build._FileJob)."""

    spans: list[tuple[float, float]] = field(default_factory=list)
    vectors: list[np.ndarray | None] = field(default_factory=list)
    duration: float = 0.0
    source_rate: int = 0
    channels: int = 0
    audio: bool = False
    visual: bool = False
    failure: list[str] | None = None


def embed_block(encoder: Encoder, files: Sequence[BlockFile],
                inputs: Sequence[SegmentInputs | StreamedInputs | AudioDecodeError], batch_size: int,
                precision: str = "auto") -> list[ShardEntry]:
    """A block's shard entries: each file's windows embedded in batches packed across files, as the local
    build packs them; a streamed file is decoded part by part, a few parts ahead (a read-ahead thread), and
    fails whole when it breaks off midway."""
    results = [_FileWindows() for _ in files]
    pending: list[tuple[int, int, np.ndarray | None, list[np.ndarray] | None]] = []

    def flush() -> None:
        vectors = embed_inputs(encoder, [p[2] for p in pending], [p[3] for p in pending], precision)
        for (i, slot, _, _), vector in zip(pending, vectors):
            results[i].vectors[slot] = vector
        pending.clear()

    for i, item in enumerate(inputs):
        result = results[i]
        if isinstance(item, AudioDecodeError):
            result.failure = list(item.reasons)
            continue
        parts = read_ahead(item.parts(), STREAM_READ_AHEAD_PARTS) if isinstance(item, StreamedInputs) else item.parts()
        try:
            for part in parts:
                result.duration, result.source_rate, result.channels = part.duration, part.source_rate, part.channels
                result.audio = result.audio or any(s is not None for s in part.samples)
                result.visual = result.visual or any(f is not None for f in part.frames)
                result.spans.extend(part.spans)
                for samples, frames in zip(part.samples, part.frames):
                    pending.append((i, len(result.vectors), samples, frames))
                    result.vectors.append(None)
                    if len(pending) >= batch_size:
                        flush()
        except AudioDecodeError as e:  # a streamed file broke off midway
            pending[:] = [p for p in pending if p[0] != i]
            results[i] = _FileWindows(failure=list(e.reasons))
    if pending:
        flush()

    dim = encoder.info.dim
    entries = []
    for file, r in zip(files, results):
        if r.failure is not None:
            entries.append(ShardEntry(file.catalog_path, file.content_hash, [], 0.0, 0, 0, "audio", r.failure,
                                      np.zeros((0, dim), dtype=np.float32)))
        else:
            entries.append(ShardEntry(file.catalog_path, file.content_hash, [tuple(map(float, s)) for s in r.spans],
                                      float(r.duration), int(r.source_rate), int(r.channels),
                                      modalities_of(r.audio, r.visual), None,
                                      np.stack(r.vectors).astype(np.float32)))
    return entries


class _ShardWriter:
    """An encoder actor: embeds decoded blocks and writes each as a shard."""

    def __init__(self, spec: EncoderSpec, device: str, identity: ShardIdentity, provenance: dict[str, Any],
                 shard_root: str, dim: int, batch_size: int, precision: str):
        self.encoder = spec.load(device=device)
        info = self.encoder.info
        if (info.model_id, info.checkpoint_sha256) != (identity.model_id, identity.checkpoint_sha256):
            # A node whose copy of the weights differs from the driver's would mix vectors of two models.
            raise IndexMismatchError(
                f"{os.uname().nodename}: model {spec.model} is {info.model_id} (sha256 {info.checkpoint_sha256[:12]}) "
                f"here, {identity.model_id} (sha256 {identity.checkpoint_sha256[:12]}) on the driver"
            )
        self.identity = identity
        self.provenance = provenance
        self.shards = ShardDirectory(Path(shard_root))
        self.dim = dim
        self.batch_size = batch_size
        self.precision = precision

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys, windows = [], []
        for key, payload in zip(batch["key"], batch["inputs"]):
            files, results, tags = pickle.loads(payload)
            inputs = [AudioDecodeError(*r) if isinstance(r, tuple) else r for r in results]
            entries = embed_block(self.encoder, files, inputs, self.batch_size, self.precision)
            entries = [replace(e, tags=t) for e, t in zip(entries, tags)]
            write_shard(self.shards.path(str(key)), self.identity, self.provenance, files, entries, self.dim)
            keys.append(str(key))
            windows.append(sum(len(e.spans) for e in entries))
        return {"key": np.asarray(keys), "windows": np.asarray(windows, dtype=np.int64)}


def plan_runs(files: Sequence[BlockFile], finished: dict[tuple[str, str, int, float], tuple[Path, ShardMeta]],
              block_files: int, identity: ShardIdentity, shards: ShardDirectory) -> list[_Run]:
    """Cut `files` (the jobs, in corpus order) into runs: a finished shard whose files are exactly the next
    files is taken as it is; the others go to new blocks of up to `block_files`, never spanning a finished
    shard. Importing the runs' shards in order then adds the files in corpus order, as a local build does
    (ids included). A finished shard that is not such a run (some of its files merged or changed since,
    or a new file among them) is left out and its files embedded again."""
    runs: list[_Run] = []
    pending = 0  # first file of the run of files to embed that ends at i

    def new_blocks(start: int, stop: int) -> None:
        for a in range(start, stop, block_files):
            block = files[a : min(stop, a + block_files)]
            key = block_key(identity, block)
            runs.append(_Run(a, a + len(block), shards.path(key), key))

    i = 0
    while i < len(files):
        hit = finished.get(files[i].key)
        if hit is not None:
            path, meta = hit
            n = len(meta.files)
            if [f.key for f in meta.files] == [f.key for f in files[i : i + n]]:
                new_blocks(pending, i)
                runs.append(_Run(i, i + n, path, None))
                i = pending = i + n
                continue
        i += 1
    new_blocks(pending, len(files))
    return runs


def _read_run(run: _Run, files: Sequence[BlockFile]) -> ShardMeta:
    """The shard of `run`, checked to list exactly the run's files (its metadata only)."""
    try:
        meta = read_shard(run.path)
    except (OSError, ValueError) as e:
        raise DistributedBuildError(f"{run.path}: unreadable shard ({e})") from e
    if [f.key for f in meta.files] != [f.key for f in files[run.start : run.stop]]:
        raise DistributedBuildError(f"{run.path}: the shard does not hold the files of its block")
    return meta


__all__ = ["DistributedBuildError", "RayBuildReport", "RayEmbedStage", "RayOptions", "build_index_on_ray",
           "embed_block", "import_ray", "plan_runs"]
