"""Schemathesis fuzzes the OpenAPI spec of a real `kinema serve`: no 5xx, and responses,
status codes, headers and auth as documented.

positive_data_acceptance is left out on purpose: the spec cannot say everything the model
refuses (a width must be a multiple of 8, an extension must name a completed video of the key),
so some schema-valid requests get a 400 that names the parameter, as they should.
"""

import subprocess
import sys

import pytest
from serve_helpers import serve

pytest.importorskip("schemathesis")


def test_fuzzing_the_openapi_spec_finds_no_server_errors(tmp_path):
    with serve(
        tmp_path, "--workers", "0", "--no-ui", "--api-key", "fuzz", "--max-active", "100000"
    ) as server:
        result = subprocess.run(
            [
                sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json",
                "--header", "Authorization: Bearer fuzz", "--max-examples", "30", "--seed", "1",
                "--workers", "1", "--checks", "all", "--exclude-checks", "positive_data_acceptance",
                "--request-timeout", "30",
            ],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        log = server.log.read_text()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "generated" in output and " passed" in output, output[-2000:]
    assert "unhandled error" not in log, log[-4000:]  # a 5xx would also be logged here
