"""The OpenAPI document says what the server really answers: a schema-driven fuzzer (Schemathesis, every
check) finds no server error and no mismatch between the schema and the answers, in a bounded, seeded run.
bench/openapi_fuzz.py runs the same with more examples."""

from __future__ import annotations

from pathlib import Path

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
