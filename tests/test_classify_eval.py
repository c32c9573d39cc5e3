"""Zero-shot classification, audio-to-text ranking and the benchmark readers, end to end on real files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from indexer.errors import ResoundError
from search.classify import ZeroShotClassifier
from search.evaluate import (
    evaluate_classification,
    evaluate_retrieval,
    read_caption_csv,
    read_classification_meta,
    write_confusion_png,
)
from search.prompts import LabelSet, PromptBank, PromptError, label_prompts, load_label_set, read_label_file
from search.ranking import rank_texts
from tests import helpers

TONES = LabelSet("tones", ("tone 220", "tone 440", "tone 880"))


def test_label_files_and_builtin_sets(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("# my labels\ndog bark\n\nsiren\n")
    assert read_label_file(tmp_path / "labels.txt").labels == ("dog bark", "siren")
    (tmp_path / "labels.csv").write_text("label,description\ndog,a dog barking\ncat,\n")
    csv_set = read_label_file(tmp_path / "labels.csv")
    assert csv_set.labels == ("dog", "cat") and csv_set.descriptions == {"dog": "a dog barking"}
    esc = load_label_set("esc50")
    assert len(esc.labels) == 50 and esc.labels[0] == "dog" and esc.labels[49] == "hand_saw"
    assert esc.text("sea_waves") == "sea waves"
    assert load_label_set("urbansound8k").labels[3] == "dog_bark"
    (tmp_path / "dup.txt").write_text("a\na\n")
    with pytest.raises(ResoundError, match="duplicate labels"):
        read_label_file(tmp_path / "dup.txt")


def test_prompt_strategies() -> None:
    labels = LabelSet("x", ("sea_waves",))
    assert label_prompts(labels, "label") == {"sea_waves": ["sea waves"]}
    assert label_prompts(labels, "clap") == {"sea_waves": ["This is a sound of sea waves."]}
    assert len(label_prompts(labels, "templates")["sea_waves"]) == 7
    bank = PromptBank({"sea_waves": _entry([f"prompt {i}" for i in range(8)])})
    first = label_prompts(labels, "reclap", bank, n_prompts=2, seed=0)["sea_waves"]
    assert len(first) == 2 and first == label_prompts(labels, "reclap", bank, n_prompts=2, seed=0)["sea_waves"]
    assert first != label_prompts(labels, "reclap", bank, n_prompts=2, seed=3)["sea_waves"]
    with pytest.raises(PromptError, match="has no shipped prompt bank"):
        label_prompts(labels, "reclap")
    with pytest.raises(PromptError, match="unknown prompt strategy"):
        label_prompts(labels, "magic")


def _entry(prompts: list[str]):
    from search.prompts import BankEntry

    return BankEntry(("d",), tuple(prompts))


def test_classify_file_gives_probabilities_and_a_timeline(tmp_path: Path) -> None:
    # 4 s at 880 Hz then 2 s at 220 Hz: two 2 s windows of 880 Hz, one of 220 Hz.
    audio = np.concatenate([helpers.tone(880, 4.0, rate=16000), helpers.tone(220, 2.0, rate=16000)])
    path = helpers.write_audio(tmp_path / "two_tones.wav", audio, rate=16000)
    classifier = ZeroShotClassifier(helpers.ToneEncoder(), TONES, strategy="label")
    result = classifier.classify_file(path, k=3)
    assert [s.label for s in result.top][:2] == ["tone 880", "tone 220"]
    assert sum(s.probability for s in result.top) == pytest.approx(1.0)
    # softmax(10 * cosines): the file vector is (2/3 e880 + 1/3 e220) normalised.
    cos880, cos220 = 2 / np.sqrt(5), 1 / np.sqrt(5)
    logits = 10 * np.array([cos880, cos220, 0.0])
    assert result.top[0].probability == pytest.approx(np.exp(logits[0]) / np.exp(logits).sum(), rel=1e-5)
    assert [(w.start, w.end, w.top[0].label) for w in result.timeline] == [
        (0.0, 2.0, "tone 880"), (2.0, 4.0, "tone 880"), (4.0, 6.0, "tone 220")]


def test_audio_to_text_ranks_the_matching_caption_first(tmp_path: Path) -> None:
    encoder = helpers.ToneEncoder()
    path = helpers.write_audio(tmp_path / "a.wav", helpers.tone(660, 2.0, rate=16000), rate=16000)
    from indexer.embed import embed_file

    ranked = rank_texts(encoder, embed_file(encoder, path).file_vector, ["a 220 tone", "a 660 tone", "noise"], k=2)
    assert ranked == [("a 660 tone", 1.0), ("a 220 tone", 0.0)]


def _esc50_dataset(root: Path) -> tuple[Path, Path]:
    """An ESC-50-format data set: 3 classes x 2 clips, one clip deliberately of the wrong pitch."""
    audio_dir = root / "audio"
    rows = []
    pitches = {0: 220, 1: 440, 2: 880}
    for target, pitch in pitches.items():
        for take in range(2):
            actual = 880 if (target, take) == (1, 1) else pitch  # a 440 clip that sounds at 880
            name = f"{take + 1}-{target}-A-{target}.wav"
            helpers.write_audio(audio_dir / name, helpers.tone(actual, 1.0, rate=16000), rate=16000)
            rows.append({"filename": name, "fold": take + 1, "target": target, "category": f"tone_{pitch}",
                         "esc10": "False", "src_file": name, "take": "A"})
    meta = root / "esc50.csv"
    with open(meta, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return meta, audio_dir


def test_eval_classify_on_esc50_format(tmp_path: Path) -> None:
    meta, audio_dir = _esc50_dataset(tmp_path)
    dataset = read_classification_meta(meta, audio_dir)
    assert dataset.format == "esc50" and dataset.label_set.labels == ("tone_220", "tone_440", "tone_880")
    report = evaluate_classification(helpers.ToneEncoder(), dataset, strategy="clap")
    assert report.prompts["tone_440"] == ["This is a sound of tone 440."]
    assert report.metrics.accuracy == pytest.approx(5 / 6)
    assert report.metrics.per_class == pytest.approx({"tone_220": 1.0, "tone_440": 0.5, "tone_880": 1.0})
    assert report.metrics.confusion.tolist() == [[2, 0, 0], [0, 1, 1], [0, 0, 2]]
    only_fold_2 = evaluate_classification(helpers.ToneEncoder(), read_classification_meta(meta, audio_dir, {2}))
    assert only_fold_2.metrics.accuracy == pytest.approx(2 / 3)
    png = write_confusion_png(report.metrics, tmp_path / "confusion.png")
    from PIL import Image

    assert Image.open(png).size[0] > 60


def test_eval_classify_on_urbansound8k_format_and_missing_files(tmp_path: Path) -> None:
    helpers.write_audio(tmp_path / "audio" / "fold3" / "100-1-0-0.wav", helpers.tone(220, 1.0, rate=16000), rate=16000)
    meta = tmp_path / "UrbanSound8K.csv"
    meta.write_text("slice_file_name,fsID,start,end,salience,fold,classID,class\n"
                    "100-1-0-0.wav,100,0,1,1,3,0,tone 220\n100-2-0-0.wav,100,0,1,1,3,1,tone 440\n")
    from search.evaluate import DatasetError

    with pytest.raises(DatasetError, match="100-2-0-0.wav.*not found"):
        read_classification_meta(meta, tmp_path / "audio")


def test_eval_retrieval_on_clotho_and_audiocaps_formats(tmp_path: Path) -> None:
    audio_dir = tmp_path / "audio"
    for pitch in (220, 440, 880):
        helpers.write_audio(audio_dir / f"t{pitch}.wav", helpers.tone(pitch, 1.0, rate=16000), rate=16000)
    clotho = tmp_path / "clotho.csv"
    clotho.write_text("file_name,caption_1,caption_2\n"
                      "t220.wav,a 220 tone,something else\nt440.wav,a 440 tone,a 440 hum\nt880.wav,a 880 beep,a 220 beep\n")
    captions = read_caption_csv(clotho, audio_dir)
    assert captions.format == "clotho" and captions.caption_audio == [0, 0, 1, 1, 2, 2]
    result = evaluate_retrieval(helpers.ToneEncoder(), captions)
    # Caption ranks (0-based, ties against the model): 0, 2, 0, 0, 0, 2 -> R@1 = 4/6.
    assert result["text_to_audio_R@1"] == pytest.approx(4 / 6)
    assert result["text_to_audio_mAP@10"] == pytest.approx((1 + 1 / 3 + 1 + 1 + 1 + 1 / 3) / 6)
    # Audio 0's captions rank 1 (tied with "a 220 beep", which counts first) and 5 -> AP (1/2 + 2/6)/2;
    # audio 1's rank 0 and 1 -> AP 1; audio 2's rank 0 and 5 -> AP (1 + 2/6)/2.
    assert result["audio_to_text_R@1"] == pytest.approx(2 / 3)
    assert result["audio_to_text_R@5"] == 1.0
    assert result["audio_to_text_mAP@10"] == pytest.approx(((1 / 2 + 2 / 6) / 2 + 1 + (1 + 2 / 6) / 2) / 3)

    audiocaps = tmp_path / "audiocaps.csv"
    audiocaps.write_text("audiocap_id,youtube_id,start_time,caption\n1,t440,0,a 440 tone\n2,t880,0,an 880 tone\n")
    assert read_caption_csv(audiocaps, audio_dir).audio == [audio_dir / "t440.wav", audio_dir / "t880.wav"]


def test_classify_and_caption_cli_with_clap(tmp_path: Path, clap_checkpoint: Path, corpus: Path) -> None:
    from search.cli import main

    labels = tmp_path / "labels.txt"
    labels.write_text("speech\nsiren\nbirdsong\n")
    runner = CliRunner()
    result = runner.invoke(main, ["classify", str(corpus / "speech" / "hello.wav"), "--labels", str(labels),
                                  "--prompts", "templates", "--model", str(clap_checkpoint), "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)
    assert sorted(s["label"] for s in entry["labels"]) == ["birdsong", "siren", "speech"]
    assert sum(s["probability"] for s in entry["labels"]) == pytest.approx(1.0, abs=1e-5)

    result = runner.invoke(main, ["classify", str(corpus / "tones"), "--labels", str(labels), "--prompts", "clap",
                                  "--model", str(clap_checkpoint), "-k", "1"])
    rows = list(csv.reader(result.stdout.splitlines()))
    assert rows[0] == ["path", "label_1", "probability_1"] and len(rows) == 3

    texts = tmp_path / "texts.txt"
    texts.write_text("a man speaking\nwind noise\n")
    result = runner.invoke(main, ["caption", str(corpus / "speech" / "hello.wav"), "--texts", str(texts),
                                  "--model", str(clap_checkpoint), "--json"])
    ranked = json.loads(result.stdout)
    assert [r["rank"] for r in ranked] == [1, 2] and ranked[0]["score"] >= ranked[1]["score"]
