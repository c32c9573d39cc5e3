"""The search engine: an index, its catalog and its encoder, loaded once and kept warm.

The CLI, the HTTP service and Python users all go through `Engine`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from db.filters import SearchFilter
from db.records import SegmentRecord
from indexer.device import Placement, resolve_device
from indexer.embed import embed_file
from indexer.encoders import Encoder, EncoderSpec
from indexer.encoders.precision import autocast, unit_rows
from indexer.errors import AudioDecodeError, IndexCorruptError, MediaTooLongError, QueryError
from indexer.hubness import load_correction
from indexer.index import Index, Provenance, check_encoder, check_model, check_model_name
from indexer.media.decode import NO_LIMITS, DecodeLimits
from indexer.store import VectorStore, faiss_gpu
from search.grouping import group_by_file, next_fetch
from search.validation import MAX_QUERY_CHARS, query_text  # noqa: F401 (MAX_QUERY_CHARS: re-exported)


@dataclass(frozen=True)
class Window:
    """A matching window of a hit's file."""

    start: float
    end: float
    score: float
    segment_id: int

    def to_json(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "score": self.score}


@dataclass(frozen=True)
class Hit:
    """One search result: a file's best-matching segment, best first by `rank` (1-based).

    `windows` are the file's windows that score at least as high as the last hit, best first (the first
    is the hit's own; search/grouping.py); with per-file grouping off, only the hit's own window. `root`
    is the corpus root the file was indexed under.
    """

    rank: int
    path: str
    start: float
    end: float
    score: float
    segment_id: int
    file_id: int
    windows: tuple[Window, ...] = ()
    root: str = ""

    @property
    def relative_path(self) -> str:
        """The file's path relative to its corpus root."""
        prefix = self.root.rstrip("/") + "/"
        return self.path[len(prefix):] if self.root and self.path.startswith(prefix) else self.path

    def to_json(self) -> dict[str, object]:
        """The public JSON form of a hit (README: Usage)."""
        d = asdict(self)
        return {key: d[key] for key in ("rank", "path", "start", "end", "score")} | {
            "windows": [w.to_json() for w in self.windows]}


