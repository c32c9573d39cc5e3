"""`indexer build --ray`: on a local Ray instance and on a cluster of two Ray nodes, the index (vectors, catalog
rows and their ids, failures) equals a local build's; the shards reach it on disk, as parquet exports merged
by `indexer import`; an encoder worker killed mid-run changes nothing; a driver killed mid-run is resumed
from the shards it had finished, which are not embedded again."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from db.schema import FailureRow, FileRow, SegmentRow
from indexer import BuildOptions, Index, build_index
from indexer.build import BuildReport
from indexer.distributed import DistributedBuildError, RayOptions, build_index_on_ray, ray_build
from indexer.distributed.shards import read_shard
from tests import helpers

REPO = Path(__file__).resolve().parent.parent
BLOCK_FILES = 3
# Test clusters are private to this machine: no token to pass around (one mode for every cluster of this
# process, which keeps the mode of its first connection), and nodes stop at once instead of draining.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}


@pytest.fixture(scope="module", autouse=True)
def ray_env() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _corpus(root: Path) -> Path:
    """Tone files of 1 to 4 windows in folders, one file that is not audio, one name that is not UTF-8."""
    pitches = helpers.ToneEncoder.PITCHES
    for i in range(17):
        audio = np.concatenate([helpers.tone(pitches[(i + j) % len(pitches)], 2.0, rate=16000)
                                for j in range(1 + i % 4)])
        helpers.write_audio(root / f"set{i % 3}" / f"clip{i:02d}.flac", audio, rate=16000)
    helpers.write_audio(root / os.fsdecode(b"caf\xe9.wav"), helpers.tone(660, 3.0, rate=16000), rate=16000)
    (root / "set1" / "broken.wav").write_bytes(b"RIFF, but not a wave file")
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return _corpus(tmp_path / "corpus")


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tone test encoder behind a checkpoint whose control file can make its workers die or hang."""
    monkeypatch.setenv("RESOUND_PLUGINS", "tests.ray_plugin")  # forwarded to the Ray workers
    checkpoint = tmp_path / "model.raytones"
    checkpoint.write_text(json.dumps({"control": str(tmp_path / "control.json")}))
    return checkpoint


def _control(model: Path, **settings: object) -> None:
    Path(json.loads(model.read_text())["control"]).write_text(json.dumps(settings))


def _snapshot(index_path: Path, db_url: str | None = None) -> dict:
    """Everything a search sees: catalog rows with their ids, vectors by id, index type."""
    index = Index(index_path, db_url=db_url)
    try:
        stores = index.load_stores()
        with index.catalog.session() as s:
            files = s.execute(select(FileRow.id, FileRow.path, FileRow.path_bytes, FileRow.content_hash, FileRow.size,
                                     FileRow.duration, FileRow.source_rate, FileRow.channels).order_by(FileRow.id)).all()
            segments = s.execute(select(SegmentRow.id, SegmentRow.file_id, SegmentRow.start, SegmentRow.end,
                                        SegmentRow.modalities).order_by(SegmentRow.id)).all()
            failures = s.execute(select(FailureRow.id, FailureRow.path, FailureRow.content_hash, FailureRow.reason)
                                 .order_by(FailureRow.id)).all()
        provenance = index.provenance()
        vectors = {}
        for name, store in stores.items():
            ids = store.ids()
            vectors[name] = (ids.tolist(), store.reconstruct(ids))
        return {"files": [tuple(r) for r in files], "segments": [tuple(r) for r in segments],
                "failures": [tuple(r) for r in failures], "vectors": vectors,
                "index_type": (provenance.faiss_factory, provenance.search_params)}
    finally:
        index.close()


def _assert_same_index(actual: dict, expected: dict) -> None:
    for table in ("files", "segments", "failures"):
        assert actual[table] == expected[table], table
    assert actual["index_type"] == expected["index_type"]
    for name, (ids, vectors) in expected["vectors"].items():
        assert actual["vectors"][name][0] == ids, name
        np.testing.assert_allclose(actual["vectors"][name][1], vectors, rtol=0, atol=1e-6)


