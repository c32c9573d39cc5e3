"""The search engine: an index, its catalog and its encoder, loaded once and kept warm.

The CLI, the HTTP service and Python users all go through `Engine`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
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
from indexer.text import printable, written_in_another_script
from search.grouping import group_by_file, next_fetch
from search.validation import MAX_QUERY_CHARS, query_text  # noqa: F401 (MAX_QUERY_CHARS: re-exported)

# Every text tower resound ships or registers (MiniLM for the starters, RoBERTa for LAION-CLAP) learned
# English: a query in another script is answered (never refused), but by meaning only loosely.
NO_LATIN_NOTE = ("the query has no Latin letters: the model's text side was trained on English, so the "
                 "sound ranking may be unrelated (file names and tags still match its words in hybrid mode)")


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
    is the corpus root the file was indexed under; `tags` the file's tags (title ... description, notes:
    indexer/media/tags.py).
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
    tags: dict[str, str] = field(default_factory=dict, compare=False)
    matched: tuple[str, ...] = ()  # query words (as the tokenizer made them) the file's name, folders or tags hold
    keyword_score: float | None = None  # BM25 of those words (keyword and hybrid searches)
    fused_score: float | None = None  # reciprocal rank fusion score (hybrid searches)

    @property
    def relative_path(self) -> str:
        """The file's path relative to its corpus root."""
        prefix = self.root.rstrip("/") + "/"
        return self.path[len(prefix):] if self.root and self.path.startswith(prefix) else self.path

    def to_json(self) -> dict[str, object]:
        """The public JSON form of a hit (docs/usage.md)."""
        d = asdict(self)
        return {key: d[key] for key in ("rank", "path", "start", "end", "score")} | {
            "windows": [w.to_json() for w in self.windows], "tags": dict(self.tags),
            "matched_words": list(self.matched), "keyword_score": self.keyword_score, "fused_score": self.fused_score}


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
        self.answer_notes: list[str] = []  # what the last search's caller should be told about its answer

    @property
    def notes(self) -> list[str]:
        """One line each on what runs on CPU although a GPU was asked for (or found by auto), and on the
        last query's answer (`answer_notes`: an empty answer explained, the query file left out)."""
        notes = list(self.placement.notes) + self.answer_notes
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
              per_file: bool = True, mode: str = "vector") -> list[Hit]:
        """Files (their best segments) that best match a text description (`modality`: audio, visual or
        av; default all), among the segments `where` admits. `per_file=False` ranks segments instead,
        several of a file possibly.

        `mode`: "vector" ranks by the sound alone; "keyword" by the words of file names, folders and tags
        (BM25, db/fulltext.py); "hybrid" fuses both rankings (search/hybrid.py). Hits of the last two say
        which words matched; `score` is the best window's cosine in every mode. Windows are ranked by
        vector in every mode (words describe files, not windows).
        """
        from search.hybrid import MODES

        if mode not in MODES:
            raise QueryError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
        text = query_text(text)
        modality = modality or self.modalities[-1]
        self._check_modality(modality)
        self.answer_notes = []
        if mode != "keyword" and written_in_another_script(text):
            self.answer_notes.append(NO_LATIN_NOTE)
        with autocast(self.encoder, self.precision) as reduced:
            if hasattr(self.encoder, "restrict"):
                vectors = self.encoder.embed_text([text], modality=modality)  # type: ignore[call-arg]
            else:
                vectors = self.encoder.embed_text([text])
        vector = unit_rows(self.encoder, vectors, reduced)[0]
        if self.hubness is not None:
            vector = self.hubness.apply(vector)
        if mode == "vector":
            return self.search_vector(vector, k, where, per_file)
        return self._worded(text, vector, k, where, per_file, mode)

    def _worded(self, text: str, vector: np.ndarray, k: int, where: SearchFilter | None, per_file: bool,
                mode: str) -> list[Hit]:
        """Keyword or hybrid hits (see query())."""
        from db.fulltext import fuse, query_terms, rank_keywords
        from search.hybrid import FUSION_DEPTH, RRF_K, keyword_rows

        admitted = self.matching_segment_ids(where)
        if admitted is not None and not len(admitted):
            self.answer_notes.append(self.empty_answer_note(where))  # type: ignore[arg-type]
            return []
        among = None
        if admitted is not None:
            among = set(self.index.catalog.matching_file_ids(where).tolist())  # type: ignore[arg-type]
        words = rank_keywords(keyword_rows(self.index), query_terms(text), among)
        by_file = {w.file_id: w for w in words}
        if not per_file:  # windows by vector; the words of their files beside them
            return [dataclasses.replace(h, matched=by_file[h.file_id].matched if h.file_id in by_file else (),
                                        keyword_score=by_file[h.file_id].score if h.file_id in by_file else None)
                    for h in self.search_vector(vector, k, where, per_file=False)]
        if mode == "keyword":
            chosen = [(w.file_id, None) for w in words[:k]]
            sounded: dict[int, Hit] = {}
        else:
            depth = max(FUSION_DEPTH, k)
            sounded = {h.file_id: h for h in self.search_vector(vector, depth, where, per_file=True)}
            chosen = [(file_id, fused) for file_id, fused in
                      fuse([list(sounded), [w.file_id for w in words[:depth]]], RRF_K,
                           scores=[None, [w.score for w in words[:depth]]])[:k]]
        missing = [file_id for file_id, _ in chosen if file_id not in sounded]
        found = {h.file_id: h for h in self._window_hits(vector, [(f, 0.0) for f in missing], admitted,
                                                         window_score=True)}
        hits = []
        for file_id, fused in chosen:
            hit = sounded.get(file_id) or found.get(file_id)
            if hit is None:
                continue  # a file being removed right now: no windows left
            word = by_file.get(file_id)
            hits.append(dataclasses.replace(hit, rank=len(hits) + 1, matched=word.matched if word else (),
                                            keyword_score=word.score if word else None, fused_score=fused))
        # A hit lists its other windows that score at least as high as the weakest hit, as vector searches do
        # (the fusion's deeper vector list may have fetched more).
        floor = min((h.score for h in hits), default=0.0)
        hits = [dataclasses.replace(h, windows=h.windows[:1] + tuple(w for w in h.windows[1:] if w.score >= floor))
                for h in hits]
        return self.tagged(hits)

    def similar(self, path: str | Path, k: int = 10, modality: str | None = None,
                where: SearchFilter | None = None, limits: DecodeLimits = NO_LIMITS, per_file: bool = True,
                exclude_self: bool = False) -> list[Hit]:
        """Files that sound (and look) most like a media file, among the segments `where` admits.

        Files are ranked by their file vectors against the query file's (search/more_like_this.py): a hit's
        `score` is that cosine, its windows the file's windows that best match the query vector. A query
        file that is in the index (same content hash or path) comes first with its exact score, or with
        `exclude_self` is left out (a note says so). `per_file=False` ranks windows against the query
        file's vector, as query() does.

        Decoding stops at `limits` (MediaTooLongError), whatever the file's header claims.
        """
        from search.more_like_this import indexed_copies

        modality = modality or self.modalities[-1]
        self._check_modality(modality)
        self.answer_notes = []
        if not Path(path).exists():
            raise QueryError(f"{path}: file not found")
        copies = indexed_copies(self.index.catalog, path)
        itself = copies[0] if copies else None
        stores = self.stores()
        vector = None
        if itself is not None:
            try:
                vector = stores["files"].reconstruct([itself.file_id])[0]
            except RuntimeError:  # cataloged but not in the loaded generation: embed it as any file
                itself = None
        if vector is None:
            vector = self.embed_file(path, limits)
        if hasattr(self.encoder, "restrict"):
            vector = self.encoder.restrict(vector, modality)  # type: ignore[attr-defined]
        if not per_file:
            if exclude_self and itself is not None:
                # At most every window of the copies ranks above the k-th other window.
                from search.hybrid import keyword_rows
                from search.more_like_this import segments_of_files

                own = sum(len(ids) for ids in segments_of_files(keyword_rows(self.index),
                                                                [c.file_id for c in copies]).values())
                left = [h for h in self.search_vector(vector, k + own, where, per_file=False)
                        if h.file_id not in {c.file_id for c in copies}][:k]
                hits = [dataclasses.replace(h, rank=rank) for rank, h in enumerate(left, 1)]
            else:
                hits = self.search_vector(vector, k, where, per_file=False)
        else:
            leave_out = frozenset(c.file_id for c in copies) if exclude_self else frozenset()
            hits = self._similar_files(vector, k, where, None if itself is None else itself.file_id, leave_out)
        if exclude_self and itself is not None:
            # Names as UTF-8 text (odd bytes as \xNN): notes also go out as JSON from the API.
            self.answer_notes.append(f"left out {printable(str(path))} itself (indexed as {printable(itself.path)})"
                                     + (f" and {len(copies) - 1} identical cop{'ies' if len(copies) > 2 else 'y'}"
                                        if len(copies) > 1 else ""))
        return hits

    def _similar_files(self, vector: np.ndarray, k: int, where: SearchFilter | None, first: int | None,
                       leave_out: frozenset[int]) -> list[Hit]:
        """Files ranked by file vector (search/more_like_this.py), each with its best-matching windows."""
        from search.more_like_this import rank_files

        admitted = self.matching_segment_ids(where)
        if admitted is not None and not len(admitted):
            self.answer_notes.append(self.empty_answer_note(where))  # type: ignore[arg-type]
            return []
        among = None if admitted is None else self.index.catalog.matching_file_ids(where)  # type: ignore[arg-type]
        ranked = rank_files(self.stores()["files"], vector, k, among, first, leave_out)
        return self.tagged(self._window_hits(vector, ranked, admitted))

    def _window_hits(self, vector: np.ndarray, ranked: list[tuple[int, float]], admitted: np.ndarray | None,
                     window_score: bool = False) -> list[Hit]:
        """Hits for files already ranked, (file id, score) best first, each with its windows (among the
        `admitted` segments) that best match `vector`: the best, and the others at least as high as the
        last file's score. `window_score`: the hit's score is its best window's cosine, not the file's."""
        if not ranked:
            return []
        from search.hybrid import keyword_rows
        from search.more_like_this import segments_of_files

        stores = self.stores()
        windows_of = segments_of_files(keyword_rows(self.index), [file_id for file_id, _ in ranked])
        floor = ranked[-1][1]
        chosen: list[tuple[int, float, list[tuple[int, float]]]] = []
        for file_id, score in ranked:
            ids = windows_of.get(file_id, [])
            if admitted is not None:
                ids = [i for i in ids if _holds(admitted, i)]
            if not ids:
                continue  # no vector-holding window left (a build removing it right now)
            try:
                scores = stores["segments"].reconstruct(ids) @ vector
            except RuntimeError:
                continue
            order = np.argsort(-scores, kind="stable")
            best = [(ids[o], float(scores[o])) for o in order]
            if window_score:
                chosen.append((file_id, best[0][1], best[:1]))
                continue
            # The best window, then the others that score at least as high as the last file does.
            chosen.append((file_id, score, best[:1] + [w for w in best[1:] if w[1] >= floor]))
        records = self.index.segments([i for _, _, windows in chosen for i, _ in windows])
        hits = []
        for file_id, score, windows in chosen:
            found = [(records[i], s) for i, s in windows if i in records]
            if found:
                hits.append(_hit(len(hits) + 1, found[0][0], score, tuple(found)))
        return hits

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
            self.answer_notes.append(self.empty_answer_note(where))  # type: ignore[arg-type]
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
                return self.tagged([_hit(rank, segment, score, ((segment, score),)) for rank, (segment, score)
                                    in enumerate(ranked[:k], 1)])
            groups = group_by_file([segment.file_id for segment, _ in ranked], k)
            # Fewer windows than asked for means FAISS has no more to give (an IVF's probed lists included).
            fetch = None if len(valid) < fetch else next_fetch(k, fetch, len(groups), available)
        return self.tagged([_hit(rank, *ranked[group.best], tuple(ranked[p] for p in group.positions))
                            for rank, group in enumerate(groups, 1)])

    def tagged(self, hits: list[Hit]) -> list[Hit]:
        """`hits` with their files' tags (one catalog read for all)."""
        tags = self.index.file_tags(sorted({h.file_id for h in hits})) if hits else {}
        return [dataclasses.replace(h, tags=tags.get(h.file_id, {})) for h in hits]

    def empty_answer_note(self, where: SearchFilter) -> str:
        """Why a filtered search has no answer: which conditions admit no indexed file, and how many files
        each condition admits on its own (whatever the query)."""
        from sqlalchemy import select

        from db.filters import count_files
        from db.schema import CorpusRow

        with self.index.catalog.engine.connect() as connection:
            corpora = {corpus_id: root for corpus_id, root in connection.execute(select(CorpusRow.id, CorpusRow.root))}
            total = count_files(connection, SearchFilter(), corpora)
            counts = [(label, count_files(connection, alone, corpora)) for label, alone in where.conditions()]
        roots = ", ".join(sorted(corpora.values()))
        empty = [label for label, n in counts if n == 0]
        told = [f"{label} admits {n}" if n else f"{label} admits none" for label, n in counts]
        if where.under_relative is not None and any(label.startswith("under") for label in empty):
            told = [t + f" (no such folder here, nor in the corpus root{'s' if len(corpora) > 1 else ''} {roots})"
                    if t.startswith("under") else t for t in told]
        if not empty:
            return f"no results: each filter admits files, but no indexed file passes them all ({'; '.join(told)}; " \
                   f"{total} files indexed)"
        return f"no results: {', '.join(empty)} admit{'s' if len(empty) == 1 else ''} no indexed file " \
               f"({'; '.join(told)}; {total} files indexed)"

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
    def file_windows(self) -> list[FileWindows]:  # noqa: F821
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
                   check: bool = True) -> list[DuplicateGroup]:  # noqa: F821
        """Groups of indexed files that are the same recording (see search/duplicates.py), largest first.

        `threshold`: the aligned window similarity that makes a pair a candidate (candidates also come from
        shared landmark hashes); members are confirmed against their group's reference by landmark
        fingerprints, or by the spectral envelope's match of at least `min_match` where the landmarks agree
        (duplicates.verified_groups; defaults: duplicates.DEFAULT_THRESHOLD and DEFAULT_MIN_MATCH).
        `check=False` trusts the window vectors alone (no file is read). Files with the same content hash
        are grouped at offset 0 without a check; candidate pairs left unchecked because a file is too short
        are counted in the result's `too_short`, and said in `notes`.
        """
        from search.duplicates import (
            DEFAULT_MIN_MATCH,
            DEFAULT_THRESHOLD,
            duplicate_pairs,
            find_duplicates,
            landmark_candidates,
            verified_groups,
        )
        from search.fingerprint import spectral_print
        from search.landmarks import landmarks

        self.answer_notes = []
        threshold = DEFAULT_THRESHOLD if threshold is None else threshold
        min_match = DEFAULT_MIN_MATCH if min_match is None else min_match
        for name, value in (("threshold", threshold), ("min_match", min_match)):
            if not -1.0 <= value <= 1.0:
                raise QueryError(f"{name} {value} is not a similarity between -1 and 1")
        files = self.file_windows()
        hop = self.provenance.hop_seconds
        if not check:
            return find_duplicates(files, hop, threshold, search=self.window_search)
        prints = {}
        for f in files:
            try:
                prints[f.file_id] = landmarks(f.path)
            except (AudioDecodeError, OSError):
                prints[f.file_id] = None  # changed or gone since it was indexed: no evidence either way
        cache: dict[int, object] = {}

        def envelope(f):  # type: ignore[no-untyped-def]
            if f.file_id not in cache:
                try:
                    cache[f.file_id] = spectral_print(f.path)
                except (AudioDecodeError, OSError):
                    cache[f.file_id] = None
            return cache[f.file_id]

        candidates = {(p.a, p.b) for p in duplicate_pairs(files, hop, threshold, search=self.window_search)}
        candidates |= landmark_candidates({i: p for i, p in prints.items() if p is not None})
        # Byte-identical files (as Engine.similar finds a query file's copies) are one recording at any length.
        from sqlalchemy import select

        from db.schema import FileRow

        with self.index.catalog.session() as s:
            content = {int(i): h for i, h in s.execute(select(FileRow.id, FileRow.content_hash))}
        same: dict[str, list[int]] = {}
        for f in files:
            if content.get(f.file_id):
                same.setdefault(content[f.file_id], []).append(f.file_id)
        candidates |= {(ids[0], other) for ids in same.values() for other in ids[1:]}
        groups = verified_groups(files, candidates, prints, hop, spectral=envelope, min_match=min_match,
                                 content=content)
        self.answer_notes = [note] if (note := groups.note()) else []
        return groups

    def close(self) -> None:
        self.index.close()


def _holds(sorted_ids: np.ndarray, i: int) -> bool:
    at = int(np.searchsorted(sorted_ids, i))
    return at < len(sorted_ids) and int(sorted_ids[at]) == i


def _hit(rank: int, segment: SegmentRecord, score: float, windows: tuple[tuple[SegmentRecord, float], ...]) -> Hit:
    return Hit(rank, segment.path, round(segment.start, 3), round(segment.end, 3), score, segment.id, segment.file_id,
               tuple(Window(round(w.start, 3), round(w.end, 3), s, w.id) for w, s in windows), segment.root)

