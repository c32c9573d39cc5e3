"""The corpus's index files: metadata.csv, captions.jsonl and corpus.json (its settings)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from indexer.demo.plan import DemoClip

METADATA_FILE = "metadata.csv"
CAPTIONS_FILE = "captions.jsonl"
PROVENANCE_FILE = "corpus.json"
METADATA_COLUMNS = tuple(f.name for f in fields(DemoClip) if f.name != "captions")


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_metadata(out_dir: Path, clips: Sequence[DemoClip], provenance: dict) -> None:
    """Write the index files of `clips` into `out_dir`, each atomically."""
    rows = [{name: getattr(clip, name) for name in METADATA_COLUMNS} for clip in clips]
    temporary = out_dir / (METADATA_FILE + ".tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=METADATA_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, out_dir / METADATA_FILE)
    _write_text(
        out_dir / CAPTIONS_FILE,
        "".join(
            json.dumps(
                {
                    "path": c.path,
                    "clip_id": c.clip_id,
                    "label": c.label,
                    "scene": c.scene,
                    "caption": c.caption,
                    "captions": list(c.captions),
                },
                ensure_ascii=False,
            )
            + "\n"
            for c in clips
        ),
    )
    _write_text(out_dir / PROVENANCE_FILE, json.dumps(provenance, indent=2) + "\n")


def read_demo_corpus(out_dir: Path) -> list[DemoClip]:
    """Read back the clips of a generated corpus from its metadata.csv and captions.jsonl."""
    out_dir = Path(out_dir)
    captions = {}
    with open(out_dir / CAPTIONS_FILE, encoding="utf-8") as file:
        for line in file:
            record = json.loads(line)
            captions[record["path"]] = tuple(record["captions"])
    with open(out_dir / METADATA_FILE, newline="", encoding="utf-8") as file:
        return [DemoClip(**row, captions=captions[row["path"]]) for row in csv.DictReader(file)]
