"""Proof that the paraphrase queries' key words appear in no text the starter trainer can embed.

    python bench/paraphrase_proof.py

Collects every text of `indexer.starter.train.training_texts` for the default training config (the
rendered corpora's captions, every prompt of every label, scene phrases, the real recordings' captions;
the corpora are rendered into the cache if missing) and checks `indexer/starter/paraphrase_queries.json`
against them (indexer.starter.paraphrases.check_paraphrases: no key word shares a stem with a training
word, and every other word of a query is a function word). Exits 1 listing every clash otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

from indexer.starter.paraphrases import ParaphraseLeakError, check_paraphrases, paraphrase_queries
from indexer.starter.train import TrainConfig, training_texts


def main() -> int:
    texts = training_texts(TrainConfig(out_path=Path("unused.safetensors")))
    queries = paraphrase_queries()
    try:
        counts = check_paraphrases(queries, texts)
    except ParaphraseLeakError as e:
        print(e, file=sys.stderr)
        return 1
    print(
        f"{counts['queries']} paraphrase queries over {len({q.label for q in queries})} classes, "
        f"{counts['key_words']} key words: none shares a stem with any of the {counts['words']} word stems "
        f"of the {counts['texts']} texts the trainer can embed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
