"""`indexer build --ray`: the build's decode and embed steps on a Ray cluster, with Ray Data.

The driver plans as a local build does (scan, content hashes, unchanged / new / changed / deleted files)
and cuts the files to embed into blocks. Ray Data streams the blocks through decoding tasks (CPU) and a
pool of encoder actors (GPU where the cluster has them); each actor writes its block's windows and vectors
as a shard to `<index>/shards/` (see shards.py). The driver merges the shards in corpus order through the
local build's own code (`build_index` with this module's embed stage): the same catalog rows in the same
order, hence the same ids, the same index-type choice and training, the same checkpoints and failures.

Crash safety: a block whose worker dies is retried by Ray (task retries, actor restarts) and rewrites the
same shard, so nothing is added twice; a driver killed mid-run leaves finished shards, which the next run
takes instead of embedding those files again. Shards are deleted once the build has committed.
"""

from __future__ import annotations

import inspect
import os
import pickle
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from db.catalog import CatalogWriter
from indexer.build import (
    BuildOptions,
    BuildReport,
    ProgressCallback,
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
    block_key,
    read_shard,
    write_shard,
)
from indexer.embed import SegmentInputs, StreamedInputs, WindowPlan, embed_inputs, file_inputs, modalities_of
from indexer.encoders import Encoder, EncoderSpec
from indexer.errors import (
    AudioDecodeError,
    IndexLockedError,
    IndexMismatchError,
    MissingDependencyError,
    ResoundError,
)
from indexer.index import Index
from indexer.media.decode import NO_LIMITS, DecodeLimits
from indexer.prefetch import STREAM_READ_AHEAD_PARTS, read_ahead

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
    options = options or BuildOptions()
    ray_options = ray_options or RayOptions()
    if ray_options.actors < 1 or ray_options.block_files < 1:
        raise ValueError("actors and block_files must be at least 1")
    index_path = Path(index_path).expanduser().resolve()
    if ray_options.gpus_per_actor is None and options.device == "cpu":
        ray_options = replace(ray_options, gpus_per_actor=0.0)  # --device cpu: CPU actors, even on GPU nodes
    # Every actor must embed with the same model: `auto` is decided here, once.
    options = replace(options, model=choose_build_model(index_path, options.model, options.db_url).model)
    stage = RayEmbedStage(index_path / SHARD_DIR, options.encoder_spec(), ray_options, options.precision,
                          DecodeLimits.for_seconds(options.max_file_seconds))
    # The driver loads the model only to read its identity and windows: on the CPU, whatever the actors use.
    report = build_index(corpus, index_path, replace(options, device="cpu", decode_workers=0), progress,
                         embed_stage=stage)
    if not ray_options.keep_shards:
        _remove_shards(index_path, options.db_url, stage.shard_root)
    return RayBuildReport(**vars(report), blocks_embedded=stage.blocks_embedded, files_reused=stage.files_reused,
                          windows_embedded=stage.windows_embedded, embed_seconds=stage.embed_seconds)


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


