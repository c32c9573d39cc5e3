"""What the service refuses, and how: path traversal in every spelling, files that resolve outside the
corpus, oversized or overlong uploads, malformed requests, foreign Host headers. Each gets a 4xx with a
reason, and no byte from outside the corpus ever comes back."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from tests import helpers
from tests.service_support import (
    ToneIndex,
    file_ids,
    make_tone_index,
    raw_request,
    running_service,
    tone,
    tone_environment,
    wav_bytes,
)

MAX_UPLOAD = 256 * 1024
BODY_LIMIT = MAX_UPLOAD + 64 * 1024  # the clip plus multipart framing


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> ToneIndex:
    root = tmp_path_factory.mktemp("service_security")
    with tone_environment(root / "cache"):
        yield make_tone_index(root)


@pytest.fixture(scope="module")
def url(tones: ToneIndex) -> str:
    with tone_environment(tones.root / "cache"), \
            running_service(tones.index, max_upload_bytes=MAX_UPLOAD, max_upload_seconds=10.0) as url:
        yield url


@pytest.fixture
def client(url: str) -> httpx.Client:
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


def _assert_nothing_leaked(body: bytes, tones: ToneIndex) -> None:
    assert tones.secret.read_bytes()[44:4000] not in body  # the secret's samples (past the WAV header)
    assert b"root:" not in body and b"def create_app" not in body and b"import " not in body


# -- path traversal ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [
    "/api/files/../../../../etc/passwd",
    "/api/files/..%2F..%2F..%2Fetc%2Fpasswd/audio",
    "/api/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd/audio",
    "/api/files//etc/passwd/audio",
    "/api/files/%2Fetc%2Fpasswd/audio",
    "/api/segments/..%2f1/waveform.png",
    "/static/../app.py",
    "/static/%2e%2e/app.py",
    "/static/..%2fapp.py",
    "/static/..%5capp.py",
    "/static/%2e%2e%2f%2e%2e%2fservice%2fmedia.py",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
])
def test_traversal_paths_are_not_found(url: str, tones: ToneIndex, target: str) -> None:
    status, _, body = raw_request(url, "GET", target)
    assert status == 404, (target, body)
    _assert_nothing_leaked(body, tones)


@pytest.mark.parametrize(("file_id", "reason"), [
    ("0", "greater than or equal to 1"),
    ("-1", "greater than or equal to 1"),
    ("1.5", "valid integer"),
    ("%2e%2e", "valid integer"),
    ("99999999999999999999999", "less than or equal to 9223372036854775807"),
])
def test_file_ids_that_are_not_ids_are_unprocessable(url: str, file_id: str, reason: str) -> None:
    status, _, body = raw_request(url, "GET", f"/api/files/{file_id}/audio")
    assert status == 422 and reason.encode() in body


def test_an_id_the_catalog_does_not_hold_is_not_found(client: httpx.Client) -> None:
    response = client.get("/api/files/424242/audio")
    assert (response.status_code, response.json()) == (404, {"detail": "file 424242 is not in the index"})


def test_a_path_parameter_is_ignored_not_served(client: httpx.Client, tones: ToneIndex) -> None:
    response = client.get("/api/query", params={"q": "880", "k": 1, "path": str(tones.secret)})
    assert response.status_code == 200 and response.json()["hits"][0]["name"] == "steps.wav"


def test_a_symlink_out_of_the_corpus_is_indexed_but_never_served(client: httpx.Client, tones: ToneIndex) -> None:
    file_id = file_ids(tones.index)["linked.wav"]
    response = client.get(f"/api/files/{file_id}/audio", headers={"Range": "bytes=0-"})
    assert response.status_code == 403
    assert response.json() == {"detail": f"file {file_id} resolves outside its corpus; it is not served"}
    _assert_nothing_leaked(response.content, tones)
    # Its thumbnail would be drawn from the same bytes: refused too.
    hits = client.get("/api/query", params={"q": "330", "k": 10}).json()["hits"]
    linked = next(h for h in hits if h["name"] == "linked.wav")
    assert client.get(linked["waveform_url"]).status_code == 403


def test_a_file_swapped_for_a_symlink_after_indexing_is_refused(tmp_path: Path) -> None:
    with tone_environment(tmp_path / "cache"):
        tones = make_tone_index(tmp_path)
        victim = tones.corpus / "swap" / "victim.wav"
        file_id = file_ids(tones.index)["swap/victim.wav"]
        with running_service(tones.index) as url, httpx.Client(base_url=url) as client:
            assert client.get(f"/api/files/{file_id}/audio").content == victim.read_bytes()
            victim.unlink()
            victim.symlink_to(tones.secret)
            response = client.get(f"/api/files/{file_id}/audio")
            assert response.status_code == 403
            _assert_nothing_leaked(response.content, tones)
            victim.unlink()
            assert client.get(f"/api/files/{file_id}/audio").json() == {"detail": f"file {file_id} is no longer on disk"}


@pytest.mark.parametrize("tampered", ["../outside/secret.wav", "ABSOLUTE"])
def test_a_catalog_path_leading_out_of_the_corpus_is_refused(tmp_path: Path, tampered: str) -> None:
    """Even a catalog row edited to a relative escape or an absolute path only reaches the corpus."""
    from db import FileRow
    from indexer import Index

    with tone_environment(tmp_path / "cache"):
        tones = make_tone_index(tmp_path)
        file_id = file_ids(tones.index)["swap/victim.wav"]
        index = Index(tones.index)
        with index.catalog.session() as s:
            path = str(tones.secret) if tampered == "ABSOLUTE" else tampered
            s.execute(update(FileRow).where(FileRow.id == file_id).values(path=path))
            s.commit()
        index.close()
        with running_service(tones.index) as url, httpx.Client(base_url=url) as client:
            response = client.get(f"/api/files/{file_id}/audio")
    assert response.status_code == 403
    _assert_nothing_leaked(response.content, tones)


# -- uploads ---------------------------------------------------------------------------------------------
def test_a_body_declared_too_large_is_refused_before_it_is_read(client: httpx.Client) -> None:
    response = client.post("/api/similar", files={"file": ("big.wav", b"\0" * (BODY_LIMIT + 1))})
    assert response.status_code == 413
    assert response.json() == {"detail": "request body exceeds the 320 KiB upload limit"}


def test_a_chunked_body_is_cut_off_at_the_limit(client: httpx.Client) -> None:
    """No Content-Length to refuse up front: the count while the body streams in stops it."""
    boundary = "resoundboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode()

    def body():  # a generator: httpx sends it chunked
        yield head
        for _ in range(BODY_LIMIT // 8192 + 2):
            yield b"\0" * 8192
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post("/api/similar", content=body(),
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413
    assert response.json() == {"detail": "request body exceeds the 320 KiB upload limit"}


def test_a_clip_over_the_limit_inside_a_body_under_it_is_refused(client: httpx.Client) -> None:
    response = client.post("/api/similar", files={"file": ("big.wav", b"\0" * (MAX_UPLOAD + 1))})
    assert (response.status_code, response.json()) == (413, {"detail": "clip exceeds the 256 KiB upload limit"})


def test_a_clip_too_long_is_refused_with_its_duration(client: httpx.Client) -> None:
    clip = wav_bytes(helpers.tone(440, 12.0, rate=8000), 8000)  # 12 s in 188 KiB: under the size limit
    for route in ("/api/similar", "/api/classify"):
        response = client.post(route, files={"file": ("long.wav", clip)}, data={"labels": "a\nb"})
        assert (response.status_code, response.json()) == (413, {"detail": "the clip lasts 12.0 s; the limit is 10 s"})


def test_an_empty_or_undecodable_upload_is_a_bad_request(client: httpx.Client) -> None:
    empty = client.post("/api/similar", files={"file": ("empty.wav", b"")})
    assert (empty.status_code, empty.json()) == (400, {"detail": "the uploaded clip is empty"})
    text = client.post("/api/similar", files={"file": ("notes.wav", b"these are not samples")})
    assert text.status_code == 400
    detail = text.json()["detail"]
    # The client's name, not the server's path, and a plain reason rather than the decoders' messages.
    assert detail == "the uploaded clip notes.wav cannot be decoded: not an audio file (it holds text)"


def test_malformed_requests_get_4xx(url: str, client: httpx.Client) -> None:
    assert client.post("/api/similar").status_code == 422  # no file
    as_json = client.post("/api/similar", json={"file": "/etc/passwd"})
    assert as_json.status_code == 422 and as_json.json()["detail"][0]["loc"] == ["body", "file"]
    status, _, body = raw_request(url, "POST", "/api/similar", {"Content-Type": "multipart/form-data"}, b"garbage")
    assert (status, body) == (400, b'{"detail":"Missing boundary in multipart."}')
    status, _, body = raw_request(url, "POST", "/api/similar",
                                  {"Content-Type": "multipart/form-data; boundary=xyz"}, b"garbage")
    assert (status, body) == (400, b'{"detail":"Invalid multipart data."}')
    status, _, _ = raw_request(url, "POST", "/api/similar", {"Content-Length": "abc"}, b"")
    assert status == 400
    assert client.delete("/api/files/1/audio").status_code == 405


# The schema says what a query must be (non-blank, at most 2,000 characters, a modality the index has):
# what breaks it is refused by validation, 422 with FastAPI's list of {loc, msg, type}.
@pytest.mark.parametrize(("params", "status", "detail"), [
    ({}, 422, None),
    ({"q": "   "}, 422, "String should match pattern '\\S'"),
    ({"q": "x" * 2001}, 422, "String should have at most 2000 characters"),
    ({"q": "880", "k": "0"}, 422, None),
    ({"q": "880", "k": "101"}, 422, None),
    ({"q": "880", "k": "ten"}, 422, None),
    ({"q": "880", "modality": "smell"}, 422, None),
])
def test_bad_queries(client: httpx.Client, params: dict[str, str], status: int, detail: str | None) -> None:
    response = client.get("/api/query", params=params)
    assert response.status_code == status
    if detail is not None:
        assert [(d["loc"], d["msg"]) for d in response.json()["detail"]] == [(["query", "q"], detail)]


def test_a_modality_the_index_lacks_is_refused_as_the_schema_says(client: httpx.Client) -> None:
    """An audio index's schema offers modality "audio" (and "av", everything, to classify): nothing else."""
    schema = client.get("/api/openapi.json").json()
    (modality,) = [p for p in schema["paths"]["/api/query"]["get"]["parameters"] if p["name"] == "modality"]
    assert modality["schema"]["const"] == "audio"
    response = client.get("/api/query", params={"q": "880", "modality": "visual"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "modality"]
    response = client.post("/api/classify", files={"file": ("a.wav", wav_bytes(tone(440)))},
                           data={"labels": "a\nb", "modality": "visual"})
    assert response.status_code == 422 and response.json()["detail"][0]["msg"] == "Input should be 'audio' or 'av'"


@pytest.mark.parametrize("label_set", ["../../../etc/passwd", "/etc/passwd", "esc50.txt", "birdsong"])
def test_label_sets_are_names_never_paths(client: httpx.Client, label_set: str) -> None:
    response = client.post("/api/classify", files={"file": ("a.wav", wav_bytes(tone(440)))},
                           data={"label_set": label_set})
    assert response.status_code == 400
    assert response.json()["detail"].startswith(f"unknown label set {label_set!r}: use one of esc50, starter")


def test_label_lists_are_bounded(client: httpx.Client) -> None:
    clip = {"file": ("a.wav", wav_bytes(tone(440)))}
    many = client.post("/api/classify", files=clip, data={"labels": "\n".join(f"label {i}" for i in range(257))})
    assert (many.status_code, many.json()) == (422, {"detail": [
        {"loc": ["body", "labels"], "msg": "257 labels; at most 256 per request", "type": "value_error"}]})
    long = client.post("/api/classify", files=clip, data={"labels": "x" * 201})
    assert long.status_code == 422 and "exceeds 200 characters" in long.json()["detail"][0]["msg"]
    reclap = client.post("/api/classify", files=clip, data={"labels": "a\nb", "prompts": "reclap"})
    assert reclap.status_code == 400 and "use prompts=templates" in reclap.json()["detail"]


def test_a_foreign_host_header_is_refused(client: httpx.Client) -> None:
    """A page on attacker.example re-pointed at 127.0.0.1 (DNS rebinding) gets nothing."""
    response = client.get("/api/info", headers={"Host": "attacker.example"})
    assert (response.status_code, response.text) == (400, "Invalid host header")
    assert client.get("/api/info", headers={"Host": "localhost"}).status_code == 200
