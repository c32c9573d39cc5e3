"""The search service over HTTP, against a real server (uvicorn on a thread, and `search serve` as a
process): ranked results, uploads, classification, audio with byte ranges, thumbnails, the page."""

from __future__ import annotations

import io
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.service_support import (
    ToneIndex,
    file_ids,
    make_tone_index,
    running_service,
    steps,
    tone,
    tone_environment,
    wav_bytes,
)

REPO = Path(__file__).resolve().parent.parent
# The ToneEncoder's logit scale is 10 and its vectors one-hot: a clip matching one of n labels gets
# probability e^10 / (e^10 + n - 1).
TOP_PROBABILITY_OF_3 = math.exp(10) / (math.exp(10) + 2)


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> ToneIndex:
    root = tmp_path_factory.mktemp("service")
    with tone_environment(root / "cache"):
        yield make_tone_index(root)


@pytest.fixture(scope="module")
def client(tones: ToneIndex) -> httpx.Client:
    with tone_environment(tones.root / "cache"), running_service(tones.index) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        yield client


def _hits(response: httpx.Response) -> list[tuple[str, float, float, float]]:
    assert response.status_code == 200, response.text
    return [(h["name"], h["start"], h["end"], round(h["score"], 4)) for h in response.json()["hits"]]


# -- search ---------------------------------------------------------------------------------------------
def test_text_query_ranks_the_matching_segment_first(client: httpx.Client) -> None:
    response = client.get("/api/query", params={"q": "a tone of 880 Hz", "k": 3, "mode": "vector"})  # the sound alone
    hits = _hits(response)
    assert hits[0] == ("steps.wav", 4.0, 6.0, 1.0)  # the third window of the file, not the file's start
    assert len(hits) == 3 and all(score == 0.0 for *_, score in hits[1:])
    body = response.json()
    assert (body["kind"], body["query"], body["modality"]) == ("query", "a tone of 880 Hz", "audio")
    first = body["hits"][0]
    assert first["rank"] == 1 and first["path"].endswith("mixed/steps.wav")
    assert first["audio_url"] == f"/api/files/{first['file_id']}/audio"
    assert first["waveform_url"] == f"/api/segments/{first['segment_id']}/waveform.png"


def test_two_equal_matches_both_rank_above_the_rest(client: httpx.Client) -> None:
    hits = _hits(client.get("/api/query", params={"q": "220", "k": 4}))
    assert sorted(hits[:2]) == [("a220.wav", 0.0, 2.0, 1.0), ("steps.wav", 0.0, 2.0, 1.0)]
    assert [h[3] for h in hits[2:]] == [0.0, 0.0]


def test_k_is_respected_and_bounded(client: httpx.Client) -> None:
    assert len(_hits(client.get("/api/query", params={"q": "440", "k": 1}))) == 1
    # More than the index holds: every file once (k counts files) ...
    files = _hits(client.get("/api/query", params={"q": "440", "k": 100}))
    assert len(files) == 6 and len({name for name, *_ in files}) == 6
    # ... or, ranking windows, every segment once.
    assert len(_hits(client.get("/api/query", params={"q": "440", "k": 100, "per_window": "true"}))) == 8


def test_a_hit_is_a_files_best_window_with_its_others(client: httpx.Client) -> None:
    hits = client.get("/api/query", params={"q": "330", "k": 100}).json()["hits"]
    steps = next(h for h in hits if h["name"] == "steps.wav")  # 220, 330, 880 Hz: only its middle window is 330
    assert (steps["start"], steps["end"], steps["score"]) == (2.0, 4.0, 1.0)
    windows = [(w["start"], w["end"], w["score"]) for w in steps["windows"]]
    assert windows[0] == (2.0, 4.0, 1.0)
    # Its other windows are listed only where they rank at or above the last hit's (issue 25, finding 7).
    assert all(score >= hits[-1]["score"] for _, _, score in windows) and len(windows) <= 3


def test_similar_upload_finds_the_same_sound(client: httpx.Client) -> None:
    response = client.post("/api/similar", files={"file": ("mine.wav", wav_bytes(tone(660)), "audio/wav")},
                           data={"k": "2"})
    hits = _hits(response)
    assert hits[0] == ("a660.ogg", 0.0, 2.0, 1.0) and len(hits) == 2
    assert response.json()["kind"] == "similar"


def test_similar_to_a_stored_segment_starts_with_itself(client: httpx.Client) -> None:
    first = client.get("/api/query", params={"q": "880", "k": 1}).json()["hits"][0]
    response = client.get(f"/api/segments/{first['segment_id']}/similar", params={"k": 2})
    assert _hits(response)[0] == ("steps.wav", 4.0, 6.0, 1.0)
    assert response.json()["hits"][0]["segment_id"] == first["segment_id"]
    assert client.get("/api/segments/999999/similar").status_code == 404


