"""GZSL inputs from resound's own data: file vectors exported from an (audio-visual) index, and class
embeddings from the CLIP and CLAP text towers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from indexer.encoders.base import Encoder
from indexer.index import Index
from indexer.text import read_text_file
from search.gzsl.data import ClassEmbeddings, FeatureSet
from search.gzsl.errors import GZSLDataError
from search.prompts import LabelSet, label_embeddings, label_prompts


def export_index_features(index_path: str | Path, labels_csv: str | Path, db_url: str | None = None) -> FeatureSet:
    """File-level vectors of the files listed in `labels_csv` (columns `path,label`; paths absolute or
    relative to a corpus root), with their labels. Files of the index not in the CSV are left out."""
    rows = [r for r in csv.DictReader(io.StringIO(read_text_file(labels_csv), newline=""))]
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise GZSLDataError(f"{labels_csv}: needs columns path,label")
    index = Index(index_path, db_url=db_url)
    try:
        store = index.load_stores()["files"]
        by_path: dict[str, int] = {}
        for root in index.catalog.corpus_roots():
            corpus_id = _corpus_id(index, root)
            for rel, record in index.catalog.corpus_files(corpus_id).items():
                by_path[rel] = record.id
                by_path[str(Path(root) / rel)] = record.id
        ids, labels, missing = [], [], []
        for row in rows:
            file_id = by_path.get(row["path"])
            if file_id is None:
                missing.append(row["path"])
                continue
            ids.append(file_id)
            labels.append(row["label"])
        if missing:
            raise GZSLDataError(f"{labels_csv}: {len(missing)} paths are not in {index_path} (e.g. {missing[0]})")
        return FeatureSet(store.reconstruct(ids).astype(np.float32), np.asarray(labels), np.asarray(ids))
    finally:
        index.close()


def _corpus_id(index: Index, root: str) -> int:
    from sqlalchemy import select

    from db.schema import CorpusRow

    with index.catalog.session() as s:
        return int(s.scalar(select(CorpusRow.id).where(CorpusRow.root == root)))


def class_embeddings(encoder: Encoder, labels: LabelSet, strategy: str = "templates", n_prompts: int = 2,
                     seed: int = 0) -> ClassEmbeddings:
    """Per class: [CLIP text, CLAP text] for audio-visual encoders (each a prompt ensemble, as ClipClap
    builds its label embeddings), or the audio model's text embedding alone."""
    prompts = label_prompts(labels, strategy, n_prompts=n_prompts, seed=seed)
    audio = getattr(encoder, "audio", encoder)
    parts = [label_embeddings(audio, prompts)]
    vision = getattr(encoder, "vision", None)
    if vision is not None:
        parts.insert(0, label_embeddings(vision, prompts))
    return ClassEmbeddings(tuple(labels.labels), np.concatenate(parts, axis=1).astype(np.float32))
