"""A silent file is refused by zero-shot labelling, by name and reason, on the command line and the API: any
model gives ten minutes of zeros a confident label otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from search.classify import SILENCE_PEAK
from search.cli import main as search_cli
from tests import helpers

REASON = "silent (no sample above -70 dBFS): nothing to label"


def test_classify_refuses_silent_files_and_labels_the_rest(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    helpers.write_audio(corpus / "zeros.wav", np.zeros(16000 * 12, dtype=np.float32))
    helpers.write_audio(corpus / "hiss.wav", np.full(16000 * 3, SILENCE_PEAK / 2, dtype=np.float32))
    helpers.write_audio(corpus / "tone.wav", helpers.tone(440, 2.0))
    labels = tmp_path / "labels.txt"
    labels.write_text("a door closing\nrain\n")
    args = ["--labels", str(labels), "-k", "1", "--index", str(tmp_path / "none")]
    one = CliRunner().invoke(search_cli, ["classify", str(corpus / "zeros.wav"), *args])
    assert one.exit_code == 1 and f"Error: {corpus / 'zeros.wav'}: {REASON}" in one.stderr.splitlines()
    folder = CliRunner().invoke(search_cli, ["classify", str(corpus), *args])
    assert folder.exit_code == 3, folder.output
    rows = folder.stdout.splitlines()
    assert rows[0] == "path,label_1,probability_1" and [r.split(",")[0] for r in rows[1:]] == [str(corpus / "tone.wav")]
    failed = sorted(line for line in folder.stderr.splitlines() if line.startswith("failed: "))
    assert failed == [f"failed: {corpus / name}: {REASON}" for name in ("hiss.wav", "zeros.wav")]


def test_the_api_answers_a_silent_clip_with_400(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from search.service import create_app

    corpus, index = helpers.starter_index(tmp_path)
    helpers.write_audio(tmp_path / "zeros.wav", np.zeros(16000 * 2, dtype=np.float32))
    clip = {"file": ("zeros.wav", (tmp_path / "zeros.wav").read_bytes())}
    with TestClient(create_app(index), base_url="http://127.0.0.1") as client:
        response = client.post("/api/classify", files=clip, data={"labels": "dog\ncat"})
        assert response.status_code == 400 and response.json()["detail"].endswith(REASON), response.text
        tone = {"file": ("a.wav", (corpus / "a440.wav").read_bytes())}
        assert client.post("/api/classify", files=tone, data={"labels": "dog\ncat"}).status_code == 200
