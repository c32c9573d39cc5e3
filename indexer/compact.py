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

# How the provenance records a type the user named (indexer/build.py `_apply_index_type` writes it too).
GIVEN = "given as --index-type "


@dataclass(frozen=True)
class CompactReport:
    before: str
    after: str
    vectors: int
    search_params: dict[str, float]


def compact_index(index_path: str | Path, index_type: str | None = None, target_recall: float = 0.95,
                  db_url: str | None = None, max_memory: int | None = None) -> CompactReport:
    """Rebuild the segment store as `index_type` ("auto": by size, flat allowed again) and retune it.

    None (the default) keeps what the index was given: the type named at build or import time, else auto
    within the memory budget it was given (`max_memory` None: that budget, else the default)."""
    index = Index(index_path, db_url=db_url)
    try:
        with index.writer_lock():
            stores = index.load_stores()
            before = stores["segments"].factory
            stored = dict((index.provenance().search_params or {}) if index.provenance() else {})
            if max_memory is None and stored.get("max_memory") is not None:
                max_memory = int(stored["max_memory"])
            given = str(stored.get("chosen_because", ""))
            if index_type is None:
                index_type = given.removeprefix(GIVEN) if given.startswith(GIVEN) else "auto"
            check_index_type(index_type, stores["segments"].dim)
            chosen: dict = {} if max_memory is None else {"max_memory": max_memory}
            if index_type == "auto":
                choice = choose_index(stores["segments"].ntotal, stores["segments"].dim, max_memory)
                target = choice.factory
                chosen["chosen_because"] = choice.reason
            else:
                target = index_type
                chosen["chosen_because"] = GIVEN + target
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
