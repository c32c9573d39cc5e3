"""Devices: `--device cpu|cuda|auto` resolution and its fallbacks, inference precision, and FAISS on a GPU.

The FAISS GPU paths run against a real GPU where faiss has one, and everywhere against tests/fake_faiss_gpu.py,
a CPU stand-in that keeps the GPU behaviours resound's logic must handle (no direct map on GPU copies,
k and nprobe limits, HNSW not clonable, parameters not following a clone). Each asserts results: equal to
the CPU store's, exact where the index is exact, ids and vectors intact after the round trip.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest
from click.testing import CliRunner

from indexer import BuildOptions, build_index
from indexer.device import Placement, cuda_device_count, faiss_gpu_count, resolve_device
from indexer.encoders.base import l2_normalize
from indexer.encoders.precision import autocast_dtype
from indexer.errors import DeviceError
from indexer.store import GPU_MAX_K, VectorStore, faiss_gpu
from indexer.tuning import exact_neighbours, recall_at, tune_search_params
from search import Engine
from tests import fake_faiss_gpu, helpers

NO_GPU_HERE = cuda_device_count() == 0 and faiss_gpu_count() == 0


# -- device resolution ----------------------------------------------------------------------------------
def _machine(monkeypatch: pytest.MonkeyPatch, gpus: int, faiss_gpus: int) -> None:
    monkeypatch.setattr("indexer.device.cuda_device_count", lambda: gpus)
    monkeypatch.setattr("indexer.device.faiss_gpu_count", lambda: faiss_gpus)


@pytest.mark.skipif(not NO_GPU_HERE, reason="this machine has a GPU")
def test_auto_runs_on_cpu_here_quietly_and_cuda_is_a_clear_error() -> None:
    assert resolve_device("auto") == Placement("cpu")
    with pytest.raises(DeviceError, match=r"^device 'cuda' asked for, but .*; use device cpu or auto$"):
        resolve_device("cuda")
    assert resolve_device("cpu") == Placement("cpu")


@pytest.mark.parametrize(("device", "gpus", "faiss_gpus", "torch_device", "faiss_gpu", "noted"), [
    ("auto", 0, 0, "cpu", None, []),
    ("auto", 2, 2, "cuda:0", 0, []),
    ("auto", 1, 0, "cuda:0", None, ["FAISS runs on CPU"]),
    ("auto", 0, 1, "cpu", 0, ["the model runs on CPU"]),
    ("cuda", 1, 1, "cuda:0", 0, []),
    ("CUDA:1", 2, 2, "cuda:1", 1, []),
    ("cuda:1", 2, 1, "cuda:1", None, ["FAISS runs on CPU"]),
    ("cpu", 2, 2, "cpu", None, []),
])
def test_resolution_on_each_kind_of_machine(monkeypatch: pytest.MonkeyPatch, device: str, gpus: int, faiss_gpus: int,
                                            torch_device: str, faiss_gpu: int | None, noted: list[str]) -> None:
    _machine(monkeypatch, gpus, faiss_gpus)
    placement = resolve_device(device)
    assert (placement.torch_device, placement.faiss_gpu) == (torch_device, faiss_gpu)
    assert len(placement.notes) == len(noted) and all(w in n for w, n in zip(noted, placement.notes))


@pytest.mark.parametrize(("device", "gpus", "message"), [
    ("cuda", 0, "device 'cuda' asked for, but"),
    ("cuda:2", 2, "device 'cuda:2' asked for, but torch sees 2 CUDA GPU(s) (cuda:0 to cuda:1)"),
    ("gpu", 1, "unknown device 'gpu': use cpu, cuda, cuda:N or auto"),
    ("mps", 0, "unknown device 'mps'"),
])
def test_impossible_devices_are_one_line_errors(monkeypatch: pytest.MonkeyPatch, device: str, gpus: int,
                                                message: str) -> None:
    _machine(monkeypatch, gpus, gpus)
    with pytest.raises(DeviceError) as err:
        resolve_device(device)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def _tone_corpus(root: Path, files: int = 6) -> Path:
    pitches = helpers.ToneEncoder.PITCHES
    for i in range(files):
        audio = np.concatenate([helpers.tone(pitches[(i * j) % 5], 2.0, rate=16000) for j in range(4)])
        helpers.write_audio(root / f"f{i}.wav", audio, rate=16000)
    return root


def test_cli_device_errors_and_notes(tmp_path: Path, tone_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer.cli import main as indexer_cli
    from search.cli import main as search_cli

    model = tone_model
    corpus = _tone_corpus(tmp_path / "corpus", files=2)
    index = str(tmp_path / "index")
    _machine(monkeypatch, 0, 0)
    failed = CliRunner().invoke(indexer_cli, ["build", str(corpus), "--index", index, "--model", str(model), "--device", "cuda"])
    assert failed.exit_code == 1 and failed.stderr.count("\n") == 1
    assert failed.stderr.startswith("Error: device 'cuda' asked for, but ")
    built = CliRunner().invoke(indexer_cli, ["build", str(corpus), "--index", index, "--model", str(model), "--quiet"])
    assert built.exit_code == 0, built.output
    assert not [line for line in built.stderr.splitlines() if line.startswith("note:")], built.stderr
    quiet = CliRunner().invoke(search_cli, ["query", "a 440 tone", "--index", index, "--device", "cpu", "--json"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


# -- precision ------------------------------------------------------------------------------------------
def test_precision_by_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert autocast_dtype("cpu") is None and autocast_dtype("cuda:0", "fp32") is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype("cuda:0") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype("cuda") == torch.float16  # GPUs before Ampere
    assert autocast_dtype("cpu", "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16"):
        autocast_dtype("cpu", "int8")


def test_reduced_precision_changes_vectors_a_little_and_fp32_not_at_all(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The starter model under bf16 autocast (on CPU here; CUDA's default) against its fp32 vectors."""
    from indexer.embed import embed_inputs
    from indexer.encoders import load_encoder

    encoder = load_encoder("starter")
    rng = np.random.default_rng(0)
    windows = [helpers.tone(f, 4.0, rate=16000) + 0.05 * rng.standard_normal(64000).astype(np.float32)
               for f in (220, 440, 880, 1760)]
    fp32 = embed_inputs(encoder, windows, [None] * 4, precision="fp32")
    # auto on a CPU without native bf16 is fp32 (tests/test_indexing_speed.py: with it, bf16 where safe)
    monkeypatch.setattr("indexer.encoders.precision.cpu_has_native_bf16", lambda: False)
    np.testing.assert_array_equal(embed_inputs(encoder, windows, [None] * 4, precision="auto"), fp32)
    bf16 = embed_inputs(encoder, windows, [None] * 4, precision="bf16")
    cosines = np.sum(bf16 * fp32, axis=1)
    assert not np.array_equal(bf16, fp32) and np.all(cosines > 0.98), cosines
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-6)  # renormalised after autocast


