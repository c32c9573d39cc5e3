"""`indexer export`: the vectors with file, window and tag columns, read back exactly with pyarrow, pandas
and numpy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner

from indexer import BuildOptions, Index, build_index
from indexer.errors import MissingDependencyError
from indexer.export import ExportError, export_index
from tests import helpers
from tests.helpers import ToneEncoder

RATE = 16000
PITCH = {f: i for i, f in enumerate(ToneEncoder.PITCHES)}  # the ToneEncoder's one-hot position of each pitch


def _wav(path: Path, freqs: list[float], **tags: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.concatenate([helpers.tone(f, 2.0, rate=RATE) for f in freqs])  # one 2 s window per pitch
    with soundfile.SoundFile(str(path), "w", RATE, 1, format=path.suffix[1:].upper()) as f:
        for key, value in tags.items():
            setattr(f, key, value)
        f.write(samples)


def _one_hot(freq: float) -> list[float]:
    v = [0.0] * (len(ToneEncoder.PITCHES) + 1)
    v[PITCH[freq]] = 1.0
    return v


@pytest.fixture
def built(tmp_path: Path, tone_model: Path, catalog_url: str | None) -> tuple[Path, Path, str | None]:
    corpus = tmp_path / "corpus"
    _wav(corpus / "a.wav", [220, 440], artist="Ann", genre="Jazz")
    _wav(corpus / "sub" / "b.flac", [880], title="Bé")
    _wav(corpus / "c.ogg", [330, 660, 220])
    build_index(corpus, tmp_path / "index", BuildOptions(model=str(tone_model), decode_workers=0, db_url=catalog_url))
    return corpus.resolve(), tmp_path / "index", catalog_url


# (file, start, end, pitch, title, artist, album, genre), in segment id order (the build's file order).
EXPECTED = [
    ("a.wav", 0.0, 2.0, 220, None, "Ann", None, "Jazz"),
    ("a.wav", 2.0, 4.0, 440, None, "Ann", None, "Jazz"),
    ("c.ogg", 0.0, 2.0, 330, None, None, None, None),
    ("c.ogg", 2.0, 4.0, 660, None, None, None, None),
    ("c.ogg", 4.0, 6.0, 220, None, None, None, None),
    ("sub/b.flac", 0.0, 2.0, 880, "Bé", None, None, None),
]


def test_parquet_export_reads_back_exactly(built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    corpus, index, db_url = built
    report = export_index(index, tmp_path / "vectors.parquet", db_url=db_url)
    assert (report.rows, report.dim, report.format) == (6, 6, "parquet")
    table = pq.read_table(tmp_path / "vectors.parquet")
    assert table.column_names == ["segment_id", "file_id", "path", "start", "end", "modalities", "title", "artist",
                                  "album", "genre", "description", "comment", "originator", "notes", "vector",
                                  "path_bytes"]
    rows = table.to_pylist()
    got = [(str(Path(r["path"]).relative_to(corpus)), r["start"], r["end"], r["title"], r["artist"], r["album"],
            r["genre"]) for r in rows]
    assert got == [(f, s, e, t, a, al, g) for f, s, e, _, t, a, al, g in EXPECTED]
    assert [r["vector"] for r in rows] == [_one_hot(e[3]) for e in EXPECTED]
    assert all(r["modalities"] == "audio" for r in rows)
    # The ids are the index's: the vectors are the ones a search scores.
    opened = Index(index, db_url=db_url)
    try:
        store = opened.load_stores()["segments"]
        ids = np.array([r["segment_id"] for r in rows])
        np.testing.assert_array_equal(np.stack([np.array(r["vector"], dtype=np.float32) for r in rows]),
                                      store.reconstruct(ids))
        assert sorted(ids.tolist()) == sorted(store.ids().tolist())
        segments = opened.catalog.segments(ids)
        assert [r["file_id"] for r in rows] == [segments[i].file_id for i in ids.tolist()]
    finally:
        opened.close()
    meta = json.loads(table.schema.metadata[b"resound"])
    assert meta["model_id"] == "test_tones:model.tones" and meta["dim"] == 6 and meta["metric"] == "inner_product"
    import pyarrow as pa

    vector_type = table.schema.field("vector").type
    assert pa.types.is_fixed_size_list(vector_type) and vector_type.list_size == 6
    assert vector_type.value_type == pa.float32()
    frame = table.to_pandas()  # what pandas users (and `datasets.Dataset.from_parquet`) get
    assert frame.shape == (6, 16) and np.stack(frame["vector"].to_numpy()).shape == (6, 6)


def test_npz_export_reads_back_exactly(built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus, index, db_url = built
    report = export_index(index, tmp_path / "vectors.npz", db_url=db_url)
    assert report.rows == 6
    with np.load(tmp_path / "vectors.npz") as data:
        assert [str(Path(p).relative_to(corpus)) for p in data["path"]] == [e[0] for e in EXPECTED]
        np.testing.assert_array_equal(data["start"], [e[1] for e in EXPECTED])
        np.testing.assert_array_equal(data["end"], [e[2] for e in EXPECTED])
        np.testing.assert_array_equal(data["vectors"], np.array([_one_hot(e[3]) for e in EXPECTED], dtype=np.float32))
        assert data["vectors"].dtype == np.float32 and data["segment_id"].dtype == np.int64
        assert data["artist"].tolist() == [e[5] or "" for e in EXPECTED]
        assert data["title"].tolist() == [e[4] or "" for e in EXPECTED]
        assert json.loads(str(data["provenance"]))["model_id"] == "test_tones:model.tones"
        assert np.all(np.diff(data["segment_id"]) > 0)


def test_export_cli_and_its_errors(tmp_path: Path, tone_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer.cli import main

    corpus = tmp_path / "corpus"
    _wav(corpus / "a.wav", [220, 440])
    build_index(corpus, tmp_path / "index", BuildOptions(model=str(tone_model), decode_workers=0))
    runner = CliRunner()
    result = runner.invoke(main, ["export", "--index", str(tmp_path / "index"), "--out", str(tmp_path / "v.parquet")])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{tmp_path / 'v.parquet'}: 2 segments, 6-d vectors (parquet)"
    result = runner.invoke(main, ["export", "--index", str(tmp_path / "index"), "--format", "npz",
                                  "--out", str(tmp_path / "v.bin")])
    assert result.exit_code == 0 and np.load(tmp_path / "v.bin")["vectors"].shape == (2, 6)
    result = runner.invoke(main, ["export", "--index", str(tmp_path / "index"), "--out", str(tmp_path / "v.csv")])
    assert result.exit_code == 1 and "cannot tell the format from the suffix; give one of parquet, npz" in result.output
    result = runner.invoke(main, ["export", "--index", str(tmp_path / "index"), "--out", str(tmp_path / "no" / "v.npz")])
    assert result.exit_code == 1 and "does not exist" in result.output
    with pytest.raises(ExportError, match="unknown export format 'csv'"):
        export_index(tmp_path / "index", tmp_path / "x.csv", "csv")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'resound\[export\]'"):
        export_index(tmp_path / "index", tmp_path / "y.parquet")
    assert not (tmp_path / "y.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary left
