"""The model zoo: `--model auto`, `indexer models list|download|verify|remove`, the safetensors copy.

Models are placed in a temporary Hugging Face cache laid out as huggingface_hub lays it out (blobs named
by the LFS sha256, snapshot links, refs/main), so resound finds them exactly as it would find real ones.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from indexer.cli import main as indexer_cli
from indexer.encoders.auto import choose_model
from indexer.encoders.model_store import download_model, model_status, verify_model
from indexer.errors import CheckpointError
from tests import helpers

REVISION = "0123456789abcdef0123456789abcdef01234567"


def place_in_hf_cache(cache: Path, repo_id: str, filename: str, source: Path) -> Path:
    """Put `source` into an HF hub cache as `repo_id/filename`; returns the snapshot path."""
    sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    blob = repo / "blobs" / sha256
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        os.link(source, blob)  # same file system: no 630 MB copy
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    snapshot = repo / "snapshots" / REVISION / filename
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
    return snapshot


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF cache and model directory, offline, with no tokenizer override."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RESOUND_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("RESOUND_ROBERTA_TOKENIZER", raising=False)
    return cache


def fake_checkpoint(path: Path, seed: int = 0) -> Path:
    """Bytes standing in for a checkpoint where only files are handled (list, verify, remove)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).bytes(4096))
    return path


def tokenizer_in_cache(cache: Path, tmp_path: Path) -> None:
    directory = helpers.write_roberta_tokenizer(tmp_path / "tok", merges=["Ġ a", "t h"])
    for name in ("vocab.json", "merges.txt"):
        place_in_hf_cache(cache, "roberta-base", name, directory / name)