# -- FAISS on a GPU -------------------------------------------------------------------------------------
@pytest.fixture(params=["fake", "real"])
def gpu(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A FaissGpu: the machine's first GPU (skipped without one), or the CPU stand-in."""
    if request.param == "real":
        if faiss_gpu_count() == 0:
            pytest.skip("faiss has no GPU here")
        return faiss_gpu(0)
    fake_faiss_gpu.install(monkeypatch)
    return faiss_gpu(0)


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return l2_normalize(centres[rng.integers(0, clusters, n)] + rng.standard_normal((n, dim)))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    everything = clustered(6200, 32, 300, seed=0)
    ids = np.arange(6000, dtype=np.int64) * 5 + 11  # catalog ids, not positions
    return ids, everything[:6000], everything[6000:]


def test_exact_search_on_gpu_equals_cpu(gpu, data) -> None:  # type: ignore[no-untyped-def]
    ids, vectors, queries = data
    cpu = VectorStore.create(32)
    cpu.add(ids, vectors)
    on_gpu = VectorStore.create(32).to_gpu(gpu)
    on_gpu.add(ids, vectors)
    expected = cpu.search(queries, 10)
    found = on_gpu.search(queries, 10)
    np.testing.assert_array_equal(found.ids, expected.ids)
    np.testing.assert_allclose(found.scores, expected.scores, rtol=1e-5)
    assert on_gpu.gpu_note is None
    # A change after the GPU copy was made is searched too, and k beyond the GPU's limit is answered on CPU.
    on_gpu.remove(ids[:100])
    on_gpu.add([3], vectors[:1])
    top = on_gpu.search(vectors[:2], 1).ids[:, 0]
    assert top[0] == 3 and top[1] not in ids[:100]
    big = on_gpu.search(queries[:2], GPU_MAX_K + 100)
    assert big.ids.shape == (2, GPU_MAX_K + 100) and set(big.ids[0]) <= set(ids[100:]) | {3}


def test_a_failing_gpu_search_is_answered_on_cpu_with_a_note(monkeypatch: pytest.MonkeyPatch, data) -> None:  # type: ignore[no-untyped-def]
    fake_faiss_gpu.install(monkeypatch)
    ids, vectors, queries = data
    store = VectorStore.create(32).to_gpu(faiss_gpu(0))
    store.add(ids, vectors)

    def out_of_memory(self, x, k):  # type: ignore[no-untyped-def]
        raise RuntimeError("Error in GpuResources: cudaMalloc failed (out of memory)\nmore detail")

    monkeypatch.setattr(fake_faiss_gpu.FakeGpuIndex, "search", out_of_memory)
    expected = store.index.search(np.ascontiguousarray(queries), 5)[1]
    np.testing.assert_array_equal(store.search(queries, 5).ids, expected)
    assert store.gpu_note == "searching on CPU after a GPU error (Error in GpuResources: cudaMalloc failed (out of memory))"


@pytest.mark.parametrize("factory", ["IVF64,Flat", "IVF64,SQ8"])
def test_ivf_trained_on_gpu_is_a_complete_cpu_index(gpu, data, factory: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids, vectors, queries = data
    flat = VectorStore.create(32).to_gpu(gpu)
    flat.add(ids, vectors)
    store = flat.converted(factory)
    assert store.gpu is gpu and store.kind == "ivf" and store.ntotal == 6000
    # The copy back from the GPU has every id, and vectors reconstruct by catalog id (direct map rebuilt).
    assert np.array_equal(store.ids(), ids)
    atol = 1e-6 if factory.endswith("Flat") else 0.05
    np.testing.assert_allclose(store.reconstruct(ids[[0, 999, 5999]]), vectors[[0, 999, 5999]], atol=atol)
    tuning = tune_search_params(store, target_recall=0.95)  # searches on the GPU copy
    assert tuning.recall_at_10 >= 0.95
    truth = ids[exact_neighbours(vectors, queries, 10)]
    assert recall_at(store.search(queries, 10).ids, truth) >= 0.9
    # Parameters changed after the GPU copy exists reach it: the GPU answers as the CPU index does.
    for nprobe in (1, 16):
        store.set_search_params({"nprobe": nprobe})
        cpu_ids = store.index.search(np.ascontiguousarray(queries), 10)[1]
        np.testing.assert_array_equal(store.search(queries, 10).ids, cpu_ids)
    assert store.remove(ids[:10]) == 10 and store.ntotal == 5990
    store.save(tmp_path / "s.faiss")
    loaded = VectorStore.load(tmp_path / "s.faiss", factory)
    loaded.set_search_params({"nprobe": 16})
    np.testing.assert_array_equal(loaded.search(queries, 10).ids, store.search(queries, 10).ids)


def test_hnsw_is_built_with_cagra_and_searched_as_hnsw(monkeypatch: pytest.MonkeyPatch, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fake_faiss_gpu.install(monkeypatch, cagra=True)
    ids, vectors, queries = data
    flat = VectorStore.create(32).to_gpu(faiss_gpu(0))
    flat.add(ids, vectors)
    store = flat.converted("IDMap2,HNSW16,Flat")
    inner = faiss.downcast_index(store.index.index)
    assert isinstance(store.index, faiss.IndexIDMap2) and isinstance(inner, faiss.IndexHNSW) and inner.hnsw.nb_neighbors(0) == 32
    assert np.array_equal(np.sort(store.ids()), ids)
    np.testing.assert_array_equal(store.reconstruct(ids[[5, 4000]]), vectors[[5, 4000]])
    tuning = tune_search_params(store, target_recall=0.95)
    truth = ids[exact_neighbours(vectors, queries, 10)]
    assert tuning.recall_at_10 >= 0.95 and recall_at(store.search(queries, 10).ids, truth) >= 0.9
    assert store.gpu_note == "HNSW indexes are searched on CPU"
    store.save(tmp_path / "h.faiss")
    loaded = VectorStore.load(tmp_path / "h.faiss", "IDMap2,HNSW16,Flat")
    loaded.set_search_params(tuning.params)
    np.testing.assert_array_equal(loaded.search(queries, 10).ids, store.search(queries, 10).ids)


def test_without_cagra_hnsw_is_built_on_cpu(monkeypatch: pytest.MonkeyPatch, data) -> None:  # type: ignore[no-untyped-def]
    fake_faiss_gpu.install(monkeypatch, cagra=False)
    ids, vectors, _ = data
    flat = VectorStore.create(32).to_gpu(faiss_gpu(0))
    flat.add(ids[:500], vectors[:500])
    store = flat.converted("IDMap2,HNSW16,Flat")
    assert store.kind == "hnsw" and np.array_equal(np.sort(store.ids()), ids[:500])
    assert store.search(vectors[:3], 1).ids[:, 0].tolist() == ids[:3].tolist()


def test_build_and_search_on_a_gpu_equal_cpu(tmp_path: Path, tone_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole build with --device cuda (FAISS training and tuning on the stand-in GPU) gives the CPU build's
    index, and an Engine on the GPU answers as one on CPU."""
    model = tone_model
    corpus = _tone_corpus(tmp_path / "corpus")
    options = BuildOptions(model=str(model), index_type="IVF4,Flat", device="cpu", decode_workers=0)
    build_index(corpus, tmp_path / "cpu", options)
    fake_faiss_gpu.install(monkeypatch)
    _machine(monkeypatch, 1, 1)
    report = build_index(corpus, tmp_path / "gpu", BuildOptions(model=str(model), index_type="IVF4,Flat", device="cuda",
                                                                decode_workers=0))
    assert report.notes == [] and report.segments_added == 24
    engines = {name: Engine(tmp_path / name, device=device) for name, device in (("cpu", "cpu"), ("gpu", "cuda"))}
    assert engines["gpu"].placement == Placement("cuda:0", 0)
    assert engines["cpu"].provenance.search_params == engines["gpu"].provenance.search_params
    for pitch in helpers.ToneEncoder.PITCHES:
        hits = {name: [(h.path, h.start, h.score) for h in e.query(f"a {int(pitch)} tone", k=30)] for name, e in engines.items()}
        assert hits["gpu"] == hits["cpu"] and hits["cpu"]
    assert engines["gpu"].stores()["segments"].gpu is not None and engines["gpu"].notes == []
    for engine in engines.values():
        engine.close()
