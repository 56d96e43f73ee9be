"""The load benchmark on a small load: every job completes exactly once with a valid MP4."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from serve_helpers import env

pytest.importorskip("openai")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"


def test_load_benchmark_every_job_completes_exactly_once():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--clients", "3", "--jobs-per-client", "2",
         "--workers", "1", "--seconds", "0.5", "--steps", "2"],
        capture_output=True, text=True, timeout=300, env=env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["jobs"] == 6 and report["completed"] == 6 and report["failed"] == 0, report
    assert report["valid_mp4"] == 6 and report["distinct_ids"] == 6 and report["exactly_once"]
    assert report["throughput_jobs_per_s"] > 0
    assert (
        0 < report["latency_s"]["p50"] <= report["latency_s"]["p95"] <= report["latency_s"]["max"]
    )
