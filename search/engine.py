"""The search engine: an index, its catalog and its encoder, loaded once and kept warm.

The CLI, the HTTP service and Python users all go through `Engine`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
import numpy as np

from indexer.device import Placement, resolve_device
from indexer.embed import embed_file
from indexer.encoders import Encoder, EncoderSpec
from indexer.encoders.precision import autocast, unit_rows
from indexer.errors import AudioDecodeError, IndexCorruptError, QueryError
from indexer.hubness import load_correction
from indexer.index import Index, Provenance, check_encoder, check_model
from indexer.store import VectorStore, faiss_gpu

MAX_QUERY_CHARS = 2000


@dataclass(frozen=True)
class Hit:
    """One search result: a segment of a file, best first by `rank` (1-based)."""

    rank: int
    path: str
    start: float
    end: float
    score: float
    segment_id: int
    file_id: int

    def to_json(self) -> dict[str, object]:
        """The public JSON form of a hit."""
        d = asdict(self)
        return {key: d[key] for key in ("rank", "path", "start", "end", "score")}


class Engine:
    """Answers text and audio queries against one index.

    `device` (cpu, cuda, cuda:N or auto) places the query encoder and the FAISS search (see
    indexer/device.py); `notes` says what fell back to CPU. `precision` as in indexer.embed.embed_inputs.
    Text queries are centred by the index's hubness correction (indexer/hubness.py) when it has one;
    `hubness_correction=False` searches with the raw query vector.
    """

    def __init__(self, index_path: str | Path, model: str | None = None, device: str = "auto", db_url: str | None = None,
                 precision: str = "auto", hubness_correction: bool = True):
        self.index = Index(index_path, db_url=db_url)
        provenance = self.index.provenance()
        if provenance is None:
            raise IndexCorruptError(f"{self.index.path}: the index has no provenance (its first build never finished)")
        self.provenance: Provenance = provenance
        spec = EncoderSpec.from_provenance(provenance.family, provenance.model_id, provenance.checkpoint,
                                           provenance.preprocessing)
        if model is not None:
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

    @property
    def notes(self) -> list[str]:
        """One line each on what runs on CPU although a GPU was asked for (or found by auto)."""
        notes = list(self.placement.notes)
        segments = self._stores.get("segments")
        if segments is not None and segments.gpu_note:
            notes.append(segments.gpu_note)
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
    def query(self, text: str, k: int = 10, modality: str | None = None) -> list[Hit]:
        """Segments that best match a text description (`modality`: audio, visual or av; default all)."""
        text = (text or "").strip()
        if not text:
            raise QueryError("empty query text")
        if len(text) > MAX_QUERY_CHARS:
            raise QueryError(f"query text of {len(text)} characters exceeds {MAX_QUERY_CHARS}")
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
        return self.search_vector(vector, k)

    def similar(self, path: str | Path, k: int = 10, modality: str | None = None) -> list[Hit]:
        """Segments that sound (and look) most like a media file (its windows' mean vector)."""
        modality = modality or self.modalities[-1]
        self._check_modality(modality)
        vector = self.embed_file(path)
        if hasattr(self.encoder, "restrict"):
            vector = self.encoder.restrict(vector, modality)  # type: ignore[attr-defined]
        return self.search_vector(vector, k)

    def embed_file(self, path: str | Path) -> np.ndarray:
        """The file-level vector of an audio file: the normalised mean of its window vectors."""
        path = Path(path)
        if not path.is_file():
            raise QueryError(f"{path}: file not found")
        try:
            return embed_file(self.encoder, path, self.provenance.hop_seconds, precision=self.precision).file_vector
        except AudioDecodeError as e:
            raise QueryError(str(e)) from e

    def search_vector(self, vector: np.ndarray, k: int = 10) -> list[Hit]:
        """Hits for a query vector in the index's space."""
        if k < 1:
            raise QueryError("k must be at least 1")
        result = self.stores()["segments"].search(vector[None, :], k)
        ids = [int(i) for i in result.ids[0] if i >= 0]
        segments = self.index.catalog.segments(ids)
        hits = []
        for score, segment_id in zip(result.scores[0], result.ids[0]):
            segment = segments.get(int(segment_id))
            if segment is None:
                continue  # -1 (fewer vectors than k)
            hits.append(
                Hit(len(hits) + 1, segment.path, round(segment.start, 3), round(segment.end, 3), float(score), segment.id, segment.file_id)
            )
        return hits

    def close(self) -> None:
        self.index.close()

