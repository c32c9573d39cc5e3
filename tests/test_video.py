"""Video corpora: frames at the right times, audio-visual vectors, one index for audio and video files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer import BuildOptions, Index, build_index
from indexer.embed import segment_inputs
from indexer.encoders import EncoderSpec
from indexer.media.video import frames_at, video_duration
from indexer.windows import cut_windows
from search import Engine
from search.engine import QueryError
from tests import helpers

RED, GREEN, BLUE = (220, 20, 20), (20, 220, 20), (20, 20, 220)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    return helpers.write_tiny_clip_checkpoint(tmp_path_factory.mktemp("clip") / "tiny-clip.safetensors")


def _colour(frame: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(round(c / 10.0)) * 10 for c in frame.reshape(-1, 3).mean(axis=0))


def _dominant(frame: np.ndarray) -> str:
    return "RGB"[int(np.argmax(frame.reshape(-1, 3).mean(axis=0)))]


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_frames_are_read_at_their_timestamps(tmp_path: Path, suffix: str) -> None:
    path = helpers.write_video(tmp_path / f"colours{suffix}", [(0.0, RED), (2.0, GREEN), (5.0, BLUE)], seconds=7.0)
    assert video_duration(path) == pytest.approx(7.0, abs=0.15)
    frames = frames_at(path, [0.5, 1.9, 2.1, 4.9, 5.1, 6.9, 100.0])
    assert [_dominant(f) for f in frames] == ["R", "R", "G", "G", "B", "B", "B"]
    assert frames[0].dtype == np.uint8 and frames[0].shape == (64, 64, 3)


def test_segments_of_a_video_get_the_colour_of_their_middle(tmp_path: Path, clap_checkpoint: Path, tiny_clip: str) -> None:
    path = helpers.write_video(tmp_path / "v.mp4", [(0.0, RED), (10.0, GREEN), (20.0, BLUE)], seconds=25.0,
                               audio=helpers.tone(440, 25.0))
    encoder = EncoderSpec(str(clap_checkpoint), tiny_clip).load()
    inputs = segment_inputs(encoder, path)
    # (PyAV's AAC encoder writes its 1024 priming samples without an edit list: the track is 21 ms longer.)
    assert np.array(inputs.spans) == pytest.approx(np.array([(0.0, 10.0), (10.0, 20.0), (15.0, 25.0)]), abs=0.05)
    assert [_dominant(f[0]) for f in inputs.frames] == ["R", "G", "B"]  # middles at 5, 15 and 20 s
    assert inputs.modalities == "audio+visual" and all(s is not None for s in inputs.samples)
    k3 = EncoderSpec(str(clap_checkpoint), tiny_clip, frames_per_window=3).load()
    from indexer.embed import WindowPlan

    assert WindowPlan.of(k3).frame_times(10.0, 20.0) == pytest.approx([10 + 10 / 6, 15.0, 20 - 10 / 6])
    assert [[_dominant(f) for f in fs] for fs in segment_inputs(k3, path).frames][2] == ["G", "B", "B"]


def test_audio_and_video_share_one_index_and_modality_selects_the_part_scored(
    tmp_path: Path, clap_checkpoint: Path, tiny_clip: str
) -> None:
    corpus = tmp_path / "corpus"
    helpers.write_audio(corpus / "tone.wav", helpers.tone(440, 3.0))
    helpers.write_video(corpus / "talk.mp4", [(0.0, RED), (2.0, GREEN)], seconds=4.0, audio=helpers.noise(4.0, seed=3))
    helpers.write_video(corpus / "silent.webm", [(0.0, BLUE)], seconds=3.0)
    index_path = tmp_path / "index"
    report = build_index(corpus, index_path, BuildOptions(model=str(clap_checkpoint), vision_model=tiny_clip,
                                                          visual_weight=0.5))
    assert (report.added, report.failed) == (3, [])

    index = Index(index_path)
    provenance = index.provenance()
    assert provenance.family == "audio_visual" and provenance.dim == 512 + 32
    assert provenance.preprocessing["weights"] == [1.0, 0.5] and provenance.preprocessing["frames"] == "middle"
    from sqlalchemy import text

    with index.catalog.engine.connect() as conn:
        modalities = dict(conn.execute(text(
            "SELECT f.path, s.modalities FROM segments s JOIN files f ON f.id = s.file_id")).all())
    assert modalities == {"tone.wav": "audio", "talk.mp4": "audio+visual", "silent.webm": "visual"}
    stores = index.load_stores()
    vectors = {index.catalog.segments([i])[i].path.split("/")[-1]: stores["segments"].reconstruct([i])[0]
               for i in stores["segments"].ids()}
    # Audio part unit length x 1.0, visual part unit length x 0.5, the missing part exactly zero.
    assert np.linalg.norm(vectors["tone.wav"][:512]) == pytest.approx(1.0, abs=1e-5)
    assert not vectors["tone.wav"][512:].any() and not vectors["silent.webm"][:512].any()
    assert np.linalg.norm(vectors["talk.mp4"][512:]) == pytest.approx(0.5, abs=1e-5)

    engine = Engine(index_path)
    query_av = engine.encoder.embed_text(["a blue picture"], modality="av")[0]
    for modality, zeroed in (("audio", slice(512, None)), ("visual", slice(0, 512))):
        hits = engine.query("a blue picture", k=3, modality=modality)
        expected_query = query_av.copy()
        expected_query[zeroed] = 0
        for hit in hits:
            name = hit.path.split("/")[-1]
            assert hit.score == pytest.approx(float(vectors[name] @ expected_query), abs=1e-5)
        scores = {h.path.split("/")[-1]: h.score for h in hits}
        silent_part = "silent.webm" if modality == "audio" else "tone.wav"
        assert scores[silent_part] == pytest.approx(0.0, abs=1e-6)  # nothing of that modality to score
    av_hits = engine.query("a blue picture", k=3)
    assert {h.path.split("/")[-1]: h.score for h in av_hits} == pytest.approx(
        {name: float(v @ query_av) for name, v in vectors.items()}, abs=1e-5)
    assert engine.similar(corpus / "silent.webm", k=1, modality="visual")[0].path == str(corpus / "silent.webm")

    # The same index feeds ClipClap-GZSL: file vectors as features, [CLIP text, CLAP text] as classes.
    from search.gzsl.export import class_embeddings, export_index_features
    from search.prompts import LabelSet

    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text(f"path,label\ntalk.mp4,talking\n{corpus / 'silent.webm'},blue screen\n")
    samples = export_index_features(index_path, labels_csv)
    assert samples.features.shape == (2, 544) and samples.labels.tolist() == ["talking", "blue screen"]
    classes = class_embeddings(engine.encoder, LabelSet("x", ("talking", "blue screen")))
    assert classes.embeddings.shape == (2, 32 + 512)
    engine.close()


def test_visual_modality_on_an_audio_index_is_refused(tmp_path: Path, clap_checkpoint: Path) -> None:
    corpus = tmp_path / "corpus"
    helpers.write_audio(corpus / "tone.wav", helpers.tone(440, 2.0))
    helpers.write_video(corpus / "v.mp4", [(0.0, RED)], seconds=2.0, audio=helpers.tone(300, 2.0))
    build_index(corpus, tmp_path / "index", BuildOptions(model=str(clap_checkpoint)))
    engine = Engine(tmp_path / "index")
    assert len(engine.query("tone", k=5)) == 2  # the video's audio track is indexed
    with pytest.raises(QueryError, match="needs an audio-visual index"):
        engine.query("tone", modality="visual")
    engine.close()


def test_windows_helper_consistency() -> None:
    assert [w.start for w in cut_windows(np.zeros(25), 10, 10)] == [0, 10, 15]


def test_zero_shot_video_classification_uses_both_label_embeddings(tmp_path: Path, clap_checkpoint: Path,
                                                                    tiny_clip: str) -> None:
    from search.classify import ZeroShotClassifier
    from search.prompts import LabelSet

    encoder = EncoderSpec(str(clap_checkpoint), tiny_clip).load()
    labels = LabelSet("x", ("red screen", "green screen"))
    av = ZeroShotClassifier(encoder, labels, strategy="templates")
    assert av.label_vectors.shape == (2, 512 + 32)
    # Each half of a label vector is the prompt-ensemble direction of its own text encoder.
    prompts = av.prompts["red screen"]
    for half, text_encoder in ((slice(0, 512), encoder.audio), (slice(512, None), encoder.vision)):
        ensemble = text_encoder.embed_text(prompts).mean(axis=0)
        got = av.label_vectors[0, half]
        cosine = float(got @ ensemble / np.linalg.norm(got) / np.linalg.norm(ensemble))
        assert cosine == pytest.approx(1.0, abs=1e-5)
    visual_only = ZeroShotClassifier(encoder, labels, strategy="templates", modality="visual")
    assert not visual_only.label_vectors[:, :512].any()
    np.testing.assert_allclose(np.linalg.norm(visual_only.label_vectors, axis=1), 1.0, atol=1e-6)
    path = helpers.write_video(tmp_path / "v.mp4", [(0.0, RED)], seconds=2.0, audio=helpers.tone(440, 2.0))
    result = visual_only.classify_file(path, k=2)
    assert sum(s.probability for s in result.top) == pytest.approx(1.0)
