"""What a query loads: the starter encoder and a text query import nothing of the trainer's package."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from indexer.starter import StarterEncoder
from indexer.starter.prompts import recorded_label_captions
encoder = StarterEncoder()
vectors = encoder.embed_text(["a dog barking", "church organ in a cathedral"])
captions = recorded_label_captions("a dog barking")
print(json.dumps({
    "shape": list(vectors.shape),
    "captions": captions[:1],
    "loaded": sorted(m for m in sys.modules if m == "indexer.training" or m.startswith("indexer.training.")),
}))
"""


def test_text_query_never_imports_the_training_package() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, check=True
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["shape"] == [2, 256]
    assert report["captions"] == ["a dog barking"]  # recordings' captions without the recordings' tables
    assert report["loaded"] == []
