"""ClipClap-GZSL on seeded synthetic audio-visual data: learning, calibration, determinism, persistence,
metrics against hand-computed values and a brute-force gamma search, and split/data errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from indexer.errors import CheckpointError, ResoundError
from search.gzsl import (
    ClassEmbeddings,
    FeatureSet,
    GZSLConfig,
    GZSLConfigError,
    GZSLDataError,
    GZSLModel,
    GZSLSplit,
    GZSLSplitError,
    evaluate_gzsl,
    gzsl_report,
    load_class_embeddings,
    load_features,
    load_split,
    train_gzsl,
    tune_gamma,
)
from search.gzsl.calibration import calibrated_predictions
from search.gzsl.network import ClipClapNetwork
from search.gzsl.synthetic import SyntheticConfig, SyntheticGZSL, make_synthetic_gzsl, write_synthetic

SMALL_DATA = SyntheticConfig(n_seen=24, n_val_unseen=6, n_unseen=10, latent_dim=8, train_per_class=30,
                             test_per_class=15, seed=3)
# Narrower and shorter than published, with a larger learning rate, to train in seconds.
SMALL_MODEL = GZSLConfig(encoder_hidden=128, projection_hidden=128, epochs=6, batches_per_epoch=40, lr=3e-4, seed=7)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Small matrices train faster (and reproducibly) on one thread; restore the session's setting after.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> SyntheticGZSL:
    return make_synthetic_gzsl(SMALL_DATA)


@pytest.fixture(scope="module")
def model(data: SyntheticGZSL) -> GZSLModel:
    return train_gzsl(data.train.features, data.train.labels, data.classes, data.split, SMALL_MODEL)


# -- learning and calibration -------------------------------------------------------------------------
def test_unseen_accuracy_is_far_above_chance(model: GZSLModel, data: SyntheticGZSL) -> None:
    report = evaluate_gzsl(model, data.test.features, data.test.labels)
    chance = data.chance
    assert report.unseen > 3 * chance["unseen"]
    assert report.zsl > 3 * chance["zsl"]
    assert report.seen > 3 * chance["seen"]
    assert report.hm > 0
    assert report.gamma == model.gamma
    assert (report.seen_samples, report.unseen_samples) == (24 * 15, 10 * 15)


def test_calibrated_stacking_raises_validation_unseen_accuracy(model: GZSLModel) -> None:
    record = model.record
    assert record is not None
    assert record.validation_uncalibrated.gamma == 0.0
    assert record.validation.gamma == model.gamma > 0
    assert record.validation.unseen > record.validation_uncalibrated.unseen
    assert record.validation.hm >= record.validation_uncalibrated.hm
    assert record.epochs_trained == record.best_epoch + 1
    assert record.validation.hm == max(record.validation_hm)


def test_same_seed_gives_identical_model(model: GZSLModel, data: SyntheticGZSL) -> None:
    again = train_gzsl(data.train.features, data.train.labels, data.classes, data.split, SMALL_MODEL)
    assert again.gamma == model.gamma
    assert again.record == model.record
    np.testing.assert_array_equal(again.scores(data.test.features), model.scores(data.test.features))
    assert evaluate_gzsl(again, data.test.features, data.test.labels) == \
        evaluate_gzsl(model, data.test.features, data.test.labels)


def test_save_load_round_trip_predicts_identically(model: GZSLModel, data: SyntheticGZSL, tmp_path: Path) -> None:
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["gzsl.json", "gzsl.safetensors"]
    loaded = GZSLModel.load(tmp_path / "m")
    assert (loaded.config, loaded.split, loaded.class_names, loaded.gamma, loaded.record) == \
        (model.config, model.split, model.class_names, model.gamma, model.record)
    np.testing.assert_array_equal(loaded.scores(data.test.features), model.scores(data.test.features))
    assert loaded.predict(data.test.features) == model.predict(data.test.features)


def test_altered_or_missing_files_raise_checkpoint_error(model: GZSLModel, tmp_path: Path) -> None:
    model.save(tmp_path / "m")
    tensors = tmp_path / "m" / "gzsl.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CheckpointError, match="fingerprint"):
        GZSLModel.load(tmp_path / "m")
    with pytest.raises(CheckpointError, match="not a GZSL model"):
        GZSLModel.load(tmp_path / "missing")


def test_each_loss_term_can_be_switched_off(data: SyntheticGZSL) -> None:
    features = torch.from_numpy(data.train.features[:8])
    targets = torch.arange(8) % 4
    label_embeddings = torch.from_numpy(data.classes.embeddings[:4])
    for term in ("cross_entropy", "reconstruction", "regression"):
        config = dataclasses.replace(SMALL_MODEL, **{term: False})
        torch.manual_seed(0)
        losses = ClipClapNetwork(data.train.features.shape[1], data.classes.dim, config).losses(
            features, targets, label_embeddings)
        assert losses[term].item() == 0.0
        assert all(losses[t].item() > 0 for t in ("cross_entropy", "reconstruction", "regression") if t != term)
        assert losses["total"].item() == pytest.approx(sum(losses[t].item() for t in losses if t != "total"))
    with pytest.raises(GZSLConfigError, match="every loss"):
        GZSLConfig(cross_entropy=False, reconstruction=False, regression=False)


# -- metrics ------------------------------------------------------------------------------------------
# Classes: a, b seen; c, d unseen. Rows: samples; true classes a, a, b, c, c, d.
HAND_SCORES = np.array([
    [0.9, 0.1, 0.5, 0.0],  # a: right; margin over best unseen 0.4
    [0.6, 0.2, 0.7, 0.1],  # a: wrong (c)
    [0.2, 0.8, 0.1, 0.3],  # b: right; margin 0.5
    [0.7, 0.0, 0.6, 0.2],  # c: wrong (a); margin 0.1 -> right once gamma > 0.1
    [0.1, 0.2, 0.9, 0.4],  # c: right; margin -0.7
    [0.3, 0.0, 0.5, 0.4],  # d: wrong (c) at any gamma; ZSL also picks c
])
HAND_TRUE = [0, 0, 1, 2, 2, 3]
HAND_SEEN = np.array([True, True, False, False])
HAND_NAMES = ["a", "b", "c", "d"]


def test_gzsl_report_matches_hand_computed_values() -> None:
    raw = gzsl_report(HAND_SCORES, HAND_TRUE, HAND_SEEN, HAND_NAMES, gamma=0.0)
    # S: a 1/2, b 1/1 -> 0.75; U: c 1/2, d 0/1 -> 0.25; ZSL: c 2/2, d 0/1 -> 0.5.
    assert (raw.seen, raw.unseen, raw.zsl, raw.gamma) == (0.75, 0.25, 0.5, 0.0)
    assert raw.hm == 2 * 0.75 * 0.25 / (0.75 + 0.25)
    assert (raw.seen_samples, raw.unseen_samples) == (3, 3)
    calibrated = gzsl_report(HAND_SCORES, HAND_TRUE, HAND_SEEN, HAND_NAMES, gamma=0.2)
    # gamma 0.2 flips the c sample with margin 0.1 to c; S unchanged (margins 0.4, 0.5 > 0.2).
    assert (calibrated.seen, calibrated.unseen, calibrated.zsl) == (0.75, 0.5, 0.5)
    assert calibrated.hm == 0.6
    np.testing.assert_array_equal(calibrated_predictions(HAND_SCORES, HAND_SEEN, 0.2), [0, 2, 1, 2, 2, 2])


def test_tune_gamma_picks_the_best_interval_nearest_zero() -> None:
    # Margins (best seen - best unseen): -0.1, 0.4, 0.5, 0.1, -0.7, -0.2. HM is 0.6 for gamma in (0.1, 0.4)
    # and lower elsewhere; the midpoint of the margins 0.1 and 0.4 is the candidate.
    gamma = tune_gamma(HAND_SCORES, HAND_TRUE, HAND_SEEN)
    assert gamma == pytest.approx(0.25)
    assert gzsl_report(HAND_SCORES, HAND_TRUE, HAND_SEEN, HAND_NAMES, gamma).hm == 0.6


def test_tune_gamma_matches_brute_force_grid() -> None:
    rng = np.random.default_rng(0)
    n_classes, seen = 12, np.arange(12) < 7
    true = rng.integers(0, n_classes, size=300)
    scores = rng.standard_normal((300, n_classes)) + 2.0 * np.eye(n_classes)[true] + 0.8 * seen
    best = gzsl_report(scores, true, seen, [str(i) for i in range(n_classes)], tune_gamma(scores, true, seen)).hm
    grid = np.linspace(-3, 3, 1201)
    brute = max(gzsl_report(scores, true, seen, [str(i) for i in range(n_classes)], g).hm for g in grid)
    assert best >= brute
    assert best > gzsl_report(scores, true, seen, [str(i) for i in range(n_classes)], 0.0).hm


# -- splits and data ----------------------------------------------------------------------------------
def test_malformed_split_raises_naming_the_class(data: SyntheticGZSL) -> None:
    split = data.split
    both = GZSLSplit(split.seen, split.unseen + (split.seen[0],), split.val_unseen)
    with pytest.raises(GZSLSplitError, match=f"'{split.seen[0]}' is both seen and unseen"):
        train_gzsl(data.train.features, data.train.labels, data.classes, both, SMALL_MODEL)
    unknown = GZSLSplit(split.seen, split.unseen + ("kazoo solo",), split.val_unseen)
    with pytest.raises(GZSLSplitError, match="unknown class 'kazoo solo'"):
        train_gzsl(data.train.features, data.train.labels, data.classes, unknown, SMALL_MODEL)
    stray_val = GZSLSplit(split.seen, split.unseen, split.val_unseen + (split.unseen[0],))
    with pytest.raises(GZSLSplitError, match=f"'{split.unseen[0]}' is not a seen class"):
        stray_val.validate(data.classes.names)
    with pytest.raises(ResoundError):  # the domain base class catches every GZSL error
        GZSLSplit((), split.unseen, ()).validate()


def test_training_on_unseen_class_samples_is_refused(data: SyntheticGZSL) -> None:
    leaked = np.concatenate([data.train.labels[:-1], [data.split.unseen[0]]])
    with pytest.raises(GZSLSplitError, match=f"class '{data.split.unseen[0]}'"):
        train_gzsl(data.train.features, leaked, data.classes, data.split, SMALL_MODEL)


def test_evaluating_an_unknown_label_is_refused(model: GZSLModel, data: SyntheticGZSL) -> None:
    with pytest.raises(GZSLSplitError, match="'ukulele'"):
        evaluate_gzsl(model, data.test.features[:2], ["ukulele", data.split.seen[0]])
    with pytest.raises(GZSLDataError, match=r"\(n, 128\)"):
        model.scores(np.zeros((2, 5), dtype=np.float32))


def test_files_round_trip_and_split_text_format(data: SyntheticGZSL, tmp_path: Path) -> None:
    paths = write_synthetic(data, tmp_path)
    classes = load_class_embeddings(paths["classes"])
    assert classes.names == data.classes.names
    np.testing.assert_array_equal(classes.embeddings, data.classes.embeddings)
    train = load_features(paths["train"])
    np.testing.assert_array_equal(train.features, data.train.features)
    np.testing.assert_array_equal(train.labels, data.train.labels)
    assert load_split(paths["split"]) == data.split

    # Integer labels index the class-embedding order; the text split format has sections.
    np.savez(tmp_path / "int.npz", features=data.train.features[:3], labels=np.array([0, 2, 1]))
    assert load_features(tmp_path / "int.npz", classes.names).labels.tolist() == [classes.names[i] for i in (0, 2, 1)]
    (tmp_path / "split.txt").write_text("# roles\n[seen]\ndog bark\ncat\n\n[unseen]\ncow\n[val_unseen]\ncat\n")
    assert load_split(tmp_path / "split.txt") == GZSLSplit(("dog bark", "cat"), ("cow",), ("cat",))
    (tmp_path / "bad.json").write_text(json.dumps({"seen": ["a"], "unsen": ["b"]}))
    with pytest.raises(GZSLSplitError, match="unknown key 'unsen'"):
        load_split(tmp_path / "bad.json")
    with pytest.raises(GZSLDataError, match="named more than once.*'x'"):
        ClassEmbeddings(("x", "x"), np.zeros((2, 3)))
    with pytest.raises(GZSLDataError, match="3 feature rows but labels of shape"):
        FeatureSet(np.zeros((3, 4)), ["a", "b"])


def test_gzsl_cli_train_and_eval_on_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The commands a user runs: features and class embeddings from files, a model directory, S/U/HM/ZSL."""
    import json as _json

    from click.testing import CliRunner

    from search.cli import main
    from search.gzsl.synthetic import SyntheticConfig, make_synthetic_gzsl, write_synthetic

    data = make_synthetic_gzsl(SyntheticConfig(seed=3))
    paths = write_synthetic(data, tmp_path / "data")
    runner = CliRunner()
    args = ["gzsl", "train", "--features", str(paths["train"]), "--class-embeddings", str(paths["classes"]),
            "--split", str(paths["split"]), "--out", str(tmp_path / "model"), "--epochs", "2",
            "--batches-per-epoch", "20", "--seed", "0"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "best epoch" in result.stdout and (tmp_path / "model" / "gzsl.safetensors").is_file()
    result = runner.invoke(main, ["gzsl", "eval", "--model", str(tmp_path / "model"), "--features",
                                  str(paths["test"]), "--json"])
    report = _json.loads(result.stdout)
    assert set(report) >= {"seen", "unseen", "hm", "zsl", "gamma"}
    assert report["hm"] == pytest.approx(2 * report["seen"] * report["unseen"] / (report["seen"] + report["unseen"]))
