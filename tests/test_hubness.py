"""The text-query hubness correction (indexer/hubness.py): it demotes an item that is near every query,
is stored with the index for the model that made it, and is ignored for any other model."""

from __future__ import annotations

import numpy as np

from indexer.encoders.base import EncoderInfo, l2_normalize
from indexer.hubness import (
    FILE_NAME,
    HubnessCorrection,
    ensure_correction,
    load_correction,
    reference_queries,
)

DIM = 8


def info(sha: str = "a" * 64) -> EncoderInfo:
    return EncoderInfo(model_id="fake", family="fake", dim=DIM, sample_rate=16000, window_seconds=1.0, checkpoint_sha256=sha)


class SharedDirectionEncoder:
    """Texts share one direction (axis 0) plus a direction of their own: the geometry that makes hubs."""

    def __init__(self) -> None:
        self.info = info()

    def embed_text(self, texts):  # type: ignore[no-untyped-def]
        rows = []
        for text in texts:
            own = np.zeros(DIM, dtype=np.float32)
            own[1 + sum(map(ord, text)) % (DIM - 1)] = 1.0
            shared = np.eye(DIM, dtype=np.float32)[0]
            rows.append(shared + 0.6 * own)
        return l2_normalize(np.stack(rows))


def test_the_correction_demotes_an_item_near_every_query(tmp_path) -> None:
    encoder = SharedDirectionEncoder()
    correction = ensure_correction(tmp_path, encoder)
    assert correction is not None and (tmp_path / FILE_NAME).is_file()
    assert correction.bank_size == len(reference_queries()) == 80
    hub = np.eye(DIM, dtype=np.float32)[0]  # close to every query through the shared direction
    target = l2_normalize(np.eye(DIM, dtype=np.float32)[4] + 0.3 * hub)  # the query's own sound
    items = np.stack([hub, target])
    query = encoder.embed_text(["x" * 3])[0]  # sum of ords 360 -> own axis 1 + 360 % 7 = 4
    assert int(np.argmax(items @ query)) == 0  # uncorrected: the hub wins
    corrected = correction.apply(query)
    assert abs(float(np.linalg.norm(corrected)) - 1.0) < 1e-6
    assert int(np.argmax(items @ corrected)) == 1  # corrected: the query's own sound wins


def test_the_stored_correction_is_used_only_by_its_model(tmp_path) -> None:
    correction = HubnessCorrection("fake", "a" * 64, 1.0, np.arange(DIM, dtype=np.float32), "b" * 64, 80)
    correction.save(tmp_path)
    loaded = load_correction(tmp_path, info())
    assert loaded is not None and loaded.beta == 1.0
    np.testing.assert_array_equal(loaded.text_mean, correction.text_mean)
    assert load_correction(tmp_path, info(sha="c" * 64)) is None  # another checkpoint: not applied
    assert load_correction(tmp_path / "elsewhere", info()) is None  # an index without one: none
    (tmp_path / FILE_NAME).write_text("{not json")
    assert load_correction(tmp_path, info()) is None


def test_a_second_index_reuses_the_cached_correction_without_embedding_again(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RESOUND_CACHE_DIR", str(tmp_path / "cache"))
    first = ensure_correction(tmp_path / "a", _mkdir_encoder(tmp_path / "a"))
    encoder = SharedDirectionEncoder()
    encoder.embed_text = None  # type: ignore[assignment,method-assign]  # would fail if called
    (tmp_path / "b").mkdir()
    second = ensure_correction(tmp_path / "b", encoder)
    assert first is not None and second is not None and (tmp_path / "b" / FILE_NAME).is_file()
    np.testing.assert_array_equal(second.text_mean, first.text_mean)
    # Another checkpoint is another model: computed afresh, never taken from the cache.
    other = SharedDirectionEncoder()
    other.info = info("c" * 64)
    (tmp_path / "c").mkdir()
    third = ensure_correction(tmp_path / "c", other)
    assert third is not None and third.checkpoint_sha256 == "c" * 64


def _mkdir_encoder(directory):  # type: ignore[no-untyped-def]
    directory.mkdir()
    return SharedDirectionEncoder()