def test_auto_picks_a_laion_clap_checkpoint_in_the_hf_cache(hf_cache: Path, tmp_path: Path, corpus: Path,
                                                           clap_checkpoint: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESOUND_ROBERTA_TOKENIZER", raising=False)  # the session fixture sets it
    snapshot = place_in_hf_cache(hf_cache, "lukewys/laion_clap", "630k-audioset-best.pt", clap_checkpoint)
    tokenizer_in_cache(hf_cache, tmp_path)
    assert choose_model("auto").model == "630k-audioset-best" and choose_model("auto").hint is None

    result = CliRunner().invoke(indexer_cli, ["build", str(corpus), "--index", str(tmp_path / "index"), "--quiet",
                                              "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    assert "note:" not in result.stderr
    info = json.loads(CliRunner().invoke(indexer_cli, ["info", "--index", str(tmp_path / "index"), "--json"]).stdout)
    assert info["provenance"]["model_id"] == "630k-audioset-best"
    assert info["provenance"]["checkpoint_sha256"] == hashlib.sha256(clap_checkpoint.read_bytes()).hexdigest()

    # The first load of a registered LAION-CLAP model left a safetensors copy beside the checkpoint that
    # holds the same weights, and later loads take it.
    from indexer.encoders.converted import converted_path, load_converted
    from indexer.encoders.laion_clap import load_clap_state_dict

    assert converted_path(snapshot).is_file()
    converted = load_converted(snapshot)
    pickled = load_clap_state_dict(snapshot, use_converted=False)
    assert converted is not None and converted.keys() == pickled.keys()
    for key in ("audio_branch.patch_embed.proj.weight", "text_branch.embeddings.word_embeddings.weight", "logit_scale_a"):
        assert converted[key].equal(pickled[key])
    assert verify_model("630k-audioset-best").ok


def test_auto_without_laion_clap_picks_the_starter_and_says_so_once(hf_cache: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    helpers.write_audio(corpus / "a.wav", helpers.tone(440, 2.0))
    result = CliRunner().invoke(indexer_cli, ["build", str(corpus), "--index", str(tmp_path / "index"), "--quiet"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines == [("note: using the bundled starter-aisfx model; LAION-CLAP (630k-audioset-best) is far stronger on "
                      "real recordings: fetch it once with `indexer models download 630k-audioset-best`")]
    info = json.loads(CliRunner().invoke(indexer_cli, ["info", "--index", str(tmp_path / "index"), "--json"]).stdout)
    assert info["provenance"]["model_id"] == "starter-aisfx"

    # A LAION-CLAP checkpoint appearing later does not switch an existing index's model.
    from indexer.build import choose_build_model

    place_in_hf_cache(hf_cache, "lukewys/laion_clap", "630k-audioset-best.pt", fake_checkpoint(tmp_path / "c.pt"))
    tokenizer_in_cache(hf_cache, tmp_path)
    assert choose_model("auto").model == "630k-audioset-best"
    assert choose_build_model(tmp_path / "index").model == "starter-aisfx"
    assert choose_build_model(tmp_path / "new-index").model == "630k-audioset-best"


def test_auto_names_what_a_partial_model_lacks(hf_cache: Path, tmp_path: Path) -> None:
    place_in_hf_cache(hf_cache, "lukewys/laion_clap", "630k-best.pt", fake_checkpoint(tmp_path / "c.pt"))
    choice = choose_model("auto")
    assert choice.model == "starter-aisfx"
    assert choice.hint == ("using the bundled starter-aisfx model: 630k-best is on disk but lacks roberta-base/vocab.json, "
                           "roberta-base/merges.txt; complete it with `indexer models download 630k-best`")


def test_models_list_shows_what_is_on_disk_and_where(hf_cache: Path, tmp_path: Path) -> None:
    snapshot = place_in_hf_cache(hf_cache, "lukewys/laion_clap", "630k-best.pt", fake_checkpoint(tmp_path / "c.pt"))
    tokenizer_in_cache(hf_cache, tmp_path)
    result = CliRunner().invoke(indexer_cli, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"starter-aisfx", "starter", "630k-audioset-best", "630k-best", "630k-audioset-fusion-best",
                         "630k-fusion-best"}
    assert rows["630k-best"]["on_disk"] == "yes" and rows["630k-best"]["path"] == str(snapshot)
    assert rows["630k-best"]["size_bytes"] == 4096 and rows["630k-best"]["dim"] == 512
    assert rows["630k-audioset-best"]["on_disk"] == "no" and rows["630k-audioset-best"]["path"] is None
    assert rows["starter"]["on_disk"] == "yes" and rows["starter"]["family"] == "starter"
    assert rows["starter-aisfx"]["on_disk"] == "yes" and rows["starter-aisfx"]["dim"] == 256

    table = CliRunner().invoke(indexer_cli, ["models", "list"]).stdout.splitlines()
    by_name = {line.split()[0]: line for line in table[1:]}
    assert "yes" in by_name["630k-best"].split() and by_name["630k-best"].endswith(str(snapshot))
    assert by_name["630k-audioset-best"].endswith("indexer models download 630k-audioset-best")
    assert "CC0-1.0" in by_name["630k-best"]

    # A model in $RESOUND_MODEL_DIR is found there too.
    fake_checkpoint(tmp_path / "models" / "lukewys" / "laion_clap" / "630k-fusion-best.pt")
    assert model_status("630k-fusion-best").present


def test_download_offline_fails_with_one_line_naming_what_to_copy_where(hf_cache: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(indexer_cli, ["models", "download", "630k-audioset-best"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    target = tmp_path / "models" / "lukewys" / "laion_clap" / "630k-audioset-best.pt"
    assert result.stderr.startswith("Error: cannot download 630k-audioset-best: HF_HUB_OFFLINE is set; copy ")
    assert f"lukewys/laion_clap/630k-audioset-best.pt (https://huggingface.co/lukewys/laion_clap/resolve/main/" \
           f"630k-audioset-best.pt) to {target}" in result.stderr
    assert f"roberta-base/vocab.json (https://huggingface.co/roberta-base/resolve/main/vocab.json) to " \
           f"{tmp_path / 'models' / 'roberta-base' / 'vocab.json'}" in result.stderr


def test_verify_catches_a_corrupted_checkpoint(hf_cache: Path, tmp_path: Path) -> None:
    snapshot = place_in_hf_cache(hf_cache, "lukewys/laion_clap", "630k-best.pt", fake_checkpoint(tmp_path / "c.pt"))
    tokenizer_in_cache(hf_cache, tmp_path)
    result = CliRunner().invoke(indexer_cli, ["models", "verify", "630k-best"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "630k-best: ok"

    blob = snapshot.resolve()
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF  # one flipped byte, same size
    blob.write_bytes(bytes(data))
    result = CliRunner().invoke(indexer_cli, ["models", "verify", "630k-best"])
    assert result.exit_code == 1
    problems = [line for line in result.stdout.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and str(snapshot) in problems[0] and "differs from the hub's LFS" in problems[0]

    # `download` with every file on disk checks them before recording their hashes.
    result = CliRunner().invoke(indexer_cli, ["models", "download", "630k-best"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert str(snapshot) in result.stderr and "differs from the hub's LFS" in result.stderr


def test_verify_catches_a_broken_tokenizer_file(hf_cache: Path, tmp_path: Path) -> None:
    place_in_hf_cache(hf_cache, "lukewys/laion_clap", "630k-best.pt", fake_checkpoint(tmp_path / "c.pt"))
    tokenizer_in_cache(hf_cache, tmp_path)
    merges = model_status("630k-best").files[1].path
    assert merges is not None and merges.name == "merges.txt"
    merges.resolve().write_text("")  # emptied in place
    report = verify_model("630k-best")
    assert not report.ok and any("merges.txt" in p for p in report.problems)


class FakeHub:
    """huggingface_hub's metadata and download calls against files in a folder (no network)."""

    def __init__(self, root: Path, cache: Path):
        self.root, self.cache = root, cache

    def url(self, repo_id: str, filename: str, revision: str | None = None) -> str:
        return f"{repo_id}::{filename}"

    def metadata(self, url: str, timeout: float = 10):  # type: ignore[no-untyped-def]
        from types import SimpleNamespace

        repo_id, filename = url.split("::")
        data = (self.root / repo_id / filename).read_bytes()
        if filename.endswith(".pt"):  # LFS: the ETag is the sha256
            etag = hashlib.sha256(data).hexdigest()
        else:  # a small git file: the ETag is its blob id
            etag = hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()
        return SimpleNamespace(etag=f'"{etag}"', commit_hash=REVISION, size=len(data))

    def download(self, repo_id: str, filename: str, revision: str | None = None, cache_dir=None, local_dir=None) -> str:  # type: ignore[no-untyped-def]
        return str(place_in_hf_cache(self.cache, repo_id, filename, self.served(repo_id, filename)))

    def served(self, repo_id: str, filename: str) -> Path:
        return self.root / repo_id / filename


def test_download_checks_the_hub_hash_and_records_it(hf_cache: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    remote = tmp_path / "remote"
    fake_checkpoint(remote / "lukewys" / "laion_clap" / "630k-best.pt")
    helpers.write_roberta_tokenizer(remote / "roberta-base", merges=["Ġ a"])
    hub = FakeHub(remote, hf_cache)
    monkeypatch.delenv("RESOUND_MODEL_DIR")  # downloads go to the HF cache
    monkeypatch.setattr(huggingface_hub, "hf_hub_url", hub.url)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", hub.metadata)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub.download)

    status = download_model("630k-best", convert=False)
    assert status.present
    record = json.loads((status.checkpoint.path.parent / "630k-best.pt.sha256.json").read_text())
    entry = record["files"]["lukewys/laion_clap/630k-best.pt"]
    assert entry["sha256"] == hashlib.sha256((remote / "lukewys/laion_clap/630k-best.pt").read_bytes()).hexdigest()
    assert entry["etag"] == entry["sha256"] and entry["revision"] == REVISION
    assert set(record["files"]) == {"lukewys/laion_clap/630k-best.pt", "roberta-base/vocab.json", "roberta-base/merges.txt"}
    assert verify_model("630k-best").ok

    # What arrives must be what the hub's hash says: a different file is refused and deleted.
    from indexer.encoders.model_store import remove_model

    removed = remove_model("630k-best")
    assert status.checkpoint.path in removed and not model_status("630k-best").checkpoint.path
    assert model_status("630k-best").files[0].path is None  # no other model on disk needs the tokenizer
    monkeypatch.setattr(hub, "served", lambda repo_id, filename: fake_checkpoint(tmp_path / "evil.pt", seed=9)
                        if filename.endswith(".pt") else remote / repo_id / filename)
    with pytest.raises(CheckpointError, match="does not match the hub's hash"):
        download_model("630k-best", convert=False)
    assert model_status("630k-best").checkpoint.path is None


def test_commands_that_embed_without_an_index_take_auto_too(hf_cache: Path, tmp_path: Path) -> None:
    from search.cli import main as search_cli

    clip = helpers.write_audio(tmp_path / "tone.wav", helpers.tone(440, 2.0))
    result = CliRunner().invoke(search_cli, ["classify", str(clip), "--label-set", "starter", "-k", "2", "--json",
                                             "--index", str(tmp_path / "no-index")])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)[0]["labels"]) == 2
    assert result.stderr.splitlines() == [f"note: {choose_model('auto').hint}"]
    assert "indexer models download 630k-audioset-best" in result.stderr


def test_every_model_option_names_the_model_auto_falls_back_to() -> None:
    from indexer.encoders import DEFAULT_MODEL
    from search.cli import main as search_cli

    assert DEFAULT_MODEL == "starter-aisfx"
    for cli, command in ((indexer_cli, ["build"]), (search_cli, ["classify"]), (search_cli, ["caption"])):
        text = " ".join(CliRunner().invoke(cli, [*command, "--help"]).stdout.split())
        assert "else starter-aisfx" in text.replace("starter- aisfx", "starter-aisfx"), (command, text)
