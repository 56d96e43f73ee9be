"""Running the `kinema` command line in a subprocess, so exit codes and stderr are the real ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_kinema(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m kinema.cli ARGS` in `cwd`; a fixed terminal width keeps rich's layout stable."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "kinema.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def assert_user_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2 with one `error:` line on stderr (no traceback) that contains every needle."""
    stderr = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("error:"), stderr
    for needle in needles:
        assert needle in stderr, (needle, stderr)
    return stderr
