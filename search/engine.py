"""The search engine: an index, its catalog and its encoder, loaded once and kept warm.

The CLI, the HTTP service and Python users all go through `Engine`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
import numpy as np

from indexer.embed import embed_file
from indexer.encoders import Encoder, load_encoder, resolve_model
from indexer.errors import AudioDecodeError, IndexCorruptError, QueryError
from indexer.index import Index, Provenance, check_encoder, check_model
from indexer.store import VectorStore

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
    """Answers text and audio queries against one index."""

    def __init__(self, index_path: str | Path, model: str | None = None, device: str = "cpu", db_url: str | None = None):
        self.index = Index(index_path, db_url=db_url)
        provenance = self.index.provenance()
        if provenance is None:
            raise IndexCorruptError(f"{self.index.path}: the index has no provenance (its first build never finished)")
        self.provenance: Provenance = provenance
        model_name = model or self._stored_model_name()
        ref = resolve_model(model_name)
        # Refuse a different model before paying for loading it.
        check_model(self.index.path, provenance, ref.model_id, ref.sha256())
        self.encoder: Encoder = load_encoder(model_name, device=device)
        check_encoder(self.index.path, provenance, self.encoder.info)
        self._generation = -1
        self._stores: dict[str, VectorStore] = {}

    def _stored_model_name(self) -> str:
        """The name to load the index's own model by: registry name, else the checkpoint path."""
        from indexer.encoders import MODELS

        if self.provenance.model_id in MODELS:
            return self.provenance.model_id
        return self.provenance.checkpoint

    def stores(self) -> dict[str, VectorStore]:
        """The FAISS stores of the current generation, reloaded when a build has committed a newer one."""
        generation = self.index.generation()
        if generation != self._generation:
            self._stores = self.index.load_stores()
            self._generation = generation
        return self._stores

    # -- queries ----------------------------------------------------------------------------------
    def query(self, text: str, k: int = 10) -> list[Hit]:
        """Segments that best match a text description."""
        text = (text or "").strip()
        if not text:
            raise QueryError("empty query text")
        if len(text) > MAX_QUERY_CHARS:
            raise QueryError(f"query text of {len(text)} characters exceeds {MAX_QUERY_CHARS}")
        return self.search_vector(self.encoder.embed_text([text])[0], k)

    def similar(self, path: str | Path, k: int = 10) -> list[Hit]:
        """Segments that sound most like an audio file (its windows' mean vector)."""
        return self.search_vector(self.embed_file(path), k)

    def embed_file(self, path: str | Path) -> np.ndarray:
        """The file-level vector of an audio file: the normalised mean of its window vectors."""
        path = Path(path)
        if not path.is_file():
            raise QueryError(f"{path}: file not found")
        try:
            return embed_file(self.encoder, path, self.provenance.hop_seconds).file_vector
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

