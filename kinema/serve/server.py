"""`kinema serve`: the API (and UI) under uvicorn, N supervised worker processes, and a janitor.

Workers are separate processes (`kinema worker`), each loading the model once; one that exits
unexpectedly is restarted with backoff. Its job is not lost: the lease runs out and another
worker takes it up. The janitor deletes the files of expired and deleted videos.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from kinema.serve.config import ServeConfig

log = logging.getLogger("kinema.serve")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def worker_threads(workers: int) -> int:
    """Torch threads per worker: OMP_NUM_THREADS when set, else the cores shared out. More
    threads than free cores make every step wait on the slowest (OpenMP spins): far slower."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


def worker_command(config: ServeConfig, threads: int) -> list[str]:
    return [
        sys.executable, "-m", "kinema.cli", "worker",
        "--data-dir", str(config.data_dir), "--database", config.db_url, "--model", config.model,
        "--lease-seconds", f"{config.lease_seconds:g}", "--max-attempts", str(config.max_attempts),
        "--cost-per-hour", f"{config.cost_per_hour:g}", "--threads", str(threads),
        "--parent-pid", str(os.getpid()),
        "--watermark" if config.watermark else "--no-watermark",
        "--c2pa" if config.c2pa else "--no-c2pa",
    ]  # fmt: skip


class WorkerSupervisor:
    """Keeps `count` worker processes running until stopped."""

    def __init__(self, command: list[str], count: int):
        self.command, self.count = command, count
        self.procs: list[subprocess.Popen | None] = [None] * count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        for i in range(self.count):
            self.procs[i] = subprocess.Popen(self.command)
        self._thread.start()

    def _watch(self) -> None:
        backoff = [1.0] * self.count
        while not self._stop.wait(1.0):
            for i, proc in enumerate(self.procs):
                if proc is None or proc.poll() is None:
                    continue
                log.warning("worker %d exited with %s; restarting in %.0f s", proc.pid,
                            proc.returncode, backoff[i])  # fmt: skip
                if self._stop.wait(backoff[i]):
                    return
                backoff[i] = min(backoff[i] * 2, 30.0)
                self.procs[i] = subprocess.Popen(self.command)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every worker (each hands its running job back), then SIGKILL stragglers."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in live:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Janitor(threading.Thread):
    """Every `interval` seconds, deletes the files of expired and deleted videos."""

    def __init__(self, services, interval: float = 60.0):
        super().__init__(name="janitor", daemon=True)
        self.services, self.interval = services, interval
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sweep()

    def sweep(self) -> int:
        try:
            jobs = self.services.store.to_purge()
            for job in jobs:
                self.services.storage.remove(job.id)
                self.services.store.mark_purged(job.id)
            return len(jobs)
        except Exception:  # the janitor must outlive a bad sweep
            log.exception("janitor sweep failed")
            return 0

    def stop(self) -> None:
        self._stop.set()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def _exit_on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def serve(
    config: ServeConfig,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    ui: bool = True,
) -> None:
    """Run until SIGINT/SIGTERM. Prints one line with the URL once it accepts connections."""
    import uvicorn

    from kinema.serve.app import Services, create_app

    services = Services.build(config)
    app = create_app(services, ui=ui)
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    supervisor = WorkerSupervisor(worker_command(config, worker_threads(workers)), workers)
    janitor = Janitor(services)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    shown = f"[{host}]" if ":" in host else host
    try:
        supervisor.start()
        janitor.start()
        janitor.sweep()
        print(f"kinema serving on http://{shown}:{actual} (UI: /ui, API: /v1/videos, "
              f"{workers} worker{'s' if workers != 1 else ''})", flush=True)  # fmt: skip
        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: let that end
        # the process through this finally (workers stopped), not by the default handler
        signal.signal(signal.SIGTERM, _exit_on_signal)
        server.run(sockets=[sock])
    finally:
        janitor.stop()
        supervisor.stop()
        services.store.close()
        sock.close()