class Engine:
    """Answers text and audio queries against one index.

    `device` (cpu, cuda, cuda:N or auto) places the query encoder and the FAISS search (see
    indexer/device.py); `notes` says what fell back to CPU. `precision` as in indexer.embed.embed_inputs.
    `hubness_correction=True` centres text queries by the index's stored hubness correction
    (indexer/hubness.py). Off by default: with the current starter weights it did not reduce hubness on a
    noise-padded corpus and cost 0.04 precision@10 (bench/hubness.py, MODEL_CARD.md).
    """

    def __init__(self, index_path: str | Path, model: str | None = None, device: str = "auto", db_url: str | None = None,
                 precision: str = "auto", hubness_correction: bool = False):
        self.index = Index(index_path, db_url=db_url)
        provenance = self.index.provenance()
        if provenance is None:
            raise IndexCorruptError(f"{self.index.path}: the index has no provenance (its first build never finished)")
        self.provenance: Provenance = provenance
        spec = EncoderSpec.from_provenance(provenance.family, provenance.model_id, provenance.checkpoint,
                                           provenance.preprocessing)
        if model is not None:
            check_model_name(self.index.path, provenance, model)
            spec = dataclasses.replace(spec, model=model)
        # Refuse a different model before paying for loading it.
        check_model(self.index.path, provenance, *spec.identity())
        self.placement: Placement = resolve_device(device)
        self.precision = precision
        self.encoder: Encoder = spec.load(device=self.placement.torch_device)
        check_encoder(self.index.path, provenance, self.encoder.info)
        self.hubness = load_correction(self.index.path, self.encoder.info) if hubness_correction else None
        self._generation = -1
        self._stores: dict[str, VectorStore] = {}
        self._matching: dict[tuple[int, SearchFilter], np.ndarray] = {}  # see matching_segment_ids

    @property
    def notes(self) -> list[str]:
        """One line each on what runs on CPU although a GPU was asked for (or found by auto)."""
        notes = list(self.placement.notes)
        segments = self._stores.get("segments")
        if segments is not None and segments.gpu_note:
            notes.append(segments.gpu_note)
        if segments is not None and segments.filter_gpu_note:
            notes.append(segments.filter_gpu_note)
        return notes

    @property
    def modalities(self) -> tuple[str, ...]:
        """The query modalities this index answers: audio, and visual and av for audio-visual indexes."""
        return ("audio", "visual", "av") if hasattr(self.encoder, "restrict") else ("audio",)

    def _check_modality(self, modality: str) -> None:
        if modality not in self.modalities:
            raise QueryError(f"{self.index.path}: modality {modality!r} needs an audio-visual index "
                             f"(built with --vision-model); this one answers {', '.join(self.modalities)}")

    def stores(self) -> dict[str, VectorStore]:
        """The FAISS stores of the current generation, reloaded when a build has committed a newer one.

        A build deletes the previous generation's files right after committing the next, so a reader that
        read the old generation number a moment too early finds them gone: it reads the number again.
        """
        for attempt in range(3):
            generation = self.index.generation()
            if generation == self._generation:
                return self._stores
            try:
                self._stores = self.index.load_stores()
                if self.placement.faiss_gpu is not None:
                    self._stores["segments"].to_gpu(faiss_gpu(self.placement.faiss_gpu))
                self._generation = generation
                return self._stores
            except IndexCorruptError:
                if attempt == 2 or self.index.generation() == generation:
                    raise
        return self._stores

    # -- queries ----------------------------------------------------------------------------------
    def query(self, text: str, k: int = 10, modality: str | None = None, where: SearchFilter | None = None,
              per_file: bool = True) -> list[Hit]:
        """Files (their best segments) that best match a text description (`modality`: audio, visual or
        av; default all), among the segments `where` admits. `per_file=False` ranks segments instead,
        several of a file possibly."""
        text = query_text(text)
        modality = modality or self.modalities[-1]
        self._check_modality(modality)
        with autocast(self.encoder, self.precision) as reduced:
            if hasattr(self.encoder, "restrict"):
                vectors = self.encoder.embed_text([text], modality=modality)  # type: ignore[call-arg]
            else:
                vectors = self.encoder.embed_text([text])
        vector = unit_rows(self.encoder, vectors, reduced)[0]
        if self.hubness is not None:
            vector = self.hubness.apply(vector)
        return self.search_vector(vector, k, where, per_file)

    def similar(self, path: str | Path, k: int = 10, modality: str | None = None,
                where: SearchFilter | None = None, limits: DecodeLimits = NO_LIMITS, per_file: bool = True) -> list[Hit]:
        """Files (their best segments) that sound (and look) most like a media file (its windows' mean
        vector), among the segments `where` admits; `per_file` as in query().

        Decoding stops at `limits` (MediaTooLongError), whatever the file's header claims.
        """
        modality = modality or self.modalities[-1]
        self._check_modality(modality)
        vector = self.embed_file(path, limits)
        if hasattr(self.encoder, "restrict"):
            vector = self.encoder.restrict(vector, modality)  # type: ignore[attr-defined]
        return self.search_vector(vector, k, where, per_file)

    def embed_file(self, path: str | Path, limits: DecodeLimits = NO_LIMITS) -> np.ndarray:
        """The file-level vector of an audio file: the normalised mean of its window vectors. Raises
        QueryError for a file that cannot be read or decoded, MediaTooLongError past `limits`."""
        path = Path(path)
        if not path.exists():
            raise QueryError(f"{path}: file not found")
        try:
            return embed_file(self.encoder, path, self.provenance.hop_seconds, precision=self.precision,
                              limits=limits).file_vector
        except MediaTooLongError:
            raise
        except AudioDecodeError as e:
            raise QueryError(str(e)) from e

    def search_vector(self, vector: np.ndarray, k: int = 10, where: SearchFilter | None = None,
                      per_file: bool = True) -> list[Hit]:
        """Hits for a query vector in the index's space: the best window of each of the `k` best files, or
        with `per_file=False` the `k` best windows; only segments `where` admits (k whenever k do: the
        filter is applied inside the FAISS search, see VectorStore.search).

        For one hit per file, FAISS is asked for more windows until `k` distinct files turn up or the
        index is exhausted (search/grouping.py).
        """
        if k < 1:
            raise QueryError("k must be at least 1")
        among = self.matching_segment_ids(where)
        if among is not None and not len(among):
            return []
        store = self.stores()["segments"]
        available = store.ntotal if among is None else min(store.ntotal, len(among))
        fetch: int | None = k
        while fetch is not None:
            result = store.search(vector[None, :], fetch, among=among)
            valid = [(int(i), float(score)) for i, score in zip(result.ids[0], result.scores[0]) if i >= 0]
            segments = self.index.segments([i for i, _ in valid])
            ranked = [(segments[i], score) for i, score in valid if i in segments]  # catalog rows only
            if not per_file:
                return [_hit(rank, segment, score, ((segment, score),)) for rank, (segment, score)
                        in enumerate(ranked[:k], 1)]
            groups = group_by_file([segment.file_id for segment, _ in ranked], k)
            # Fewer windows than asked for means FAISS has no more to give (an IVF's probed lists included).
            fetch = None if len(valid) < fetch else next_fetch(k, fetch, len(groups), available)
        return [_hit(rank, *ranked[group.best], tuple(ranked[p] for p in group.positions))
                for rank, group in enumerate(groups, 1)]

    def matching_segment_ids(self, where: SearchFilter | None) -> np.ndarray | None:
        """The segment ids `where` admits (None: no filter), kept for the generation they were read in, so
        that repeated queries with one filter (a user paging, the page's searches) read them once."""
        if where is None or where.is_empty:
            return None
        key = (self.index.generation(), where)
        ids = self._matching.get(key)
        if ids is None:
            ids = self.index.catalog.matching_segment_ids(where)
            if len(self._matching) >= 8:
                self._matching.pop(next(iter(self._matching)))
            self._matching[key] = ids
        return ids
    def file_windows(self) -> list["FileWindows"]:
        """Every indexed file's window vectors in time order, ids as in the segment store."""
        from search.duplicates import FileWindows

        for attempt in range(3):
            # A build may commit between reading the catalog and the vectors: read both again then.
            store = self.stores()["segments"]
            try:
                return [
                    FileWindows(f.file_id, f.path, f.duration, np.asarray(f.starts, dtype=np.float64),
                                store.reconstruct(f.segment_ids), np.asarray(f.segment_ids, dtype=np.int64))
                    for f in self.index.catalog.files_segments()
                ]
            except RuntimeError as e:
                if attempt == 2:
                    raise IndexCorruptError(f"{self.index.path}: catalog segments without vectors "
                                            f"(run `indexer verify`)") from e
        return []

    def window_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, segment ids) of the k nearest windows of each query vector (duplicates.WindowSearch)."""
        result = self.stores()["segments"].search(queries, k)
        return result.scores, result.ids

    def duplicates(self, threshold: float | None = None, min_match: float | None = None,
                   check: bool = True) -> list["DuplicateGroup"]:
        """Groups of indexed files that are the same recording (see search/duplicates.py), largest first.

        `threshold`: the aligned window similarity a candidate pair needs; `min_match`: the correlation
        of the pair's spectral prints that confirms it (defaults: duplicates.DEFAULT_THRESHOLD and
        DEFAULT_MIN_MATCH). `check=False` trusts the window vectors alone (no file is read).
        """
        from search.duplicates import DEFAULT_MIN_MATCH, DEFAULT_THRESHOLD, find_duplicates
        from search.fingerprint import spectral_print

        threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        min_match = DEFAULT_MIN_MATCH if min_match is None else min_match
        for name, value in (("threshold", threshold), ("min_match", min_match)):
            if not -1.0 <= value <= 1.0:
                raise QueryError(f"{name} {value} is not a similarity between -1 and 1")
        cache: dict[int, object] = {}

        def prints(f):  # type: ignore[no-untyped-def]
            if f.file_id not in cache:
                try:
                    cache[f.file_id] = spectral_print(f.path)
                except (AudioDecodeError, OSError):
                    cache[f.file_id] = None  # changed or gone since it was indexed: no evidence either way
            return cache[f.file_id]

        return find_duplicates(self.file_windows(), self.provenance.hop_seconds, threshold, search=self.window_search,
                               prints=prints if check else None, min_match=min_match)

    def close(self) -> None:
        self.index.close()


def _hit(rank: int, segment: SegmentRecord, score: float, windows: tuple[tuple[SegmentRecord, float], ...]) -> Hit:
    return Hit(rank, segment.path, round(segment.start, 3), round(segment.end, 3), score, segment.id, segment.file_id,
               tuple(Window(round(w.start, 3), round(w.end, 3), s, w.id) for w, s in windows), segment.root)

