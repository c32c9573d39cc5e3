"""The OpenAPI document says what the server really answers: a schema-driven fuzzer (Schemathesis, every
check) finds no server error and no mismatch between the schema and the answers, in a bounded, seeded run.
bench/openapi_fuzz.py runs the same with more examples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.text import normalize_text
from tests import helpers
from tests.hostile_text import hostile_lines, hostile_text, odd_file_name
from tests.service_support import (
    fuzz_failures,
    make_tone_index,
    run_schemathesis,
    running_service,
    tone_environment,
)


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(tmp_path: Path) -> None:
    with tone_environment(tmp_path / "cache"):
        tones = make_tone_index(tmp_path)
        with running_service(tones.index, max_upload_bytes=256 * 1024, max_upload_seconds=10.0) as url:
            result = run_schemathesis(url, max_examples=15, seed=1, report=tmp_path / "schemathesis.json")
    assert result["operations"]["tested"] == 9, result["output"]
    assert result["test_cases"]["generated"] > 200
    assert fuzz_failures(result) == {"server_errors": 0, "schema_mismatches": 0, "errors": 0}, result["output"]


# -- the API on the starter model, with text from all of Unicode (issue 25) --------------------------
# Schemathesis draws strings from the schema; the starter's text path (tokenizer, WordNet lookups) needs
# every script, mark and control character, so these draw them with Hypothesis, seeded and bounded.


FUZZ = settings(max_examples=25, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def starter_client(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from search.service import create_app

    corpus, index = helpers.starter_index(tmp_path_factory.mktemp("starter"))
    with TestClient(create_app(index), base_url="http://127.0.0.1") as client:
        yield client, (corpus / "a440.wav").read_bytes()


@FUZZ
@given(text=hostile_text(surrogates=False), k=st.integers(1, 5))
def test_fuzzed_queries_get_hits_or_a_4xx(starter_client, text: str, k: int) -> None:  # type: ignore[no-untyped-def]
    client, _ = starter_client
    response = client.get("/api/query", params={"q": text, "k": k})
    assert response.status_code < 500, (text, response.text)
    if text.strip() and normalize_text(text.strip()) and len(text) <= 2000:
        assert response.status_code == 200 and len(response.json()["hits"]) == min(k, 3), (text, response.text)
    else:
        assert response.status_code in (400, 422) and response.json()["detail"]


def test_query_bytes_that_are_not_utf8_get_a_4xx(starter_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = starter_client
    for raw in ("%ff%fe", "%ed%a0%80", "caf%e9", "%00"):
        response = client.get(f"/api/query?q={raw}")
        assert response.status_code < 500, (raw, response.text)


@FUZZ
@given(lines=hostile_lines(surrogates=False), name=odd_file_name())
def test_fuzzed_labels_and_file_names_get_labels_or_a_4xx(starter_client, lines: list[str], name: str) -> None:  # type: ignore[no-untyped-def]
    client, clip = starter_client
    filename = os.fsencode(name).decode("utf-8", "replace")  # a form field's file name is text
    response = client.post("/api/classify", files={"file": (filename, clip)},
                           data={"labels": "\n".join(lines), "prompts": "label"})
    assert response.status_code < 500, (lines, name, response.text)
    labels = [line.strip() for line in "\n".join(lines).splitlines() if line.strip()]
    if not "\n".join(lines):  # an empty form field is an absent one (the page's blank box): the default set
        assert response.status_code == 200 and response.json()["label_set"] == "starter"
    elif labels and len(set(labels)) == len(labels):
        assert response.status_code == 200, response.text
        assert {s["label"] for s in response.json()["labels"]} <= set(labels)
    else:
        assert response.status_code == 400 and response.json()["detail"].startswith("labels: ")
