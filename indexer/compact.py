"""`indexer compact`: rewrite the segment index after many updates, retrained and retuned.

IVF lists trained on the first vectors drift as the corpus changes, and removals leave lists unbalanced;
compaction trains a fresh index of the chosen type on a sample of the current vectors, refills it, and
tunes its search parameters again, as a new generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from indexer.build import check_index_type
from indexer.index import Index
from indexer.store import choose_index
from indexer.tuning import tune_search_params


@dataclass(frozen=True)
class CompactReport:
    before: str
    after: str
    vectors: int
    search_params: dict[str, float]


def compact_index(index_path: str | Path, index_type: str = "auto", target_recall: float = 0.95,
                  db_url: str | None = None, max_memory: int | None = None) -> CompactReport:
    """Rebuild the segment store as `index_type` ("auto": by size, flat allowed again) and retune it."""
    index = Index(index_path, db_url=db_url)
    try:
        with index.writer_lock():
            stores = index.load_stores()
            before = stores["segments"].factory
            check_index_type(index_type, stores["segments"].dim)
            chosen = {}
            if index_type == "auto":
                choice = choose_index(stores["segments"].ntotal, stores["segments"].dim, max_memory)
                target, chosen = choice.factory, {"chosen_because": choice.reason}
            else:
                target = index_type
            stores["segments"] = stores["segments"].converted(target)
            tuning = tune_search_params(stores["segments"], target_recall)
            params = {**tuning.params, "recall_at_10": round(tuning.recall_at_10, 4), "target_recall": target_recall,
                      "vectors": stores["segments"].ntotal, **chosen}
            with index.catalog.writer() as writer:
                writer.update_info(faiss_factory=target, search_params=params)
                index.commit_generation(stores, writer)
            return CompactReport(before, target, stores["segments"].ntotal, params)
    finally:
        index.close()


__all__ = ["CompactReport", "compact_index"]
