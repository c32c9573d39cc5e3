"""Proof that the paraphrase queries' key words appear in no text the starter trainer can embed.

    python bench/paraphrase_proof.py

Collects every text of `indexer.training.train.training_texts` for the default training config (the
rendered corpora's captions, every prompt of every label, scene phrases, the real recordings' captions;
the corpora are rendered into the cache if missing) and checks `indexer/starter/paraphrase_queries.json`
and the confirmation set `paraphrase_queries_confirm.json` against them
(indexer.starter.paraphrases.check_paraphrases: no key word shares a stem with a training word, and every
other word of a query is a function word). Exits 1 listing every clash otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

from indexer.starter.paraphrases import (
    CONFIRMATION_QUERIES_PATH,
    PARAPHRASE_QUERIES_PATH,
    ParaphraseLeakError,
    check_paraphrases,
    paraphrase_queries,
)
from indexer.training.train import TrainConfig, training_texts


def main() -> int:
    texts = training_texts(TrainConfig(out_path=Path("unused.safetensors")))
    status = 0
    for path in (PARAPHRASE_QUERIES_PATH, CONFIRMATION_QUERIES_PATH):
        queries = paraphrase_queries(path)
        try:
            counts = check_paraphrases(queries, texts)
        except ParaphraseLeakError as e:
            print(f"{path.name}: {e}", file=sys.stderr)
            status = 1
            continue
        print(
            f"{path.name}: {counts['queries']} paraphrase queries over {len({q.label for q in queries})} classes, "
            f"{counts['key_words']} key words: none shares a stem with any of the {counts['words']} word stems "
            f"of the {counts['texts']} texts the trainer can embed"
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
