"""Helpers for the serving tests: a real `kinema serve` / `kinema worker` as a subprocess, and
the services CI provides (PostgreSQL, Chromium), which skip locally but fail under CI=true."""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

ON_CI = os.environ.get("CI", "").lower() == "true"
PROMPT = "a red circle moving left on a black background"
IMAGE_PROMPT = "a large red circle moving right on a gradient background"


def require(available: bool, reason: str) -> None:
    """Skip when a service is missing, except on CI, where it must be there."""
    if not available:
        if ON_CI:
            pytest.fail(f"{reason} (CI=true: .ci/run provides it)")
        pytest.skip(reason)


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "kinema.cli", *args]


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, data_dir: Path, log: Path):
        self.proc, self.url, self.data_dir, self.log = proc, url, data_dir, log

    @property
    def api(self) -> str:
        return f"{self.url}/v1"


@contextmanager
def serve(tmp: Path, *args: str, timeout: float = 90.0):
    """`kinema serve --port 0` in tmp (data in tmp/data); yields once /healthz answers."""
    import httpx

    data_dir = tmp / "data"
    log = tmp / f"serve-{uuid.uuid4().hex[:6]}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cli("serve", "--port", "0", "--data-dir", str(data_dir), *args),
            stdout=out, stderr=subprocess.STDOUT, env=env(), cwd=tmp,
        )  # fmt: skip
    try:
        url, deadline = None, time.monotonic() + timeout
        while url is None:
            found = re.search(r"serving on (http://\S+)", log.read_text())
            if found:
                url = found[1]
            elif proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"kinema serve did not start:\n{log.read_text()[-3000:]}")
            else:
                time.sleep(0.1)
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"kinema serve does not answer:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield Server(proc, url, data_dir, log)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def worker(data_dir: Path, *args: str, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "w") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        cli("worker", "--data-dir", str(data_dir), "--threads", "1", *args),
        stdout=out, stderr=subprocess.STDOUT, env=env(),
    )  # fmt: skip


def within(limit_s: float, call, /, *args, **kwargs):
    """call(*args, **kwargs), failing the test if it takes longer (the SDK's poll never gives up)."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(call, *args, **kwargs).result(timeout=limit_s)
    except concurrent.futures.TimeoutError:
        pytest.fail(f"{getattr(call, '__name__', call)} took more than {limit_s:g} s")
    finally:
        pool.shutdown(wait=False)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@contextmanager
def postgres_database():
    """A fresh database in the PostgreSQL cluster of KINEMA_TEST_POSTGRES_URL; dropped after."""
    base = os.environ.get("KINEMA_TEST_POSTGRES_URL")
    require(bool(base), "no PostgreSQL: set KINEMA_TEST_POSTGRES_URL (.ci/run starts one)")
    import sqlalchemy as sa

    name = f"kinema_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as e:
        require(False, f"PostgreSQL at KINEMA_TEST_POSTGRES_URL does not answer: {e}")
    try:
        yield sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def world_image(prompt: str = IMAGE_PROMPT, size: int = 64):
    """The first frame of a Shapes-world scene: ((size, size, 3) uint8, its PNG bytes)."""
    import io

    import numpy as np
    from PIL import Image

    from kinema.world.parse import parse_caption
    from kinema.world.render import render
    from kinema.world.sampler import place

    scene = place(parse_caption(prompt), np.random.default_rng(0), 2.0, size, size, strict=False)
    image = render(scene, size, size, 1, 8.0)[0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return image, buffer.getvalue()


def psnr(a, b) -> float:
    import numpy as np

    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def chromium_path() -> str:
    path = os.environ.get("KINEMA_TEST_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None
    )
    found = bool(path) and os.access(path, os.X_OK)
    require(found, "no Chromium: install Debian's chromium (.ci/run does)")
    return path
