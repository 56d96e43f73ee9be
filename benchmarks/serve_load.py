"""Load on the serving stack, printed as JSON: N concurrent clients, each submitting jobs with
tiny settings through the official openai package and waiting for them (create_and_poll, which
follows openai-poll-after-ms), then downloading and decoding the MP4.

    python benchmarks/serve_load.py --clients 8 --jobs-per-client 4 --workers 2
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 --api-key KEY   # a running server

Without --url it starts `kinema serve` on a free loopback port (SQLite, or --database), waits
for every worker to have loaded its model, runs one warm-up job per worker, then measures. Reported: throughput (completed jobs per
second of wall time), latency from create to completed (p50, p95, max), the server's own
telemetry (queue and compute seconds), and the checks: every job completed, its MP4 decodes
with the right frame count, and (when this script started the server and can read its job
store) every job completed exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore", category=DeprecationWarning)  # the SDK's "Sora API ..." notes
PROMPTS = [
    "a red circle moving left on a black background",
    "a small green square moving right on a navy background",
    "a yellow triangle bouncing on a gray background",
    "two blue circles moving up on a black background",
]


def start_server(folder: Path, workers: int, database: str | None) -> tuple[subprocess.Popen, str]:
    log = folder / "serve.log"
    args = ["--port", "0", "--data-dir", str(folder / "data"), "--workers", str(workers),
            "--no-ui", "--api-key", "bench", "--max-active", "100000"]  # fmt: skip
    if database:
        args += ["--database", database]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kinema.cli", "serve", *args],
                                stdout=out, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        text = log.read_text()
        found = re.search(r"serving on (http://\S+)", text)
        if found and text.count(" ready (model ") >= workers:  # every worker has its model
            return proc, found[1]
        time.sleep(0.1)
    proc.kill()
    sys.exit(f"kinema serve did not start:\n{log.read_text()[-2000:]}")


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def run_client(client, jobs: int, settings: dict, index: int, results: list, lock) -> None:
    from kinema.io.video import read_video

    for j in range(jobs):
        prompt = PROMPTS[(index + j) % len(PROMPTS)]
        start = time.perf_counter()
        record = {"client": index, "ok": False}
        try:
            video = client.videos.create_and_poll(
                prompt=prompt, seconds=settings["seconds"], size=settings["size"],
                extra_body={"steps": settings["steps"], "seed": index * 1000 + j},
            )  # fmt: skip
            record.update(id=video.id, status=video.status, latency=time.perf_counter() - start)
            if video.status == "failed" and video.error is not None:
                record["code"] = video.error.code  # e.g. output_flagged: the safety checks
            if video.status == "completed":
                with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
                    client.videos.download_content(video.id).write_to_file(f.name)
                    frames, _, _ = read_video(f.name)
                record.update(
                    ok=len(frames) == video.model_extra["num_frames"],
                    telemetry=video.model_extra.get("telemetry"),
                )
        except Exception as e:  # count it, keep loading
            record.update(status="error", error=f"{type(e).__name__}: {e}")
        with lock:
            results.append(record)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs-per-client", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (own server only)")
    parser.add_argument("--database", help="job store URL for the server it starts")
    parser.add_argument("--url", help="an already running server instead")
    parser.add_argument("--api-key", default="bench")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--seconds", default="1")
    parser.add_argument("--size", default="64x64")
    args = parser.parse_args()
    import openai

    settings = {"steps": args.steps, "seconds": args.seconds, "size": args.size}
    folder = Path(tempfile.mkdtemp(prefix="kinema-load-"))
    proc, url = (
        (None, args.url.rstrip("/"))
        if args.url
        else start_server(folder, args.workers, args.database)
    )
    try:
        client = openai.OpenAI(
            base_url=f"{url}/v1", api_key=args.api_key, max_retries=3, timeout=120
        )
        wait_until_up(client)
        warm = [threading.Thread(target=run_client, args=(client, 1, settings, -1, [], threading.Lock()))
                for _ in range(max(args.workers, 1))]  # fmt: skip
        for t in warm:  # every worker loads its model before the clock starts
            t.start()
        for t in warm:
            t.join()
        results: list[dict] = []
        lock = threading.Lock()
        threads = [
            threading.Thread(target=run_client, args=(client, args.jobs_per_client, settings, i, results, lock))
            for i in range(args.clients)
        ]  # fmt: skip
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        report = summarize(results, wall, args, settings)
        if proc is not None:
            report.update(completion_audit(folder, args.database, results))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(json.dumps(report, indent=1))


def wait_until_up(client, timeout: float = 60.0) -> None:
    import openai

    deadline = time.monotonic() + timeout
    while True:
        try:
            client.videos.list(limit=1)
            return
        except openai.APIConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def summarize(results: list[dict], wall: float, args, settings: dict) -> dict:
    done = [r for r in results if r.get("status") == "completed"]
    latencies = [r["latency"] for r in done]
    telemetry = [r["telemetry"] for r in done if r.get("telemetry")]
    return {
        "clients": args.clients,
        "jobs": len(results),
        "settings": settings,
        "workers": args.workers if not args.url else None,
        "completed": len(done),
        "failed": len(results) - len(done),
        # failed by the output safety checks (a blank or flagged clip): the queue did its work
        "flagged": sum(r.get("code") == "output_flagged" for r in results),
        "valid_mp4": sum(r["ok"] for r in results),
        "distinct_ids": len({r["id"] for r in results if "id" in r}),
        "wall_seconds": wall,
        "throughput_jobs_per_s": len(done) / wall if wall > 0 else None,
        "latency_s": {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "max": max(latencies, default=None),
        },  # fmt: skip
        "server_queue_s_p50": percentile([t["queue_seconds"] for t in telemetry], 50),
        "server_compute_s_p50": percentile([t["compute_seconds"] for t in telemetry], 50),
        "errors": sorted({r["error"] for r in results if "error" in r})[:5],
    }


def completion_audit(folder: Path, database: str | None, results: list[dict]) -> dict:
    """From the job store's event log: did every job end exactly once (one completed or
    failed event, so none completed twice), and on how many different workers."""
    from kinema.serve.jobs import COMPLETED, FAILED, JobStore

    store = JobStore(database or f"sqlite:///{folder / 'data' / 'jobs.db'}")
    try:
        ids = [r["id"] for r in results if "id" in r]
        ended = [[e for e in store.events(i) if e["kind"] in (COMPLETED, FAILED)] for i in ids]
        return {
            "exactly_once": len(ids) == len(results) and all(len(e) == 1 for e in ended),
            "workers_used": len({e["worker"] for ev in ended for e in ev}),
        }
    finally:
        store.close()


if __name__ == "__main__":
    main()