def _changes(report: BuildReport) -> tuple:
    return (report.added, report.updated, report.unchanged, report.removed, report.failed, report.still_failed,
            report.segments_added, report.segments_removed)


def test_without_ray_the_cli_names_the_extra_to_install(tmp_path: Path, corpus: Path, model: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from indexer.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = CliRunner().invoke(main, ["build", str(corpus), "--index", str(tmp_path / "index"), "--model", str(model),
                                       "--ray"])
    assert result.exit_code == 1
    assert 'pip install "resound[ray]"' in result.output
    assert not (tmp_path / "index").exists()  # refused before anything was written


# -- one local Ray instance ----------------------------------------------------------------------------------

@pytest.fixture(scope="class")
def local_ray() -> Iterator[None]:
    import ray

    ray.init(address="local", num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False,
             log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.usefixtures("local_ray")
class TestLocalRay:
    def test_equals_local_build_and_updates_alike(self, tmp_path: Path, corpus: Path, model: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        # A long file, streamed part by part (here above 1 MiB decoded) by the actor as by the local build.
        monkeypatch.setattr("indexer.embed.STREAM_ABOVE_BYTES", 2**20)
        pitches = helpers.ToneEncoder.PITCHES
        helpers.write_audio(corpus / "long.flac", np.concatenate([helpers.tone(p, 6.0, rate=16000) for p in pitches * 2]),
                            rate=16000)
        # An IVF index: the merge must train it as the local build does (one training, same sample).
        options = BuildOptions(model=str(model), batch_size=4, index_type="IVF4,Flat")
        ray_options = RayOptions(block_files=BLOCK_FILES)
        local = build_index(corpus, tmp_path / "local", options)
        distributed = build_index_on_ray(corpus, tmp_path / "ray", options, ray_options)
        assert _changes(distributed) == _changes(local)
        assert [Path(f.path).name for f in distributed.failed] == ["broken.wav"]
        assert distributed.blocks_embedded == math.ceil((len(local.failed) + local.added) / BLOCK_FILES)
        _assert_same_index(_snapshot(tmp_path / "ray"), _snapshot(tmp_path / "local"))
        assert not (tmp_path / "ray" / "shards").exists()  # merged shards are deleted

        # Content-hash skipping: a changed, a deleted, a new file; the broken one unchanged, not retried.
        helpers.write_audio(corpus / "set0" / "clip00.flac", helpers.tone(880, 6.0, rate=16000), rate=16000)
        (corpus / "set1" / "clip01.flac").unlink()
        helpers.write_audio(corpus / "new.flac", helpers.tone(220, 5.0, rate=16000), rate=16000)
        local = build_index(corpus, tmp_path / "local", options)
        distributed = build_index_on_ray(corpus, tmp_path / "ray", options, ray_options)
        assert _changes(distributed) == _changes(local)
        assert (distributed.added, distributed.updated, distributed.removed, distributed.still_failed) == (1, 1, 1, 1)
        assert distributed.blocks_embedded == 1  # only the two files to embed went to the cluster
        _assert_same_index(_snapshot(tmp_path / "ray"), _snapshot(tmp_path / "local"))

    def test_shards_reach_the_index_through_import_on_disk(self, tmp_path: Path, corpus: Path, model: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from indexer.import_vectors import read_provenance

        imports = []

        def spy(sources, index_path, options):  # type: ignore[no-untyped-def]
            imports.append([Path(p) for p in sources])
            return real(sources, index_path, options)

        real = ray_build.import_vectors
        monkeypatch.setattr(ray_build, "import_vectors", spy)
        options = BuildOptions(model=str(model), batch_size=4)
        local = build_index(corpus, tmp_path / "local", options)
        report = build_index_on_ray(corpus, tmp_path / "ray", options,
                                    RayOptions(block_files=BLOCK_FILES, keep_shards=True))
        # The driver handed the actors' shard files, in corpus order, to `indexer import`'s library function:
        # parquet exports of the index's model, one per block with an embedded file (the broken file's block too).
        assert imports == [report.shards_imported]
        assert len(report.shards_imported) == report.blocks_embedded
        for shard in report.shards_imported:
            assert shard.parent == tmp_path / "ray" / "shards" and shard.suffix == ".parquet"
            assert read_provenance(shard).model_id == Index(tmp_path / "ray").provenance().model_id
        # The index holds the shards' rows, row for row: segment ids in corpus order, vectors as written.
        rows = pa.concat_tables([pq.read_table(p) for p in report.shards_imported])
        snapshot = _snapshot(tmp_path / "ray")
        ids, vectors = snapshot["vectors"]["segments"]
        assert rows.num_rows == len(ids) == report.segments_added == local.segments_added
        assert [(s[2], s[3]) for s in snapshot["segments"]] == list(zip(rows["start"].to_pylist(),
                                                                         rows["end"].to_pylist()))
        np.testing.assert_array_equal(vectors, np.stack(rows["vector"].to_numpy(zero_copy_only=False)))
        _assert_same_index(snapshot, _snapshot(tmp_path / "local"))

    def test_finished_shards_are_taken_as_whole_blocks(self, tmp_path: Path, corpus: Path, model: Path) -> None:
        options = BuildOptions(model=str(model), batch_size=4)
        first = build_index_on_ray(corpus, tmp_path / "first", options,
                                   RayOptions(block_files=BLOCK_FILES, keep_shards=True))
        # As if a build of `ray` had been killed once the cluster had written every shard.
        shutil.copytree(tmp_path / "first" / "shards", tmp_path / "ray" / "shards")
        # A new file sorts into the first block (caf\xe9.wav, set0/clip00, set0/clip03): that block's shard no
        # longer holds a run of the files to add, so its files are embedded again with the new one.
        helpers.write_audio(corpus / "set0" / "clip00b.flac", helpers.tone(440, 4.0, rate=16000), rate=16000)
        local = build_index(corpus, tmp_path / "local", options)
        report = build_index_on_ray(corpus, tmp_path / "ray", options, RayOptions(block_files=BLOCK_FILES))
        assert report.files_reused == first.added + len(first.failed) - BLOCK_FILES
        assert report.blocks_embedded == math.ceil((BLOCK_FILES + 1) / BLOCK_FILES)
        assert _changes(report) == _changes(local)
        _assert_same_index(_snapshot(tmp_path / "ray"), _snapshot(tmp_path / "local"))

    def test_encoder_worker_killed_mid_run(self, tmp_path: Path, corpus: Path, model: Path) -> None:
        options = BuildOptions(model=str(model), batch_size=4)
        reference = build_index(corpus, tmp_path / "local", options)
        killed = tmp_path / "killed"
        _control(model, shards=str(tmp_path / "ray" / "shards"), kill_at_shards=2, marker=str(killed))
        report = build_index_on_ray(corpus, tmp_path / "ray", options, RayOptions(block_files=BLOCK_FILES))
        assert killed.exists()  # the actor really died with a block in hand (Ray restarted it and retried)
        assert _changes(report) == _changes(reference)
        _assert_same_index(_snapshot(tmp_path / "ray"), _snapshot(tmp_path / "local"))

    def test_a_block_that_kills_every_worker_fails_the_build(self, tmp_path: Path, corpus: Path, model: Path) -> None:
        shards = tmp_path / "ray" / "shards"
        _control(model, shards=str(shards), crash_at_shards=1)  # like a file that crashes the model each time
        with pytest.raises(DistributedBuildError, match="blocks were finished and their shards kept"):
            build_index_on_ray(corpus, tmp_path / "ray", BuildOptions(model=str(model), batch_size=4),
                               RayOptions(block_files=BLOCK_FILES))
        assert not (tmp_path / "ray" / "manifest.json").exists()  # nothing committed
        assert list(shards.glob("*.parquet"))  # what was finished waits for the next run


# -- two Ray nodes on this machine ---------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(*args: str) -> subprocess.Popen:
    # --block keeps the node's processes under this one: terminating it stops exactly this node.
    return subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-cpus=1", "--disable-usage-stats",
         f"--object-store-memory={100 * 2**20}", f"--dashboard-agent-listen-port={_free_port()}", *args],
        env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="class")
def two_nodes() -> Iterator[str]:
    """A head node and a worker node, one CPU each: decoding tasks and the encoder actor need both."""
    import ray

    port = _free_port()
    address = f"127.0.0.1:{port}"
    nodes = [_ray_start("--head", f"--port={port}", "--include-dashboard=false")]
    try:
        deadline = time.monotonic() + 120
        while True:  # the head accepts drivers once its GCS is up
            try:
                ray.init(address=address, log_to_driver=False)
                break
            except (ConnectionError, RuntimeError, ray.exceptions.RpcError):
                if nodes[0].poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        nodes.append(_ray_start(f"--address={address}"))
        while sum(n["Alive"] for n in ray.nodes()) < 2:
            assert time.monotonic() < deadline and nodes[1].poll() is None, "the worker node never joined"
            time.sleep(0.5)
        ray.shutdown()  # each build connects by address, as `indexer build --ray ADDRESS` does
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for node in reversed(nodes):  # the worker first: it says goodbye to the head's GCS
            _stop(node)


class TestTwoNodes:
    def test_equals_local_build_with_a_postgres_catalog(self, tmp_path: Path, corpus: Path, model: Path,
                                                        two_nodes: str, postgres_url: str) -> None:
        options = BuildOptions(model=str(model), batch_size=4)
        local = build_index(corpus, tmp_path / "local", options)
        distributed = build_index_on_ray(corpus, tmp_path / "ray", BuildOptions(model=str(model), batch_size=4,
                                                                                 db_url=postgres_url),
                                         RayOptions(address=two_nodes, block_files=BLOCK_FILES))
        assert _changes(distributed) == _changes(local)
        _assert_same_index(_snapshot(tmp_path / "ray", postgres_url), _snapshot(tmp_path / "local"))

    def test_killed_driver_resumes_from_finished_shards(self, tmp_path: Path, corpus: Path, model: Path,
                                                        two_nodes: str) -> None:
        options = BuildOptions(model=str(model), batch_size=4)
        local = build_index(corpus, tmp_path / "local", options)
        shards = tmp_path / "ray" / "shards"
        _control(model, shards=str(shards), hang_at_shards=2)  # the encoder stalls on the third block
        driver = subprocess.Popen(
            [sys.executable, "-m", "indexer.cli", "build", str(corpus), "--index", str(tmp_path / "ray"),
             "--model", str(model), "--batch-size", "4", "--ray", two_nodes, "--ray-block-files", str(BLOCK_FILES),
             "--quiet"],
            cwd=REPO, env={**os.environ, "PYTHONWARNINGS": "ignore"}, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while len(list(shards.glob("*.parquet"))) < 2:
            if driver.poll() is not None or time.monotonic() > deadline:
                _stop(driver)
                pytest.fail(f"the driver wrote no shards: {driver.stderr.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.2)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        finished = [read_shard(p) for p in shards.glob("*.parquet")]
        assert len(finished) == 2 and not (tmp_path / "ray" / "manifest.json").exists()  # nothing committed

        _control(model)  # the encoder behaves again
        report = build_index_on_ray(corpus, tmp_path / "ray", options,
                                    RayOptions(address=two_nodes, block_files=BLOCK_FILES))
        reused = [f for shard in finished for f in shard.files]
        to_embed = local.added + len(local.failed)
        assert report.files_reused == len(reused) == 2 * BLOCK_FILES
        assert report.blocks_embedded == math.ceil((to_embed - len(reused)) / BLOCK_FILES)
        # Files of finished shards are not embedded again: only the other windows went through the encoder.
        assert report.windows_embedded == local.segments_added - sum(f.windows for f in reused)
        assert _changes(report) == _changes(local)
        _assert_same_index(_snapshot(tmp_path / "ray"), _snapshot(tmp_path / "local"))