class RayEmbedStage:
    """The build's embed stage (indexer.build.EmbedStage) on Ray: shards are written by the cluster and
    read back by the driver, in the order of the jobs."""

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

    def __call__(self, jobs: list, encoder: Encoder, hop_seconds: float, batch_size: int, writer: CatalogWriter,
                 corpus_id: int, report: BuildReport) -> Iterator[Any]:
        identity = ShardIdentity(encoder.info.model_id, encoder.info.checkpoint_sha256, float(hop_seconds))
        shards = ShardDirectory(self.shard_root)
        finished = shards.finished(identity)
        job_shards: list[Path | None] = []
        to_embed: list[BlockFile] = []
        to_embed_at: list[int] = []  # their positions in `jobs`
        for i, job in enumerate(jobs):
            file = BlockFile(str(job.file.absolute), job.file.catalog_path, job.content_hash)
            shard = finished.get((file.catalog_path, file.content_hash))
            if shard is None:
                to_embed.append(file)
                to_embed_at.append(i)
            job_shards.append(shard)  # new blocks' shards are filled in below
        ready = {p for p in job_shards if p is not None}
        self.files_reused = len(jobs) - len(to_embed)
        blocks = []
        for start in range(0, len(to_embed), self.options.block_files):
            files = to_embed[start : start + self.options.block_files]
            key = block_key(identity, files)
            blocks.append((key, files))
            for i in to_embed_at[start : start + self.options.block_files]:
                job_shards[i] = shards.path(key)
        # Shards no job needs (merged by an interrupted run, another model, unreadable) only take space.
        shards.remove(keep=set(job_shards))

        results = self._run(blocks, WindowPlan.of(encoder, hop_seconds, self.limits), identity, encoder.info.dim, batch_size,
                            shards)
        cached: tuple[Path | None, dict[tuple[str, str], ShardEntry]] = (None, {})
        try:
            for job, shard in zip(jobs, job_shards):
                while shard not in ready:
                    key = next(results, None)
                    if key is None:
                        raise DistributedBuildError(f"{shard}: the Ray job ended without writing this shard")
                    ready.add(shards.path(key))
                if cached[0] != shard:
                    cached = (shard, read_shard(shard))
                entry = cached[1][(job.file.catalog_path, job.content_hash)]
                if entry.failure is not None:
                    record_decode_failure(writer, corpus_id, job, entry.failure, report)
                    yield None
                    continue
                job.duration, job.source_rate, job.channels = entry.duration, entry.source_rate, entry.channels
                job.modalities, job.spans = entry.modalities, list(entry.spans)
                job.vectors = list(entry.vectors)
                yield job
        finally:
            results.close()  # stops the Ray job when the build stops early

    def _run(self, blocks: Sequence[tuple[str, list[BlockFile]]], plan: WindowPlan, identity: ShardIdentity,
             dim: int, batch_size: int, shards: ShardDirectory) -> Iterator[str]:
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
                                           "identity": identity, "shard_root": str(shards.root), "dim": dim,
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
    for file in files:
        try:
            results.append(file_inputs(plan, file.path))
        except AudioDecodeError as e:
            results.append((e.path, e.reasons))
    return [{"key": row["key"], "inputs": pickle.dumps((files, results), protocol=5)}]


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

    def __init__(self, spec: EncoderSpec, device: str, identity: ShardIdentity, shard_root: str, dim: int,
                 batch_size: int, precision: str):
        self.encoder = spec.load(device=device)
        info = self.encoder.info
        if (info.model_id, info.checkpoint_sha256) != (identity.model_id, identity.checkpoint_sha256):
            # A node whose copy of the weights differs from the driver's would mix vectors of two models.
            raise IndexMismatchError(
                f"{os.uname().nodename}: model {spec.model} is {info.model_id} (sha256 {info.checkpoint_sha256[:12]}) "
                f"here, {identity.model_id} (sha256 {identity.checkpoint_sha256[:12]}) on the driver"
            )
        self.identity = identity
        self.shards = ShardDirectory(Path(shard_root))
        self.dim = dim
        self.batch_size = batch_size
        self.precision = precision

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys, windows = [], []
        for key, payload in zip(batch["key"], batch["inputs"]):
            files, results = pickle.loads(payload)
            inputs = [AudioDecodeError(*r) if isinstance(r, tuple) else r for r in results]
            entries = embed_block(self.encoder, files, inputs, self.batch_size, self.precision)
            write_shard(self.shards.path(str(key)), self.identity, entries, self.dim)
            keys.append(str(key))
            windows.append(sum(len(e.spans) for e in entries))
        return {"key": np.asarray(keys), "windows": np.asarray(windows, dtype=np.int64)}


__all__ = ["DistributedBuildError", "RayBuildReport", "RayEmbedStage", "RayOptions", "build_index_on_ray",
           "embed_block", "import_ray"]
