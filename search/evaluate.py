"""Benchmarks on standard data sets: caption retrieval (AudioCaps, Clotho) and classification (ESC-50,
UrbanSound8K), read from their own CSV formats."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.embed import embed_file
from indexer.encoders.base import Encoder, l2_normalize
from indexer.errors import AudioDecodeError, ResoundError
from indexer.text import read_text_file
from search import metrics
from search.classify import ZeroShotClassifier
from search.prompts import LabelSet, PromptBank

Progress = Callable[[int, int], None]


class DatasetError(ResoundError):
    """A benchmark CSV or audio folder that does not have the expected form."""


# -- caption retrieval -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CaptionSet:
    """Audio files and their captions; `caption_audio[i]` is the index of caption i's audio."""

    audio: list[Path]
    captions: list[str]
    caption_audio: list[int]
    format: str


def read_caption_csv(path: str | Path, audio_dir: str | Path) -> CaptionSet:
    """Clotho (`file_name, caption_1..caption_5`) or AudioCaps (`audiocap_id, youtube_id, start_time, caption`)."""
    path, audio_dir = Path(path), Path(audio_dir)
    rows = list(csv.DictReader(io.StringIO(read_text_file(path), newline="")))
    if not rows:
        raise DatasetError(f"{path}: no rows")
    columns = set(rows[0])
    by_stem = {p.stem: p for p in audio_dir.rglob("*") if p.is_file()}
    audio: list[Path] = []
    captions: list[str] = []
    caption_audio: list[int] = []
    index_of: dict[str, int] = {}

    def add(key: str, file: Path | None, caption: str) -> None:
        if file is None:
            raise DatasetError(f"{path}: no audio file for {key!r} in {audio_dir}")
        if key not in index_of:
            index_of[key] = len(audio)
            audio.append(file)
        captions.append(caption.strip())
        caption_audio.append(index_of[key])

    if "file_name" in columns and any(c.startswith("caption_") for c in columns):
        caption_columns = sorted(c for c in columns if c.startswith("caption_"))
        for row in rows:
            file = audio_dir / row["file_name"]
            for c in caption_columns:
                if row[c].strip():
                    add(row["file_name"], file if file.is_file() else None, row[c])
        return CaptionSet(audio, captions, caption_audio, "clotho")
    if {"youtube_id", "caption"} <= columns:
        for row in rows:
            yid = row["youtube_id"]
            file = by_stem.get(yid) or by_stem.get(f"Y{yid}") or by_stem.get(row.get("audiocap_id", ""))
            add(yid, file, row["caption"])
        return CaptionSet(audio, captions, caption_audio, "audiocaps")
    raise DatasetError(f"{path}: neither Clotho (file_name, caption_1..) nor AudioCaps (youtube_id, caption) columns")


def _embed_files(encoder: Encoder, files: list[Path], progress: Progress | None) -> np.ndarray:
    vectors = []
    for i, file in enumerate(files):
        try:
            vectors.append(embed_file(encoder, file).file_vector)
        except AudioDecodeError as e:
            raise DatasetError(str(e)) from e
        if progress:
            progress(i + 1, len(files))
    return np.stack(vectors)


def evaluate_retrieval(encoder: Encoder, captions: CaptionSet, progress: Progress | None = None) -> dict[str, float]:
    """Text-to-audio and audio-to-text R@1/5/10, mAP@10 and ranks (see search.metrics)."""
    audio = _embed_files(encoder, captions.audio, progress)
    text = l2_normalize(encoder.embed_text(captions.captions))
    similarity = text @ audio.T
    result = {"audio": len(captions.audio), "captions": len(captions.captions)}
    result.update(metrics.text_to_audio(similarity, captions.caption_audio).as_dict("text_to_audio"))
    result.update(metrics.audio_to_text(similarity.T, captions.caption_audio).as_dict("audio_to_text"))
    return result


# -- classification --------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelledAudio:
    path: Path
    target: int
    fold: int


@dataclass(frozen=True)
class ClassificationSet:
    items: list[LabelledAudio]
    label_set: LabelSet
    format: str


