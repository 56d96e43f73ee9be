"""The worker: loads the model once, then claims jobs and runs them, one at a time.

While a job runs, a heartbeat thread extends its lease and records the sampler's progress; it
learns from the store when the owner cancelled or deleted the job, or when the lease was lost to
another worker, and the sampler's step callback then stops the job. Outputs go under the claim's
own token and the completion is a compare-and-set on that token (see jobs.py), so a job completes
exactly once however many workers died or stalled on it. On shutdown (SIGTERM, SIGINT) a running
job is handed back to the queue rather than left to wait for its lease to run out.

Served clips go through the production pipeline (kinema/production): the model generates at its
base format and learned interpolation and upscaling take the clip to the asked fps and size;
every frame and the clip go through the safety checks (a flagged clip fails the job and nothing
is stored), the invisible watermark carries the job id, and the MP4 is signed with a C2PA
manifest. An extension continues the source clip as it is, then gets the same checks and marks.

Run it as `kinema worker` (on this machine or any other that reaches the database and the data
directory), or let `kinema serve --workers N` start and supervise N of them.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from kinema.io.images import ImageError
from kinema.io.video import VideoError
from kinema.pipeline.conditioning import ConditioningError
from kinema.pipeline.text_to_video import GenerationError
from kinema.production.produce import ProductionSettings, Stages, mark_output, produce
from kinema.production.safety import SafetyError
from kinema.serve.jobs import Claim, Job, JobStore
from kinema.serve.outputs import quality_report, write_outputs
from kinema.serve.storage import SOURCE_VIDEO, Storage

log = logging.getLogger("kinema.worker")

# progress (0-100) as the job moves on: the sampler drives 5..90
_SAMPLING_START, _SAMPLING_END, _EXPORTED = 5, 90, 95
# what the pipeline refuses (settings, images, the clip to extend): the job fails with the message
_REFUSED = (GenerationError, ConditioningError, ImageError, VideoError)


class _Stop(Exception):
    """Raised in the sampler's callback to stop a job: 'cancel', 'lost' or 'shutdown'."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Heartbeat(threading.Thread):
    """Extends the claim's lease every `interval` seconds and carries progress to the store."""

    def __init__(self, store: JobStore, claim: Claim, interval: float, shutdown: threading.Event):
        super().__init__(name=f"heartbeat-{claim.job.id}", daemon=True)
        self.store, self.claim, self.interval = store, claim, interval
        self.progress = 0
        self.stop_reason: str | None = None
        self._shutdown = shutdown
        self._done = threading.Event()

    def run(self) -> None:
        last_ok = time.monotonic()
        while not self._done.wait(self.interval):
            try:
                beat = self.store.heartbeat(self.claim, self.progress)
            except (
                SQLAlchemyError
            ) as e:  # the store is unreachable: keep trying until the lease ends
                log.warning("heartbeat for %s failed: %s", self.claim.job.id, e)
                if time.monotonic() - last_ok > self.store.lease_seconds:
                    self.stop_reason = "lost"
                    return
                continue
            last_ok = time.monotonic()
            if not beat.alive or beat.cancel:
                self.stop_reason = "lost" if not beat.alive else "cancel"
                return

    def check(self) -> None:
        """Raise _Stop if the job should stop now."""
        if self.stop_reason is not None:
            raise _Stop(self.stop_reason)
        if self._shutdown.is_set():
            raise _Stop("shutdown")

    def finish(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join()


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class Worker:
    def __init__(
        self,
        store: JobStore,
        data_dir: str | Path,
        model: str = "kinema-tiny",
        worker_id: str | None = None,
        cost_per_hour: float = 0.0,
        poll_seconds: float = 0.25,
        pipeline=None,
        stages: Stages | None = None,
        watermark: bool = True,
        c2pa: bool = True,
    ):
        """stages: the safety policy and classifiers (the default policy when None);
        watermark, c2pa: mark served clips (both on by default, as for `kinema generate`)."""
        import kinema

        self.store = store
        self.storage = Storage(data_dir)
        self.model = model
        self.id = worker_id or default_worker_id()
        self.cost_per_hour = cost_per_hour
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = min(0.5, store.lease_seconds / 3)
        self.pipe = pipeline if pipeline is not None else kinema.load(model)
        self.stages = stages or Stages()
        _, self.frame_checks, self.clip_checks = self.stages.resolved()
        self.watermark, self.c2pa = watermark, c2pa

    def run(
        self,
        stop: threading.Event | None = None,
        max_jobs: int | None = None,
        idle_exit: float | None = None,
    ) -> int:
        """Claim and run jobs until `stop` is set, `max_jobs` are done, or the queue stayed empty
        for `idle_exit` seconds. Returns the number of jobs run."""
        stop = stop or threading.Event()
        done, idle_since = 0, time.monotonic()
        while not stop.is_set() and (max_jobs is None or done < max_jobs):
            try:
                claim = self.store.claim(self.id, [self.model])
            except SQLAlchemyError as e:
                log.warning("cannot claim from the job store: %s", e)
                stop.wait(max(1.0, self.poll_seconds))
                continue
            if claim is None:
                if idle_exit is not None and time.monotonic() - idle_since > idle_exit:
                    break
                stop.wait(self.poll_seconds)
                continue
            outcome = self.process(claim, stop)
            log.info("%s %s (attempt %d)", claim.job.id, outcome, claim.attempt)
            done += 1
            idle_since = time.monotonic()
        return done

    def process(self, claim: Claim, shutdown: threading.Event | None = None) -> str:
        """Run one claimed job: 'completed', 'failed', 'cancelled', 'lost' or 'released'."""
        job = claim.job
        beat = _Heartbeat(self.store, claim, self.heartbeat_seconds, shutdown or threading.Event())
        beat.start()
        span = _SAMPLING_END - _SAMPLING_START

        def on_step(i: int, n: int, _x) -> None:
            beat.progress = _SAMPLING_START + span * i // max(n, 1)
            beat.check()

        try:
            beat.check()
            video = self.generate(job, on_step)
            stages = dict(video.metadata.get("timings", {}))
            beat.check()
            if video.metadata.get("mode") == "extension":  # produce() marked the others
                video = self.mark(job, video, stages)
            t0 = time.perf_counter()
            folder = self.storage.attempt_dir(job.id, claim.token, create=True)
            write_outputs(video, folder, self.c2pa)
            stages["export"] = time.perf_counter() - t0
            beat.progress = _EXPORTED
            quality = quality_report(video.metadata.get("quality") or {})  # produce()'s or mark()'s
            beat.check()
            beat.finish()
            if self.store.complete(claim, stages, quality, self.cost_per_hour):
                self.storage.prune(job.id, keep=claim.token)
                return "completed"
            self.storage.remove(job.id, claim.token)  # another attempt owns the job now
            return "lost"
        except _Stop as stop:
            beat.finish()
            self.storage.remove(job.id, claim.token)
            if stop.reason == "cancel":
                self.store.fail(claim, "cancelled", "cancelled while generating")
                return "cancelled"
            if stop.reason == "shutdown":
                self.store.release(claim)
                return "released"
            return "lost"
        except SafetyError as e:  # a flagged frame or clip: nothing is stored
            return self._fail(claim, beat, "output_flagged", str(e))
        except _REFUSED as e:  # input the pipeline refuses (the API checks it first)
            return self._fail(claim, beat, "invalid_settings", str(e))
        except Exception as e:  # a bug or a broken model: the job fails, the worker goes on
            log.exception("job %s failed", job.id)
            return self._fail(claim, beat, "generation_failed", f"{type(e).__name__}: {e}")

    def generate(self, job: Job, callback):
        """The job's clip: text-to-video, image-to-video from its stored input_reference (and
        last_reference, the last frame), or the extension of its stored source clip (a copy of
        the source video's MP4)."""
        p = job.params
        common = dict(
            seed=p["seed"], steps=p["steps"], guidance=p["guidance"],
            negative_prompt=p["negative_prompt"], solver=p["solver"], motion=p.get("motion"),
            eta=p.get("eta"), callback=callback,
        )  # fmt: skip
        if p.get("extend_seconds"):  # a served video's (extended_from) or an uploaded MP4
            source = self.storage.input_path(job.id, SOURCE_VIDEO)
            video = self.pipe.extend(source, job.prompt, p["extend_seconds"], fps=p["fps"],
                                     width=p["width"], height=p["height"],
                                     fit=p.get("fit", "crop"), **common)  # fmt: skip
            video.metadata["extended_from"] = p.get("extended_from") or "upload"
            return video
        reference, last = p.get("input_reference"), p.get("last_reference")
        image = {}
        if reference:  # fit and image_noise are the same for both images (validation.py)
            image = dict(image=self.storage.input_path(job.id, reference["file"]),
                         fit=reference["fit"], image_noise=reference["image_noise"])  # fmt: skip
        if last:
            image["last_image"] = self.storage.input_path(job.id, last["file"])
        # the production pipeline: the model's base format, then interpolation and upscaling
        # to the asked fps and size, safety on every frame, the watermark (the job id)
        settings = ProductionSettings(
            fps=p["fps"], width=p["width"], height=p["height"], seed=common.pop("seed"),
            seconds=(p["num_frames"] - 1) / p["fps"], negative_prompt=common.pop("negative_prompt"),
            expand=False, watermark=self.watermark, generation_id=job.id.removeprefix("video_"),
        )  # fmt: skip
        return produce(self.pipe, job.prompt, settings, self.stages, **image, **common)

    def mark(self, job: Job, video, timings: dict):
        """Safety on every frame and the clip, the watermark with the job id, and the quality
        report: what produce() does after generating, for a clip it did not make."""
        from kinema.api import Video
        from kinema.production.report import quality_report as production_quality

        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage], clock = now - clock, now

        generation_id = job.id.removeprefix("video_")  # the hex digits the watermark carries
        frames, marks = mark_output(video.frames, video.fps, generation_id, self.frame_checks,
                                    self.clip_checks, self.watermark, lap)  # fmt: skip
        quality = production_quality(frames, video.fps, job.prompt)
        lap("quality")
        notes = video.metadata.get("notes", []) + marks.pop("notes")
        meta = {**video.metadata, **marks, "quality": quality, "notes": notes}
        return Video(frames, video.fps, meta)

    def _fail(self, claim: Claim, beat: _Heartbeat, code: str, message: str) -> str:
        beat.finish()
        self.storage.remove(claim.job.id, claim.token)
        self.store.fail(claim, code, message)
        return "failed"
