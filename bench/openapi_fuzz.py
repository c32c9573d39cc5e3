"""Schemathesis against the served OpenAPI document: every check (server errors, status codes, content
types, response schemas, schema-valid data accepted, schema-invalid data refused), the coverage and
fuzzing phases, a fixed seed. Prints the cases generated and the failures by kind.

The index is tests/service_support.py's tone corpus, served with the transparent test encoder, so the run
measures the HTTP contract, not a model. tests/test_openapi_fuzz.py runs the same with fewer examples.
Run: PYTHONPATH=. python bench/openapi_fuzz.py [--max-examples 100] [--seed 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tests.service_support import (
    fuzz_failures,
    make_tone_index,
    run_schemathesis,
    running_service,
    tone_environment,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=100, help="cases per operation and phase")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="resound-fuzz-") as tmp:
        root = Path(tmp)
        with tone_environment(root / "cache"):
            tones = make_tone_index(root)
            with running_service(tones.index, max_upload_bytes=256 * 1024, max_upload_seconds=10.0) as url:
                started = time.perf_counter()
                result = run_schemathesis(url, args.max_examples, args.seed, root / "report.json")
                seconds = time.perf_counter() - started
    failures = fuzz_failures(result)
    print(f"schemathesis {result['schemathesis_version']}, seed {args.seed}, {args.max_examples} examples per operation")
    print("| operations | cases | server errors | schema mismatches | run errors | seconds |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {result['operations']['tested']} | {result['test_cases']['generated']} | {failures['server_errors']} | "
          f"{failures['schema_mismatches']} | {failures['errors']} | {seconds:.0f} |")
    for failure in result["failures"]:
        print(f"  {failure['code']} {failure['title']}: {failure['count']} ({', '.join(failure['operations'])})")


if __name__ == "__main__":
    main()