def read_classification_meta(path: str | Path, audio_dir: str | Path, folds: set[int] | None = None) -> ClassificationSet:
    """ESC-50 (`filename, fold, target, category`) or UrbanSound8K (`slice_file_name, fold, classID, class`)
    metadata; classes are ordered by their numeric id, so label i is the data set's class i."""
    path, audio_dir = Path(path), Path(audio_dir)
    rows = list(csv.DictReader(io.StringIO(read_text_file(path), newline="")))
    columns = set(rows[0]) if rows else set()
    if {"filename", "fold", "target", "category"} <= columns:
        fmt, name_col, target_col, class_col = "esc50", "filename", "target", "category"
        locate = lambda row: audio_dir / row["filename"]  # noqa: E731
    elif {"slice_file_name", "fold", "classID", "class"} <= columns:
        fmt, name_col, target_col, class_col = "urbansound8k", "slice_file_name", "classID", "class"
        locate = lambda row: audio_dir / f"fold{row['fold']}" / row["slice_file_name"]  # noqa: E731
    else:
        raise DatasetError(f"{path}: neither ESC-50 nor UrbanSound8K metadata columns")
    names: dict[int, str] = {}
    items = []
    for row in rows:
        target, fold = int(row[target_col]), int(row["fold"])
        names.setdefault(target, row[class_col])
        if folds and fold not in folds:
            continue
        file = locate(row)
        if not file.is_file():
            raise DatasetError(f"{file}: listed in {path.name} ({row[name_col]}) but not found")
        items.append(LabelledAudio(file, target, fold))
    if sorted(names) != list(range(len(names))):
        raise DatasetError(f"{path}: class ids are not 0..{len(names) - 1}")
    labels = LabelSet(fmt, tuple(names[i] for i in range(len(names))))
    return ClassificationSet(items, labels, fmt)


@dataclass
class ClassificationReport:
    metrics: metrics.ClassificationMetrics
    predictions: list[int] = field(default_factory=list)
    prompts: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        m = self.metrics
        return {
            "accuracy": m.accuracy,
            "mean_per_class_accuracy": m.mean_per_class,
            "per_class_accuracy": m.per_class,
            "confusion": m.confusion.tolist(),
            "labels": m.labels,
            "clips": int(m.confusion.sum()),
        }


def evaluate_classification(
    encoder: Encoder,
    dataset: ClassificationSet,
    strategy: str = "clap",
    bank: PromptBank | None = None,
    n_prompts: int = 2,
    seed: int = 0,
    progress: Progress | None = None,
) -> ClassificationReport:
    """Zero-shot accuracy of `encoder` on a labelled data set with one prompt strategy."""
    classifier = ZeroShotClassifier(encoder, dataset.label_set, strategy, bank, n_prompts, seed)
    vectors = _embed_files(encoder, [item.path for item in dataset.items], progress)
    predicted = classifier.predict(vectors)
    result = metrics.classification([item.target for item in dataset.items], predicted, list(dataset.label_set.labels))
    return ClassificationReport(result, predicted.tolist(), classifier.prompts)


def write_confusion_png(m: metrics.ClassificationMetrics, path: str | Path, cell: int = 18) -> Path:
    """A confusion-matrix heat map (row-normalised, true classes down, predictions across) as PNG."""
    from PIL import Image, ImageDraw

    n = len(m.labels)
    margin = 8 + 7 * max(len(label) for label in m.labels)
    size = margin + n * cell + 8
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    rows = m.confusion / np.maximum(m.confusion.sum(axis=1, keepdims=True), 1)
    for i in range(n):
        draw.text((4, margin + i * cell + cell // 4), m.labels[i], fill="black")
        for j in range(n):
            shade = int(255 * (1 - rows[i, j]))
            x, y = margin + j * cell, margin + i * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(shade, shade, 255), outline=(220, 220, 220))
            if m.confusion[i, j]:
                draw.text((x + 3, y + cell // 4), str(int(m.confusion[i, j])), fill="black" if shade > 128 else "white")
    for j in range(n):  # column labels, rotated
        text = Image.new("RGBA", (margin, cell), (255, 255, 255, 0))
        ImageDraw.Draw(text).text((2, cell // 4), m.labels[j], fill="black")
        rotated = text.rotate(90, expand=True)
        image.paste(rotated, (margin + j * cell, 0), rotated)
    path = Path(path)
    image.save(path)
    return path