# -- classification ----------------------------------------------------------------------------------
def test_classify_with_own_labels_gives_probabilities(client: httpx.Client) -> None:
    response = client.post("/api/classify", files={"file": ("clip.wav", wav_bytes(tone(440)))},
                           data={"labels": "220 Hz\n440 Hz\n880 Hz", "prompts": "label"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["label_set"], body["prompts"], body["n_labels"]) == ("custom", "label", 3)
    assert [label["label"] for label in body["labels"]] == ["440 Hz", "220 Hz", "880 Hz"]
    assert body["labels"][0]["probability"] == pytest.approx(TOP_PROBABILITY_OF_3, rel=1e-5)
    assert body["labels"][0]["similarity"] == pytest.approx(1.0)
    assert sum(label["probability"] for label in body["labels"]) == pytest.approx(1.0, rel=1e-5)
    assert body["timeline"] == []  # one window


def test_classify_gives_a_label_per_window_of_a_long_clip(client: httpx.Client) -> None:
    response = client.post("/api/classify", files={"file": ("walk.wav", wav_bytes(steps(220, 330, 880)))},
                           data={"labels": "220 Hz\n330 Hz\n880 Hz", "k": "1"})
    body = response.json()
    assert body["prompts"] == "templates"  # the default for labels without a prompt bank
    assert [(w["start"], w["end"], w["labels"][0]["label"]) for w in body["timeline"]] == [
        (0.0, 2.0, "220 Hz"), (2.0, 4.0, "330 Hz"), (4.0, 6.0, "880 Hz")]
    assert body["timeline"][1]["labels"][0]["probability"] == pytest.approx(TOP_PROBABILITY_OF_3, rel=1e-5)


def test_classify_with_a_built_in_label_set(client: httpx.Client) -> None:
    response = client.post("/api/classify", files={"file": ("clip.wav", wav_bytes(tone(220)))},
                           data={"label_set": "starter", "k": "3"})
    body = response.json()
    assert (body["label_set"], body["prompts"], body["n_labels"]) == ("starter", "reclap", 40)
    assert len(body["labels"]) == 3


# -- index info, schema, page ---------------------------------------------------------------------------
def test_info_describes_the_index_and_limits(client: httpx.Client, tones: ToneIndex) -> None:
    body = client.get("/api/info").json()
    assert body["index"] == str(tones.index) and body["generation"] == 1
    assert body["counts"] == {"corpora": 1, "files": 6, "segments": 8, "failures": 0}
    assert body["model"] == {"id": "test_tones:model.tones", "family": "test", "dim": 6, "sample_rate": 16000,
                             "window_seconds": 2.0, "hop_seconds": 2.0}
    assert body["modalities"] == ["audio"] and body["faiss_factory"] == "IDMap2,Flat"
    assert {"esc50", "starter", "urbansound8k"} <= set(body["label_sets"])
    assert body["limits"]["max_k"] == 100 and body["limits"]["max_upload_bytes"] == 25 * 2**20


def test_openapi_schema_lists_the_api(client: httpx.Client) -> None:
    schema = client.get("/api/openapi.json").json()
    assert {"/api/query", "/api/similar", "/api/classify", "/api/info", "/api/files/{file_id}/audio",
            "/api/segments/{segment_id}/waveform.png", "/api/segments/{segment_id}/similar"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/api/similar"]["post"]["requestBody"]["content"]
    # Swagger UI would load from a CDN: not served.
    assert client.get("/docs").status_code == 404


def test_the_page_and_its_assets_load_nothing_from_elsewhere(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/app.js"' in page.text and 'href="/static/style.css"' in page.text
    for asset, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        response = client.get(f"/static/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
        assert "http://" not in response.text and "https://" not in response.text
    assert "http://" not in page.text and "https://" not in page.text


# -- media ---------------------------------------------------------------------------------------------------
def test_audio_is_the_file_and_honours_byte_ranges(client: httpx.Client, tones: ToneIndex) -> None:
    file_id = file_ids(tones.index)["mixed/steps.wav"]
    data = (tones.corpus / "mixed" / "steps.wav").read_bytes()
    url = f"/api/files/{file_id}/audio"

    full = client.get(url)
    assert (full.status_code, full.content, full.headers["content-type"]) == (200, data, "audio/wav")
    assert full.headers["accept-ranges"] == "bytes"

    part = client.get(url, headers={"Range": "bytes=100-199"})
    assert (part.status_code, part.content) == (206, data[100:200])
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert client.get(url, headers={"Range": "bytes=-50"}).content == data[-50:]
    tail = client.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
    assert (tail.status_code, tail.content) == (206, data[-10:])
    clipped = client.get(url, headers={"Range": f"bytes=0-{10 * len(data)}"})
    assert (clipped.status_code, clipped.content) == (206, data)

    beyond = client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"
    # What a server may ignore (malformed, another unit, several ranges) gets the whole file.
    for ignored in ("bytes=abc", "items=0-1", "bytes=0-1,5-6", "bytes=9-3"):
        response = client.get(url, headers={"Range": ignored})
        assert (response.status_code, response.content) == (200, data), ignored

    head = client.head(url)
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", str(len(data)))


def test_every_audio_format_gets_its_media_type(client: httpx.Client, tones: ToneIndex) -> None:
    ids = file_ids(tones.index)
    types = {name: client.head(f"/api/files/{ids[name]}/audio").headers["content-type"]
             for name in ("tones/a220.wav", "tones/a440.flac", "tones/a660.ogg")}
    assert types == {"tones/a220.wav": "audio/wav", "tones/a440.flac": "audio/flac", "tones/a660.ogg": "audio/ogg"}


def test_waveform_thumbnail_is_a_cached_png_of_the_segment(client: httpx.Client) -> None:
    from PIL import Image

    hit = client.get("/api/query", params={"q": "880", "k": 1}).json()["hits"][0]
    response = client.get(hit["waveform_url"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (480, 64)
    # A steady tone fills the picture's height at every column; silence would leave only the axis.
    alpha = [image.getpixel((x, 5))[3] for x in range(0, 480, 40)]
    assert all(a > 0 for a in alpha)

    again = client.get(hit["waveform_url"], headers={"If-None-Match": response.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")
    small = client.get(hit["waveform_url"], params={"width": 120, "height": 30})
    assert Image.open(io.BytesIO(small.content)).size == (120, 30)
    assert client.get("/api/segments/999999/waveform.png").status_code == 404


# -- the engine stays warm and follows new generations -------------------------------------------------------
def test_a_running_service_answers_from_a_rebuilt_index(tmp_path: Path) -> None:
    from tests import helpers

    with tone_environment(tmp_path / "cache"):
        tones = make_tone_index(tmp_path)
        with running_service(tones.index) as url, httpx.Client(base_url=url) as client:
            assert _hits(client.get("/api/query", params={"q": "880", "k": 1}))[0][0] == "steps.wav"
            (tones.corpus / "mixed" / "steps.wav").unlink()
            helpers.write_audio(tones.corpus / "new" / "high.wav", tone(880), rate=16000)
            tones.build()
            assert _hits(client.get("/api/query", params={"q": "880", "k": 1}))[0] == ("high.wav", 0.0, 2.0, 1.0)
            assert client.get("/api/info").json()["generation"] == 2


# -- `search serve` ----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_search_serve_runs_the_service_on_loopback(tones: ToneIndex) -> None:
    port = _free_port()
    env = {**os.environ, "RESOUND_PLUGINS": "tests.tone_plugin", "RESOUND_CACHE": str(tones.root / "cache"),
           "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "search.cli", "serve", "--index", str(tones.index),
                                "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120  # only a guard against a hang: the loop exits when the port answers
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "search serve never answered"
                time.sleep(0.2)
        assert info.status_code == 200 and info.json()["counts"]["segments"] == 8
        hits = httpx.get(f"http://127.0.0.1:{port}/api/query", params={"q": "660", "k": 1}).json()["hits"]
        assert hits[0]["name"] == "a660.ogg"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"on http://127.0.0.1:{port}/" in output


def test_search_serve_reports_a_missing_index_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from search.cli import main

    result = CliRunner().invoke(main, ["serve", "--index", str(tmp_path / "nowhere"), "--port", str(_free_port())])
    assert result.exit_code == 1
    assert "no resound index here" in result.output and "Traceback" not in result.output


def test_search_serve_refuses_an_unknown_default_label_set(tones: ToneIndex) -> None:
    from click.testing import CliRunner

    from search.cli import main

    with tone_environment(tones.root / "cache"):
        result = CliRunner().invoke(main, ["serve", "--index", str(tones.index), "--label-set", "birdsong",
                                           "--port", str(_free_port())])
    assert result.exit_code == 1 and "unknown default label set 'birdsong'" in result.output


def test_without_the_serve_extra_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from indexer.errors import MissingDependencyError

    for name in [m for m in sys.modules if m == "search.service" or m.startswith("search.service.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # what an absent package looks like to `import`
    with pytest.raises(MissingDependencyError, match=r'pip install "resound\[serve\]"'):
        import search.service  # noqa: F401
